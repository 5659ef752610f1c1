package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenhq/warren/jobs"
)

// Objects are queues and exchanges on the broker, by name.
type Objects struct {
	Queues    []string `json:"queues"`
	Exchanges []string `json:"exchanges"`
	// Listed says Sweeper.Find had the management API list them, rather
	// than looking for the names warren derives.
	Listed bool `json:"listed"`
}

// Empty reports whether there is nothing.
func (o Objects) Empty() bool { return len(o.Queues) == 0 && len(o.Exchanges) == 0 }

// NamespaceNames are every name warren derives for a namespace whose pools
// are those given, whether they exist or not: the pools' queues (the pool
// queue and its high lane, its dead letters, its intake queue and the
// intake queue older versions had), the delay levels (their quorum queues,
// and the classic queues older versions had), the unrouted delays, and the
// exchanges (jobs, dead letters, delay levels, the delay exit and the exit
// older versions had).
func NamespaceNames(ns jobs.Namespace, pools []string) Objects {
	var o Objects
	for _, p := range pools {
		o.Queues = append(o.Queues, ns.Queue(p), ns.HighQueue(p), ns.DeadQueue(p), ns.DeadIntakeQueue(p), ns.UnlimitedIntakeQueue(p))
	}
	for level := 0; level < jobs.DelayLevels; level++ {
		o.Queues = append(o.Queues, ns.DelayQueue(level), ns.ClassicDelayQueue(level))
	}
	o.Queues = append(o.Queues, ns.DelayUnrouted())
	o.Exchanges = []string{ns.Exchange(), ns.DeadExchange(), ns.DelayDeliverExchange(), ns.DelayUnrouted(), ns.ClassicDelayDeliverExchange()}
	for level := 0; level < jobs.DelayLevels; level++ {
		o.Exchanges = append(o.Exchanges, ns.DelayExchange(level))
	}
	return o
}

// Sweeper finds and deletes what a namespace holds on the broker, for
// tearing it down (`warren namespace delete`). Unlike a Broker it declares
// nothing when it connects: a Broker's connection declares the delay
// levels and the job exchange, which would bring back part of a namespace
// being looked at or deleted. Close it when done.
type Sweeper struct {
	ns   jobs.Namespace
	conn *amqp.Connection
	m    *Management
	log  *slog.Logger
}

// NewSweeper connects to the broker cfg names, for cfg.Namespace. m, if
// not nil, is the management API, which lists every name of the namespace
// (see Find).
func NewSweeper(cfg Config, m *Management) (*Sweeper, error) {
	cfg = cfg.withDefaults()
	urls, err := ParseURLs(cfg.URL)
	if err != nil {
		return nil, err
	}
	n := &nodes{urls: urls}
	var errs []error
	for _, addr := range n.order() {
		conn, _, err := dial(cfg, addr)
		if err == nil {
			return &Sweeper{ns: cfg.Namespace, conn: conn, m: m, log: cfg.Logger}, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Close closes the connection.
func (s *Sweeper) Close() error { return s.conn.Close() }

// Find returns the queues and exchanges of the namespace that exist,
// sorted. With the management API, it lists every queue and exchange whose
// name starts with the namespace and a dot (no other namespace's names do,
// as a namespace holds no dot), so it finds those of pools no record
// names and those older versions left. Without it, or when it does not
// answer, it asks the broker about each name NamespaceNames derives for
// pools: a pool that pools leaves out is not found then.
func (s *Sweeper) Find(ctx context.Context, pools []string) (Objects, error) {
	if s.m != nil {
		o, err := s.m.namespaceObjects(ctx, s.ns)
		if err == nil {
			o.Listed = true
			return o, nil
		}
		if ctx.Err() != nil {
			return Objects{}, fmt.Errorf("find namespace %s: %w", s.ns, ctx.Err())
		}
		s.log.Warn("cannot list the namespace with the management API; looking for the names warren derives", "err", err)
	}
	var found Objects
	derived := NamespaceNames(s.ns, pools)
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			_ = ch.Close()
		}
	}()
	// A passive declare of a name that does not exist closes the channel
	// (404): each such answer costs a new one.
	exists := func(declare func(*amqp.Channel) error) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if ch == nil {
			var err error
			if ch, err = s.conn.Channel(); err != nil {
				return false, err
			}
		}
		err := declare(ch)
		if notFound(err) {
			ch = nil
			return false, nil
		}
		return err == nil, err
	}
	for _, q := range derived.Queues {
		ok, err := exists(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		})
		if err != nil {
			return Objects{}, fmt.Errorf("find namespace %s: queue %s: %w", s.ns, q, err)
		}
		if ok {
			found.Queues = append(found.Queues, q)
		}
	}
	for _, ex := range derived.Exchanges {
		ok, err := exists(func(ch *amqp.Channel) error {
			// A passive declare does not compare the kind.
			return ch.ExchangeDeclarePassive(ex, amqp.ExchangeDirect, true, false, false, false, nil)
		})
		if err != nil {
			return Objects{}, fmt.Errorf("find namespace %s: exchange %s: %w", s.ns, ex, err)
		}
		if ok {
			found.Exchanges = append(found.Exchanges, ex)
		}
	}
	slices.Sort(found.Queues)
	slices.Sort(found.Exchanges)
	return found, nil
}

// Delete deletes queues, whatever they hold, then exchanges; one that no
// longer exists is no error. Only names of the namespace are deleted: a
// name outside it is refused before anything is.
func (s *Sweeper) Delete(ctx context.Context, o Objects) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", s.ns, err)
	}
	defer ch.Close()
	return deleteObjects(ch, s.ns, o)
}

// deleteObjects deletes o's queues, then its exchanges, on ch, after
// checking every name is the namespace's.
func deleteObjects(ch *amqp.Channel, ns jobs.Namespace, o Objects) error {
	prefix := string(ns) + "."
	for _, name := range slices.Concat(o.Queues, o.Exchanges) {
		if !strings.HasPrefix(name, prefix) {
			return fmt.Errorf("delete %s: not a name of namespace %s", name, ns)
		}
	}
	for _, q := range o.Queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("delete queue %s: %w", q, err)
		}
	}
	for _, ex := range o.Exchanges {
		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			return fmt.Errorf("delete exchange %s: %w", ex, err)
		}
	}
	return nil
}

// namespaceObjects lists the queues and exchanges of the AMQP URL's vhost
// whose names start with ns and a dot.
func (m *Management) namespaceObjects(ctx context.Context, ns jobs.Namespace) (Objects, error) {
	var o Objects
	for kind, dst := range map[string]*[]string{"queues": &o.Queues, "exchanges": &o.Exchanges} {
		names, err := m.names(ctx, kind)
		if err != nil {
			return Objects{}, err
		}
		for _, n := range names {
			if strings.HasPrefix(n, string(ns)+".") {
				*dst = append(*dst, n)
			}
		}
		slices.Sort(*dst)
	}
	return o, nil
}

// names lists the names of the vhost's queues or exchanges (kind).
func (m *Management) names(ctx context.Context, kind string) ([]string, error) {
	resp, at, err := m.get(ctx, "/api/"+kind+"/"+url.PathEscape(m.vhost)+"?columns=name")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list %s: management API at %s answered %s", kind, at, resp.Status)
	}
	var items []struct {
		Name string `json:"name"`
	}
	// A vhost may hold many namespaces: allow for tens of thousands of names.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&items); err != nil {
		return nil, fmt.Errorf("list %s: management API: decode response: %w", kind, err)
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.Name
	}
	return names, nil
}
