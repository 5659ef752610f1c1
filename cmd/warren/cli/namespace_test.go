package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/testenv"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

// runNamespace runs `warren namespace ARGS…` against the test servers.
func runNamespace(t *testing.T, extraEnv []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	environ := append([]string{"WARREN_AMQP_URL=" + testenv.AMQPURL(), "WARREN_REDIS_URL=" + testenv.RedisURL(), "WARREN_LOG_LEVEL=warn"}, extraEnv...)
	code = Main(t.Context(), append([]string{"namespace"}, args...), strings.NewReader(""), &out, &errOut, environ)
	return out.String(), errOut.String(), code
}

// leftOf lists what a namespace still holds: queues and exchanges named
// for it (by the management API) and its Redis keys.
func leftOf(t *testing.T, ns jobs.Namespace) (names []string, keys []string) {
	t.Helper()
	m, err := queue.NewManagement("", testenv.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	sw, err := queue.NewSweeper(queue.Config{URL: testenv.AMQPURL(), Namespace: ns}, m)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	o, err := sw.Find(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := redis.ParseURL(testenv.RedisURL())
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	keys, err = rdb.Keys(context.Background(), ns.KeyPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return append(o.Queues, o.Exchanges...), keys
}

// populate makes a namespace as a stack leaves it: a pool with its queues,
// delay levels, job records, a dead letter's queue, a pause, what older
// versions left (a classic delay queue, an unlimited intake queue), and a
// queue of a pool Redis does not know; and a live worker's lease.
func populate(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	ns := env.NS
	if err := env.Broker.DeclarePool(ctx, "sys", []string{"sys.echo"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{{Name: "sys.echo", Pool: "sys"}}); err != nil {
		t.Fatal(err)
	}
	j := &jobs.Job{ID: jobs.NewID(), Type: "sys.echo", Pool: "sys", Status: jobs.StatusQueued, Payload: json.RawMessage(`{}`), MaxAttempts: 1, CreatedAt: time.Now()}
	if _, err := env.Store.Create(ctx, []*jobs.Job{j}); err != nil {
		t.Fatal(err)
	}
	m, err := queue.NewMessage(j, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Broker.Publish(ctx, []queue.Message{m}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.Store.PausePool(ctx, "sys", ""); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.Lease(ctx, "w-live", time.Minute); err != nil {
		t.Fatal(err)
	}
	ch := testenv.Channel(t)
	for _, q := range []string{ns.ClassicDelayQueue(5), ns.UnlimitedIntakeQueue("sys"), ns.Queue("ghost")} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.ExchangeDeclare(ns.ClassicDelayDeliverExchange(), amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	// The test's broker connection is done: it would declare the delay
	// levels again if it reconnected.
	if err := env.Broker.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNamespaceDelete(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	env := testenv.New(t)
	populate(t, env)
	ns := string(env.NS)
	names, keys := leftOf(t, env.NS)

	// Without --yes: the list, and nothing deleted.
	out, errOut, code := runNamespace(t, nil, "delete", ns)
	if code != 1 || !strings.Contains(errOut, "only with --yes") {
		t.Errorf("without --yes: exit %d, stderr %q; want 1 and a word about --yes", code, errOut)
	}
	for _, want := range []string{
		"namespace " + ns + ": would delete 40 queues and 37 exchanges (listed by RabbitMQ's management API) and",
		"pools: sys\n", "live workers: w-live\n",
		"  " + ns + ".pool.sys\n", "  " + ns + ".pool.ghost\n", "  " + ns + ".delay-q.31\n", "  " + ns + ".delay.5\n",
		"  " + ns + ".dead-intake.sys\n", "  " + ns + ".intake.sys\n", "  " + ns + ".delay.unrouted\n", "  " + ns + ".jobs\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("without --yes, the list lacks %q:\n%s", want, out)
		}
	}
	if n, k := leftOf(t, env.NS); len(n) != len(names) || len(k) != len(keys) {
		t.Fatalf("without --yes: %d names and %d keys left of %d and %d", len(n), len(k), len(names), len(keys))
	}
	// With --yes while a worker lives: refused.
	_, errOut, code = runNamespace(t, nil, "delete", ns, "--yes")
	if code != 1 || !strings.Contains(errOut, "1 worker processes of namespace "+ns+" are alive (w-live)") || !strings.Contains(errOut, "--force") {
		t.Errorf("with a live worker: exit %d, stderr %q", code, errOut)
	}
	if n, _ := leftOf(t, env.NS); len(n) != len(names) {
		t.Fatalf("refused, yet %d of %d names are left", len(n), len(names))
	}
	// --force: everything goes.
	out, errOut, code = runNamespace(t, nil, "delete", ns, "--yes", "--force", "-o", "json")
	var got namespaceOutput
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || !got.Deleted || !got.Listed || len(got.Queues) != 40 || got.RedisKeys != len(keys) {
		t.Errorf("--yes --force -o json: exit %d, %s%s", code, out, errOut)
	}
	if n, k := leftOf(t, env.NS); len(n) != 0 || len(k) != 0 {
		t.Errorf("left after the delete: %v %v", n, k)
	}
	out, _, code = runNamespace(t, nil, "delete", ns)
	if code != 0 || out != "namespace "+ns+" holds nothing: no queue, exchange or Redis key\n" {
		t.Errorf("an empty namespace: exit %d, %q", code, out)
	}
	for _, args := range [][]string{{"delete"}, {"delete", "no.dots"}, {"delete", "a", "b"}, {"remove", ns}} {
		if _, _, code := runNamespace(t, nil, args...); code != 1 {
			t.Errorf("warren namespace %s: exit %d, want 1", strings.Join(args, " "), code)
		}
	}
}

// Without the management API the command finds what warren derives for
// the pools Redis names: everything but a pool Redis has forgotten.
func TestNamespaceDeleteWithoutManagement(t *testing.T) {
	testenv.RequireServices(t)
	t.Parallel()
	env := testenv.New(t)
	populate(t, env)
	ns := string(env.NS)
	off := []string{"WARREN_MANAGEMENT_URL=off"}
	out, _, code := runNamespace(t, off, "delete", ns, "--yes", "--force")
	if code != 0 || !strings.Contains(out, "deleted 39 queues and 37 exchanges (found by the names warren derives for the pools Redis names)") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	names, keys := leftOf(t, env.NS)
	if len(keys) != 0 || len(names) != 1 || names[0] != env.NS.Queue("ghost") {
		t.Errorf("left: %v %v; want only the queue of the pool Redis did not name", names, keys)
	}
}
