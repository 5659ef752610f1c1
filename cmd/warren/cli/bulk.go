package cli

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/warrenhq/warren/client"
)

// Bulk submission: `warren enqueue [TYPE] --file FILE` reads JSON lines and
// sends them through POST /v1/jobs/batch, a chunk at a time, so that a file
// of any length goes through in bounded memory: at most one chunk, and the
// lines read ahead of it, are held at once.
//
// What a line is never depends on what it holds. By default every line is
// a payload, sent as the payload of a job of TYPE with the flags' settings,
// even one with "type" or "payload" members of its own (a payload may
// have any members). With --requests every line is a whole job request, as
// POST /v1/jobs takes it ({"type":…, "payload":…, "max_attempts":…});
// TYPE, if given, and the flags fill in the members a line leaves out.

// exitRefused is the exit status of `warren enqueue --file` when some lines
// were refused (and the others sent).
const exitRefused = 4

const (
	// defaultChunk is how many jobs go in one batch request by default.
	defaultChunk = 500
	// maxChunk is the most the API takes in one batch (unless configured
	// lower, or lower for a key, which the sender learns from the
	// refusal and adapts to).
	maxChunk = 1000
	// maxChunkBytes bounds the JSON of one batch, half the API's default
	// body limit (1 MiB); a smaller limit is learned from its 413.
	maxChunkBytes = 512 << 10
	// maxLineBytes bounds one line, to bound memory; the API's own body
	// limit refuses smaller ones.
	maxLineBytes = 16 << 20
	// flushAfter sends a chunk that is not full this long after its first
	// job, so that jobs piped in a few at a time are not held back.
	flushAfter = time.Second
	// maxUnavailableRetries bounds the resends of one chunk while the API
	// answers 503 or cannot be reached.
	maxUnavailableRetries = 5
	// batchTimeout bounds one batch request. A request under way is not
	// cut short by Ctrl-C, so that its jobs' fate is known; the run stops
	// after it.
	batchTimeout = time.Minute
	// maxRefusalLines is how many line numbers a summary lists per reason,
	// and maxRefusalGroups how many reasons.
	maxRefusalLines  = 10
	maxRefusalGroups = 50
)

// bulkOptions are the inputs of `warren enqueue --file`, part of
// enqueueOptions.
type bulkOptions struct {
	// File names the JSON lines to read; "-" is standard input; "" means
	// one job from the arguments.
	File string
	// Requests says each line is a whole job request, not a payload.
	Requests bool
	// Chunk is how many jobs to send per batch request.
	Chunk int
	// IDsOut names a file to write, one line per input line: the id of the
	// job it became, or nothing.
	IDsOut string
}

// validateBulk reports what is wrong with the bulk options, given the rest
// of enqueueOptions.
func (o *enqueueOptions) validateBulk() error {
	if o.File == "" {
		switch {
		case o.Requests:
			return errors.New("--requests says how to read the lines of --file: give --file too")
		case o.IDsOut != "":
			return errors.New("--ids-out writes the ids of the jobs of --file: give --file too (one job prints its id)")
		}
		return nil
	}
	switch {
	case o.HasPayload:
		return errors.New("--file gives the payloads, one a line: leave out the PAYLOAD argument")
	case o.Key != "":
		return errors.New("--key would give every job of --file the same idempotency key: with --requests, give each line its own idempotency_key")
	case o.UniqueKey != "":
		return errors.New("--unique-key would make every job of --file one job: with --requests, give each line its own unique key")
	case o.Wait:
		return errors.New("--wait works on one job: with --file, keep the ids with --ids-out and wait with 'warren job wait --file IDS'")
	case o.Chunk < 1 || o.Chunk > maxChunk:
		return fmt.Errorf("--chunk %d: want 1 to %d jobs per batch request", o.Chunk, maxChunk)
	case o.IDsOut != "" && o.IDsOut == o.File:
		return errors.New("--ids-out must not be the --file it reads")
	}
	return nil
}

// bulkClient is what bulk submission needs of the API.
type bulkClient interface {
	EnqueueBatchJSON(ctx context.Context, reqs []json.RawMessage) ([]client.BatchResult, error)
}

var _ bulkClient = (*client.Client)(nil)

