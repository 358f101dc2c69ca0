package store

import (
	"flag"
	"fmt"
	"math/rand"
	"testing"
	"time"
)

var (
	modelSeed  = flag.Int64("store.seed", 0, "seed of the model-based test (0: time-based)")
	modelSteps = flag.Int("store.steps", 3000, "steps of the model-based test")
)

// TestModel drives the store and an in-memory model with the same random
// operations (batches of add/update/resize/clear, merge, subset copy,
// set-all-sizes, crop, compact, reset, reopen, long-lived views) and
// compares every list and calls Check after each step. A failure prints the
// seed; replay with -store.seed.
func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test ./store -run TestModel -store.seed=%d)", seed, seed)
	steps := *modelSteps
	if testing.Short() {
		steps /= 5
	}
	r := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	cs := 1 + r.Intn(20)
	nlist := 8 + r.Intn(40)
	conf := drawModelConf(r, nlist, cs)
	t.Logf("seed %d: %d lists of %d-byte codes, %v", seed, nlist, cs, conf)
	s, err := Create(dir, conf.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	m := newModel(nlist, cs)
	type held struct {
		v     *View
		m     *model
		until int
	}
	var views []held
	counts := map[string]int{}
	for step := 0; step < steps; step++ {
		op := r.Intn(100)
		var name string
		fail := func(err error) {
			t.Helper()
			t.Fatalf("seed %d step %d (%s): %v", seed, step, name, err)
		}
		switch {
		case op < 40:
			name = "batch"
			b, err := s.Begin()
			if err != nil {
				fail(err)
			}
			nm := m.clone()
			for k := 1 + r.Intn(6); k > 0; k-- {
				l := r.Intn(len(nm.lists))
				switch r.Intn(7) {
				case 0, 1, 2:
					ids, codes := randEntries(r, r.Intn(30), cs)
					pos, err := b.Add(l, ids, codes)
					if err != nil {
						fail(err)
					}
					if pos != len(nm.lists[l]) {
						fail(fmt.Errorf("add at %d, model size %d", pos, len(nm.lists[l])))
					}
					nm.lists[l] = append(nm.lists[l], toEnts(ids, codes, cs)...)
				case 3:
					n := 1 + r.Intn(20)
					ids, codes := randEntries(r, n, cs)
					lists := make([]int64, n)
					for i := range lists {
						lists[i] = int64(r.Intn(len(nm.lists)))
						nm.lists[lists[i]] = append(nm.lists[lists[i]], ent{ids[i], append([]byte(nil), codes[i*cs:(i+1)*cs]...)})
					}
					if err := b.AddSpread(lists, ids, codes); err != nil {
						fail(err)
					}
				case 4:
					if len(nm.lists[l]) == 0 {
						continue
					}
					pos := r.Intn(len(nm.lists[l]))
					n := 1 + r.Intn(len(nm.lists[l])-pos)
					ids, codes := randEntries(r, n, cs)
					if err := b.Update(l, pos, ids, codes); err != nil {
						fail(err)
					}
					copy(nm.lists[l][pos:], toEnts(ids, codes, cs))
				case 5:
					size := r.Intn(2*len(nm.lists[l]) + 3)
					if err := b.Resize(l, size); err != nil {
						fail(err)
					}
					for len(nm.lists[l]) < size {
						nm.lists[l] = append(nm.lists[l], ent{-1, make([]byte, cs)})
					}
					nm.lists[l] = nm.lists[l][:size]
				case 6:
					if r.Intn(3) == 0 {
						if err := b.Clear(l); err != nil {
							fail(err)
						}
						nm.lists[l] = nil
					} else {
						k := fmt.Sprint("k", r.Intn(5))
						switch r.Intn(4) {
						case 0: // an empty value is a record too
							b.SetMeta(k, []byte{})
							nm.meta[k] = ""
						case 1:
							b.DeleteMeta(k)
							delete(nm.meta, k)
						default:
							v := fmt.Sprint("v", r.Int())
							b.SetMeta(k, []byte(v))
							nm.meta[k] = v
						}
					}
				}
				if n, _ := b.ListLen(l); n != len(nm.lists[l]) {
					fail(fmt.Errorf("batch list %d length %d, model %d", l, n, len(nm.lists[l])))
				}
			}
			if r.Intn(10) == 0 {
				b.Abort()
			} else {
				if err := b.Commit(); err != nil {
					fail(err)
				}
				m = nm
			}
		case op < 55:
			name = "add"
			l := r.Intn(len(m.lists))
			ids, codes := randEntries(r, r.Intn(300), cs)
			if _, err := s.AddEntries(l, ids, codes); err != nil {
				fail(err)
			}
			m.lists[l] = append(m.lists[l], toEnts(ids, codes, cs)...)
		case op < 63:
			name = "merge"
			var srcs []Source
			var shifts []int64
			for k := 1 + r.Intn(3); k > 0; k-- {
				src := &memSource{cs: cs, lists: make([][]ent, len(m.lists))}
				for l := range src.lists {
					if r.Intn(2) == 0 {
						ids, codes := randEntries(r, r.Intn(40), cs)
						src.lists[l] = toEnts(ids, codes, cs)
					}
				}
				srcs = append(srcs, src)
				shifts = append(shifts, r.Int63n(1000))
			}
			headroom := conf.mergeHeadroom[r.Intn(len(conf.mergeHeadroom))]
			if _, err := s.MergeFrom(srcs, &MergeOptions{IDShift: shifts, Headroom: headroom}); err != nil {
				fail(err)
			}
			for i, src := range srcs {
				ms := src.(*memSource)
				for l, es := range ms.lists {
					for _, e := range es {
						m.lists[l] = append(m.lists[l], ent{e.id + shifts[i], e.code})
					}
				}
			}
		case op < 67:
			name = "copy subset"
			var sub Subset
			sel := func(l, i int, e ent) bool { return false }
			ntot := 0
			for _, es := range m.lists {
				ntot += len(es)
			}
			switch r.Intn(5) {
			case 0:
				a := r.Int63n(1 << 40)
				sub = Subset{SubsetIDRange, a, a + r.Int63n(1<<39)}
				sel = func(l, i int, e ent) bool { return e.id >= sub.A && e.id < sub.B }
			case 1:
				sub = Subset{SubsetIDMod, 2 + r.Int63n(5), 0}
				sub.B = r.Int63n(sub.A)
				sel = func(l, i int, e ent) bool { return e.id%sub.A == sub.B }
			case 2:
				a := r.Intn(ntot + 1)
				sub = Subset{SubsetElementRange, int64(a), int64(a + r.Intn(ntot-a+1))}
				ranges := map[int][2]int{}
				var acc, accA1, accA2 int
				for l, es := range m.lists {
					next := acc + len(es)
					na1, na2 := 0, 0
					if ntot > 0 {
						na1, na2 = next*int(sub.A)/ntot, next*int(sub.B)/ntot
					}
					ranges[l] = [2]int{na1 - accA1, na2 - accA2}
					acc, accA1, accA2 = next, na1, na2
				}
				sel = func(l, i int, e ent) bool { return i >= ranges[l][0] && i < ranges[l][1] }
			case 3:
				n := 1 + r.Int63n(4)
				sub = Subset{SubsetListFraction, r.Int63n(n), n}
				nl := int64(len(m.lists))
				sel = func(l, i int, e ent) bool { return int64(l)*sub.B/nl == sub.A }
			case 4:
				a := r.Intn(len(m.lists))
				sub = Subset{SubsetLists, int64(a), int64(a + 1 + r.Intn(3))}
				sel = func(l, i int, e ent) bool { return int64(l) >= sub.A && int64(l) < sub.B }
			}
			// Copy into the store itself: reads a view while writing.
			if _, err := s.CopySubsetTo(s, sub); err != nil {
				fail(err)
			}
			nm := m.clone()
			for l, es := range m.lists {
				for i, e := range es {
					if sel(l, i, e) {
						nm.lists[l] = append(nm.lists[l], e)
					}
				}
			}
			m = nm
		case op < 70:
			name = "set all sizes"
			sizes := make([]int, len(m.lists))
			for l := range sizes {
				sizes[l] = r.Intn(2*len(m.lists[l]) + 2)
				for len(m.lists[l]) < sizes[l] {
					m.lists[l] = append(m.lists[l], ent{-1, make([]byte, cs)})
				}
				m.lists[l] = m.lists[l][:sizes[l]]
			}
			if err := s.SetAllListsSizes(sizes); err != nil {
				fail(err)
			}
		case op < 72:
			if len(m.lists) < 6 || r.Intn(4) != 0 {
				continue
			}
			name = "crop"
			l0 := r.Intn(2)
			l1 := len(m.lists) - r.Intn(2)
			if err := s.Crop(l0, l1); err != nil {
				fail(err)
			}
			m.lists = m.lists[l0:l1]
		case op < 78:
			name = "compact"
			if _, err := s.CompactWith(CompactOptions{Headroom: conf.compactHeadroom[r.Intn(len(conf.compactHeadroom))]}); err != nil {
				fail(err)
			}
		case op < 79:
			name = "reset"
			if err := s.Reset(); err != nil {
				fail(err)
			}
			for l := range m.lists {
				m.lists[l] = nil
			}
		case op < 87:
			name = "reopen"
			for _, h := range views {
				h.v.Release()
			}
			views = nil
			if err := s.Close(); err != nil {
				fail(err)
			}
			var err error
			if s, err = Open(dir, &conf.opts); err != nil {
				fail(err)
			}
		default:
			name = "view"
			v, err := s.View()
			if err != nil {
				fail(err)
			}
			views = append(views, held{v, m.clone(), step + 1 + r.Intn(30)})
		}
		counts[name]++
		keep := views[:0]
		for _, h := range views {
			if h.until <= step {
				if err := compareView(h.v, h.m); err != nil {
					fail(fmt.Errorf("view of seq %d changed: %w", h.v.Seq(), err))
				}
				h.v.Release()
				continue
			}
			keep = append(keep, h)
		}
		views = keep
		if err := compareStore(s, m); err != nil {
			fail(err)
		}
		if err := s.Check(); err != nil {
			fail(err)
		}
	}
	for _, h := range views {
		if err := compareView(h.v, h.m); err != nil {
			t.Fatalf("seed %d: view changed: %v", seed, err)
		}
		h.v.Release()
	}
	st, _ := s.Stats()
	t.Logf("ops %v; final %d entries in %d lists, file %d bytes, free %d, pending %d", counts, st.NTotal, st.NumLists, st.FileBytes, st.FreeBytes, st.PendingBytes)
}

