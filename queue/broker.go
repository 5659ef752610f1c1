// Package queue is everything warren says to RabbitMQ: the topology (one
// topic exchange per namespace, one quorum queue per pool), publishing with
// publisher confirms, and consuming with manual acks. A Broker keeps one
// connection open and reopens it with backoff when it drops.
package queue

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/internal/backoff"
	"github.com/warrenhq/warren/internal/lifecycle"
	"github.com/warrenhq/warren/internal/redact"
	"github.com/warrenhq/warren/jobs"
)

// Errors callers branch on.
var (
	// ErrUnavailable means the broker cannot be reached now; the operation
	// may succeed later.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrUnroutable means the broker returned a message because no queue is
	// bound for its routing key.
	ErrUnroutable = errors.New("no queue bound for this job type")
	// ErrNacked means the broker refused responsibility for a message.
	ErrNacked = errors.New("broker did not confirm the message")
)

// Config configures a Broker. Zero fields take the defaults noted.
type Config struct {
	// URL is the AMQP address, amqp:// or amqps:// (TLS), or the
	// addresses of a cluster's nodes separated by commas (see ParseURLs);
	// required. Each connection goes to one node that answers.
	URL string
	// TLS configures amqps:// connections: the CAs to trust, a client
	// certificate, the server name (empty: the URL's host). Nil means the
	// system's CAs and no client certificate.
	TLS *tls.Config
	// Namespace prefixes exchange and queue names; zero means
	// jobs.DefaultNamespace.
	Namespace jobs.Namespace
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
	// ReconnectMin and ReconnectMax bound the backoff between connection
	// attempts; zero means 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// Name is shown in RabbitMQ's connection list; zero means "warren".
	Name string
	// QuorumGroupSize is how many nodes of a cluster a quorum queue is
	// replicated on when warren creates it; zero means the broker's
	// default (every node, as of RabbitMQ 3.10). Queues that exist keep
	// theirs: rabbitmq-queues grow and shrink change them.
	QuorumGroupSize int
}

func (c Config) withDefaults() Config {
	c.Namespace = cmp.Or(c.Namespace, jobs.DefaultNamespace)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.ReconnectMin = cmp.Or(c.ReconnectMin, 100*time.Millisecond)
	c.ReconnectMax = cmp.Or(c.ReconnectMax, 5*time.Second)
	c.Name = cmp.Or(c.Name, "warren")
	return c
}

// session is one live connection and the publisher on it.
type session struct {
	conn *amqp.Connection
	wire *corkedConn // the connection's socket
	url  string      // the node's
	at   time.Time   // when it was set up
	// lost is closed when the connection is gone.
	lost chan struct{}

	mu  sync.Mutex
	pub *publisher // replaced when the broker closes its channel
}

func (s *session) publisher() *publisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub
}

// connectionLost wraps an error of an operation on a channel with
// ErrUnavailable when it says the connection went away under it: the
// channel or connection was closed (amqp.ErrClosed), the broker closed the
// connection (320 CONNECTION_FORCED, as RabbitMQ does when it stops), or
// the socket failed (501, amqp091's word for a read or write that failed).
// The broker's refusals on a live connection (404 NOT_FOUND, say) are left
// as they are.
func connectionLost(err error) error {
	var ae *amqp.Error
	if err == nil || errors.Is(err, ErrUnavailable) || !errors.As(err, &ae) {
		return err
	}
	switch {
	case errors.Is(err, amqp.ErrClosed), ae.Code == amqp.ConnectionForced, ae.Code == amqp.FrameError:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Broker owns the AMQP connection of a process. It is safe for concurrent
// use. Start it, use it, Stop it.
type Broker struct {
	cfg   Config
	log   *slog.Logger
	nodes *nodes

	mu      sync.Mutex
	cur     *session       // nil while disconnected
	changed chan struct{}  // closed and replaced whenever cur changes
	loop    lifecycle.Loop // the connection's: connect, hold, connect again

	// noHighLane holds the types whose high-priority messages went to the
	// normal lane (withoutHighLane), so that each is logged once.
	noHighLane sync.Map
}

// New returns a Broker that is not yet connected; call Start.
func New(cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, errors.New("queue: config: URL is required")
	}
	// Checked here, once, rather than by every dial: a bad URL cannot
	// come good by retrying.
	urls, err := ParseURLs(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("queue: config: %w", err)
	}
	if err := cfg.Namespace.Validate(); err != nil {
		return nil, fmt.Errorf("queue: config: %w", err)
	}
	return &Broker{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "queue"),
		nodes:   &nodes{urls: urls},
		changed: make(chan struct{}),
	}, nil
}

