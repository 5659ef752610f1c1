package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/client"
)

// Live views: --watch on a read command (warren queues, warren job get,
// and any other that adds watchOptions) shows its view again every
// --interval until Ctrl-C.
//
// On a terminal each view replaces the last in place, under a header line
// with the command and the time. Elsewhere (a pipe, a file) the views
// follow one another: a table under a "# TIME" line, JSON as a stream of
// documents (one per view, which jq reads one at a time), YAML as documents
// separated by "---". Ctrl-C (the context ending) stops the watch with
// exit status 0.
//
// To add --watch to a command: hold a watchOptions in its options, call
// bind on its flags, resolve and Validate it with the command's options,
// and hand a.watch a render function that writes one view to the writer it
// is given (it must not write to a.out itself).

const (
	defaultWatchInterval = 2 * time.Second
	minWatchInterval     = 100 * time.Millisecond
	maxWatchInterval     = time.Hour
)

// watchOptions are the --watch and --interval flags of a command that can
// show its view again and again.
type watchOptions struct {
	// Watch shows the view again every Interval until Ctrl-C.
	Watch bool
	// Interval is the time from the start of one view to the next.
	Interval time.Duration
}

// bind adds --watch and --interval to cmd.
func (o *watchOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.Watch, "watch", false, "show the view again every --interval until Ctrl-C (redrawn in place on a terminal)")
	f.DurationVar(&o.Interval, "interval", defaultWatchInterval, "with --watch, time between views, such as 5s (implies --watch)")
}

// resolve makes --interval imply --watch.
func (o *watchOptions) resolve(cmd *cobra.Command) {
	if cmd.Flags().Changed("interval") {
		o.Watch = true
	}
}

// Validate reports what is wrong with the options, if anything.
func (o *watchOptions) Validate() error {
	if o.Watch && (o.Interval < minWatchInterval || o.Interval > maxWatchInterval) {
		return fmt.Errorf("--interval %s: want %s to %s, such as 2s", o.Interval, minWatchInterval, durationText(maxWatchInterval))
	}
	return nil
}

// renderFunc writes one view to w.
type renderFunc func(ctx context.Context, w io.Writer) error

// watch writes the view render makes to a.out: once, or with o.Watch again
// every o.Interval until ctx ends (Ctrl-C), which is not an error. title
// names the view in the header line, such as "warren queues".
//
// While watching, an error that a later view may not meet (the API
// unreachable or overloaded, a 5xx or 429) is shown in its place and the
// watch goes on; one that asking again cannot change (an unknown job, a key
// that is refused) ends it.
func (a *app) watch(ctx context.Context, o watchOptions, format, title string, render renderFunc) error {
	if !o.Watch {
		return render(ctx, a.out)
	}
	v := &viewer{w: a.out, errOut: a.errOut, tty: isTerminal(a.out), format: format,
		header: fmt.Sprintf("Every %s: %s", durationText(o.Interval), title)}
	if v.tty {
		v.size = func() (int, int, bool) { return termSize(a.out) }
	}
	for {
		start := time.Now()
		var buf bytes.Buffer
		err := render(ctx, &buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && !transient(err) {
			return err
		}
		if err := v.show(start, buf.Bytes(), err); err != nil {
			return err // stdout is gone (a closed pipe, say): nothing to watch for
		}
		t := time.NewTimer(time.Until(start.Add(o.Interval)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// transient reports whether an error may pass by itself, so that a watch
// should show it and go on.
func transient(err error) bool {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500 || ae.Status == http.StatusTooManyRequests || ae.Status == http.StatusRequestTimeout
	}
	// Not the API's answer: it could not be reached, or the connection
	// broke, or it answered something unreadable (a proxy's page).
	return true
}

// viewer writes the successive views of a watch.
type viewer struct {
	w, errOut io.Writer
	tty       bool
	format    string
	header    string
	// size returns the terminal's columns and rows; nil off a terminal.
	size func() (cols, rows int, ok bool)

	drawn bool // a view is on the screen
}

// show writes one view, made at t; err, if not nil, is the transient error
// that stopped the view from being made.
func (v *viewer) show(t time.Time, view []byte, err error) error {
	if v.tty {
		return v.redraw(t, view, err)
	}
	if err != nil {
		// The views on stdout stay whole; the error goes beside them.
		fmt.Fprintf(v.errOut, "%s: %v (trying again)\n", t.Format(time.TimeOnly), err)
		return nil
	}
	var b bytes.Buffer
	switch v.format {
	case formatJSON:
		// A stream of JSON documents, as jq reads them.
	case formatYAML:
		b.WriteString("---\n")
	default:
		if v.drawn {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "# %s\n", timeText(t))
	}
	b.Write(view)
	v.drawn = true
	_, werr := v.w.Write(b.Bytes())
	return werr
}

// redraw replaces the view on the terminal with this one, cut to the
// terminal's size: long lines are cut at its width, and rows that do not
// fit are counted on the last line.
func (v *viewer) redraw(t time.Time, view []byte, err error) error {
	cols, rows, ok := v.size()
	if !ok {
		cols, rows = 1<<16, 1<<16
	}
	lines := []string{v.header + strings.Repeat(" ", 2) + t.Format(time.TimeOnly), ""}
	if err != nil {
		lines = append(lines, "error: "+oneLine(err.Error())+" (trying again)", "")
	}
	lines = append(lines, strings.Split(strings.TrimRight(string(view), "\n"), "\n")...)
	if len(lines) > rows-1 { // keep the last row for the cursor
		hidden := len(lines) - (rows - 2)
		lines = append(lines[:rows-2], fmt.Sprintf("… %d more lines: make the terminal taller, or leave out --watch", hidden))
	}
	var b bytes.Buffer
	if !v.drawn {
		b.WriteString("\x1b[H\x1b[2J") // home, clear the screen
	} else {
		b.WriteString("\x1b[H") // home; each line clears what is left of the last view
	}
	for _, l := range lines {
		b.WriteString(cutWidth(l, cols))
		b.WriteString("\x1b[K\n")
	}
	b.WriteString("\x1b[J") // clear below
	v.drawn = true
	_, werr := v.w.Write(b.Bytes())
	return werr
}

// cutWidth cuts s to at most n runes (tabs are expanded by the tables
// before this, so a rune is a column for the text the views hold).
func cutWidth(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
