package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/warrenhq/warren/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps one background goroutine per process for its
		// connection-pool clock, started with the first client and tied
		// to none.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// probe runs the command line with no environment and returns its exit
// status and what it printed on stderr.
func probe(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, func(string) string { return "" }, &stdout, &stderr)
	if stdout.Len() > 0 {
		t.Errorf("%v printed on stdout: %q", args, stdout.String())
	}
	return code, stderr.String()
}

// check fails the test unless the probe's exit status is want and its
// stderr a single line holding each of says (nothing at all for a plain 0).
func check(t *testing.T, args []string, want int, says ...string) {
	t.Helper()
	code, stderr := probe(t, args...)
	if code != want {
		t.Errorf("%v: exit %d, want %d; stderr: %s", args, code, want, stderr)
	}
	if len(says) == 0 && code == exitUsable {
		if stderr != "" {
			t.Errorf("%v: stderr %q, want nothing", args, stderr)
		}
		return
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("%v: stderr %q, want one line", args, stderr)
	}
	for _, s := range says {
		if !strings.Contains(stderr, s) {
			t.Errorf("%v: stderr %q, want it to say %q", args, stderr, s)
		}
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withURL returns raw with change applied.
func withURL(t *testing.T, raw string, change func(*url.URL)) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	change(u)
	return u.String()
}

func TestRealServers(t *testing.T) {
	testenv.RequireServices(t)
	amqpURL, redisURL := testenv.AMQPURL(), testenv.RedisURL()
	secret := "wrong-" + randomHex(t)
	user := "t-servicesprobe-" + randomHex(t)
	good := "right-" + randomHex(t)

	// A Redis user of this test's own: the shared server keeps the
	// default user without a password, which takes any password.
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">"+good, "resetkeys", "-@all", "+@connection").Err(); err != nil {
		t.Fatalf("create a Redis user: %v", err)
	}
	t.Cleanup(func() {
		if err := rdb.Do(context.Background(), "ACL", "DELUSER", user).Err(); err != nil {
			t.Errorf("delete the Redis user: %v", err)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		want int
		says []string
	}{
		{"amqp", []string{"amqp", amqpURL}, exitUsable, nil},
		{"amqp wrong password", []string{"amqp", withURL(t, amqpURL, func(u *url.URL) {
			u.User = url.UserPassword(u.User.Username(), secret)
		})}, exitRefused, []string{"refuses user", "403"}},
		{"amqp unknown vhost", []string{"amqp", withURL(t, amqpURL, func(u *url.URL) {
			u.Path = "/t-servicesprobe-" + randomHex(t)
		})}, exitRefused, []string{"refuses user", "530"}},
		{"redis", []string{"redis", redisURL}, exitUsable, nil},
		{"redis user", []string{"redis", withURL(t, redisURL, func(u *url.URL) {
			u.User = url.UserPassword(user, good)
		})}, exitUsable, nil},
		{"redis wrong password", []string{"redis", withURL(t, redisURL, func(u *url.URL) {
			u.User = url.UserPassword(user, secret)
		})}, exitRefused, []string{"refuses", "WRONGPASS"}},
		{"redis database out of range", []string{"redis", withURL(t, redisURL, func(u *url.URL) {
			u.Path = "/100000"
		})}, exitRefused, []string{"refuses", "DB index"}},
		{"management port listens", []string{"listens", mustHost(t, testenv.ManagementURL()), mustPort(t, testenv.ManagementURL())}, exitUsable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check(t, tc.args, tc.want, tc.says...)
			// No password ever shows.
			if _, stderr := probe(t, tc.args...); strings.Contains(stderr, secret) || strings.Contains(stderr, good) {
				t.Errorf("stderr shows the password: %s", stderr)
			}
		})
	}
}

func mustHost(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname()
}

func mustPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// closedPort returns a loopback port nothing listens on, until the test
// ends: a socket bound to it, never listening, holds it, so that no other
// test's listener takes it meanwhile (a port freed at once could be, and
// once was) and a connection to it is refused.
func closedPort(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}

func TestNothingListens(t *testing.T) {
	t.Parallel()
	port := closedPort(t)
	for _, args := range [][]string{
		{"amqp", "amqp://guest:guest@127.0.0.1:" + port + "/"},
		{"amqp", "amqps://guest:guest@127.0.0.1:" + port + "/"},
		{"redis", "redis://127.0.0.1:" + port + "/0"},
		{"redis", "rediss://:pw@127.0.0.1:" + port + "/0"},
		{"listens", "127.0.0.1", port},
	} {
		check(t, args, exitDown, "nothing listens at 127.0.0.1:"+port)
	}
}

// fakeServer listens on loopback and hands each connection to serve, which
// must return once the client closes it. It stops, and waits for every
// connection's serve, when the test ends.
func fakeServer(t *testing.T, serve func(net.Conn)) (host, port string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	host, port, err = net.SplitHostPort(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// silent reads until the client goes.
func silent(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// hangUp closes the connection at once.
func hangUp(net.Conn) {}

// http answers like a web server.
func http(c net.Conn) {
	_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
}

// redisAnswering reads RESP commands and answers each with reply.
func redisAnswering(reply string) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
			if err != nil || !strings.HasPrefix(line, "*") {
				return
			}
			for range 2 * n { // $len and the argument
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
			if _, err := io.WriteString(c, reply+"\r\n"); err != nil {
				return
			}
		}
	}
}

func TestNotUsable(t *testing.T) {
	t.Parallel()
	const timeout = "-timeout=300ms"
	addr := func(h, p string) string { return h + ":" + p }
	_, silentPort := fakeServer(t, silent)
	silentAddr := addr("127.0.0.1", silentPort)
	h, p := fakeServer(t, http)
	httpAddr := addr(h, p)
	h, p = fakeServer(t, hangUp)
	hangUpAddr := addr(h, p)
	h, p = fakeServer(t, redisAnswering("-LOADING Redis is loading the dataset in memory"))
	loadingAddr := addr(h, p)
	h, p = fakeServer(t, redisAnswering("-NOAUTH Authentication required."))
	noAuthAddr := addr(h, p)

	for _, tc := range []struct {
		name string
		args []string
		want int
		says []string
	}{
		{"amqp silent", []string{timeout, "amqp", "amqp://" + silentAddr + "/"}, exitDown, []string{"does not answer as RabbitMQ"}},
		{"amqp web server", []string{timeout, "amqp", "amqp://" + httpAddr + "/"}, exitDown, []string{"does not answer as RabbitMQ"}},
		{"redis silent", []string{timeout, "redis", "redis://" + silentAddr}, exitDown, []string{"does not answer as Redis"}},
		{"redis web server", []string{timeout, "redis", "redis://" + httpAddr}, exitDown, []string{"does not answer as Redis"}},
		{"redis loading", []string{timeout, "redis", "redis://" + loadingAddr}, exitDown, []string{"still loading"}},
		{"redis wants a password", []string{timeout, "redis", "redis://" + noAuthAddr}, exitRefused, []string{"refuses", "NOAUTH"}},
		// Over TLS the probe lacks warren's TLS settings: a port that
		// takes connections is enough, as the reason says.
		{"amqps hangs up", []string{timeout, "amqp", "amqps://" + hangUpAddr + "/"}, exitUsable, []string{"listens", "TLS"}},
		{"rediss silent", []string{timeout, "redis", "rediss://" + silentAddr}, exitUsable, []string{"listens", "TLS"}},
		{"listens", []string{"listens", "127.0.0.1", silentPort}, exitUsable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check(t, tc.args, tc.want, tc.says...)
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil,
		{"ping"},
		{"amqp"}, // no URL, none in the environment
		{"amqp", "amqp://a/", "amqp://b/"},
		{"listens", "127.0.0.1"},
		{"-timeout=0", "listens", "127.0.0.1", "1"},
		{"amqp", "http://bob:s3cret@host/"},
		{"redis", "redis://bob:s3:cr/et@host/"},
	} {
		code, stderr := probe(t, args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("%q: exit %d, stderr %q; want %d and a reason", args, code, stderr, exitUsage)
		}
		if strings.Contains(stderr, "s3") {
			t.Errorf("%q: stderr shows the password: %s", args, stderr)
		}
	}
}

func TestURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, amqp, redis string
		want              string // the assignments, or the error
	}{
		{
			name: "defaults",
			amqp: "amqp://guest:guest@127.0.0.1:5672/", redis: "redis://127.0.0.1:6379/0",
			want: `AMQP_HOST='127.0.0.1'
AMQP_PORT='5672'
AMQP_USER='guest'
AMQP_VHOST='/'
AMQP_TLS='0'
REDIS_HOST='127.0.0.1'
REDIS_PORT='6379'
REDIS_PASS=''
REDIS_TLS='0'
`,
		},
		{
			name: "TLS, IPv6, default ports, encoded vhost and quote",
			amqp: "amqps://b%27ob:pw@[::1]/v%2Fh", redis: "rediss://:it%27s%20%24x%0Ay@localhost/2",
			want: `AMQP_HOST='::1'
AMQP_PORT='5671'
AMQP_USER='b'\''ob'
AMQP_VHOST='v/h'
AMQP_TLS='1'
REDIS_HOST='localhost'
REDIS_PORT='6379'
REDIS_PASS='it'\''s $x
y'
REDIS_TLS='1'
`,
		},
		{
			name: "no user or vhost",
			amqp: "amqp://rabbit", redis: "redis://:pw@redis:7000",
			want: `AMQP_HOST='rabbit'
AMQP_PORT='5672'
AMQP_USER='guest'
AMQP_VHOST='/'
AMQP_TLS='0'
REDIS_HOST='redis'
REDIS_PORT='7000'
REDIS_PASS='pw'
REDIS_TLS='0'
`,
		},
		{name: "wrong AMQP scheme", amqp: "http://bob:s3cret@rabbit/", redis: "redis://redis/",
			want: "WARREN_AMQP_URL must be amqp:// or amqps://, got http://bob:xxxxx@rabbit/\n"},
		{name: "wrong Redis scheme", amqp: "amqp://rabbit/", redis: "unix:///run/redis.sock",
			want: "WARREN_REDIS_URL must be redis:// or rediss://, got unix:///run/redis.sock\n"},
		{name: "unset", want: "WARREN_AMQP_URL must be amqp:// or amqps://, got \n"},
		{name: "bad port", amqp: "amqp://rabbit:56x72/", redis: "redis://redis/",
			want: "cannot parse WARREN_AMQP_URL=amqp://rabbit:56x72/: parse \"amqp://rabbit:56x72/\": invalid port \":56x72\" after host\n"},
		{name: "unencoded password", amqp: "amqp://rabbit/", redis: "redis://:s3/cret@redis/",
			want: "cannot parse WARREN_REDIS_URL=redis://:xxxxx@redis/: not a valid URL; in a user name or password, write : / ? # @ % and spaces percent-encoded (%3A %2F %3F %23 %40 %25 %20)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"WARREN_AMQP_URL": tc.amqp, "WARREN_REDIS_URL": tc.redis}
			var stdout, stderr bytes.Buffer
			code := run([]string{"urls"}, func(k string) string { return env[k] }, &stdout, &stderr)
			got := stdout.String() + stderr.String()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("urls (-want +got):\n%s", diff)
			}
			if want := exitUsable; strings.Contains(tc.want, "_HOST=") != (code == want) {
				t.Errorf("exit %d", code)
			}
		})
	}
}

// TestURLsInBash evaluates the assignments in bash, as services.sh does:
// the quoting must give back every byte.
func TestURLsInBash(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	pass := "it's \"$(touch /tmp/x)\" `id` \\ \n ok"
	env := map[string]string{
		"WARREN_AMQP_URL":  "amqp://127.0.0.1/",
		"WARREN_REDIS_URL": (&url.URL{Scheme: "redis", User: url.UserPassword("", pass), Host: "127.0.0.1:6379"}).String(),
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"urls"}, func(k string) string { return env[k] }, &stdout, &stderr); code != 0 {
		t.Fatalf("urls: exit %d: %s", code, stderr.String())
	}
	out, err := exec.Command(bash, "-c", `set -eu; eval "$1"; printf %s "$REDIS_PASS"`, "bash", stdout.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != pass {
		t.Errorf("bash read REDIS_PASS as %q, want %q", out, pass)
	}
}
