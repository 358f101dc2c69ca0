package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"syscall"
	"testing"
)

// idModel is a light reference for large batches: each list's ids in
// order, with every code derived from its id.
type idModel struct {
	cs    int
	lists [][]int64
}

func codeOf(id int64, cs int, dst []byte) {
	x := uint64(id)*0x9E3779B97F4A7C15 + 1
	for i := range dst[:cs] {
		x ^= x >> 29
		x *= 0xBF58476D1CE4E5B9
		dst[i] = byte(x >> 56)
	}
}

func (m *idModel) clone() *idModel {
	c := &idModel{cs: m.cs, lists: make([][]int64, len(m.lists))}
	for l := range m.lists {
		c.lists[l] = append([]int64(nil), m.lists[l]...)
	}
	return c
}

// entries makes n entries with fresh ids starting at *next.
func (m *idModel) entries(next *int64, n int) ([]int64, []byte) {
	ids := make([]int64, n)
	codes := make([]byte, n*m.cs)
	for i := range ids {
		ids[i] = *next
		*next++
		codeOf(ids[i], m.cs, codes[i*m.cs:])
	}
	return ids, codes
}

func (m *idModel) compare(v *View) error {
	want := make([]byte, m.cs)
	for l, es := range m.lists {
		ids, codes, err := v.ReadList(l)
		if err != nil {
			return err
		}
		if len(ids) != len(es) || len(codes) != len(es)*m.cs {
			return fmt.Errorf("list %d: store has %d entries (%d code bytes), model %d", l, len(ids), len(codes), len(es))
		}
		for i, id := range es {
			codeOf(id, m.cs, want)
			if ids[i] != id || string(codes[i*m.cs:(i+1)*m.cs]) != string(want) {
				return fmt.Errorf("list %d entry %d: store id %d, model %d", l, i, ids[i], id)
			}
		}
	}
	return nil
}

// spreadRound adds about bytes of entries to b: a few Add calls, then
// AddSpread calls whose entries go mostly to the lists below heavy (the
// others get one entry now and then), then, with addAfter, a few more Add
// calls (which sort the AddSpread entries into per-list buffers first).
func spreadRound(t *testing.T, b *Batch, m *idModel, r *rand.Rand, next *int64, bytes, heavy int, addAfter bool) {
	t.Helper()
	nlist := len(m.lists)
	add := func() {
		for k := 0; k < 3; k++ {
			l := r.Intn(nlist)
			ids, codes := m.entries(next, 1+r.Intn(50))
			pos, err := b.Add(l, ids, codes)
			if err != nil {
				t.Fatal(err)
			}
			if pos != len(m.lists[l]) {
				t.Fatalf("Add at %d, model size %d", pos, len(m.lists[l]))
			}
			m.lists[l] = append(m.lists[l], ids...)
		}
	}
	add()
	n := bytes / (m.cs + 8)
	for n > 0 {
		k := min(n, 1+r.Intn(20000))
		n -= k
		ids, codes := m.entries(next, k)
		lists := make([]int64, k)
		for i := range lists {
			l := r.Intn(heavy)
			if r.Intn(200) == 0 {
				l = r.Intn(nlist)
			}
			lists[i] = int64(l)
			m.lists[l] = append(m.lists[l], ids[i])
		}
		if err := b.AddSpread(lists, ids, codes); err != nil {
			t.Fatal(err)
		}
	}
	if addAfter {
		add()
	}
	for l := 0; l < nlist; l += 37 {
		if got, _ := b.ListLen(l); got != len(m.lists[l]) {
			t.Fatalf("ListLen(%d) = %d, model %d", l, got, len(m.lists[l]))
		}
	}
}