// bulkSummary is what `warren enqueue --file` reports, and prints with -o
// json or -o yaml.
type bulkSummary struct {
	// Lines is how many lines were read.
	Lines int `json:"lines"`
	// Blank is how many of them were empty (and skipped).
	Blank int `json:"blank"`
	// Accepted is how many jobs the API accepted (or, for a known
	// idempotency key, returned the job of).
	Accepted int `json:"accepted"`
	// Refused is how many lines did not become jobs: refused here (not
	// JSON, not an object) or by the API.
	Refused int `json:"refused"`
	// Refusals groups the refused lines by reason.
	Refusals []*refusalGroup `json:"refusals"`
	// MoreRefusals counts refused lines whose reason is not among
	// Refusals, which lists maxRefusalGroups reasons at most.
	MoreRefusals int `json:"more_refusals,omitempty"`
	// IDsOut is the file the ids were written to.
	IDsOut string `json:"ids_out,omitempty"`
	// RateLimitedWait is how long the sender waited in all because the API
	// said the key was over its rate.
	RateLimitedWait string `json:"rate_limited_wait,omitempty"`
	// StoppedAtLine, when not zero, is the first line whose fate is not
	// known or that was not sent: the run stopped there (Error says why).
	StoppedAtLine int `json:"stopped_at_line,omitempty"`
	// Unsure, when set, says the lines from StoppedAtLine to UnsureTo
	// were sent but no answer came: they may or may not be jobs now.
	UnsureTo int `json:"unsure_to_line,omitempty"`
	// Error is what stopped the run early.
	Error string `json:"error,omitempty"`

	groups map[string]*refusalGroup
}

// refusalGroup is the lines refused for one reason: one error code and
// field.
type refusalGroup struct {
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
	// Message is the first such line's.
	Message string `json:"message"`
	Count   int    `json:"count"`
	// Lines are the first maxRefusalLines line numbers.
	Lines []int `json:"lines"`
}

func (s *bulkSummary) refuse(line int, e *client.APIError) {
	s.Refused++
	key := e.Code + "\x00" + e.Field
	g := s.groups[key]
	if g == nil {
		if len(s.Refusals) >= maxRefusalGroups {
			s.MoreRefusals++
			return
		}
		if s.groups == nil {
			s.groups = map[string]*refusalGroup{}
		}
		g = &refusalGroup{Code: e.Code, Field: e.Field, Message: e.Message}
		s.groups[key] = g
		s.Refusals = append(s.Refusals, g)
	}
	g.Count++
	if len(g.Lines) < maxRefusalLines {
		g.Lines = append(g.Lines, line)
	}
}

