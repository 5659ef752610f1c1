package queue

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/redact"
)

// Sources of a Depth.
const (
	// SourceManagement means RabbitMQ's management API measured the queue:
	// ready and unacknowledged messages both.
	SourceManagement = "management"
	// SourceAMQP means a passive queue declare measured it: ready messages
	// and consumers only, since AMQP has no count of unacknowledged ones.
	SourceAMQP = "amqp"
)

// Depth is how much work waits in a pool's queue at one moment.
type Depth struct {
	// Ready is the messages waiting to be delivered.
	Ready int
	// Unacked is the messages delivered to a worker and not yet settled:
	// jobs running, or prefetched. Always 0 when Source is SourceAMQP,
	// which cannot count them.
	Unacked int
	// Consumers is the consumers attached to the queue (one per worker
	// process and pool).
	Consumers int
	// Source is SourceManagement or SourceAMQP: what measured the queue.
	Source string
	// High is the part of the backlog (Backlog) in the pool's high lane:
	// jobs of priority 5 and above (docs/priorities.md).
	High int
}

// Backlog is the work the pool has not finished: ready plus unacknowledged
// messages. Autoscalers size a pool on it; from SourceAMQP it is the ready
// messages alone.
func (d Depth) Backlog() int { return d.Ready + d.Unacked }

// ManagementOff is the management URL that turns the management API off:
// queues are then measured over AMQP alone.
const ManagementOff = "off"

// Where RabbitMQ's management plugin listens unless configured otherwise:
// over http, and over https (management.ssl.port in its documentation).
const (
	defaultManagementPort    = "15672"
	defaultManagementTLSPort = "15671"
)

// Management is a client of RabbitMQ's management HTTP API, for the queue
// figures AMQP cannot give. It is safe for concurrent use and needs no
// closing. On a cluster it knows each node's API and asks the one that
// answered last, moving on to the next when it does not answer.
type Management struct {
	apis  []managementAPI
	at    atomic.Int32 // index of the API asked first
	vhost string       // the AMQP URL's vhost: the default of Queue
	hc    *http.Client

	// failing is set while the API does not answer, so PoolDepth logs the
	// change of state rather than every failed measurement.
	failing atomic.Bool
}

// managementAPI is one node's management API.
type managementAPI struct {
	base       *url.URL // scheme, host and any path prefix; no user
	user, pass string
}

// NewManagement is NewManagementTLS with no TLS configuration of its own:
// an https API is checked against the system's CAs.
func NewManagement(managementURL, amqpURL string) (*Management, error) {
	return NewManagementTLS(managementURL, amqpURL, nil)
}

// NewManagementTLS returns a client of the management API at managementURL.
// An empty managementURL means each AMQP URL's host, over the AMQP URL's
// kind of connection: http on port 15672 for amqp://, https on port 15671
// for amqps://. A managementURL may list several APIs, separated by
// commas, as the AMQP URL may list a cluster's nodes; one without
// credentials uses the first AMQP URL's. "off" returns nil, nil: measure
// with AMQP alone. The vhost of the AMQP URL is the vhost Queue uses by
// default.
//
// tlsConfig is the AMQP connection's (Config.TLS): an https API is checked
// against its CAs and shown its client certificate, and, on an AMQP host,
// expected to bear its server name. Nil means the system's CAs.
//
// The client never goes through a proxy: HTTPS_PROXY and the like are
// ignored, as the API is the broker's own and its credentials must not
// travel anywhere else.
func NewManagementTLS(managementURL, amqpURL string, tlsConfig *tls.Config) (*Management, error) {
	if strings.EqualFold(strings.TrimSpace(managementURL), ManagementOff) {
		return nil, nil
	}
	urls, err := ParseURLs(amqpURL)
	if err != nil {
		return nil, fmt.Errorf("management API: AMQP URL: %w", err)
	}
	m := &Management{}
	hosts := map[string]bool{}
	for i, raw := range urls {
		uri, _ := amqp.ParseURI(raw) // ParseURLs has parsed it
		hosts[uri.Host] = true
		if i == 0 {
			m.vhost = uri.Vhost
		}
		if managementURL == "" {
			scheme, port := "http", defaultManagementPort
			if uri.Scheme == "amqps" {
				scheme, port = "https", defaultManagementTLSPort
			}
			m.apis = append(m.apis, managementAPI{
				base: &url.URL{Scheme: scheme, Host: net.JoinHostPort(uri.Host, port)},
				user: uri.Username, pass: uri.Password,
			})
		}
	}
	if managementURL != "" {
		first, _ := amqp.ParseURI(urls[0])
		for _, raw := range strings.Split(managementURL, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil {
				return nil, fmt.Errorf("management URL: %w", redact.ParseError(raw, err))
			}
			if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("management URL %q: want http:// or https:// and a host, such as http://127.0.0.1:15672, or %q", u.Redacted(), ManagementOff)
			}
			api := managementAPI{user: first.Username, pass: first.Password,
				base: &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/")}}
			if u.User != nil {
				api.user = u.User.Username()
				api.pass, _ = u.User.Password()
			}
			m.apis = append(m.apis, api)
		}
	}
	tc := tlsConfig.Clone()
	if tc != nil && tc.ServerName != "" {
		for _, api := range m.apis {
			if !hosts[api.base.Hostname()] {
				// The server name is the AMQP hosts'; another host is
				// checked against its own name.
				tc.ServerName = ""
			}
		}
	}
	m.hc = &http.Client{Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: tc,
		// No keep-alive: a measurement every few seconds does not need a
		// pooled connection, and without one no idle-connection goroutines
		// outlive a request, so the client needs no owner to close it.
		DisableKeepAlives: true,
	}}
	return m, nil
}

