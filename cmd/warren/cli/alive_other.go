//go:build !unix

package cli

// processAlive says yes where it cannot tell, so nothing of a live
// process is removed.
func processAlive(int) bool { return true }
