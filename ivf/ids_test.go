package ivf

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
)

// TestIDsBookkeeping checks that sequential ids never repeat an id the
// index ever held, on disk and after a reopen, and that merges refuse to
// give two vectors one id unless told otherwise.
func TestIDsBookkeeping(t *testing.T) {
	data := synth.Clustered(1200, 8, 10, 9)
	x := data.Data
	mk := func() *Index {
		ix, err := NewFromFactory("IVF8,PQ4", 8, L2)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Train(x, data.N, &TrainOptions{Seed: 2}); err != nil {
			t.Fatal(err)
		}
		return ix
	}
	a := mk()
	dir := filepath.Join(t.TempDir(), "a")
	if err := a.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	// Explicit ids push the next sequential id past them.
	if err := a.AddWithIDs(x[:10*8], 10, []int64{5, 6, 7, 8, 9, 100, 101, 102, 103, 104}); err != nil {
		t.Fatal(err)
	}
	if first, err := a.Add(x[10*8:20*8], 10); err != nil || first != 105 {
		t.Fatalf("Add after ids up to 104: first id %d, %v", first, err)
	}
	if err := a.AddWithIDs(x[:8], 1, []int64{-1}); !errors.Is(err, ErrInput) {
		t.Fatalf("id -1 accepted: %v", err)
	}
	// Removal keeps the next id where it is.
	if _, err := a.RemoveRange(100, 200); err != nil {
		t.Fatal(err)
	}
	a.Close()
	a, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if next := a.NextID(); next != 115 {
		t.Fatalf("next id after reopen: %d, want 115", next)
	}

	// b holds ids 0..99: 5..9 are a's too.
	b := mk()
	ids := make([]int64, 100)
	for i := range ids {
		ids[i] = int64(i)
	}
	if err := b.AddWithIDs(x[:100*8], 100, ids); err != nil {
		t.Fatal(err)
	}
	err = a.MergeFrom(b, nil)
	if !errors.Is(err, ErrDuplicateIDs) || !strings.Contains(err.Error(), "5 ids") || !strings.Contains(err.Error(), "5, 6, 7, 8, 9;") {
		t.Fatalf("merge with shared ids: %v", err)
	}
	if n := a.NTotal(); n != 5 {
		t.Fatalf("refused merge changed the index: ntotal %d", n)
	}
	// The same check when the bounds are not recorded (an index made
	// before they were kept): the ids are scanned.
	a.mu.Lock()
	a.ids.known = false
	a.mu.Unlock()
	if err := a.MergeFrom(b, nil); !errors.Is(err, ErrDuplicateIDs) {
		t.Fatalf("merge with shared ids, bounds unknown: %v", err)
	}
	// A shift that clears a's ids, then AutoShift: numbered after a's.
	if err := a.MergeFrom(b, &MergeOptions{IDShift: 1000}); err != nil {
		t.Fatal(err)
	}
	if next := a.NextID(); next != 1100 {
		t.Fatalf("next id after merge shifted by 1000: %d", next)
	}
	if err := a.MergeFrom(b, &MergeOptions{AutoShift: true}); err != nil {
		t.Fatal(err)
	}
	if n, next := a.NTotal(), a.NextID(); n != 205 || next != 1200 {
		t.Fatalf("after auto-shifted merge: ntotal %d, next id %d; want 205, 1200", n, next)
	}
	// Duplicates asked for: merged, the next id after them.
	if err := a.MergeFrom(b, &MergeOptions{AllowDuplicateIDs: true}); err != nil {
		t.Fatal(err)
	}
	if n, next := a.NTotal(), a.NextID(); n != 305 || next != 1200 {
		t.Fatalf("after merge with duplicates: ntotal %d, next id %d", n, next)
	}
	// Shifts that overflow or make an id -1 are refused.
	for _, shift := range []int64{1<<63 - 50, -1} {
		if err := a.MergeFrom(b, &MergeOptions{IDShift: shift, AllowDuplicateIDs: true}); !errors.Is(err, ErrInput) {
			t.Fatalf("shift %d: %v", shift, err)
		}
	}
	a.Close()
	a, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, next := a.NTotal(), a.NextID(); n != 305 || next != 1200 {
		t.Fatalf("after reopen: ntotal %d, next id %d", n, next)
	}
}
