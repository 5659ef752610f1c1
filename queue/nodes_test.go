package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/queue"
)

func TestParseURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		"amqp://u:p@a:5672/":                    {"amqp://u:p@a:5672/"},
		"amqp://u:p@a/v, amqp://u:p@b/v,":       {"amqp://u:p@a/v", "amqp://u:p@b/v"},
		"amqps://a/,amqps://b:5671/,amqps://c/": {"amqps://a/", "amqps://b:5671/", "amqps://c/"},
		"amqp://u:p%2Cq@a/,amqp://u:p%2Cq@b/":   {"amqp://u:p%2Cq@a/", "amqp://u:p%2Cq@b/"},
	} {
		got, err := queue.ParseURLs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseURLs(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, wantErr := range map[string]string{
		"":                                 "no AMQP URL",
		" , ":                              "no AMQP URL",
		"amqp://a/,amqps://b/":             "share a scheme and a vhost",
		"amqp://a/one,amqp://b/two":        "share a scheme and a vhost",
		"http://a/":                        "URL 1",
		"amqp://u:s3cret@a/,amqp://u:s3":   "%2C",
		"amqp://u:p@a/,amqp://u:s3cr@t:x/": "URL 2",
	} {
		_, err := queue.ParseURLs(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseURLs(%q) = %v, want an error saying %q", in, err, wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("ParseURLs(%q): the error %q shows a password", in, err)
		}
	}
}

// The nodes are tried in a random order, so that processes spread over a
// cluster, except that the one whose connection was lost goes last.
func TestNodeOrder(t *testing.T) {
	t.Parallel()
	urls := []string{"amqp://a/", "amqp://b/", "amqp://c/"}
	firsts := map[string]int{}
	for range 300 {
		o := queue.Order(urls, "")
		firsts[o[0]]++
		if !slices.Equal(slices.Sorted(slices.Values(o)), urls) {
			t.Fatalf("order %q is not a permutation of %q", o, urls)
		}
		if o := queue.Order(urls, "amqp://b/"); o[2] != "amqp://b/" {
			t.Fatalf("order %q after b was lost: want b last", o)
		}
	}
	for _, u := range urls {
		// Each comes first about 100 times in 300; fewer than 50 is
		// not chance (p < 1e-8).
		if firsts[u] < 50 {
			t.Errorf("%s came first %d times in 300: %v", u, firsts[u], firsts)
		}
	}
}

// A broker given two nodes connects to one, and, when that one stops, to
// the other, where it declares what it needs and publishes again; the
// management client follows to the node that answers. (The two nodes are
// not one cluster: the move is the point, not the queue's contents; ha/
// tests a real cluster.)
func TestBrokerMovesToAnotherNode(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	nodes := []*testenv.RabbitMQ{
		testenv.StartRabbitMQ(t, testenv.ServerOptions{Management: true}),
		testenv.StartRabbitMQ(t, testenv.ServerOptions{Management: true}),
	}
	b, err := queue.New(queue.Config{URL: nodes[0].URL() + "," + nodes[1].URL(), Namespace: env.NS, Logger: env.Log,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	m, err := queue.NewManagement(nodes[0].ManagementURL()+","+nodes[1].ManagementURL(), nodes[0].URL())
	if err != nil {
		t.Fatal(err)
	}

	publish := func(on int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := b.DeclarePool(ctx, "moved", []string{"moved.job"}); err != nil {
			t.Fatalf("declare the pool on node %d: %v", on, err)
		}
		errs, err := b.Publish(ctx, []queue.Message{message(t, newJob("moved.job", on), "")})
		if err != nil || errs[0] != nil {
			t.Fatalf("publish on node %d: %v %v", on, err, errs)
		}
	}
	connected := func() int {
		t.Helper()
		var at int
		testenv.Eventually(t, wait, "a connection", func() bool {
			u := queue.ConnectedURL(b)
			at = slices.IndexFunc(nodes, func(n *testenv.RabbitMQ) bool { return n.URL() == u })
			return at >= 0
		})
		return at
	}
	first := connected()
	publish(first)
	nodes[first].Stop(t)
	second := connected()
	if second == first {
		t.Fatalf("still connected to node %d, which is stopped", first)
	}
	publish(second)
	// The management client asks the APIs in turn from the one that
	// answered last; with the first node stopped, only the second's
	// answers, and it counts the message published there.
	testenv.Eventually(t, wait, fmt.Sprintf("node %d's management API to count the message", second), func() bool {
		d, err := m.Queue(ctx, "", env.NS.Queue("moved"))
		return err == nil && d.Ready == 1 && m.URL() == nodes[second].ManagementURL()
	})
	// The management client kept the node that answers; check the URL it
	// names has no password.
	if u, err := url.Parse(m.URL()); err != nil || u.User != nil {
		t.Errorf("management URL %q: %v", m.URL(), err)
	}
}

// A queue warren creates is replicated on amqp_quorum_group_size nodes; a
// queue that exists keeps its size, whatever the setting says later, and is
// used as it is rather than refused.
func TestQuorumGroupSize(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	declare := func(size int) {
		t.Helper()
		b, err := queue.New(queue.Config{URL: testenv.AMQPURL(), Namespace: env.NS, Logger: env.Log, QuorumGroupSize: size})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.Stop(context.Background()) }()
		if err := b.DeclarePool(ctx, "sized", []string{"sized.job"}); err != nil {
			t.Fatalf("declare with group size %d: %v", size, err)
		}
		errs, err := b.Publish(ctx, []queue.Message{message(t, newJob("sized.job", size), "")})
		if err != nil || errs[0] != nil {
			t.Fatalf("publish with group size %d: %v %v", size, err, errs)
		}
	}
	groupSize := func(queueName string) any {
		t.Helper()
		u, err := url.Parse(testenv.ManagementURL())
		if err != nil {
			t.Fatal(err)
		}
		pass, _ := u.User.Password()
		req, _ := http.NewRequest(http.MethodGet, u.Scheme+"://"+u.Host+"/api/queues/%2F/"+url.PathEscape(queueName), nil)
		req.SetBasicAuth(u.User.Username(), pass)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var q struct{ Arguments map[string]any }
		if err := json.NewDecoder(resp.Body).Decode(&q); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET queue %s: %s %v", queueName, resp.Status, err)
		}
		return q.Arguments["x-quorum-initial-group-size"]
	}
	declare(1)
	for _, q := range []string{env.NS.Queue("sized"), env.NS.DeadQueue("sized"), env.NS.DeadIntakeQueue("sized")} {
		if got := groupSize(q); got != float64(1) {
			t.Errorf("%s: x-quorum-initial-group-size %v, want 1", q, got)
		}
	}
	// The delay levels existed already, made by env's broker without a
	// size: they keep none.
	if got := groupSize(env.NS.DelayQueue(0)); got != nil {
		t.Errorf("delay level 0, made before: x-quorum-initial-group-size %v, want none", got)
	}
	declare(3) // another size: the queues are taken as they are
	declare(0) // none
	if got := groupSize(env.NS.Queue("sized")); got != float64(1) {
		t.Errorf("after declarations with other sizes, x-quorum-initial-group-size %v, want 1 still", got)
	}
	if n := env.Messages(t, "sized"); n != 3 {
		t.Errorf("%d messages in the pool, want the 3 published", n)
	}
}
