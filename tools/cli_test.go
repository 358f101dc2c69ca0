package tools

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/ivf"
)

// buildShelf compiles the real binary once per test run.
func buildShelf(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shelf")
	cmd := exec.Command("go", "build", "-o", bin, "./shelf")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	return bin
}

func TestDemoBinary(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	out, err := exec.Command(bin, "demo", "--n", "20000", "--dim", "32", "--nq", "200", "--json", "--dir", filepath.Join(dir, "idx")).CombinedOutput()
	if err != nil {
		t.Fatalf("shelf demo: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Fatalf("demo printed %d lines:\n%s", len(lines), out)
	}
	var last struct {
		NProbe   int     `json:"nprobe"`
		Recall10 float64 `json:"recall10"`
		QPS      float64 `json:"qps"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, out)
	}
	// Probing many lists of a PQ8 index of 32-d clustered data finds the
	// true neighbour in the top 10 for most queries.
	if last.Recall10 < 0.8 || last.QPS <= 0 {
		t.Fatalf("demo at nprobe %d: recall@10 %.3f, %.0f QPS", last.NProbe, last.Recall10, last.QPS)
	}
	if ix, err := ivf.OpenReadOnly(filepath.Join(dir, "idx")); err != nil {
		t.Fatalf("demo --dir left no index: %v", err)
	} else {
		ix.Close()
	}
	// The demo's JSON lines are what shelf plot draws.
	results := filepath.Join(dir, "demo.jsonl")
	if err := os.WriteFile(results, out, 0o644); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "recall-qps.png")
	if out, err := exec.Command(bin, "plot", "--results", results, "--out", png).CombinedOutput(); err != nil {
		t.Fatalf("shelf plot: %v\n%s", err, out)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Fatalf("plot wrote no picture: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"nosuch"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "unknown command") {
		t.Fatalf("unknown command: code %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := Main([]string{"demo", "--n", "-3"}, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("bad flag value: code %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := Main([]string{"demo", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Example:") {
		t.Fatalf("--help: code %d, stdout %q", code, stdout.String())
	}
}
