// Package ha holds the tests of warren on more than one node: real warren
// processes against servers that fail over (Redis with a replica and
// Sentinels; a RabbitMQ cluster), under a steady load of submissions, with
// the figures of what each failover cost. harness_test.go is the harness
// the tests share: the warren binary, its processes, the load and the
// settling of every accepted job. The package has no code of its own.
package ha
