// Command warren runs the warren job system: the API, worker pools and the
// command line for jobs. See `warren --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/warrenhq/warren/cmd/warren/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
