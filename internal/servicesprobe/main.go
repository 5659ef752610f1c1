// Command servicesprobe tells scripts/services.sh whether RabbitMQ and Redis
// answer at warren's URLs and take their credentials. It speaks each
// protocol through the client library warren itself uses, and reads the
// URLs with the same parsers.
//
//	servicesprobe [-timeout 5s] amqp [URL]       URL defaults to $WARREN_AMQP_URL
//	servicesprobe [-timeout 5s] redis [URL]      URL defaults to $WARREN_REDIS_URL
//	servicesprobe [-timeout 5s] listens HOST PORT
//	servicesprobe urls
//
// amqp logs in, opens the URL's vhost and closes the connection; redis
// authenticates as the URL says (AUTH, TLS, database) and sends PING;
// listens only opens a TCP connection. The exit status is the verdict, and
// any status but 0 comes with one line on stderr saying why:
//
//	0  the server answers and takes the URL's credentials
//	1  nothing usable answers: nothing listens, what listens does not speak
//	   the protocol or not within the timeout, or Redis is still loading
//	3  the server answers but refuses the login (user, password, vhost)
//	2  the command line or a URL is wrong
//
// For amqps:// and rediss:// URLs the probe cannot know warren's TLS
// settings (WARREN_*_TLS_*, warren.yaml): when the TLS handshake or login
// fails for any reason but a refusal, it falls back to checking that
// something listens, and says so on stderr.
//
// urls prints what services.sh needs of $WARREN_AMQP_URL and
// $WARREN_REDIS_URL as shell assignments, for eval: AMQP_HOST, AMQP_PORT,
// AMQP_USER, AMQP_VHOST, AMQP_TLS (0 or 1), REDIS_HOST, REDIS_PORT,
// REDIS_PASS, REDIS_TLS.
//
// services.sh passes URLs in the environment, so that passwords stay out
// of ps; nothing the probe prints shows a password.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/warrenhq/warren/internal/redact"
)

// Exit statuses; see the package doc.
const (
	exitUsable  = 0
	exitDown    = 1
	exitUsage   = 2
	exitRefused = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run carries out one command line and returns the exit status.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("servicesprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for a connection and each answer")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: servicesprobe [-timeout 5s] amqp [URL] | redis [URL] | listens HOST PORT | urls")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	args = fs.Args()
	usage := func() int { fs.Usage(); return exitUsage }
	if len(args) == 0 || *timeout <= 0 {
		return usage()
	}
	// Bounds everything; each library also gets the timeout for each step.
	ctx, cancel := context.WithTimeout(context.Background(), 3*(*timeout))
	defer cancel()

	var (
		r   result
		err error
	)
	switch cmd := args[0]; cmd {
	case "amqp", "redis":
		if len(args) > 2 {
			return usage()
		}
		env := "WARREN_AMQP_URL"
		if cmd == "redis" {
			env = "WARREN_REDIS_URL"
		}
		url := getenv(env)
		if len(args) == 2 {
			url = args[1]
		}
		if url == "" {
			fmt.Fprintf(stderr, "servicesprobe: no URL: give one or set %s\n", env)
			return exitUsage
		}
		if cmd == "amqp" {
			r, err = probeAMQP(ctx, url, *timeout)
		} else {
			r, err = probeRedis(ctx, url, *timeout)
		}
	case "listens":
		if len(args) != 3 {
			return usage()
		}
		r = listens(ctx, net.JoinHostPort(args[1], args[2]), *timeout)
	case "urls":
		if len(args) != 1 {
			return usage()
		}
		vars, err := shellVars(getenv)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		fmt.Fprint(stdout, vars)
		return exitUsable
	default:
		return usage()
	}
	if err != nil {
		fmt.Fprintf(stderr, "servicesprobe: %v\n", err)
		return exitUsage
	}
	if r.note != "" {
		// Passwords never reach a note; this is one more fence.
		fmt.Fprintln(stderr, redact.Text(r.note))
	}
	return r.verdict.exitStatus()
}

// verdict is what a probe found.
type verdict int

const (
	usable  verdict = iota // answers and takes the credentials
	down                   // nothing usable answers
	refused                // answers, refuses the credentials
)

func (v verdict) exitStatus() int {
	switch v {
	case usable:
		return exitUsable
	case refused:
		return exitRefused
	default:
		return exitDown
	}
}

// result is a verdict and the line that explains it (empty for a plain
// success).
type result struct {
	verdict verdict
	note    string
}
