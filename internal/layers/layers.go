// Package layers holds the test that keeps warren's imports pointing one
// way, as docs/architecture.md draws them: from the commands down through
// the services and the core to the jobs package, never back up. It has no
// code of its own.
package layers
