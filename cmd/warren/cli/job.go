package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// Exit codes of the client commands, besides 0 (done; the job succeeded) and
// 1 (an error, printed by Main).
const (
	// exitJobFailed means a job waited for failed or was canceled.
	exitJobFailed = 2
	// exitWaitTimeout means --wait-timeout passed before every job waited
	// for was terminal.
	exitWaitTimeout = 3
)

// prepare does what every client command does first: read -o, check the
// command's options, and make the API client.
func (a *app) prepare(cmd *cobra.Command, o interface{ Validate() error }) (format string, c *client.Client, err error) {
	if format, err = a.format(); err != nil {
		return "", nil, err
	}
	if err := o.Validate(); err != nil {
		return "", nil, err
	}
	c, err = a.apiClient(cmd)
	return format, c, err
}

// apiClient returns a client of the API the settings name (--api,
// WARREN_API_URL, api_url).
func (a *app) apiClient(cmd *cobra.Command) (*client.Client, error) {
	cfg, err := a.config(cmd)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := cfg.APIClientTLSConfig()
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil && !strings.HasPrefix(strings.ToLower(cfg.APIURL), "https://") {
		return nil, fmt.Errorf("api_ca_file is set, but the API URL %s is not https://", cfg.APIURL)
	}
	c, err := client.New(client.Config{BaseURL: cfg.APIURL, APIKey: cfg.APIKey, TLS: tlsConfig})
	if err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	return c, nil
}

// apiError adds to an error from the client what only the command line can
// say: how to point it at another API.
func apiError(err error) error {
	var ae *client.APIError
	switch {
	case client.IsUnreachable(err):
		return fmt.Errorf("%w, or point --api (WARREN_API_URL) at it", err)
	case errors.As(err, new(*tls.CertificateVerificationError)):
		return fmt.Errorf("%w; if a private CA signs the API's certificate, point api_ca_file (WARREN_API_CA_FILE) at that CA's certificate", err)
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("%w; give the CLI a key with --api-key, WARREN_API_KEY, WARREN_API_KEY_FILE or api_key in warren.yaml", err)
	}
	return err
}

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Inspect jobs, wait for them, cancel and retry them",
		Long: `Inspect jobs submitted to the warren API, wait for them to finish, cancel
them, run failed or canceled ones again, or download what they produced.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		// Runnable, so that an unknown subcommand is an error, not help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.jobGetCmd(), a.jobWaitCmd(), a.jobCancelCmd(), a.jobListCmd(), a.jobRetryCmd(), a.jobArtifactCmd())
	return cmd
}

// jobGetOptions are the inputs of `warren job get`.
type jobGetOptions struct {
	ID string
	watchOptions
}

// Validate reports what is wrong with the options, if anything.
func (o *jobGetOptions) Validate() error {
	if err := checkJobID(o.ID); err != nil {
		return err
	}
	return o.watchOptions.Validate()
}

func (a *app) jobGetCmd() *cobra.Command {
	var o jobGetOptions
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Print a job",
		Long: `Print a job as it stands: its status, attempts, times, error, payload and
result. The default view is for people (-o wide is the same view); -o json
and -o yaml print the job as the API returns it. --watch shows it again
every --interval (2s) until Ctrl-C, redrawn in place on a terminal.`,
		Example: `  id=$(warren enqueue sys.echo '{"message":"hello"}')
  warren job get "$id"
  warren job get "$id" -o json
  warren job get "$id" -o yaml

  # Follow a long job's status and progress until Ctrl-C
  id=$(warren enqueue sys.sleep '{"ms":20000}')
  warren job get "$id" --watch --interval 1s`,
		Args: exactArgs(1, "a job id, such as: warren job get 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			o.resolve(cmd)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			return a.watch(cmd.Context(), o.watchOptions, format, "warren job get "+o.ID, func(ctx context.Context, w io.Writer) error {
				j, err := c.Get(ctx, o.ID)
				if err != nil {
					return apiError(err)
				}
				if isData(format) {
					return writeData(w, format, j)
				}
				return writeJobView(w, j)
			})
		},
	}
	o.bind(cmd)
	return cmd
}

// jobIDsOptions are the inputs of a command that acts on each job named
// (`warren job cancel`, `warren job retry`).
type jobIDsOptions struct {
	IDs []string
}

// Validate reports what is wrong with the options, if anything.
func (o *jobIDsOptions) Validate() error {
	for _, id := range o.IDs {
		if err := checkJobID(id); err != nil {
			return err
		}
	}
	return nil
}

func (a *app) jobCancelCmd() *cobra.Command {
	var o jobIDsOptions
	return &cobra.Command{
		Use:   "cancel ID...",
		Short: "Cancel jobs that have not ended",
		Long: `Cancel each job named, in turn, and print "ID canceled" for each (with -o json
or -o yaml, the canceled jobs as a list). A canceled job that has not started never
runs; a running job's handler is told to stop.

