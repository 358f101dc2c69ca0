package store

import (
	"bytes"
	"math/rand"
	"slices"
	"testing"
)

// TestWriteBehind runs merges, compactions and in-place appends with a
// small write-behind window, with and without dropping written pages (and
// asking for list tails before appending, as for a store larger than
// memory), and checks that every entry reads back and the store checks
// out, before and after a reopen.
func TestWriteBehind(t *testing.T) {
	dropLimit() // settle the default before changing it
	oldDrop := dropAbove.Load()
	defer dropAbove.Store(oldDrop)
	opts := Options{NumLists: 200, CodeSize: 16, writeBehindWindow: 64 << 10}

	const nlist, cs = 200, 16
	r := rand.New(rand.NewSource(8))
	src := &memSource{cs: cs, lists: make([][]ent, nlist)}
	for l := range src.lists {
		ids, codes := randEntries(r, r.Intn(3000), cs)
		src.lists[l] = toEnts(ids, codes, cs)
	}
	for _, drop := range []bool{false, true} {
		if drop {
			dropAbove.Store(1)
		} else {
			dropAbove.Store(^uint64(0))
		}
		dir := t.TempDir()
		s, err := Create(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.MergeFrom([]Source{src, src}, &MergeOptions{Headroom: 0.1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompactWith(CompactOptions{Headroom: 0.05}); err != nil {
			t.Fatal(err)
		}
		extra := make([]ent, nlist) // one entry per list, appended in place
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for l := range nlist {
			ids, codes := randEntries(r, 1, cs)
			extra[l] = toEnts(ids, codes, cs)[0]
			if err := b.AddSpread([]int64{int64(l)}, ids, codes); err != nil {
				t.Fatal(err)
			}
		}
		offBefore := s.current().tab.get(7).off
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if len(src.lists[7]) > 100 && s.current().tab.get(7).off != offBefore {
			t.Fatal("the append into headroom moved the list")
		}
		if _, err := s.MergeFrom([]Source{src}, nil); err != nil {
			t.Fatal(err)
		}
		check := func(s *Store) {
			t.Helper()
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			v, err := s.View()
			if err != nil {
				t.Fatal(err)
			}
			defer v.Release()
			for l := range nlist {
				ids, codes, _ := v.ReadList(l)
				wids, wcodes, _ := src.ReadList(l)
				want := slices.Concat(wids, wids, []int64{extra[l].id}, wids)
				if !slices.Equal(ids, want) || !bytes.Equal(codes, slices.Concat(wcodes, wcodes, extra[l].code, wcodes)) {
					t.Fatalf("drop %v, list %d: %d entries read back, want %d", drop, l, len(ids), len(want))
				}
			}
		}
		check(s)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err = Open(dir, &opts)
		if err != nil {
			t.Fatal(err)
		}
		check(s)
		s.Close()
	}
}
