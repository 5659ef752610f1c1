package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress shows how far a long command has got, on standard error: on a
// terminal a bar redrawn in place a few times a second; elsewhere (a log, a
// pipe) a plain line every plainEvery, the first only after plainEvery, so
// that a quick run prints none. Start it, then Stop it before printing
// anything else to the same stream.
type progress struct {
	w     io.Writer
	tty   bool
	label string // what is going on, such as "enqueue"
	// state returns the figures to show; it is called from progress's own
	// goroutine, so it must be safe for that.
	state func() progressState
	// cols returns the terminal's width; nil or 0 means 80.
	cols func() int

	start   time.Time
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	drawn   bool // a line was drawn: owned by the drawing goroutine until Stop
}

// progressState is what a progress line shows.
type progressState struct {
	// Done of Total is drawn as a bar and a percentage; a Total of zero
	// (not known) draws none.
	Done, Total int64
	// Text is the counts, for people, such as "1,200 accepted  3 refused".
	Text string
}

const (
	ttyEvery   = 200 * time.Millisecond
	plainEvery = 10 * time.Second
	barWidth   = 24
)

// newProgress returns a progress for w (a terminal or not, as isTerminal
// says), not yet started.
func newProgress(w io.Writer, label string, state func() progressState) *progress {
	p := &progress{w: w, tty: isTerminal(w), label: label, state: state}
	if p.tty {
		p.cols = func() int {
			c, _, _ := termSize(w)
			return c
		}
	}
	return p
}

// Start starts drawing; the goroutine it starts ends with Stop.
func (p *progress) Start() {
	p.start = time.Now()
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	every := plainEvery
	if p.tty {
		every = ttyEvery
	}
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw(time.Now())
			}
		}
	}()
}

// Stop stops drawing and waits for the drawing to end. On a terminal, if
// it drew anything, it draws the final state and ends its line, so that
// what is printed next starts on a line of its own. It is safe to call
// twice.
func (p *progress) Stop() {
	p.once.Do(func() {
		if p.stop == nil {
			return // never started
		}
		close(p.stop)
		<-p.stopped
		if p.tty && p.drawn {
			p.draw(time.Now())
			fmt.Fprintln(p.w)
		}
	})
}

// draw writes the progress line as it stands at now.
func (p *progress) draw(now time.Time) {
	p.drawn = true
	s := p.state()
	elapsed := durationText(now.Sub(p.start).Truncate(time.Second))
	if now.Sub(p.start) < time.Second {
		elapsed = "0s"
	}
	if !p.tty {
		line := p.label + ": " + s.Text
		if s.Total > 0 {
			line += fmt.Sprintf(" (%d%%)", percent(s.Done, s.Total))
		}
		fmt.Fprintf(p.w, "%s, %s so far\n", line, elapsed)
		return
	}
	var b strings.Builder
	b.WriteString(p.label)
	if s.Total > 0 {
		fill := int(int64(barWidth) * min(s.Done, s.Total) / s.Total)
		fmt.Fprintf(&b, " %s%s %3d%%", strings.Repeat("█", fill), strings.Repeat("░", barWidth-fill), percent(s.Done, s.Total))
	}
	fmt.Fprintf(&b, "  %s  %s", s.Text, elapsed)
	cols := 80
	if p.cols != nil {
		if c := p.cols(); c > 0 {
			cols = c
		}
	}
	// Carriage return, the line cut short of the last column (writing
	// there wraps some terminals), then clear to the end of the line.
	fmt.Fprintf(p.w, "\r%s\x1b[K", cutWidth(b.String(), cols-1))
}

// percent is done of total in whole percent, 0 to 100.
func percent(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return min(100, max(0, done*100/total))
}

// count writes n with thousands separators, such as 100,000.
func count[N int | int64](n N) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
