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
	// The signals stay caught until the process exits: a second Ctrl-C
	// (or a signal sent to the whole process group as well as to the
	// process) arriving as a command returns must not turn its exit
	// status into death by signal.
	ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
