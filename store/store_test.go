package store

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBasicAddReadReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustCreate(t, dir, 8, 5)
	r := rand.New(rand.NewSource(1))
	m := newModel(8, 5)
	for i := 0; i < 50; i++ {
		l := r.Intn(8)
		ids, codes := randEntries(r, 1+r.Intn(40), 5)
		pos, err := s.AddEntries(l, ids, codes)
		if err != nil {
			t.Fatal(err)
		}
		if pos != len(m.lists[l]) {
			t.Fatalf("add returned position %d, want %d", pos, len(m.lists[l]))
		}
		m.lists[l] = append(m.lists[l], toEnts(ids, codes, 5)...)
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
	}
	if err := compareStore(s, m); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := compareStore(s, m); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := compareStore(ro, m); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.AddEntries(0, []int64{1}, make([]byte, 5)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("add on read-only store: %v, want ErrReadOnly", err)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing"), nil); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := OpenReadOnly(filepath.Join(dir, "missing"), nil); !errors.Is(err, ErrNotExist) {
		t.Fatalf("open read-only missing: %v", err)
	}
	if _, err := Create(dir, Options{NumLists: 0, CodeSize: 4}); err == nil {
		t.Fatal("create with 0 lists succeeded")
	}
	s := mustCreate(t, dir, 4, 4)
	if _, err := Create(dir, Options{NumLists: 4, CodeSize: 4}); !errors.Is(err, ErrExist) && !errors.Is(err, ErrLocked) {
		t.Fatalf("create over existing store: %v", err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	if _, err := s.AddEntries(4, []int64{1}, make([]byte, 4)); !errors.Is(err, ErrList) {
		t.Fatalf("list 4 of 4: %v", err)
	}
	if _, err := s.AddEntries(-1, []int64{1}, make([]byte, 4)); !errors.Is(err, ErrList) {
		t.Fatalf("list -1: %v", err)
	}
	if _, err := s.AddEntries(0, []int64{1}, make([]byte, 3)); !errors.Is(err, ErrCodeSize) {
		t.Fatalf("short code: %v", err)
	}
	if err := s.UpdateEntries(0, 0, []int64{1}, make([]byte, 4)); !errors.Is(err, ErrEntry) {
		t.Fatalf("update past end: %v", err)
	}
	if _, err := s.ListSize(9); !errors.Is(err, ErrList) {
		t.Fatalf("list size 9: %v", err)
	}
	v, _ := s.View()
	if _, err := v.Code(0, 0); !errors.Is(err, ErrEntry) {
		t.Fatalf("code of empty list: %v", err)
	}
	v.Release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEntries(0, []int64{1}, make([]byte, 4)); !errors.Is(err, ErrClosed) {
		t.Fatalf("add after close: %v", err)
	}
	// A truncated data file is reported, not mapped.
	path := filepath.Join(dir, dataName(1))
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEntries(1, make([]int64, 100), make([]byte, 400)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Truncate(path, headerSize+10); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open truncated: %v, want ErrCorrupt", err)
	}
	if _, err := OpenReadOnly(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open read-only truncated: %v, want ErrCorrupt", err)
	}
	// A data file with a bad header.
	if err := os.WriteFile(path, make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open zeroed header: %v, want ErrCorrupt", err)
	}
	os.Remove(path)
	if _, err := Open(dir, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open without data file: %v, want ErrCorrupt", err)
	}
}

func TestViewIsolation(t *testing.T) {
	s := mustCreate(t, t.TempDir(), 2, 3)
	defer s.Close()
	if _, err := s.AddEntries(0, []int64{1, 2}, []byte("aaabbb")); err != nil {
		t.Fatal(err)
	}
	v, _ := s.View()
	defer v.Release()
	// Update and grow: the old view must not change.
	if err := s.UpdateEntries(0, 0, []int64{9}, []byte("zzz")); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, 100)
	if _, err := s.AddEntries(0, ids, make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // churn so freed space would be reused
		if _, err := s.AddEntries(1, ids, make([]byte, 300)); err != nil {
			t.Fatal(err)
		}
		if err := s.Resize(1, 0); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := v.Codes(0)
	gids, _ := v.IDs(0)
	if string(got) != "aaabbb" || len(gids) != 2 || gids[0] != 1 || gids[1] != 2 {
		t.Fatalf("old view changed: %q %v", got, gids)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestMismatchedDataFile: a data file copied from another store is
// refused, naming the file, instead of being read as this store's lists.
func TestMismatchedDataFile(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	sa := mustCreate(t, a, 4, 8)
	sb := mustCreate(t, b, 4, 8)
	if _, err := sa.AddEntries(0, []int64{1}, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	sa.Close()
	sb.Close()
	raw, err := os.ReadFile(filepath.Join(b, dataName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, dataName(1)), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(a, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "another store") || !strings.Contains(err.Error(), dataName(1)) {
		t.Fatalf("open with another store's data file: %v", err)
	}
	if _, err := OpenReadOnly(a, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read-only open with another store's data file: %v", err)
	}
}

// TestSpreadManyLists drives the batch's map-based bookkeeping (used above
// 64K lists) with interleaved AddSpread and Add calls.
func TestSpreadManyLists(t *testing.T) {
	for _, nlist := range []int{100, listBufsSliceMax + 100} {
		s := mustCreate(t, t.TempDir(), nlist, 4)
		m := newModel(nlist, 4)
		r := rand.New(rand.NewSource(int64(nlist)))
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 6; round++ {
			n := 500 + r.Intn(500)
			ids, codes := randEntries(r, n, 4)
			lists := make([]int64, n)
			for i := range lists {
				lists[i] = int64(r.Intn(40)) * int64(nlist/40) // few lists, many entries each
				m.lists[lists[i]] = append(m.lists[lists[i]], toEnts(ids[i:i+1], codes[i*4:i*4+4], 4)...)
			}
			if err := b.AddSpread(lists, ids, codes); err != nil {
				t.Fatal(err)
			}
			l := int(lists[0])
			ids2, codes2 := randEntries(r, 3, 4)
			pos, err := b.Add(l, ids2, codes2)
			if err != nil {
				t.Fatal(err)
			}
			if pos != len(m.lists[l]) {
				t.Fatalf("nlist %d: Add after AddSpread at %d, want %d", nlist, pos, len(m.lists[l]))
			}
			m.lists[l] = append(m.lists[l], toEnts(ids2, codes2, 4)...)
			if got, _ := b.ListLen(int(lists[1])); got != len(m.lists[lists[1]]) {
				t.Fatalf("nlist %d: ListLen %d, want %d", nlist, got, len(m.lists[lists[1]]))
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := compareStore(s, m); err != nil {
			t.Fatalf("nlist %d: %v", nlist, err)
		}
		if err := s.Check(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// TestHeadroom: with headroom, a merge and a compaction leave room in
// every slot, so adds of up to that share append in place (no list moves
// and the file does not grow); without it, the first add to a list moves
// it. Bad headroom values are refused.
func TestHeadroom(t *testing.T) {
	const nlist, cs, per = 64, 8, 200
	r := rand.New(rand.NewSource(4))
	src := &memSource{cs: cs, lists: make([][]ent, nlist)}
	for l := range src.lists {
		ids, codes := randEntries(r, per+l, cs)
		src.lists[l] = toEnts(ids, codes, cs)
	}
	offsets := func(s *Store) []uint64 {
		cur := s.current()
		off := make([]uint64, nlist)
		for l := range off {
			off[l] = cur.tab.get(l).off
		}
		return off
	}
	addShare := func(s *Store, share float64) {
		t.Helper()
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for l := range nlist {
			ids, codes := randEntries(r, int(share*float64(per+l)), cs)
			if _, err := b.Add(l, ids, codes); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []float64{0, 0.2} {
		s := mustCreate(t, t.TempDir(), nlist, cs)
		if _, err := s.MergeFrom([]Source{src}, &MergeOptions{Headroom: h}); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.Stats(); (h == 0) != (st.FullLists == nlist) || (h > 0 && st.FullLists != 0) {
			t.Fatalf("headroom %v: %d of %d lists full after the merge", h, st.FullLists, nlist)
		}
		for round, compact := range []bool{false, true} {
			if compact {
				if _, err := s.CompactWith(CompactOptions{Headroom: h}); err != nil {
					t.Fatal(err)
				}
			}
			before, end := offsets(s), s.alloc.End()
			addShare(s, 0.1)
			after := offsets(s)
			moved := 0
			for l := range after {
				if after[l] != before[l] {
					moved++
				}
			}
			if h > 0 && (moved != 0 || s.alloc.End() != end) {
				t.Fatalf("headroom %v, round %d: adds of 10%% moved %d lists, file %d -> %d bytes", h, round, moved, end, s.alloc.End())
			}
			if h == 0 && moved != nlist {
				t.Fatalf("exact slots, round %d: adds moved %d of %d lists", round, moved, nlist)
			}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
		}
		// Every entry is there, in order: the merged ones first.
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		for l := range nlist {
			ids, codes, _ := v.ReadList(l)
			wids, wcodes, _ := src.ReadList(l)
			if len(ids) < len(wids) || !slices.Equal(ids[:len(wids)], wids) || !bytes.Equal(codes[:len(wcodes)], wcodes) {
				t.Fatalf("headroom %v list %d: merged entries changed", h, l)
			}
		}
		v.Release()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := mustCreate(t, t.TempDir(), nlist, cs)
	defer s.Close()
	for _, h := range []float64{-0.1, 5, math.NaN()} {
		if _, err := s.MergeFrom([]Source{src}, &MergeOptions{Headroom: h}); err == nil {
			t.Fatalf("merge with headroom %v accepted", h)
		}
		if _, err := s.CompactWith(CompactOptions{Headroom: h}); err == nil {
			t.Fatalf("compaction with headroom %v accepted", h)
		}
	}
}
