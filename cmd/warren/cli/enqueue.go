package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// enqueueOptions are the inputs of `warren enqueue`.
type enqueueOptions struct {
	Type string
	// Payload is the payload argument: JSON text, @FILE or -; used only
	// when HasPayload.
	Payload     string
	HasPayload  bool
	MaxAttempts int
	// Priority is 0 to 9 (docs/priorities.md).
	Priority    int
	Timeout     time.Duration
	Key         string
	Meta        []string // k=v pairs
	Wait        bool
	WaitTimeout time.Duration
	// Delay holds the job back for this long; nil means at once.
	Delay *time.Duration
	// At holds the job back until this RFC 3339 time; "" means at once.
	At string
	// BackoffBase, BackoffFactor and BackoffMax override the type's retry
	// policy; nil keeps the type's.
	BackoffBase   *time.Duration
	BackoffFactor *float64
	BackoffMax    *time.Duration
	// UniqueKey, UniqueFor, UniqueWhile and OnConflict make the job the
	// only one of its type and key for a while (docs/unique.md); "" and 0
	// take the API's defaults, and the last three need UniqueKey.
	UniqueKey   string
	UniqueFor   time.Duration
	UniqueWhile string
	OnConflict  string
	// bulkOptions are those of --file (bulk.go).
	bulkOptions
}

// Validate reports what is wrong with the options, if anything, without
// reading the payload or sending anything.
func (o *enqueueOptions) Validate() error {
	// With --requests the lines may name their types.
	if (o.Type != "" || o.File == "" || !o.Requests) && !jobs.ValidTypeName(o.Type) {
		return fmt.Errorf("job type %q: want lower-case words joined by dots, such as sys.echo", o.Type)
	}
	if err := o.validateBulk(); err != nil {
		return err
	}
	if o.HasPayload {
		if err := checkPayloadArg(o.Payload); err != nil {
			return err
		}
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > jobs.MaxMaxAttempts {
		return fmt.Errorf("--max-attempts %d: want 1 to %d (0 means the type's default)", o.MaxAttempts, jobs.MaxMaxAttempts)
	}
	if !jobs.ValidPriority(o.Priority) {
		return fmt.Errorf("--priority %d: want 0 to %d (5 and above run first in their pool)", o.Priority, jobs.MaxPriority)
	}
	if o.Timeout != 0 && (o.Timeout < time.Second || o.Timeout > jobs.MaxTimeout) {
		return fmt.Errorf("--timeout %s: want 1s to %s (0 means the type's default)", o.Timeout, durationText(jobs.MaxTimeout))
	}
	if _, err := parseMeta(o.Meta); err != nil {
		return err
	}
	if o.WaitTimeout < 0 {
		return fmt.Errorf("--wait-timeout %s: must not be negative (0 means no limit)", o.WaitTimeout)
	}
	if o.Delay != nil && o.At != "" {
		return errors.New("--delay and --at both say when to run the job: give one of them")
	}
	if o.Delay != nil {
		if err := checkPositive("--delay", *o.Delay, "90s or 2h"); err != nil {
			return err
		}
	}
	if _, err := o.runAt(); err != nil {
		return err
	}
	if o.BackoffBase != nil {
		if err := checkPositive("--backoff-base", *o.BackoffBase, "1s or 500ms"); err != nil {
			return err
		}
	}
	if f := o.BackoffFactor; f != nil && !(*f >= 1 && *f <= 100) { // refuses NaN too
		return fmt.Errorf("--backoff-factor %v: want 1 to 100, such as 2 (1 waits the same each time)", *f)
	}
	if o.BackoffMax != nil {
		if err := checkPositive("--backoff-max", *o.BackoffMax, "10m or 1h"); err != nil {
			return err
		}
	}
	return o.validateUnique()
}

// validateUnique checks the --unique-* and --on-conflict flags as far as
// the command can; the API checks the rest.
func (o *enqueueOptions) validateUnique() error {
	if o.UniqueKey == "" {
		if o.UniqueFor != 0 || o.UniqueWhile != "" || o.OnConflict != "" {
			return errors.New("--unique-for, --unique-while and --on-conflict need --unique-key")
		}
		return nil
	}
	if err := jobs.ValidUniqueKey(o.UniqueKey); err != nil {
		return fmt.Errorf("--unique-key: %v", strings.TrimPrefix(err.Error(), "unique.key "))
	}
	if o.UniqueFor != 0 && (o.UniqueFor < time.Second || o.UniqueFor > jobs.MaxUniqueFor) {
		return fmt.Errorf("--unique-for %s: want 1s to %s (30 days)", o.UniqueFor, durationText(jobs.MaxUniqueFor))
	}
	if o.UniqueWhile != "" && !jobs.UniqueWhile(o.UniqueWhile).Valid() {
		return fmt.Errorf("--unique-while %q: want queued, running, until_done or always", o.UniqueWhile)
	}
	if o.OnConflict != "" && o.OnConflict != string(jobs.OnConflictExisting) && o.OnConflict != string(jobs.OnConflictError) {
		return fmt.Errorf("--on-conflict %q: want existing or error", o.OnConflict)
	}
	return nil
}

// checkPositive refuses a duration flag that is not positive, or is longer
// than the delays warren can express.
func checkPositive(flag string, d time.Duration, examples string) error {
	switch {
	case d <= 0:
		return fmt.Errorf("%s %s: want a positive duration, such as %s", flag, d, examples)
	case d > jobs.MaxDelay:
		return fmt.Errorf("%s %s: want at most %s", flag, d, jobs.MaxDelay.Truncate(time.Second))
	}
	return nil
}

// runAt returns the time --at names; nil without --at.
func (o *enqueueOptions) runAt() (*time.Time, error) {
	if o.At == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, o.At)
	if err != nil {
		return nil, fmt.Errorf("--at %q: want an RFC 3339 time, such as 2026-12-01T10:00:00Z or 2026-12-01T11:00:00+01:00", o.At)
	}
	return &t, nil
}