// TestSpreadLargeFlush drives the large-flush path of AddSpread batches
// (scatter concurrent with the writes, write-back started per range) for
// several code sizes: lists moving to new slots, lists appended in place,
// Add entries mixed in, and views of earlier commits that must not change.
func TestSpreadLargeFlush(t *testing.T) {
	for _, c := range []struct{ nlist, cs int }{{200, 16}, {200, 8}, {200, 5}, {200, 32}, {200, 64}, {listBufsSliceMax + 100, 16}} {
		t.Run(fmt.Sprintf("nlist=%d/cs=%d", c.nlist, c.cs), func(t *testing.T) {
			nlist, cs := c.nlist, c.cs
			s := mustCreate(t, t.TempDir(), nlist, cs)
			defer s.Close()
			m := &idModel{cs: cs, lists: make([][]int64, nlist)}
			r := rand.New(rand.NewSource(int64(cs)))
			var next int64
			for round, heavy := range []int{nlist, nlist / 2, nlist, nlist / 3} {
				old, oldM := mustView(t, s), m.clone()
				b, err := s.Begin()
				if err != nil {
					t.Fatal(err)
				}
				spreadRound(t, b, m, r, &next, 6<<20, heavy, round == 2)
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
				if err := oldM.compare(old); err != nil {
					t.Fatalf("round %d: view of the previous commit: %v", round, err)
				}
				old.Release()
				v := mustView(t, s)
				if err := m.compare(v); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				v.Release()
				if err := s.Check(); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		})
	}
}

// TestSpreadOverBufferLimit adds more than flushBufLimit in one batch, so
// AddSpread flushes in the middle of a call and lists move twice.
func TestSpreadOverBufferLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	const nlist, cs = 300, 8
	s := mustCreate(t, t.TempDir(), nlist, cs)
	defer s.Close()
	m := &idModel{cs: cs, lists: make([][]int64, nlist)}
	r := rand.New(rand.NewSource(1))
	var next int64
	b, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	spreadRound(t, b, m, r, &next, flushBufLimit+(8<<20), nlist, false)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	v := mustView(t, s)
	defer v.Release()
	if err := m.compare(v); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSpreadFlushENOSPC runs out of disk space in the middle of large
// AddSpread flushes: the commit fails, the committed state is untouched,
// and the store keeps working.
func TestSpreadFlushENOSPC(t *testing.T) {
	const nlist, cs = 150, 16
	ffs := newFaultFS(1)
	s, err := Create(t.TempDir(), Options{NumLists: nlist, CodeSize: cs, openData: ffs.open})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := &idModel{cs: cs, lists: make([][]int64, nlist)}
	r := rand.New(rand.NewSource(2))
	var next int64
	for round := 0; round < 12; round++ {
		full := round%2 == 1
		if full {
			ffs.mu.Lock()
			ffs.budget = int64(r.Intn(6 << 20))
			ffs.mu.Unlock()
		}
		nm := m.clone()
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		spreadRound(t, b, nm, r, &next, 5<<20, nlist-r.Intn(nlist/2), false)
		err = b.Commit()
		ffs.mu.Lock()
		ffs.budget = -1
		ffs.mu.Unlock()
		switch {
		case err == nil:
			m = nm
		case full && errors.Is(err, syscall.ENOSPC):
		default:
			t.Fatalf("round %d: %v", round, err)
		}
		v := mustView(t, s)
		if err := m.compare(v); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		v.Release()
		if err := s.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func mustView(t *testing.T, s *Store) *View {
	t.Helper()
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// shortWriter is a vectorWriter that writes at most max bytes per call and
// fails call failAt (0: never).
type shortWriter struct {
	dataFile
	max, calls, failAt int
}

func (w *shortWriter) writevAt(bufs [][]byte, off int64) (int, error) {
	w.calls++
	if w.calls == w.failAt {
		return 0, syscall.EIO
	}
	var out []byte
	for _, b := range bufs {
		out = append(out, b...)
	}
	return w.dataFile.WriteAt(out[:min(len(out), w.max)], off)
}

// TestWritevFull checks that writevFull resumes short vectored writes in
// the right place and reports a failed one.
func TestWritevFull(t *testing.T) {
	f, err := openOSFile(t.TempDir()+"/f", os.O_RDWR|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewSource(3))
	var bufs [][]byte
	var want []byte
	for i := 0; i < 40; i++ {
		b := make([]byte, r.Intn(3)*r.Intn(700))
		r.Read(b)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	const off = 100
	w := &shortWriter{dataFile: f, max: 333}
	if err := writevFull(w, slices.Clone(bufs), off); err != nil {
		t.Fatal(err)
	}
	if w.calls < 10 {
		t.Fatalf("%d vectored calls for %d bytes of at most %d", w.calls, len(want), w.max)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file differs from the buffers written")
	}
	w = &shortWriter{dataFile: f, max: 333, failAt: 3}
	if err := writevFull(w, slices.Clone(bufs), off); !errors.Is(err, syscall.EIO) {
		t.Fatalf("failed write: %v", err)
	}
}
