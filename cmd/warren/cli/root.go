// Package cli builds warren's cobra commands. Commands are made by
// constructors, flags bind to option structs, and all output goes to the
// writers handed in, so tests run the real command tree in process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/lmittmann/tint"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/warrenhq/warren/config"
)

// exitError carries a process exit code out of a command without printing
// anything more (the command already said what happened).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the warren command line with args and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	a := &app{in: stdin, out: stdout, errOut: stderr, environ: environ}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "warren: %v\n", err)
	return 1
}

// app holds what every command shares: the I/O streams, the environment
// and the global flags.
type app struct {
	in          io.Reader
	out, errOut io.Writer
	environ     []string

	configPath string
	output     string // -o as given: "" (table), "table", "wide", "json" or "yaml"
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "warren",
		Short: "warren runs jobs: an HTTP API, RabbitMQ queues, worker pools and Redis records",
		Long: `warren is a job system built on RabbitMQ and Redis.

Run the whole stack on one machine with 'warren dev' (the API, and worker
processes for each pool that grow and shrink with its backlog), then submit
and inspect jobs with 'warren enqueue', 'warren job' and 'warren queues'.
'warren api', 'warren worker' and 'warren autoscale' run the parts on their
own; 'warren deploy render' writes Kubernetes manifests. Settings come from flags, then
WARREN_* environment variables, then warren.yaml, then defaults that work with
RabbitMQ and Redis on loopback.

'warren enqueue TYPE --file jobs.jsonl' submits a file of jobs; 'warren job
wait --file ids.txt' waits for many; --watch on 'warren queues' and 'warren
job get' keeps the view on screen. -o table (the default), wide, json or
yaml chooses the output. 'warren completion bash|zsh|fish' prints a shell
completion script, which completes pools and job types from the API too.

'warren job list' (or 'warren jobs') finds jobs by status, type, pool, label
and time, and 'warren job get' shows each attempt; 'warren workers' shows the
live workers, and 'warren queue pause|resume' holds a pool. An API beyond
loopback needs keys: 'warren keys new' makes them, and client commands send
one from --api-key or WARREN_API_KEY.

'warren schedule' adds periodic jobs, 'warren workflow' submits chains,
groups and chords of jobs, 'warren limit' sets a job type's rate limit, and
'warren enqueue --unique-key' keeps one job per key.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default ./warren.yaml if present; env WARREN_CONFIG)")
	addSettingFlags(pf, "")
	pf.StringVarP(&a.output, "output", "o", "", "output of client commands: table (the readable view; the default, on a terminal or not), wide (more columns), json or yaml")
	_ = root.RegisterFlagCompletionFunc("output", completeOutput)

	root.AddCommand(
		a.devCmd(),
		a.apiCmd(),
		a.workerCmd(),
		a.autoscaleCmd(),
		a.enqueueCmd(),
		a.jobCmd(),
		a.jobsCmd(),
		a.deadCmd(),
		a.queuesCmd(),
		a.limitCmd(),
		a.queueCmd(),
		a.scheduleCmd(),
		a.workflowCmd(),
		a.workersCmd(),
		a.scalingCmd(),
		a.namespaceCmd(),
		a.deployCmd(),
		a.keysCmd(),
		a.versionCmd(),
	)
	return root
}

// settingFlags maps the flags of the settings (config.Settings) that
// command takes to their keys; "" names the flags every command takes.
func settingFlags(command string) map[string]string {
	m := map[string]string{}
	for _, s := range config.Settings() {
		if s.Flag != "" && takes(s, command) {
			m[s.Flag] = s.Key
		}
	}
	return m
}

// takes reports whether command takes the flag of s; "" asks for the flags
// every command takes.
func takes(s config.Setting, command string) bool {
	if command == "" {
		return len(s.Commands) == 0
	}
	return slices.Contains(s.Commands, command)
}

// addSettingFlags adds the flags settingFlags(command) names, each with its
// help, its variables and its default.
func addSettingFlags(fs *pflag.FlagSet, command string) {
	defaults := config.Default()
	for _, s := range config.Settings() {
		if s.Flag == "" || !takes(s, command) {
			continue
		}
		from := "env " + s.Env
		if s.Secret {
			from += " or " + s.Env + "_FILE"
		}
		if d, _ := defaults.Value(s.Key); d != "" && !s.Bool {
			from += "; default " + d
		}
		usage := s.Usage + " (" + from + ")"
		if s.Bool {
			fs.Bool(s.Flag, false, usage)
		} else {
			fs.String(s.Flag, "", usage)
		}
	}
}

// config loads the settings: defaults, warren.yaml, WARREN_* variables, then
// the flags given on this command line (config.Settings says which
// command takes which).
func (a *app) config(cmd *cobra.Command) (config.Config, error) {
	cfg, err := config.Load(a.configPath, a.environ)
	if err != nil {
		return cfg, err
	}
	for _, m := range []map[string]string{settingFlags(""), settingFlags(cmd.Name())} {
		for flag, key := range m {
			f := cmd.Flags().Lookup(flag)
			if f == nil || !f.Changed {
				continue
			}
			if err := cfg.Set(key, f.Value.String()); err != nil {
				return cfg, fmt.Errorf("--%s: %w", flag, err)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// logger returns the process logger: tint on a terminal, JSON otherwise.
// go-redis logs through a process-wide hook; server commands point it here
// so that its lines (dial failures while Redis is away) join the same
// stream at debug level instead of going unformatted to stderr.
func (a *app) logger(cfg config.Config) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel) // validated in config
	var log *slog.Logger
	if isTerminal(a.errOut) {
		log = slog.New(tint.NewHandler(a.errOut, &tint.Options{Level: level, TimeFormat: "15:04:05.000"}))
	} else {
		log = slog.New(slog.NewJSONHandler(a.errOut, &slog.HandlerOptions{Level: level, ReplaceAttr: textDurations}))
	}
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	return log
}

// redisLogger adapts go-redis's internal logging to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print warren's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.out, "warren", Version)
			return nil
		},
	}
}

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"
