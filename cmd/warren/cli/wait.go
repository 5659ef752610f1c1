package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
	"github.com/warrenhq/warren/jobs"
)

// maxConcurrentWaits bounds how many long polls one command holds open.
const maxConcurrentWaits = 8

// jobWaitOptions are the inputs of `warren job wait`.
type jobWaitOptions struct {
	// IDs are the jobs to wait for: the arguments, then those of File.
	IDs []string
	// File names a file of job ids, one a line ("-": standard input);
	// empty lines and lines starting with # are skipped.
	File        string
	WaitTimeout time.Duration
	// Summary prints, in the table views, only the jobs that did not
	// succeed, besides the count by status.
	Summary bool
}

// Validate reports what is wrong with the options, if anything.
func (o *jobWaitOptions) Validate() error {
	if len(o.IDs) == 0 {
		if o.File != "" {
			return fmt.Errorf("%s holds no job ids", fileName(o.File))
		}
		return errors.New("wait needs at least one job id, such as: warren job wait 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d")
	}
	for _, id := range o.IDs {
		if err := checkJobID(id); err != nil {
			return err
		}
	}
	if o.WaitTimeout < 0 {
		return fmt.Errorf("--wait-timeout %s: must not be negative (0 means no limit)", o.WaitTimeout)
	}
	return nil
}

func (a *app) jobWaitCmd() *cobra.Command {
	var o jobWaitOptions
	cmd := &cobra.Command{
		Use:   "wait (ID... | --file FILE)",
		Short: "Wait for jobs to finish and print them",
		Long: `Wait until every job named has finished (succeeded, failed or was canceled),
then print them: a table and the count by status by default (-o wide adds
when each was created and finished, its worker and its labels), a list with
-o json or -o yaml.

--file reads more ids from a file, one a line, or from standard input with
--file -; empty lines and lines starting with # are skipped, so the file
'warren enqueue --file --ids-out' writes can be given as it is. --summary
leaves the jobs that succeeded out of the table.

While waiting, a progress bar on standard error shows how many have
finished, when it is a terminal; otherwise a line every 10 seconds says so.

Exit status: 0 if every job succeeded, 2 if any failed or was canceled, 3 if
--wait-timeout passed first (the jobs are printed as they stand), 1 on any
other error.`,
		Example: `  id1=$(warren enqueue sys.echo '{"message":"one"}')
  id2=$(warren enqueue sys.echo '{"message":"two"}')
  warren job wait "$id1" "$id2"
  warren job wait "$id1" "$id2" --wait-timeout 2m -o json

  # Submit many jobs, then wait for them all; show only those that failed
  warren enqueue sys.echo --file jobs.jsonl --ids-out ids.txt
  warren job wait --file ids.txt --summary`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && o.File == "" {
				return errors.New("wait needs at least one job id, or --file, such as: warren job wait 0190c5f2-6d1e-7b3a-9c4d-2f1e0a9b8c7d")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := args
			if o.File != "" {
				more, err := readIDs(o.File, a.in)
				if err != nil {
					return err
				}
				ids = append(slices.Clip(ids), more...)
			}
			o.IDs = uniq(ids)
			format, c, err := a.prepare(cmd, &o)
			if err != nil {
				return err
			}
			var tally statusTally
			p := newProgress(a.errOut, "wait", func() progressState {
				n, text := tally.text()
				return progressState{Done: int64(n), Total: int64(len(o.IDs)),
					Text: fmt.Sprintf("%s of %s finished: %s", count(n), count(len(o.IDs)), text)}
			})
			p.Start()
			js, err := waitEach(cmd.Context(), c, o.IDs, o.WaitTimeout, func(j *jobs.Job) {
				if j.Status.Terminal() {
					tally.add(j.Status)
				}
				if !isData(format) {
					// The tables show neither: a long wait need not keep them.
					j.Payload, j.Result = nil, nil
				}
			})
			p.Stop()
			if err != nil {
				return apiError(err)
			}
			if err := a.writeWaited(format, js, o.Summary); err != nil {
				return err
			}
			code := exitCode(js)
			if code == exitWaitTimeout {
				n := 0
				for _, j := range js {
					if !j.Status.Terminal() {
						n++
					}
				}
				fmt.Fprintf(a.errOut, "%d of %d jobs not finished after %s\n", n, len(js), o.WaitTimeout)
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.WaitTimeout, "wait-timeout", 0, "give up waiting after this long, such as 30s or 5m (0 means no limit)")
	f.StringVar(&o.File, "file", "", "also wait for the job ids in this file, one a line (- for standard input)")
	f.BoolVar(&o.Summary, "summary", false, "in the table, show only the jobs that did not succeed (the count by status is printed either way)")
	return cmd
}

// writeWaited prints the jobs waited for as format asks: the data, or a
// table (of those that did not succeed, with summary) and the count by
// status.
func (a *app) writeWaited(format string, js []*jobs.Job, summary bool) error {
	if isData(format) {
		return writeData(a.out, format, js)
	}
	rows := js
	if summary {
		rows = slices.DeleteFunc(slices.Clone(js), func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	}
	if len(rows) > 0 {
		write := writeJobTable
		if format == formatWide {
			write = writeJobTableWide
		}
		if err := write(a.out, rows); err != nil {
			return err
		}
	}
	var tally statusTally
	for _, j := range js {
		tally.add(j.Status)
	}
	noun := "jobs"
	if len(js) == 1 {
		noun = "job"
	}
	_, text := tally.text()
	_, err := fmt.Fprintf(a.out, "%s %s: %s\n", count(len(js)), noun, text)
	return err
}

// statusTally counts jobs by status; it is safe for concurrent use.
type statusTally struct {
	mu sync.Mutex
	n  map[jobs.Status]int
}

func (t *statusTally) add(s jobs.Status) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[jobs.Status]int{}
	}
	t.n[s]++
}

// statusOrder is the order a tally lists statuses in: the ends first, then
// from the closest to ending.
var statusOrder = []jobs.Status{
	jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled,
	jobs.StatusRunning, jobs.StatusRetrying, jobs.StatusQueued, jobs.StatusScheduled,
}

// text returns how many jobs were counted and the counts, such as
// "97 succeeded, 2 failed, 1 queued"; a status none has is left out.
func (t *statusTally) text() (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	total := 0
	seen := map[jobs.Status]bool{}
	add := func(s jobs.Status) {
		if n := t.n[s]; n > 0 && !seen[s] {
			parts = append(parts, count(n)+" "+string(s))
			total += n
		}
		seen[s] = true
	}
	for _, s := range statusOrder {
		add(s)
	}
	var other []jobs.Status // a status newer than this CLI
	for s := range t.n {
		if !seen[s] {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	for _, s := range other {
		add(s)
	}
	if len(parts) == 0 {
		return 0, "none yet"
	}
	return total, strings.Join(parts, ", ")
}

// readIDs reads job ids from a file, one a line ("-": from stdin); empty
// lines and lines starting with # are skipped. A line that is not a job id
// is an error naming it.
func readIDs(name string, stdin io.Reader) ([]string, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	} else if stdin == nil {
		return nil, errors.New("--file -: no standard input")
	}
	var ids []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id := strings.ToLower(line) // UUIDs are case-insensitive
		if err := checkJobID(id); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", fileName(name), n, err)
		}
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", fileName(name), err)
	}
	return ids, nil
}

