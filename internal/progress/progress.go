package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Mode selects how a Bar shows itself.
type Mode int

const (
	// Auto draws a bar on a terminal and stays silent otherwise.
	Auto Mode = iota
	// Lines prints a plain line every 10 s, and one at the end if it
	// printed any: long operations leave a trace in logs, short ones
	// nothing.
	Lines
	// AutoLines draws a bar on a terminal and prints Lines otherwise.
	AutoLines
	// Quiet shows nothing.
	Quiet
)

// Bar is the progress of one operation. Its methods are safe for
// concurrent use, and cheap enough to call per item: drawing is rate
// limited.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	unit     string
	total    int64
	done     int64
	start    time.Time
	last     time.Time
	interval time.Duration
	tty      bool
	silent   bool
	printed  bool
	finished bool
	now      func() time.Time
}

// New starts a bar for an operation of total units (0: unknown) labelled
// label, counting unit ("vectors", "entries", ...).
func New(w io.Writer, mode Mode, label, unit string, total int64) *Bar {
	b := &Bar{w: w, label: label, unit: unit, total: total, now: time.Now}
	b.start = b.now()
	switch mode {
	case Quiet:
		b.silent = true
	case Auto:
		b.tty = IsTerminal(w)
		b.silent = !b.tty
		b.interval = 100 * time.Millisecond
	case Lines:
		b.interval = 10 * time.Second
	case AutoLines:
		b.tty = IsTerminal(w)
		b.interval = 10 * time.Second
		if b.tty {
			b.interval = 100 * time.Millisecond
		}
	}
	b.last = b.start
	return b
}

// Add records n more units done.
func (b *Bar) Add(n int64) { b.Set(-1, n) }

// Set records done units done in all (pass add=0), or adds add when done < 0.
func (b *Bar) Set(done, add int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if done >= 0 {
		b.done = done
	} else {
		b.done += add
	}
	if b.silent || b.finished {
		return
	}
	if t := b.now(); t.Sub(b.last) >= b.interval {
		b.last = t
		b.draw(t, false)
	}
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if !b.silent && (b.tty || b.printed) {
		b.draw(b.now(), true)
	}
}

// Line formats the bar's state as one line (without a bar), for tests
// and logs.
func (b *Bar) Line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text(b.now(), false)
}

func (b *Bar) text(t time.Time, final bool) string {
	el := t.Sub(b.start)
	rate := 0.0
	if el > 0 {
		rate = float64(b.done) / el.Seconds()
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: ", b.label)
	unit := ""
	if b.unit != "" {
		unit = " " + b.unit
	}
	if b.total > 0 {
		fmt.Fprintf(&sb, "%5.1f%% ", 100*float64(b.done)/float64(b.total))
		fmt.Fprintf(&sb, "%d/%d%s", b.done, b.total, unit)
	} else {
		fmt.Fprintf(&sb, "%d%s", b.done, unit)
	}
	fmt.Fprintf(&sb, ", %s/s, %s", human(rate), round(el))
	if final {
		sb.WriteString(" total")
	} else if b.total > 0 && rate > 0 && b.done < b.total {
		eta := time.Duration(float64(b.total-b.done) / rate * float64(time.Second))
		fmt.Fprintf(&sb, ", ETA %s", round(eta))
	}
	return sb.String()
}

func (b *Bar) draw(t time.Time, final bool) {
	b.printed = true
	s := b.text(t, final)
	if !b.tty {
		fmt.Fprintln(b.w, s)
		return
	}
	const width = 24
	bar := ""
	if b.total > 0 {
		n := int(float64(width) * float64(b.done) / float64(b.total))
		if n > width {
			n = width
		}
		bar = "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "] "
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(b.w, "\r\x1b[K%s%s%s", bar, s, end)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

func human(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
