package queue

import amqp "github.com/rabbitmq/amqp091-go"

// WireHeaders lets the external tests see the headers a message goes out
// with, which the package keeps to itself; they check them by the names
// docs/protocol.md gives.
func WireHeaders(m Message) amqp.Table { return m.headers }

// DeliveryHeader is a delivered message's header as text, or "".
func DeliveryHeader(d Delivery, name string) string { return d.header(name) }

// ConnectedURL is the URL of the node the broker is connected to, or "".
func ConnectedURL(b *Broker) string {
	s, err := b.live()
	if err != nil {
		return ""
	}
	return s.url
}

// Order is the order of the nodes' next connection tries after lost's
// connection was lost ("": none was).
func Order(urls []string, lost string) []string {
	n := &nodes{urls: urls}
	if lost != "" {
		n.dropped(lost)
	}
	return n.order()
}
