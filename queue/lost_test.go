package queue

import (
	"errors"
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// An error that says the connection went away is the broker's
// unavailability; the broker's refusals on a live connection are not.
func TestConnectionLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"channel or connection closed", fmt.Errorf("get: %w", amqp.ErrClosed), true},
		{"broker stopping", &amqp.Error{Code: amqp.ConnectionForced, Reason: "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'", Server: true}, true},
		{"socket failed", &amqp.Error{Code: amqp.FrameError, Reason: "EOF"}, true},
		{"no such queue", &amqp.Error{Code: amqp.NotFound, Reason: "NOT_FOUND - no queue", Server: true, Recover: true}, false},
		{"refused", &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED", Server: true, Recover: true}, false},
		{"not amqp", errors.New("redis: connection refused"), false},
		{"nil", nil, false},
	} {
		err := connectionLost(tc.err)
		if got := errors.Is(err, ErrUnavailable); got != tc.want {
			t.Errorf("%s: connectionLost(%v) = %v, unavailable %v; want %v", tc.name, tc.err, err, got, tc.want)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: %v lost the error it wraps", tc.name, err)
		}
	}
}