// modelConf is what TestModel draws per seed besides the operations: the
// store options, so the store's rare paths run on small data, and the
// headroom merges and compactions leave.
type modelConf struct {
	opts            Options
	mergeHeadroom   []float64 // drawn from per merge
	compactHeadroom []float64 // drawn from per compaction
}

// drawModelConf draws, each half the time: a map reserve of 4 to 512 KiB
// (the first growth past it remaps, while views hold the old mapping), a
// flush limit of 256 B to 128 KiB (batches write in the middle of Add and
// AddSpread), a concurrent-write threshold of at most 64 KiB (flushes and
// merges write from other goroutines), and a write-back window of 4 to
// 128 KiB (writers wait for write-back); NoSync a quarter of the time.
func drawModelConf(r *rand.Rand, nlist, cs int) modelConf {
	c := modelConf{opts: Options{NumLists: nlist, CodeSize: cs}}
	if r.Intn(2) == 0 {
		c.opts.MapReserve = 4096 << r.Intn(8)
	}
	if r.Intn(2) == 0 {
		c.opts.flushLimit = 256 << r.Intn(10)
	}
	if r.Intn(2) == 0 {
		c.opts.concurrentWrite = 1 + uint64(r.Intn(64<<10))
	}
	if r.Intn(2) == 0 {
		c.opts.writeBehindWindow = 4096 << r.Intn(6)
	}
	c.opts.NoSync = r.Intn(4) == 0
	c.mergeHeadroom = [][]float64{{0}, {0.1}, {1.5}, {0, 0, 0.1, 1.5}}[r.Intn(4)]
	c.compactHeadroom = [][]float64{{0}, {0.25}, {0, 0, 0.25}}[r.Intn(3)]
	return c
}

func (c modelConf) String() string {
	o := c.opts
	return fmt.Sprintf("options {MapReserve: %d, NoSync: %v, flushLimit: %d, concurrentWrite: %d, writeBehindWindow: %d} (0: default), merge headroom %v, compact headroom %v",
		o.MapReserve, o.NoSync, o.flushLimit, o.concurrentWrite, o.writeBehindWindow, c.mergeHeadroom, c.compactHeadroom)
}