// write prints the summary for people.
func (s *bulkSummary) write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s read: %s accepted, %s refused", count(s.Lines), plural(s.Lines, "line", "lines"), count(s.Accepted), count(s.Refused))
	if s.Blank > 0 {
		fmt.Fprintf(&b, ", %s blank", count(s.Blank))
	}
	b.WriteString("\n")
	for _, g := range s.Refusals {
		reason := g.Code
		if g.Field != "" {
			reason += " [" + g.Field + "]"
		}
		lines := make([]string, len(g.Lines))
		for i, n := range g.Lines {
			lines[i] = fmt.Sprint(n)
		}
		at := plural(g.Count, "line ", "lines ") + strings.Join(lines, ", ")
		if g.Count > len(g.Lines) {
			at += fmt.Sprintf(" and %s more", count(g.Count-len(g.Lines)))
		}
		fmt.Fprintf(&b, "  %s refused, %s: %s (%s)\n", count(g.Count), reason, oneLine(g.Message), at)
	}
	if s.MoreRefusals > 0 {
		fmt.Fprintf(&b, "  %s refused for other reasons\n", count(s.MoreRefusals))
	}
	if s.RateLimitedWait != "" {
		fmt.Fprintf(&b, "waited %s in all for the key's rate limit\n", s.RateLimitedWait)
	}
	if s.IDsOut != "" {
		fmt.Fprintf(&b, "ids written to %s (line by line; empty for a line that is not a job)\n", s.IDsOut)
	}
	if s.StoppedAtLine > 0 {
		if s.UnsureTo > 0 {
			fmt.Fprintf(&b, "stopped: lines %d to %d were sent but no answer came, so they may or may not be jobs; lines after %d were not sent\n",
				s.StoppedAtLine, s.UnsureTo, s.UnsureTo)
		} else {
			fmt.Fprintf(&b, "stopped: lines from %d on were not sent (tail -n +%d FILE sends them)\n", s.StoppedAtLine, s.StoppedAtLine)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// enqueueFile runs `warren enqueue --file`: it reads o.File, sends its jobs
// in chunks, writes the ids to o.IDsOut, and prints the summary.
func (a *app) enqueueFile(ctx context.Context, c bulkClient, o *enqueueOptions, format string) error {
	// The flags' settings, which each job takes (a request line: those
	// it leaves out).
	template, err := o.request(nil)
	if err != nil {
		return err
	}
	build, err := newLineBuilder(o.Type, o.Requests, template)
	if err != nil {
		return err
	}

	in, size, closeIn, err := openInput(o.File, a.in)
	if err != nil {
		return err
	}
	defer closeIn()

	var (
		idsFile *os.File
		ids     *bufio.Writer
	)
	if o.IDsOut != "" {
		if idsFile, err = os.Create(o.IDsOut); err != nil {
			return fmt.Errorf("--ids-out: %w", err)
		}
		defer idsFile.Close() // on the early returns; closed and checked below
		ids = bufio.NewWriter(idsFile)
	}

	run := &bulkRun{
		sender: &batchSender{c: c, sleep: sleepCtx, maxCount: o.Chunk, maxBytes: maxChunkBytes},
		build:  build,
		ids:    ids,
		warn:   a.errOut,
	}
	run.summary.IDsOut = o.IDsOut
	p := newProgress(a.errOut, "enqueue", func() progressState { return run.progress(size) })
	p.Start()
	runErr := run.run(ctx, in)
	p.Stop()

	if ids != nil {
		err := ids.Flush()
		if cerr := idsFile.Close(); err == nil {
			err = cerr
		}
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("--ids-out: %w", err)
		}
	}
	s := &run.summary
	if s.Refusals == nil {
		s.Refusals = []*refusalGroup{} // [] in JSON, not null
	}
	if d := run.sender.rateWait; d > 0 {
		s.RateLimitedWait = durationText(d)
	}
	switch {
	case runErr != nil && ctx.Err() != nil:
		s.Error = "interrupted"
	case runErr != nil:
		s.Error = apiError(runErr).Error()
	}
	if isData(format) {
		err = writeData(a.out, format, s)
	} else {
		err = s.write(a.out)
	}
	switch {
	case runErr != nil:
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return apiError(runErr)
	case err != nil:
		return err
	case s.Refused > 0:
		return &exitError{code: exitRefused}
	}
	return nil
}

// openInput opens the --file to read: a file, or standard input for "-".
// size is the file's size when it is a regular file (for the progress
// bar), else 0.
func openInput(name string, stdin io.Reader) (r io.Reader, size int64, closeFn func(), err error) {
	if name == "-" {
		if stdin == nil {
			return nil, 0, nil, errors.New("--file -: no standard input")
		}
		return stdin, 0, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("--file: %w", err)
	}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, func() { f.Close() }, nil
}

// bulkRun is one run of `warren enqueue --file`.
type bulkRun struct {
	sender *batchSender
	build  *lineBuilder
	ids    *bufio.Writer // nil without --ids-out
	warn   io.Writer     // standard error

	mu        sync.Mutex // guards summary and read for progress
	summary   bulkSummary
	readBytes int64

	// The chunk being filled: its entries, and a slot for every line
	// since the last chunk was sent, in order, so that ids are written in
	// the order of the lines.
	entries []json.RawMessage
	bytes   int
	slots   []slot
}

// slot is one line of the chunk being filled: a job to send (entry ≥ 0),
// a blank line, or a line refused before sending.
type slot struct {
	line  int
	entry int // index in entries; -1 for none
	local *client.APIError
}

// maxSlots bounds the slots held between two chunks (blank or refused
// lines, which take no room in a chunk).
const maxSlots = 4 * maxChunk

func (r *bulkRun) progress(size int64) progressState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.summary
	text := fmt.Sprintf("%s lines  %s accepted  %s refused", count(s.Lines), count(s.Accepted), count(s.Refused))
	if note := r.sender.status(); note != "" {
		text += "  (" + note + ")"
	}
	return progressState{Done: r.readBytes, Total: size, Text: text}
}

// line is one line of input as read.
type line struct {
	n       int
	b       []byte
	tooLong bool
	err     error // a read error: the last line
}

