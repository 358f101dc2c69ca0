package store

import (
	"errors"
	"math/rand"
	"os"
	"slices"
	"testing"
)

// TestListReader: positioned reads of every list, whole and in chunks of
// every size from 1 entry, direct and buffered, into buffers at every
// alignment, return exactly the view's entries, and the chunks' sums
// verify in any order. Lists with room in their slots (appends after a
// merge with headroom) make the codes and ids two regions far apart.
func TestListReader(t *testing.T) {
	dir := t.TempDir()
	const nlist, cs = 12, 5
	s := mustCreate(t, dir, nlist, cs)
	defer s.Close()
	r := rand.New(rand.NewSource(3))
	m := newModel(nlist, cs)
	for round := 0; round < 4; round++ {
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for l := 0; l < nlist; l++ {
			n := r.Intn(3000)
			if l == 0 {
				n = 0 // an empty list
			}
			ids, codes := randEntries(r, n, cs)
			if _, err := b.Add(l, ids, codes); err != nil {
				t.Fatal(err)
			}
			m.lists[l] = append(m.lists[l], toEnts(ids, codes, cs)...)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	for _, direct := range []bool{false, true} {
		lr, err := v.ListReader(direct)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("direct asked %v, got %v", direct, lr.Direct())
		for l := 0; l < nlist; l++ {
			wantIDs, wantCodes, _ := v.ReadList(l)
			size := len(wantIDs)
			for _, chunk := range []int{1, 7, 100, 1000, size + 1} {
				if chunk > size+1 || (chunk == 1 && l > 2) {
					continue
				}
				buf := make([]byte, lr.BufferSize(chunk)+64)
				buf = buf[r.Intn(64):]
				if got := lr.ChunkEntries(len(buf)); got < chunk {
					t.Fatalf("ChunkEntries(%d) = %d < %d", len(buf), got, chunk)
				}
				var sums []ChunkSum
				for first := 0; first < size; first += chunk {
					n := min(chunk, size-first)
					ids, codes, sum, err := lr.Read(l, first, n, buf)
					if err != nil {
						t.Fatalf("list %d [%d,+%d): %v", l, first, n, err)
					}
					if !slices.Equal(ids, wantIDs[first:first+n]) || !slices.Equal(codes, wantCodes[first*cs:(first+n)*cs]) {
						t.Fatalf("direct %v list %d chunk [%d,+%d): wrong entries", direct, l, first, n)
					}
					sums = append(sums, sum)
				}
				r.Shuffle(len(sums), func(i, j int) { sums[i], sums[j] = sums[j], sums[i] })
				if err := lr.Verify(l, sums); err != nil {
					t.Fatalf("list %d in chunks of %d: %v", l, chunk, err)
				}
				if len(sums) > 1 {
					if err := lr.Verify(l, sums[1:]); err == nil {
						t.Fatalf("list %d: a chunk missing, yet verified", l)
					}
					if err := lr.Verify(l, append(sums, sums[0])); err == nil {
						t.Fatalf("list %d: a chunk twice, yet verified", l)
					}
				}
			}
		}
		if _, _, _, err := lr.Read(1, 0, 1, make([]byte, 10)); err == nil {
			t.Fatal("a buffer too small was accepted")
		}
		if _, _, _, err := lr.Read(1, 0, len(m.lists[1])+1, make([]byte, lr.BufferSize(len(m.lists[1])+1))); !errors.Is(err, ErrEntry) {
			t.Fatalf("entries past the list: %v", err)
		}
		if _, err := lr.Offset(nlist); !errors.Is(err, ErrList) {
			t.Fatalf("list %d of %d: %v", nlist, nlist, err)
		}
	}
}

// TestListReaderDetectsDamage: a flipped byte in a list's codes or ids
// is found by Verify of the chunks read, which names the list and the
// part, and wraps ErrCorrupt.
func TestListReaderDetectsDamage(t *testing.T) {
	dir := t.TempDir()
	const nlist, cs = 4, 8
	s := mustCreate(t, dir, nlist, cs)
	m := newModel(nlist, cs)
	fillStore(t, s, m, rand.New(rand.NewSource(4)), 500)
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	e := v.st.tab.get(2)
	path := v.st.m.name()
	v.Release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for part, off := range map[string]int64{"codes": int64(e.off) + 17, "ids": int64(e.off+align8(e.cap*cs)) + 8*300 + 3} {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x10
		if _, err := f.WriteAt(b[:], off); err != nil {
			t.Fatal(err)
		}
		f.Close()
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		lr, err := v.ListReader(true)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, lr.BufferSize(200))
		var sums []ChunkSum
		for first := 0; first < 500; first += 200 {
			_, _, sum, err := lr.Read(2, first, min(200, 500-first), buf)
			if err != nil {
				t.Fatal(err)
			}
			sums = append(sums, sum)
		}
		err = lr.Verify(2, sums)
		var le *ListError
		if !errors.As(err, &le) || !errors.Is(err, ErrCorrupt) || le.List != 2 || le.Part != part {
			t.Fatalf("flipped %s byte: Verify says %v", part, err)
		}
		t.Log(err)
		v.Release()
		s.Close()
		// Restore the byte for the next part.
		f, _ = os.OpenFile(path, os.O_RDWR, 0)
		b[0] ^= 0x10
		f.WriteAt(b[:], off)
		f.Close()
	}
}
