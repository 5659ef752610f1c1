package cli

import (
	"errors"
	"fmt"
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
	Timeout     time.Duration
	Key         string
	Meta        []string // k=v pairs
	Wait        bool
	WaitTimeout time.Duration
}

// Validate reports what is wrong with the options, if anything, without
// reading the payload or sending anything.
func (o *enqueueOptions) Validate() error {
	if !jobs.ValidTypeName(o.Type) {
		return fmt.Errorf("job type %q: want lower-case words joined by dots, such as sys.echo", o.Type)
	}
	if o.HasPayload {
		if err := checkPayloadArg(o.Payload); err != nil {
			return err
		}
	}
	if o.MaxAttempts < 0 || o.MaxAttempts > jobs.MaxMaxAttempts {
		return fmt.Errorf("--max-attempts %d: want 1 to %d (0 means the type's default)", o.MaxAttempts, jobs.MaxMaxAttempts)
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
	return nil
}

// request returns the job request the options describe, with payload.
func (o *enqueueOptions) request(payload []byte) (client.JobRequest, error) {
	meta, err := parseMeta(o.Meta)
	if err != nil {
		return client.JobRequest{}, err
	}
	return client.JobRequest{
		Type:           o.Type,
		Payload:        payload,
		MaxAttempts:    o.MaxAttempts,
		Timeout:        jobs.Duration(o.Timeout),
		Metadata:       meta,
		IdempotencyKey: o.Key,
	}, nil
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
		Use:   "enqueue TYPE [PAYLOAD]",
		Short: "Submit a job to the warren API",
		Long: `Submit a job of TYPE to the warren API and print its id.

PAYLOAD is the job's input, a JSON object: JSON text, @FILE to read a file,
or - to read standard input. Without it the payload is {}. A payload that is
not a JSON object is refused before anything is sent.

With --wait, warren waits for the job to finish and prints its result (with
-o json, the whole job). Exit status: 0 if the job was submitted (and, with
--wait, succeeded), 2 if it failed or was canceled, 3 if --wait-timeout
passed first, 1 on any other error.

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
    --meta team=ops --meta ticket=42 --key order-42`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return errors.New(`enqueue needs a job type, such as: warren enqueue sys.echo '{"message":"hello"}'`)
			case len(args) > 2:
				return fmt.Errorf("enqueue takes a type and at most one payload, got %d arguments (quote the payload JSON)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Type = args[0]
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
			if !created {
				fmt.Fprintf(a.errOut, "job %s already exists for key %q; not submitted again\n", j.ID, o.Key)
			}
			if !o.Wait {
				if format == formatJSON {
					return writeJSON(a.out, j)
				}
				_, err := fmt.Fprintln(a.out, j.ID)
				return err
			}

			js, err := waitAll(ctx, c, []string{j.ID}, o.WaitTimeout)
			if err != nil {
				return apiError(err)
			}
			j = js[0]
			if format == formatJSON {
				if err := writeJSON(a.out, j); err != nil {
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
	f.DurationVar(&o.Timeout, "timeout", 0, "time limit of one attempt, such as 30s or 5m (default: the type's)")
	f.StringVar(&o.Key, "key", "", "idempotency key: resubmitting with the same key returns the first job")
	f.StringArrayVar(&o.Meta, "meta", nil, "label the job with key=value (repeatable)")
	f.BoolVar(&o.Wait, "wait", false, "wait for the job to finish and print its result")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "with --wait, give up after this long, such as 2m (0 means no limit; implies --wait)")
	return cmd
}