// run reads every line of in and sends its jobs. It returns the error that
// stopped it early, if any, having recorded in the summary where.
func (r *bulkRun) run(ctx context.Context, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The reader is done when it closes lines, at the end of input; run
	// returns before that only to stop early, and then cancels it. It
	// ends once its current read is done: a read of a terminal or a pipe
	// cannot be interrupted, so run does not wait for that (the process
	// is about to exit).
	lines := make(chan line, 64)
	go readLines(ctx, in, lines)

	timer := time.NewTimer(flushAfter)
	timer.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return r.flush(ctx)
			}
			if l.err != nil {
				if err := r.flush(ctx); err != nil {
					return err
				}
				r.stop(l.n, 0)
				return fmt.Errorf("read line %d: %w", l.n, l.err)
			}
			wasEmpty := len(r.entries) == 0
			r.add(l)
			if len(r.entries) >= r.sender.maxCount || r.bytes >= r.sender.maxBytes || len(r.slots) >= maxSlots {
				timer.Stop()
				if err := r.flush(ctx); err != nil {
					return err
				}
			} else if wasEmpty && len(r.entries) > 0 {
				timer.Reset(flushAfter)
			}
		case <-timer.C:
			if err := r.flush(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			first := r.summary.Lines + 1 // the next line to read
			if len(r.slots) > 0 {
				first = r.slots[0].line
			}
			r.stop(first, 0)
			return ctx.Err()
		}
	}
}

