package tools

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	out, err := exec.Command(bin, "demo", "--n", "50000", "--nlist", "64", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("shelf demo: %v\n%s", err, out)
	}
	for _, want := range []string{"add (batches", "merge of 4 shards", "compact", "checks passed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
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