// fileName is how messages name a --file argument.
func fileName(name string) string {
	if name == "-" {
		return "standard input"
	}
	return name
}

// waitAll waits until every job named is terminal, and returns them in the
// order of ids; see waitEach.
func waitAll(ctx context.Context, c *client.Client, ids []string, timeout time.Duration) ([]*jobs.Job, error) {
	return waitEach(ctx, c, ids, timeout, nil)
}

// waitEach waits, a few at a time (maxConcurrentWaits), until every job
// named is terminal, and returns them in the order of ids. If timeout (when
// positive) passes first, the jobs that are not done are returned as they
// stand. The first error (an unknown id, an unreachable API) stops every
// wait. settled, if not nil, is called once for each job as it is known,
// from several goroutines at once; it may change the job (to drop what need
// not be kept).
func waitEach(ctx context.Context, c *client.Client, ids []string, timeout time.Duration, settled func(*jobs.Job)) ([]*jobs.Job, error) {
	fatal, stop := context.WithCancel(ctx)
	defer stop()
	budget, cancelBudget := fatal, context.CancelFunc(func() {})
	if timeout > 0 {
		budget, cancelBudget = context.WithTimeout(fatal, timeout)
	}
	defer cancelBudget()

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan int)
		out      = make([]*jobs.Job, len(ids))
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			stop()
		}
	}
	for range min(maxConcurrentWaits, len(ids)) {
		wg.Go(func() {
			for i := range next {
				j, err := c.WaitDone(budget, ids[i])
				if err != nil && errors.Is(err, context.DeadlineExceeded) && budget.Err() != nil && fatal.Err() == nil {
					// The budget ran out, not the caller's patience:
					// report the job as it stands.
					j, err = c.Get(fatal, ids[i])
				}
				if err != nil {
					fail(err)
					continue
				}
				if settled != nil {
					settled(j)
				}
				out[i] = j
			}
		})
	}
feed:
	for i := range ids {
		select {
		case next <- i:
		case <-fatal.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