// readLines sends the lines of in, numbered from 1, until its end or ctx's.
func readLines(ctx context.Context, in io.Reader, out chan<- line) {
	defer close(out)
	br := bufio.NewReaderSize(in, 64<<10)
	send := func(l line) bool {
		select {
		case out <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for n := 1; ; n++ {
		var (
			buf     []byte
			tooLong bool
			err     error
		)
		for {
			var part []byte
			part, err = br.ReadSlice('\n')
			if !tooLong {
				if len(buf)+len(part) > maxLineBytes {
					tooLong, buf = true, nil
				} else {
					buf = append(buf, part...)
				}
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err == io.EOF {
			if len(buf) > 0 || tooLong {
				send(line{n: n, b: buf, tooLong: tooLong})
			}
			return
		}
		if err != nil {
			send(line{n: n, err: err})
			return
		}
		if !send(line{n: n, b: buf, tooLong: tooLong}) {
			return
		}
	}
}

// add takes one line into the chunk being filled.
func (r *bulkRun) add(l line) {
	r.mu.Lock()
	r.summary.Lines++
	r.readBytes += int64(len(l.b))
	r.mu.Unlock()
	if l.tooLong {
		r.slots = append(r.slots, slot{line: l.n, entry: -1, local: &client.APIError{Code: "too_large",
			Message: fmt.Sprintf("the line is longer than %d MiB", maxLineBytes>>20)}})
		return
	}
	b := bytes.TrimSpace(l.b)
	if len(b) == 0 {
		r.mu.Lock()
		r.summary.Blank++
		r.mu.Unlock()
		r.slots = append(r.slots, slot{line: l.n, entry: -1})
		return
	}
	entry, refusal := r.build.entry(b)
	if refusal != nil {
		r.slots = append(r.slots, slot{line: l.n, entry: -1, local: refusal})
		return
	}
	if r.build.looksLikeRequest(b) {
		fmt.Fprintf(r.warn, "warren: line %d has top-level \"type\" and \"payload\" members; it is sent as a payload, whole, as every line is without --requests\n", l.n)
	}
	r.slots = append(r.slots, slot{line: l.n, entry: len(r.entries)})
	r.entries = append(r.entries, entry)
	r.bytes += len(entry)
}

// flush sends the chunk being filled, records what became of each of its
// lines, and starts a new one.
func (r *bulkRun) flush(ctx context.Context) error {
	var (
		res []client.BatchResult
		err error
	)
	if len(r.entries) > 0 {
		res, err = r.sender.send(ctx, r.entries)
	}
	// res holds the results of the first len(res) entries, even when err
	// stopped the rest.
	for i, s := range r.slots {
		if s.entry >= len(res) {
			if err == nil {
				err = fmt.Errorf("the API returned %d results for %d jobs", len(res), len(r.entries))
			}
			r.record(r.slots[:i], res)
			unsureTo := 0
			if unsure(err) {
				unsureTo = r.slots[len(r.slots)-1].line
			}
			r.stop(s.line, unsureTo)
			return err
		}
	}
	r.record(r.slots, res)
	r.entries, r.bytes, r.slots = r.entries[:0], 0, r.slots[:0]
	return nil
}

// record records the fate of each slot (of the chunk just sent, whose
// results are res) and writes its line of --ids-out.
func (r *bulkRun) record(slots []slot, res []client.BatchResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range slots {
		id := ""
		switch {
		case s.local != nil:
			r.summary.refuse(s.line, s.local)
		case s.entry < 0: // blank
		default:
			out := res[s.entry]
			if out.Error != nil {
				r.summary.refuse(s.line, out.Error)
			} else {
				r.summary.Accepted++
				id = out.Job.ID
			}
		}
		if r.ids != nil {
			r.ids.WriteString(id)
			r.ids.WriteByte('\n')
		}
	}
}

// stop records that the run stopped at line n, with lines up to unsureTo
// (when not zero) sent but unanswered.
func (r *bulkRun) stop(n, unsureTo int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.summary.StoppedAtLine = n
	r.summary.UnsureTo = unsureTo
}

// errNotSent marks an error that came before a chunk was sent again.
var errNotSent = errors.New("not sent")

// unsure reports whether a failed batch request may have been carried out
// all the same: the request went out and no answer came back (the
// connection broke, or Ctrl-C came while it was out). An answer from the
// API (an *APIError), a dial that failed, or a stop before sending means
// it was not.
func unsure(err error) bool {
	var ae *client.APIError
	return !errors.As(err, &ae) && !client.IsUnreachable(err) && !errors.Is(err, errNotSent)
}

// batchSender sends chunks of job requests, waiting out the API's rate
// limit, resending while it is briefly unavailable, and splitting a chunk
// that is too large for it.
type batchSender struct {
	c     bulkClient
	sleep func(ctx context.Context, d time.Duration) error
	// maxCount and maxBytes bound a chunk; a refusal for size lowers them.
	maxCount, maxBytes int

	mu       sync.Mutex // guards note and rateWait, which progress reads
	note     string
	rateWait time.Duration
}

// status is a note on what the sender is waiting for, or "".
func (s *batchSender) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.note
}

func (s *batchSender) setNote(note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note = note
}

// send sends entries and returns one result per entry, in order. On an
// error it returns the results of the entries that were settled before it
// (a prefix, when the chunk was split), and the error.
func (s *batchSender) send(ctx context.Context, entries []json.RawMessage) ([]client.BatchResult, error) {
	unavailable := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", errNotSent, err)
		}
		reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		res, err := s.c.EnqueueBatchJSON(reqCtx, entries)
		cancel()
		if err == nil {
			return res, nil
		}
		var ae *client.APIError
		isAPI := errors.As(err, &ae)
		switch {
		case isAPI && ae.Status == http.StatusTooManyRequests:
			// The key's rate: a pace to keep, not a failure. The wait is
			// the API's to say; Ctrl-C ends it.
			d := cmp.Or(ae.RetryAfter, time.Second)
			s.setNote(fmt.Sprintf("rate limited: sending again in %s", durationText(d)))
			err := s.sleep(ctx, d)
			s.mu.Lock()
			s.note, s.rateWait = "", s.rateWait+d
			s.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errNotSent, err)
			}
			continue
		case isAPI && tooLarge(ae) && len(entries) > 1:
			// Lower the bounds for the chunks to come, and send this
			// one in halves.
			half := len(entries) / 2
			size := 0
			for _, e := range entries[:half] {
				size += len(e)
			}
			s.maxCount, s.maxBytes = min(s.maxCount, half), min(s.maxBytes, max(size, 1))
			first, err := s.send(ctx, entries[:half])
			if err != nil {
				return first, err
			}
			second, err := s.send(ctx, entries[half:])
			return append(first, second...), err
		case isAPI && tooLarge(ae):
			// One job the API will not take as it is: refuse that line.
			return []client.BatchResult{{Error: &client.APIError{Code: ae.Code, Field: ae.Field, Message: ae.Message}}}, nil
		case (isAPI && ae.Status == http.StatusServiceUnavailable) || client.IsUnreachable(err):
			// Nothing of the batch was taken (the API takes a batch
			// whole or refuses it whole when RabbitMQ or Redis is away,
			// and an unreachable API took nothing): send it again, a few
			// times.
			if unavailable == maxUnavailableRetries {
				return nil, err
			}
			d := time.Second << unavailable
			if isAPI {
				d = max(d, ae.RetryAfter)
			}
			d = min(d, 30*time.Second)
			unavailable++
			s.setNote(fmt.Sprintf("API unavailable: sending again in %s (%d of %d)", durationText(d), unavailable, maxUnavailableRetries))
			err := s.sleep(ctx, d)
			s.setNote("")
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errNotSent, err)
			}
			continue
		}
		return nil, err
	}
}