// Namespace returns the namespace the broker's names are derived from.
func (b *Broker) Namespace() jobs.Namespace { return b.cfg.Namespace }

// Start begins connecting in the background and returns at once; the
// connection is kept open, and reopened with backoff, until Stop. Calling it
// again does nothing.
func (b *Broker) Start(ctx context.Context) error {
	b.loop.Start(ctx, b.run)
	return nil
}

// Stop closes the connection and waits for the background work to end.
// Consumers see their deliveries end; unacknowledged messages return to their
// queues. Calling it again does nothing.
func (b *Broker) Stop(ctx context.Context) error {
	if err := b.loop.Stop(ctx); err != nil {
		return fmt.Errorf("stop broker: %w", err)
	}
	return nil
}

// Connected reports whether a connection is open now.
func (b *Broker) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur != nil
}

// ConnectedSince returns when the current connection was set up, or zero
// while there is none. After a reconnect, the broker may still be handing
// on what it held before (delayed messages that came due meanwhile, say),
// so a rescuer counts lateness from then.
func (b *Broker) ConnectedSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil {
		return time.Time{}
	}
	return b.cur.at
}

// WaitConnected waits until a connection is open, or returns an error
// wrapping ErrUnavailable when ctx ends first.
func (b *Broker) WaitConnected(ctx context.Context) error {
	_, err := b.current(ctx)
	return err
}

// current returns the live session, waiting for one until ctx ends.
func (b *Broker) current(ctx context.Context) (*session, error) {
	for {
		b.mu.Lock()
		s, changed := b.cur, b.changed
		b.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
		}
	}
}

// live returns the session if one is open now, without waiting.
func (b *Broker) live() (*session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil {
		return nil, ErrUnavailable
	}
	return b.cur, nil
}

func (b *Broker) setSession(s *session) {
	b.mu.Lock()
	b.cur = s
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// run connects, waits for the connection to drop, and connects again, until
// ctx ends.
func (b *Broker) run(ctx context.Context) {
	wait := backoff.New(b.cfg.ReconnectMin, b.cfg.ReconnectMax)
	for attempt := 1; ; attempt++ {
		s, err := b.connect()
		if err != nil {
			if attempt == 1 || attempt%10 == 0 {
				b.log.Warn("cannot reach RabbitMQ; retrying", "err", err, "attempt", attempt)
			}
			select {
			case <-time.After(wait.Next()):
				continue
			case <-ctx.Done():
				return
			}
		}
		if attempt > 1 || len(b.nodes.urls) > 1 {
			b.log.Info("connected to RabbitMQ", "url", redact.URL(s.url), "attempts", attempt)
		} else {
			b.log.Debug("connected to RabbitMQ", "url", redact.URL(s.url))
		}
		attempt = 0
		wait.Reset()
		b.setSession(s)
		b.hold(ctx, s)
		b.setSession(nil)
		b.nodes.dropped(s.url)
		close(s.lost)
		pub := s.publisher()
		pub.close(ErrUnavailable)
		_ = s.conn.Close()
		pub.wait()
		if ctx.Err() != nil {
			return
		}
	}
}

// hold keeps a session until its connection drops or ctx ends. The broker
// may close the publishing channel alone (a publish to a deleted exchange,
// say); the connection lives on, so hold opens a new publisher on it, or
// closes the connection to reconnect when that fails.
func (b *Broker) hold(ctx context.Context, s *session) {
	closed := s.conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		pub := s.publisher()
		select {
		case err := <-closed:
			b.log.Warn("RabbitMQ connection lost; reconnecting", "url", redact.URL(s.url), "err", err)
			return
		case <-ctx.Done():
			return
		case <-pub.done:
		}
		next, err := b.openPublisher(s.conn, s.wire)
		if err != nil {
			b.log.Warn("cannot reopen the publishing channel; reconnecting", "err", err)
			return
		}
		b.log.Info("publishing channel was closed by the broker; reopened it")
		s.mu.Lock()
		s.pub = next
		s.mu.Unlock()
	}
}

