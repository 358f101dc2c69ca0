package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func fakeClock(b *Bar, t *time.Time) { b.now = func() time.Time { return *t } }

func TestAutoIsQuietOffTerminal(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, Auto, "merge", "entries", 100)
	b.Add(50)
	b.Finish()
	if buf.Len() != 0 {
		t.Fatalf("printed %q to a non-terminal", buf.String())
	}
}

func TestLinesWithETA(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	b := New(&buf, Lines, "add", "vectors", 1000)
	fakeClock(b, &now)
	b.start, b.last = now, now
	now = now.Add(11 * time.Second)
	b.Add(250) // 250 in 11 s: 750 left at ~22.7/s -> ETA 33 s
	now = now.Add(time.Second)
	b.Add(1) // inside the interval: no line
	now = now.Add(30 * time.Second)
	b.Set(1000, 0)
	b.Finish()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "25.0% 250/1000 vectors") || !strings.Contains(lines[0], "ETA 33s") {
		t.Fatalf("first line %q", lines[0])
	}
	if !strings.Contains(lines[2], "100.0%") || !strings.Contains(lines[2], "total") || strings.Contains(lines[2], "ETA") {
		t.Fatalf("last line %q", lines[2])
	}
}

func TestLinesSilentWhenShort(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, AutoLines, "add", "vectors", 10)
	b.Add(10)
	b.Finish()
	if buf.Len() != 0 {
		t.Fatalf("a short operation printed %q off a terminal", buf.String())
	}
}

func TestQuietAndNil(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, Quiet, "x", "y", 10)
	b.Add(10)
	b.Finish()
	var nb *Bar
	nb.Add(1)
	nb.Finish()
	if buf.Len() != 0 {
		t.Fatal("quiet bar printed")
	}
}