// backoff returns the retry policy the --backoff-* flags ask for; nil if
// none was given.
func (o *enqueueOptions) backoff() *jobs.Backoff {
	if o.BackoffBase == nil && o.BackoffFactor == nil && o.BackoffMax == nil {
		return nil
	}
	var b jobs.Backoff
	if o.BackoffBase != nil {
		b.Base = jobs.Duration(*o.BackoffBase)
	}
	if o.BackoffFactor != nil {
		b.Factor = *o.BackoffFactor
	}
	if o.BackoffMax != nil {
		b.Max = jobs.Duration(*o.BackoffMax)
	}
	return &b
}

// request returns the job request the options describe, with payload.
func (o *enqueueOptions) request(payload []byte) (client.JobRequest, error) {
	meta, err := parseMeta(o.Meta)
	if err != nil {
		return client.JobRequest{}, err
	}
	at, err := o.runAt()
	if err != nil {
		return client.JobRequest{}, err
	}
	req := client.JobRequest{
		Type:           o.Type,
		Payload:        payload,
		MaxAttempts:    o.MaxAttempts,
		Priority:       o.Priority,
		Timeout:        jobs.Duration(o.Timeout),
		RunAt:          at,
		Backoff:        o.backoff(),
		Metadata:       meta,
		IdempotencyKey: o.Key,
	}
	if o.UniqueKey != "" {
		req.Unique = &client.UniqueRequest{Key: o.UniqueKey, For: jobs.Duration(o.UniqueFor),
			While: jobs.UniqueWhile(o.UniqueWhile), OnConflict: jobs.OnConflict(o.OnConflict)}
	}
	if o.Delay != nil {
		req.Delay = jobs.Duration(*o.Delay)
	}
	return req, nil
}