// declareDelays declares the delay levels on a channel of its own.
func (b *Broker) declareDelays(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := declareDelays(ch, b.cfg.Namespace, b.quorum(conn)); err != nil {
		return err
	}
	return retireClassicDelays(conn, b.cfg.Namespace, b.log)
}

// openPublisher opens a channel, declares the exchange (which may be what
// went missing) and puts the channel in confirm mode.
func (b *Broker) openPublisher(conn *amqp.Connection, wire *corkedConn) (*publisher, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := declareExchange(ch, b.cfg.Namespace); err != nil {
		return nil, err
	}
	return newPublisher(ch, wire)
}

// connect opens a connection to the first node that answers, in the
// nodes' order, and sets it up.
func (b *Broker) connect() (*session, error) {
	var errs []error
	for _, url := range b.nodes.order() {
		conn, wire, err := dial(b.cfg, url)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pub, err := b.openPublisher(conn, wire)
		if err == nil {
			err = b.declareDelays(conn)
		}
		if err != nil {
			_ = conn.Close()
			errs = append(errs, fmt.Errorf("set up connection to %s: %w", redact.URL(url), err))
			continue
		}
		return &session{conn: conn, wire: wire, url: url, pub: pub, lost: make(chan struct{}), at: time.Now()}, nil
	}
	return nil, errors.Join(errs...)
}

// dial opens an AMQP connection to one node as cfg says, named cfg.Name in
// the broker's connection list.
func dial(cfg Config, url string) (*amqp.Connection, *corkedConn, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.Name)
	dialer := amqp.DefaultDial(5 * time.Second)
	var wire *corkedConn
	conn, err := amqp.DialConfig(url, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: props,
		// A copy: the dial fills in a missing ServerName.
		TLSClientConfig: cfg.TLS.Clone(),
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := dialer(network, addr)
			if err != nil {
				return nil, err
			}
			wire = &corkedConn{Conn: c}
			return wire, nil
		},
	})
	if err != nil {
		err = fmt.Errorf("dial %s: %w", redact.URL(url), err)
		if cfg.TLS != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, amqp.ErrClosed)) {
			// Under TLS 1.3 the client's handshake ends before the broker
			// has judged its certificate; a refusal then often reaches
			// the client as a reset, or as the AMQP handshake finding the
			// connection closed, not as the broker's alert.
			err = fmt.Errorf("%w (a broker that requires a client certificate resets the connection of a client that shows none it trusts)", err)
		}
		return nil, nil, err
	}
	return conn, wire, nil
}

// channel opens a fresh channel on the live connection, waiting for one
// until ctx ends.
func (b *Broker) channel(ctx context.Context) (*amqp.Channel, *session, error) {
	for {
		s, err := b.current(ctx)
		if err != nil {
			return nil, nil, err
		}
		ch, err := s.conn.Channel()
		if err == nil {
			return ch, s, nil
		}
		// The connection died under us; wait for the next one.
		select {
		case <-s.lost:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
		}
	}
}
