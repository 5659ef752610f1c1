package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/redact"
)

// ParseURLs splits s, one AMQP URL or several separated by commas (the
// nodes of one RabbitMQ cluster), and checks each: every one must parse,
// and all must agree on the scheme (amqp:// or amqps://) and the vhost, as
// they are meant to be the same broker. Errors never quote a password.
func ParseURLs(s string) ([]string, error) {
	var urls []string
	var first amqp.URI
	for i, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		uri, err := amqp.ParseURI(raw)
		if err != nil {
			err = redact.ParseError(raw, err)
			if strings.Count(s, ",") > 0 {
				err = fmt.Errorf("%w (a comma separates the URLs of a cluster's nodes: write one in a password as %%2C)", err)
			}
			return nil, fmt.Errorf("URL %d, %s: %w", i+1, redact.URL(raw), err)
		}
		if len(urls) == 0 {
			first = uri
		} else if uri.Scheme != first.Scheme || uri.Vhost != first.Vhost {
			return nil, fmt.Errorf("URL %d, %s: the nodes of one broker share a scheme and a vhost; the first is %s:// with vhost %q",
				i+1, redact.URL(raw), first.Scheme, first.Vhost)
		}
		urls = append(urls, raw)
	}
	if len(urls) == 0 {
		return nil, errors.New("no AMQP URL given")
	}
	return urls, nil
}

// nodes are the addresses a Broker connects to. Each connection tries them
// in a fresh random order, so that the processes of a deployment spread
// over a cluster's nodes rather than all crowding the first, except that
// the node whose connection was lost last is tried last: it is the one
// most likely to be down still.
type nodes struct {
	urls []string

	mu   sync.Mutex
	lost string // the URL of the last connection lost, or ""
}

// order returns the URLs in the order of the next connection's tries.
func (n *nodes) order() []string {
	urls := slices.Clone(n.urls)
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	n.mu.Lock()
	lost := n.lost
	n.mu.Unlock()
	if i := slices.Index(urls, lost); i >= 0 && len(urls) > 1 {
		urls = append(slices.Delete(urls, i, i+1), lost)
	}
	return urls
}

// dropped records that the connection to url was lost.
func (n *nodes) dropped(url string) {
	n.mu.Lock()
	n.lost = url
	n.mu.Unlock()
}
