package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecio"
)

// TestReadOnlyUnregistered searches and reports on an index whose reader
// registration cannot be written (readers/ is a file here; no write
// access or a full disk do the same): the commands work, with a one-line
// note saying the read is unregistered.
func TestReadOnlyUnregistered(t *testing.T) {
	bin := buildShelf(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "base.fvecs")
	if err := vecio.WriteFvecs(data, synth.Clustered(3000, 16, 20, 4)); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(dir, "idx")
	encOK(t, bin, "build", "--data", data, "--index", idx, "--factory", "IVF16,PQ4", "--quiet")
	readers := filepath.Join(idx, "lists", "readers")
	if err := os.RemoveAll(readers); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readers, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"stats", "--index", idx},
		{"search", "--index", idx, "--queries", data, "--k", "5", "--nprobe", "4"},
	} {
		code, out, errOut := encRun(t, bin, args...)
		if code != 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "without registering as a reader") {
			t.Fatalf("shelf %s on an index it cannot register with: exit %d\n%s%s", args[0], code, out, errOut)
		}
	}
}