// tooLarge reports whether the API refused a whole batch for its size: too
// many bytes, or more jobs than it or the key takes at once (or than the
// key may send in a minute).
func tooLarge(ae *client.APIError) bool {
	return ae.Status == http.StatusRequestEntityTooLarge ||
		(ae.Status == http.StatusBadRequest && ae.Code == "invalid_field" && ae.Field == "jobs")
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lineBuilder turns a line into the JSON of a job request.
type lineBuilder struct {
	typ      string
	requests bool
	// template is the flags' request (payload mode); defaults are its
	// members, which a request line takes when it has none of its own.
	template client.JobRequest
	defaults map[string]json.RawMessage
	checked  bool // looksLikeRequest has looked at the first payload
}

func newLineBuilder(typ string, requests bool, template client.JobRequest) (*lineBuilder, error) {
	b := &lineBuilder{typ: typ, requests: requests, template: template}
	if requests {
		t := template
		t.Type, t.Payload = "", nil
		raw, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("encode the flags' settings: %w", err)
		}
		if err := json.Unmarshal(raw, &b.defaults); err != nil {
			return nil, fmt.Errorf("encode the flags' settings: %w", err)
		}
		delete(b.defaults, "type")
		delete(b.defaults, "payload")
		if typ != "" {
			b.defaults["type"], _ = json.Marshal(typ)
		}
	}
	return b, nil
}

// entry returns the JSON of the job request line (trimmed, not empty)
// makes, or why it is refused before sending.
func (b *lineBuilder) entry(line []byte) (json.RawMessage, *client.APIError) {
	if !json.Valid(line) {
		var v any
		err := json.Unmarshal(line, &v)
		return nil, &client.APIError{Code: "invalid_json", Message: "the line is not valid JSON: " + jsonErrorText(err)}
	}
	if line[0] != '{' {
		var v any
		_ = json.Unmarshal(line, &v)
		if b.requests {
			return nil, &client.APIError{Code: "invalid_json", Message: "a job request must be a JSON object, not " + jsonKind(v)}
		}
		return nil, &client.APIError{Code: "invalid_field", Field: "payload", Message: "a payload must be a JSON object, not " + jsonKind(v)}
	}
	if !b.requests {
		req := b.template
		req.Payload = line
		raw, err := json.Marshal(req)
		if err != nil {
			return nil, &client.APIError{Code: "invalid_json", Message: err.Error()}
		}
		return raw, nil
	}
	if len(b.defaults) == 0 {
		return bytes.Clone(line), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, &client.APIError{Code: "invalid_json", Message: "the line is not valid JSON: " + jsonErrorText(err)}
	}
	_, hasDelay := m["delay"]
	_, hasRunAt := m["run_at"]
	changed := false
	for k, v := range b.defaults {
		if _, ok := m[k]; ok {
			continue
		}
		if (k == "delay" || k == "run_at") && (hasDelay || hasRunAt) {
			continue // the line says when; the flags' when would clash
		}
		m[k] = v
		changed = true
	}
	if !changed {
		return bytes.Clone(line), nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, &client.APIError{Code: "invalid_json", Message: err.Error()}
	}
	return raw, nil
}

// looksLikeRequest reports, for the first payload line only, whether it
// looks like a job request ("type" and "payload" at its top level): the
// user may have meant --requests. It is a warning, not a refusal, since a
// payload may hold any members.
func (b *lineBuilder) looksLikeRequest(line []byte) bool {
	if b.requests || b.checked {
		return false
	}
	b.checked = true
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return false
	}
	_, hasType := m["type"]
	_, hasPayload := m["payload"]
	return hasType && hasPayload
}