A job that has already ended (succeeded, failed or canceled) cannot be
canceled: it is reported on standard error as "ID: already STATUS" (an
unknown id as "ID: no such job"), and the other jobs are still canceled.

Exit status: 0 if every job named was canceled, 1 otherwise.`,
		Example: `  id=$(warren enqueue sys.echo '{"message":"later"}' --delay 1h)
  warren job cancel "$id"

  # Several at once, printing the canceled jobs as JSON
  id1=$(warren enqueue sys.echo '{"message":"one"}' --delay 1h)
  id2=$(warren enqueue sys.sleep '{"ms":600000}')
  warren job cancel "$id1" "$id2" -o json`,
		Args: needIDs("cancel"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.IDs = uniq(args)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return a.eachJob(ctx, format, o.IDs, func(id string) (*jobs.Job, error) { return c.Cancel(ctx, id) },
				func(id string, err error) string { return conflictText(ctx, c, id, err) })
		},
	}
}

// needIDs refuses a command line that names no job for verb.
func needIDs(verb string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("%s needs at least one job id, such as: warren job %s 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d", verb, verb)
		}
		return nil
	}
}

// eachJob does act to each job of ids in turn (cancel, retry), printing
// "ID STATUS" for each it did (or, as data, the list of them at the end).
// A job act refuses (409: conflict says why; 404; 403, a key limited to
// other types) is reported on standard error and the others go on, and the
// exit status is then 1. Any other error (an unreachable API, a server
// error) would befall the other jobs too: it stops, after saying what was
// done.
func (a *app) eachJob(ctx context.Context, format string, ids []string, act func(id string) (*jobs.Job, error),
	conflict func(id string, err error) string) error {
	done := []*jobs.Job{} // [] rather than null in JSON
	refused := false
	for _, id := range ids {
		j, err := act(id)
		var ae *client.APIError
		switch {
		case err == nil:
			done = append(done, j)
			if !isData(format) {
				fmt.Fprintf(a.out, "%s %s\n", j.ID, j.Status)
			}
			continue
		case client.IsConflict(err):
			refused = true
			fmt.Fprintf(a.errOut, "%s: %s\n", id, conflict(id, err))
			continue
		case client.IsNotFound(err):
			refused = true
			fmt.Fprintf(a.errOut, "%s: no such job\n", id)
			continue
		case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
			refused = true
			fmt.Fprintf(a.errOut, "%s: %s\n", id, ae.Message)
			continue
		}
		if isData(format) {
			_ = writeData(a.out, format, done)
		}
		return apiError(err)
	}
	if isData(format) {
		if err := writeData(a.out, format, done); err != nil {
			return err
		}
	}
	if refused {
		return &exitError{code: 1}
	}
	return nil
}

// conflictText says why a job could not be canceled: "already STATUS", read
// from the job itself (an ended job never changes again), or the API's own
// message if the job cannot be read.
func conflictText(ctx context.Context, c *client.Client, id string, conflict error) string {
	if j, err := c.Get(ctx, id); err == nil && j.Status.Terminal() {
		return "already " + string(j.Status)
	}
	var ae *client.APIError
	if errors.As(conflict, &ae) && ae.Message != "" {
		return ae.Message
	}
	return conflict.Error()
}

// exitCode is the exit status that reports the jobs waited for:
// exitJobFailed if any failed or was canceled, else exitWaitTimeout if any
// is not terminal, else 0.
func exitCode(js []*jobs.Job) int {
	code := 0
	for _, j := range js {
		switch {
		case j.Status == jobs.StatusFailed || j.Status == jobs.StatusCanceled:
			return exitJobFailed
		case !j.Status.Terminal():
			code = exitWaitTimeout
		}
	}
	return code
}

// checkJobID refuses what cannot be a job id before it is sent.
func checkJobID(id string) error {
	if !jobs.ValidID(id) {
		return fmt.Errorf("%q is not a job id: want a UUID such as 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d", id)
	}
	return nil
}

// exactArgs is cobra.ExactArgs with a message that says what is wanted.
func exactArgs(n int, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s needs %s (got %d arguments)", cmd.Name(), want, len(args))
		}
		return nil
	}
}

// uniq returns ss without repeats, in first-seen order.
func uniq(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
