package ivf

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestVerify checks an index directory's lists against their CRCs: all
// of them, reported as the stage "verify"; an index in memory has none.
// (tools' TestVerifyBinary damages an index and finds the lists.)
func TestVerify(t *testing.T) {
	ix, ntotal, _, err := createTestIndex()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Verify(); !errors.Is(err, ErrParams) {
		t.Fatalf("Verify of an index in memory: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "idx")
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	var done, total int64
	ro, err := Open(dir, &OpenOptions{ReadOnly: true, Progress: func(stage string, d, n int64) {
		if stage == "verify" {
			done, total = d, n
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	bad, err := ro.Verify()
	if err != nil || len(bad) != 0 {
		t.Fatalf("Verify: %v %v", bad, err)
	}
	if done != ntotal || total != ntotal {
		t.Fatalf("verify progress %d of %d, want %d", done, total, ntotal)
	}
}
