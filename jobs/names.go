package jobs

import (
	"fmt"
	"regexp"
)

// Namespace prefixes every exchange, queue and Redis key of one warren
// deployment, so several stacks (and parallel tests) can share one broker
// and one Redis. Every name warren derives is derived here, and
// docs/protocol.md lists the same names for workers in other languages.
type Namespace string

// DefaultNamespace is the namespace when none is configured.
const DefaultNamespace Namespace = "warren"

var namespaceRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)

// Validate reports whether ns can prefix names in RabbitMQ and Redis.
func (ns Namespace) Validate() error {
	if !namespaceRE.MatchString(string(ns)) {
		return fmt.Errorf("namespace %q: want letters, digits, '-' or '_' (at most 63)", string(ns))
	}
	return nil
}

// Exchange is the durable topic exchange jobs are published to, with the job
// type as routing key.
func (ns Namespace) Exchange() string { return string(ns) + ".jobs" }

// Queue is the durable quorum queue of a worker pool.
func (ns Namespace) Queue(pool string) string { return string(ns) + ".pool." + pool }

// RoutingKey is the routing key of a job type: the type itself.
func (ns Namespace) RoutingKey(jobType string) string { return jobType }

// KeyPrefix starts every Redis key of the namespace.
func (ns Namespace) KeyPrefix() string { return string(ns) + ":" }

// JobKey is the Redis hash holding one job's record.
func (ns Namespace) JobKey(id string) string { return string(ns) + ":job:" + id }

// TypesKey is the Redis hash of declared types: field = type name, value =
// the Type as JSON.
func (ns Namespace) TypesKey() string { return string(ns) + ":types" }

// IdempotencyKey is the Redis string mapping a submitter's key to a job id.
func (ns Namespace) IdempotencyKey(key string) string { return string(ns) + ":idem:" + key }

// EventsChannel is the Redis pub/sub channel on which job completions
// ("done <id>") and type declarations ("types <name>") are announced.
func (ns Namespace) EventsChannel() string { return string(ns) + ":events" }
