package queue

import amqp "github.com/rabbitmq/amqp091-go"

// WireHeaders lets the external tests see the headers a message goes out
// with, which the package keeps to itself; they check them by the names
// docs/protocol.md gives.
func WireHeaders(m Message) amqp.Table { return m.headers }

// DeliveryHeader is a delivered message's header as text, or "".
func DeliveryHeader(d Delivery, name string) string { return d.header(name) }