// optionalFlag is a flag value that leaves *p nil until the flag is given,
// so that options can tell a flag left out from one given as zero.
type optionalFlag[T any] struct {
	p     **T
	parse func(string) (T, error)
	typ   string // what help calls the value, such as "duration"
}

func (f optionalFlag[T]) Set(s string) error {
	v, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.p = &v
	return nil
}

func (f optionalFlag[T]) String() string {
	if *f.p == nil {
		return ""
	}
	return fmt.Sprint(**f.p)
}

func (f optionalFlag[T]) Type() string { return f.typ }

// optionalDuration binds a flag such as "90s" to *p.
func optionalDuration(p **time.Duration) optionalFlag[time.Duration] {
	return optionalFlag[time.Duration]{p: p, parse: time.ParseDuration, typ: "duration"}
}

// optionalFloat binds a flag such as "1.5" to *p.
func optionalFloat(p **float64) optionalFlag[float64] {
	parse := func(s string) (float64, error) {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, errors.New("want a number, such as 2")
		}
		return v, nil
	}
	return optionalFlag[float64]{p: p, parse: parse, typ: "float"}
}

// parseMeta reads --meta k=v pairs; nil for none.
func parseMeta(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--meta %q: want key=value, such as team=ops", p)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--meta %q: key %s given twice", p, k)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) enqueueCmd() *cobra.Command {
	var o enqueueOptions
	cmd := &cobra.Command{
		Use:   "enqueue TYPE [PAYLOAD] | enqueue [TYPE] --file FILE",
		Short: "Submit a job, or many from a file, to the warren API",
		Long: `Submit a job of TYPE to the warren API and print its id.

PAYLOAD is the job's input, a JSON object: JSON text, @FILE to read a file,
or - to read standard input. Without it the payload is {}. A payload that is
not a JSON object is refused before anything is sent.

--delay or --at holds the job back: it stays scheduled until then, and is
queued after. --backoff-base, --backoff-factor and --backoff-max set how long
the job waits after a failed attempt before the next one, in place of its
type's policy: base after the first failure, multiplied by factor after each
further one, never more than max (jittered). Those left out keep the type's.

With --wait, warren waits for the job to finish and prints its result (with
-o json or -o yaml, the whole job). Exit status: 0 if the job was submitted
(and, with --wait, succeeded), 2 if it failed or was canceled, 3 if
--wait-timeout passed first, 1 on any other error.

Many jobs: --file FILE reads JSON lines (--file - reads standard input) and
submits them through the batch API, --chunk jobs per request (500), reading
as it sends, so that a file of any length goes through in little memory.
What a line is never depends on what it holds:

  without --requests  each line is a payload (a JSON object) for a job of
                      TYPE with the flags' settings, whatever members it
                      has, "type" and "payload" included
  with --requests     each line is a whole job request, as POST /v1/jobs
                      takes it: {"type":"sys.echo","payload":{...},
                      "max_attempts":5,"idempotency_key":"..."}; TYPE (then
                      optional) and the flags fill in what a line leaves out

Empty lines are skipped. A line that is not JSON, or not an object, is
refused with its line number and the rest go on; so is a job the API
refuses (an unknown type, a payload its schema refuses). When the key is over
its rate limit (429) the chunk is sent again after the wait the API asks
for; while the API is unavailable (503, or not reachable) it is sent again
up to 5 times, waiting 1s, 2s, 4s, ... between. A chunk the API finds too
large is sent in halves, and later chunks are kept as small.

A progress bar shows on standard error when it is a terminal (a line every
10 seconds otherwise). At the end a summary goes to standard output: lines
read, jobs accepted, lines refused by reason with their line numbers (with
-o json or -o yaml, the same as data). --ids-out FILE writes one line for
each line of input, in order: the id of the job it became, or nothing for a
line that was empty or refused; 'warren job wait --file FILE' waits for them.
With --file, the exit status is 0 if every line became a job, 4 if some were
refused (the others were submitted), and 1 if the run stopped early (an
error that would befall every chunk, or Ctrl-C): the summary says from which
line on nothing was sent.

The API's address comes from --api, WARREN_API_URL or api_url in warren.yaml
(default http://127.0.0.1:8080).`,
		Example: `  # Submit a job and keep its id
  id=$(warren enqueue sys.echo '{"message":"hello"}')

  # Submit, wait for the job to finish and print its result
  warren enqueue sys.echo '{"message":"hello"}' --wait --wait-timeout 1m

  # Read the payload from a file or from standard input
  echo '{"message":"hello"}' > payload.json
  warren enqueue sys.echo @payload.json
  echo '{"message":"hello"}' | warren enqueue sys.echo -

  # Attempts, timeout, labels, and a key that makes resubmitting safe
  warren enqueue sys.echo '{"message":"hello"}' --max-attempts 5 --timeout 30s \
    --meta team=ops --meta ticket=42 --key order-42

  # At most one refresh of account 42 waiting or running; a duplicate
  # prints the job that holds the key (or fails, with --on-conflict error)
  warren enqueue sys.echo '{"account":42}' --unique-key account-42 \
    --unique-while running --unique-for 1h

  # Run in 90 seconds, or at a given time (RFC 3339)
  warren enqueue sys.echo '{"message":"later"}' --delay 90s
  warren enqueue sys.echo '{"message":"later"}' --at 2026-12-01T10:00:00Z

  # Wait up to 2s before the second attempt, 6s before the third, 18s, ...
  # but never more than 5 minutes
  warren enqueue sys.echo '{"message":"hello"}' --max-attempts 5 \
    --backoff-base 2s --backoff-factor 3 --backoff-max 5m

  # Many jobs: one payload a line, 1000 a request, ids kept to wait for
  seq 1 100000 | sed 's/.*/{"n":&}/' > jobs.jsonl
  warren enqueue sys.echo --file jobs.jsonl --chunk 1000 --ids-out ids.txt
  warren job wait --file ids.txt --summary

  # Whole job requests from standard input, each with its own type and key
  printf '%s\n' '{"type":"sys.echo","payload":{"n":1},"idempotency_key":"n-1"}' \
    '{"type":"sys.sleep","payload":{"ms":100},"max_attempts":1}' |
    warren enqueue --file - --requests

  # The summary as data: which lines were refused, and why
  warren enqueue sys.echo --file jobs.jsonl -o json | jq '.refusals'`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0 && o.File != "" && o.Requests:
				return nil // the lines name their types
			case len(args) == 0:
				return errors.New(`enqueue needs a job type, such as: warren enqueue sys.echo '{"message":"hello"}'`)
			case len(args) > 2:
				return fmt.Errorf("enqueue takes a type and at most one payload, got %d arguments (quote the payload JSON)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				o.Type = args[0]
			}
			if len(args) == 2 {
				o.Payload, o.HasPayload = args[1], true
			}
			if cmd.Flags().Changed("wait-timeout") {
				o.Wait = true
			}
			format, err := a.format()
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			if o.File != "" {
				c, err := a.apiClient(cmd)
				if err != nil {
					return err
				}
				return a.enqueueFile(cmd.Context(), c, &o, format)
			}
			payload, err := readPayload(o.Payload, !o.HasPayload, a.in)
			if err != nil {
				return err
			}
			req, err := o.request(payload)
			if err != nil {
				return err
			}
			c, err := a.apiClient(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			j, created, err := c.Enqueue(ctx, req)
			if err != nil {
				return apiError(err)
			}
			switch {
			case created:
			case o.UniqueKey != "" && j.Unique != nil && j.Unique.Key == o.UniqueKey && (o.Key == "" || j.IdempotencyKey != o.Key):
				fmt.Fprintf(a.errOut, "job %s (%s) holds unique key %q of %s; not submitted again\n", j.ID, j.Status, o.UniqueKey, j.Type)
			default:
				fmt.Fprintf(a.errOut, "job %s already exists for key %q; not submitted again\n", j.ID, o.Key)
			}
			if !o.Wait {
				if isData(format) {
					return writeData(a.out, format, j)
				}
				_, err := fmt.Fprintln(a.out, j.ID)
				return err
			}

			js, err := waitAll(ctx, c, []string{j.ID}, o.WaitTimeout)
			if err != nil {
				return apiError(err)
			}
			j = js[0]
			if isData(format) {
				if err := writeData(a.out, format, j); err != nil {
					return err
				}
			} else if j.Status == jobs.StatusSucceeded {
				if err := writeRawJSON(a.out, j.Result); err != nil {
					return err
				}
			}
			switch code := exitCode(js); code {
			case exitJobFailed:
				line := fmt.Sprintf("job %s %s", j.ID, j.Status)
				if e := errorText(j.Error); e != "" {
					line += ": " + e
				}
				fmt.Fprintln(a.errOut, line)
				return &exitError{code: code}
			case exitWaitTimeout:
				fmt.Fprintf(a.errOut, "job %s is still %s after %s; see: warren job get %s\n", j.ID, j.Status, o.WaitTimeout, j.ID)
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.MaxAttempts, "max-attempts", 0, "attempts the job may take in all, 1 to 100 (default: the type's)")
	f.IntVar(&o.Priority, "priority", 0, "the job's priority, 0 to 9: 5 and above run before the others of the pool (docs/priorities.md)")
	f.DurationVar(&o.Timeout, "timeout", 0, "time limit of one attempt, such as 30s or 5m (default: the type's)")
	f.StringVar(&o.Key, "key", "", "idempotency key: resubmitting with the same key returns the first job")
	f.StringArrayVar(&o.Meta, "meta", nil, "label the job with key=value (repeatable)")
	f.BoolVar(&o.Wait, "wait", false, "wait for the job to finish and print its result")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "with --wait, give up after this long, such as 2m (0 means no limit; implies --wait)")
	f.Var(optionalDuration(&o.Delay), "delay", "run the job this long from now, such as 90s or 2h (default: at once)")
	f.StringVar(&o.At, "at", "", "run the job at this RFC 3339 time, such as 2026-12-01T10:00:00Z (default: at once)")
	f.Var(optionalDuration(&o.BackoffBase), "backoff-base", "wait after the first failed attempt, such as 1s (default: the type's)")
	f.Var(optionalFloat(&o.BackoffFactor), "backoff-factor", "multiply the wait by this after each further failure, 1 to 100 (default: the type's)")
	f.Var(optionalDuration(&o.BackoffMax), "backoff-max", "longest wait between attempts, such as 10m (default: the type's)")
	f.StringVar(&o.UniqueKey, "unique-key", "", "make the job the only one of its type with this key for a while: a duplicate returns the job holding it (docs/unique.md)")
	f.DurationVar(&o.UniqueFor, "unique-for", 0, "with --unique-key, hold the key at most this long from acceptance, 1s to 720h (default 24h)")
	f.StringVar(&o.UniqueWhile, "unique-while", "", "with --unique-key, hold it while the job is queued, running, until_done or always (default until_done)")
	f.StringVar(&o.OnConflict, "on-conflict", "", "with --unique-key, answer a duplicate with the existing job (existing, the default) or fail (error, exit status 1)")
	f.StringVar(&o.File, "file", "", "submit a job for each line of this JSON lines file (- for standard input)")
	f.BoolVar(&o.Requests, "requests", false, "with --file, each line is a whole job request, not a payload")
	f.IntVar(&o.Chunk, "chunk", defaultChunk, fmt.Sprintf("with --file, jobs per batch request, 1 to %d", maxChunk))
	f.StringVar(&o.IDsOut, "ids-out", "", "with --file, write the ids to this file, one line per input line (empty if it is not a job)")
	cmd.ValidArgsFunction = a.completeTypes
	return cmd
}
