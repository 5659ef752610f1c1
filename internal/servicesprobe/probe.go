package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/warrenhq/warren/internal/redact"
)

// probeAMQP logs in to the RabbitMQ at rawURL, opens the URL's vhost and
// closes the connection. An error means rawURL does not parse.
func probeAMQP(ctx context.Context, rawURL string, timeout time.Duration) (result, error) {
	uri, err := amqp.ParseURI(rawURL)
	if err != nil {
		return result{}, fmt.Errorf("AMQP URL %s: %w", redact.URL(rawURL), redact.ParseError(rawURL, err))
	}
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("warren services probe")
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Properties: props,
		// The deadline it sets covers the TLS and AMQP handshakes too.
		Dial: amqp.DefaultDial(timeout),
	})
	if err == nil {
		// connection.close and its answer, so the broker logs no error.
		_ = conn.CloseDeadline(time.Now().Add(timeout))
		return result{verdict: usable}, nil
	}
	// RabbitMQ answers a wrong user or password with 403 ACCESS_REFUSED, a
	// vhost the user may not open (or that does not exist) with 530
	// NOT_ALLOWED; amqp091-go gives the same codes when the broker just
	// drops the connection at those steps.
	var ae *amqp.Error
	if errors.As(err, &ae) && (ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed) {
		return result{refused, fmt.Sprintf("RabbitMQ at %s refuses user %q on vhost %q: %v",
			addr, uri.Username, uri.Vhost, err)}, nil
	}
	return failed(ctx, "RabbitMQ", addr, uri.Scheme == "amqps", err, timeout), nil
}

// probeRedis connects to the Redis at rawURL as the URL says (password,
// user, database, TLS) and sends PING. An error means rawURL does not
// parse.
func probeRedis(ctx context.Context, rawURL string, timeout time.Duration) (result, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return result{}, fmt.Errorf("Redis URL %s: %w", redact.URL(rawURL), redact.ParseError(rawURL, err))
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.MaxRetries = -1 // the caller polls
	opts.DialerRetries = 1
	opts.DisableIdentity = true // no CLIENT SETINFO
	// go-redis logs a failed dial itself; the probe's line says it.
	redis.SetLogger(quiet{})
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	err = rdb.Ping(ctx).Err()
	var re redis.Error
	switch {
	case err == nil:
		return result{verdict: usable}, nil
	case redis.IsLoadingError(err):
		return result{down, fmt.Sprintf("Redis at %s is still loading its data: %v", opts.Addr, err)}, nil
	case errors.As(err, &re):
		// WRONGPASS, NOAUTH, an AUTH without a password set, a database
		// out of range: what the URL asks for is refused.
		return result{refused, fmt.Sprintf("Redis at %s refuses the URL's login: %v", opts.Addr, err)}, nil
	}
	return failed(ctx, "Redis", opts.Addr, opts.TLSConfig != nil, err, timeout), nil
}

// quiet is a go-redis logger that drops everything.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// failed is the verdict on a handshake with the server at addr that failed
// with err, for a reason other than a refusal. Over TLS it may have failed
// for want of warren's TLS settings, which the probe does not read: then a
// port that takes connections is enough.
func failed(ctx context.Context, what, addr string, overTLS bool, err error, timeout time.Duration) result {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return result{down, dialFailure(addr, err)}
	}
	if overTLS && listens(ctx, addr, timeout).verdict == usable {
		return result{usable, fmt.Sprintf("%s listens; the TLS handshake or login failed, perhaps for want of warren's TLS settings, which the probe does not read: %v", addr, err)}
	}
	return result{down, fmt.Sprintf("%s does not answer as %s: %v", addr, what, err)}
}

// listens checks that something takes TCP connections at addr.
func listens(ctx context.Context, addr string, timeout time.Duration) result {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return result{down, dialFailure(addr, err)}
	}
	_ = c.Close()
	return result{verdict: usable}
}

func dialFailure(addr string, err error) string {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("nothing listens at %s: %v", addr, err)
	}
	return fmt.Sprintf("cannot connect to %s: %v", addr, err)
}

// shellVars reads $WARREN_AMQP_URL and $WARREN_REDIS_URL into the shell
// assignments services.sh evaluates (see the package doc), with the parsers
// warren uses: what services.sh starts is what warren will dial.
func shellVars(getenv func(string) string) (string, error) {
	amqpURL, redisURL := getenv("WARREN_AMQP_URL"), getenv("WARREN_REDIS_URL")
	if err := checkScheme("WARREN_AMQP_URL", amqpURL, "amqp", "amqps"); err != nil {
		return "", err
	}
	uri, err := amqp.ParseURI(amqpURL)
	if err != nil {
		return "", parseError("WARREN_AMQP_URL", amqpURL, err)
	}
	if err := checkScheme("WARREN_REDIS_URL", redisURL, "redis", "rediss"); err != nil {
		return "", err
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return "", parseError("WARREN_REDIS_URL", redisURL, err)
	}
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return "", parseError("WARREN_REDIS_URL", redisURL, err)
	}
	var b strings.Builder
	for _, v := range [][2]string{
		{"AMQP_HOST", uri.Host},
		{"AMQP_PORT", strconv.Itoa(uri.Port)},
		{"AMQP_USER", uri.Username},
		{"AMQP_VHOST", uri.Vhost},
		{"AMQP_TLS", zeroOne(uri.Scheme == "amqps")},
		{"REDIS_HOST", host},
		{"REDIS_PORT", port},
		{"REDIS_PASS", opts.Password},
		{"REDIS_TLS", zeroOne(opts.TLSConfig != nil)},
	} {
		fmt.Fprintf(&b, "%s=%s\n", v[0], shellQuote(v[1]))
	}
	return b.String(), nil
}

// checkScheme fails unless raw, the value of the variable name, is a URL
// with one of the two schemes.
func checkScheme(name, raw, plain, secure string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return parseError(name, raw, err)
	}
	if u.Scheme != plain && u.Scheme != secure {
		return fmt.Errorf("%s must be %s:// or %s://, got %s", name, plain, secure, redact.URL(raw))
	}
	return nil
}

func parseError(name, raw string, err error) error {
	return fmt.Errorf("cannot parse %s=%s: %v", name, redact.URL(raw), redact.ParseError(raw, err))
}

func zeroOne(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// shellQuote quotes s for a POSIX shell: in single quotes, each single
// quote of s written as a closing quote, a backslash-escaped quote and an
// opening quote.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