// URL returns the address of the API asked first, without credentials.
func (m *Management) URL() string { return m.apis[m.at.Load()].base.String() }

// get asks the APIs for path, beginning with the one that answered last,
// until one answers (whatever its status) or ctx ends; the next call then
// begins with that one. It returns the answer and the API's address.
func (m *Management) get(ctx context.Context, path string) (*http.Response, string, error) {
	var errs []error
	first := int(m.at.Load())
	for i := range m.apis {
		at := (first + i) % len(m.apis)
		api := m.apis[at]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.base.String()+path, nil)
		if err != nil {
			return nil, "", err
		}
		req.SetBasicAuth(api.user, api.pass)
		req.Header.Set("Accept", "application/json")
		resp, err := m.hc.Do(req)
		if err == nil {
			m.at.Store(int32(at))
			return resp, api.base.String(), nil
		}
		errs = append(errs, fmt.Errorf("management API at %s: %w", api.base, err))
		if ctx.Err() != nil {
			// The next call begins with the next API.
			m.at.Store(int32((at + 1) % len(m.apis)))
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// Management API answers that leave the measuring to AMQP without the API
// being at fault.
var (
	errNoQueue   = errors.New("no such queue")
	errNoFigures = errors.New("management API has no message counts for the queue yet")
)

// Queue measures one queue: GET /api/queues/{vhost}/{name}. An empty vhost
// means the AMQP URL's. The API refreshes its figures every few seconds
// (collect_statistics_interval, 5s by default), so they may be that old.
// A queue the API has no figures for yet (just declared, or statistics
// disabled) is an error.
func (m *Management) Queue(ctx context.Context, vhost, name string) (Depth, error) {
	if vhost == "" {
		vhost = m.vhost
	}
	// The vhost "/" must travel escaped, as %2F.
	// No ?columns=: while the queue has no figures, the API answers that
	// with [] rather than an object.
	resp, at, err := m.get(ctx, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name))
	if err != nil {
		return Depth{}, fmt.Errorf("measure queue %s: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Depth{}, fmt.Errorf("measure queue %s: management API: read response: %w", name, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Depth{}, fmt.Errorf("measure queue %s in vhost %s: %w", name, vhost, errNoQueue)
	case resp.StatusCode != http.StatusOK:
		return Depth{}, fmt.Errorf("measure queue %s: management API at %s answered %s", name, at, resp.Status)
	}
	// Pointers tell a figure of zero from one the API has not computed.
	var q struct {
		Ready     *int `json:"messages_ready"`
		Unacked   *int `json:"messages_unacknowledged"`
		Consumers *int `json:"consumers"`
	}
	if err := json.Unmarshal(body, &q); err != nil {
		return Depth{}, fmt.Errorf("measure queue %s: management API: decode response: %w", name, err)
	}
	if q.Ready == nil || q.Unacked == nil {
		return Depth{}, fmt.Errorf("measure queue %s: %w", name, errNoFigures)
	}
	d := Depth{Ready: *q.Ready, Unacked: *q.Unacked, Source: SourceManagement}
	if q.Consumers != nil {
		d.Consumers = *q.Consumers
	}
	return d, nil
}

// managementTimeout bounds a measurement by the management API, so that an
// API that does not answer delays PoolDepth only this long before AMQP
// measures instead.
const managementTimeout = 2 * time.Second

// PoolDepth measures a pool's queue. With m not nil it asks the management
// API, which counts unacknowledged messages too (ready messages and
// consumers come from AMQP even then, being current there); when the API does
// not answer within a short timeout (or has no figures for the queue yet) it
// falls back to a passive declare over AMQP, which counts only ready
// messages and consumers: Unacked is then 0 and Source SourceAMQP. With m
// nil it uses AMQP alone. A pool whose queue does not exist gives an error
// wrapping ErrNoPool.
//
// The pool's two lanes (docs/priorities.md) are measured apart and summed:
// High is the high lane's part of the backlog. A high lane not declared yet
// (a pool of a version before priorities) counts as empty.
func (b *Broker) PoolDepth(ctx context.Context, pool string, m *Management) (Depth, error) {
	d, err := b.queueDepth(ctx, pool, b.cfg.Namespace.Queue(pool), m)
	if err != nil {
		return Depth{}, err
	}
	h, err := b.queueDepth(ctx, pool, b.cfg.Namespace.HighQueue(pool), m)
	switch {
	case errors.Is(err, ErrNoPool):
		return d, nil
	case err != nil:
		return Depth{}, err
	}
	d.Ready += h.Ready
	d.Unacked += h.Unacked
	// A worker consumes both lanes of its pool, each with a consumer: the
	// pool's consumers are one lane's, not their sum (the lane with more,
	// should one worker be between subscribing to the first and the second).
	d.Consumers = max(d.Consumers, h.Consumers)
	d.High = h.Backlog()
	// Source stays the normal lane's: a high lane the management API has
	// no figures for yet (a new queue) is measured over AMQP meanwhile.
	return d, nil
}

// queueDepth measures one of a pool's queues, as PoolDepth says.
func (b *Broker) queueDepth(ctx context.Context, pool, name string, m *Management) (Depth, error) {
	if m != nil {
		mctx, cancel := context.WithTimeout(ctx, managementTimeout)
		d, err := m.Queue(mctx, "", name)
		cancel()
		switch {
		case err == nil:
			if m.failing.CompareAndSwap(true, false) {
				b.log.Info("RabbitMQ management API answers again", "url", m.URL())
			}
			// The management API's figures are a sample taken every few
			// seconds (collect_statistics_interval), so a burst would wait
			// that long to be seen; AMQP counts ready messages and consumers
			// as they are now, and only unacknowledged ones come from the
			// sample.
			if info, err := b.inspect(ctx, pool, name); err == nil {
				d.Ready, d.Consumers = info.Messages, info.Consumers
			}
			return d, nil
		case errors.Is(err, errNoQueue), errors.Is(err, errNoFigures):
			// The API answered. AMQP below says for sure whether the
			// queue exists (it may have been declared a moment ago), and
			// measures it while the API has no figures.
			b.log.Debug("management API cannot measure the queue; measuring over AMQP", "queue", name, "err", err)
		case ctx.Err() != nil:
			return Depth{}, fmt.Errorf("measure pool %s: %w", pool, context.Cause(ctx))
		default:
			if !m.failing.Swap(true) {
				b.log.Warn("RabbitMQ management API does not answer; measuring queues over AMQP, without unacknowledged messages",
					"url", m.URL(), "err", err)
			}
		}
	}
	info, err := b.inspect(ctx, pool, name)
	if err != nil {
		return Depth{}, fmt.Errorf("measure pool %s: %w", pool, err)
	}
	return Depth{Ready: info.Messages, Consumers: info.Consumers, Source: SourceAMQP}, nil
}
