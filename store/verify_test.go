package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestCRCShift checks crcShift against CRCs of concatenations, the
// identity Update's CRC patch rests on.
func TestCRCShift(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		a, b := make([]byte, r.Intn(100)), make([]byte, r.Intn(5000))
		if i%50 == 0 {
			b = make([]byte, 1<<20+r.Intn(100))
		}
		r.Read(a)
		r.Read(b)
		want := crc32.Checksum(append(append([]byte(nil), a...), b...), castagnoli)
		if got := crcShift(crc32.Checksum(a, castagnoli), uint64(len(b))) ^ crc32.Checksum(b, castagnoli); got != want {
			t.Fatalf("len %d + %d: combined %08x, want %08x", len(a), len(b), got, want)
		}
	}
}

// TestCRCReplace checks that patching a list's CRCs for overwritten
// entries gives the CRCs of the list rewritten whole.
func TestCRCReplace(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 300; i++ {
		cs := 1 + r.Intn(20)
		n := 1 + r.Intn(200)
		ids, codes := randEntries(r, n, cs)
		pos := r.Intn(n)
		k := 1 + r.Intn(n-pos)
		nids, ncodes := randEntries(r, k, cs)
		old := listCRC{}.extend(codes, ids)
		oldCodes := append([]byte(nil), codes[pos*cs:(pos+k)*cs]...)
		oldIDs := append([]byte(nil), int64Bytes(ids[pos:pos+k])...)
		copy(codes[pos*cs:], ncodes)
		copy(ids[pos:], nids)
		got := old.replace(oldCodes, oldIDs, ncodes, int64Bytes(nids), uint64(n-pos-k), uint64(cs))
		if want := (listCRC{}).extend(codes, ids); got != want {
			t.Fatalf("entries [%d, %d) of %d replaced: %+v, want %+v", pos, pos+k, n, got, want)
		}
	}
}

// buildDamageStore makes a store whose file holds every kind of byte:
// lists appended in place and moved, merged with headroom, updated,
// shrunk (bytes past a list's size), cleared (free space), codes of 12
// bytes (padding before the ids).
func buildDamageStore(t *testing.T, dir string) *Store {
	t.Helper()
	const nlist, cs = 16, 12
	s := mustCreate(t, dir, nlist, cs)
	r := rand.New(rand.NewSource(3))
	for k := 0; k < 5; k++ {
		b, err := s.Begin()
		must(t, err)
		for i := 0; i < 10; i++ {
			ids, codes := randEntries(r, 1+r.Intn(40), cs)
			if _, err := b.Add(r.Intn(nlist), ids, codes); err != nil {
				t.Fatal(err)
			}
		}
		must(t, b.Commit())
	}
	src := &memSource{cs: cs, lists: make([][]ent, nlist)}
	for l := range src.lists {
		ids, codes := randEntries(r, r.Intn(30), cs)
		src.lists[l] = toEnts(ids, codes, cs)
	}
	if _, err := s.MergeFrom([]Source{src}, &MergeOptions{Headroom: 0.5}); err != nil {
		t.Fatal(err)
	}
	ids, codes := randEntries(r, 3, cs)
	must(t, s.UpdateEntries(2, 1, ids, codes))
	if n, _ := s.ListSize(5); n > 2 {
		must(t, s.Resize(5, n/2))
	}
	b, _ := s.Begin()
	must(t, b.Clear(7))
	must(t, b.Commit())
	must(t, s.Check())
	return s
}

// livePart is the bytes of one part of a list in the data file.
type livePart struct {
	list     int
	part     string
	off, end uint64
}

func liveParts(v *View) []livePart {
	cs := uint64(v.CodeSize())
	var out []livePart
	for l := 0; l < v.NumLists(); l++ {
		e := v.st.tab.get(l)
		for p, name := range partNames {
			if off, n := partRange(e, p, cs); n > 0 {
				out = append(out, livePart{l, name, off, off + n})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].off < out[j].off })
	return out
}

// flipper flips bytes of a data file and puts them back.
type flipper struct {
	t *testing.T
	f *os.File
}

func openFlipper(t *testing.T, v *View) *flipper {
	f, err := os.OpenFile(v.st.m.name(), os.O_RDWR, 0)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return &flipper{t, f}
}

// flip XORs the byte at off with x (not 0) and returns a function that
// restores it.
func (fl *flipper) flip(off uint64, x byte) func() {
	var b [1]byte
	if _, err := fl.f.ReadAt(b[:], int64(off)); err != nil {
		fl.t.Fatal(err)
	}
	old := b[0]
	b[0] ^= x
	if _, err := fl.f.WriteAt(b[:], int64(off)); err != nil {
		fl.t.Fatal(err)
	}
	return func() {
		if _, err := fl.f.WriteAt([]byte{old}, int64(off)); err != nil {
			fl.t.Fatal(err)
		}
	}
}

// TestVerifyFindsEveryFlip flips one random byte of the data file at a
// time, half of them inside a list's codes or ids, half elsewhere (slack
// past a list's size, padding, free space): Verify, Check and View.Verify
// name the list, the part and its byte range for every flip of a list's
// bytes (CRC-32C catches every error within 32 bits), and nothing for the
// others. The same holds for a read-only process.
func TestVerifyFindsEveryFlip(t *testing.T) {
	dir := t.TempDir()
	s := buildDamageStore(t, dir)
	trials := 400
	if testing.Short() {
		trials = 100
	}
	run := func(s *Store, trials int, seed int64) {
		v := mustView(t, s)
		defer v.Release()
		live := liveParts(v)
		var liveBytes uint64
		for _, p := range live {
			liveBytes += p.end - p.off
		}
		slots := v.st.tab.slotsByOffset(v.CodeSize())
		fl := openFlipper(t, v)
		r := rand.New(rand.NewSource(seed))
		var hit, missed int
		for i := 0; i < trials; i++ {
			var off uint64
			var want *livePart
			if i%2 == 0 {
				k := uint64(r.Int63n(int64(liveBytes)))
				for j := range live {
					if n := live[j].end - live[j].off; k < n {
						want, off = &live[j], live[j].off+k
						break
					} else {
						k -= n
					}
				}
			} else {
				// Anywhere, or (one in two) inside a slot: slack past a
				// list's size, padding between codes and ids.
				lo, hi := uint64(headerSize), v.st.fsize
				for {
					if i%4 == 1 {
						u := slots[r.Intn(len(slots))]
						lo, hi = u[0], u[1]
					}
					off = lo + uint64(r.Int63n(int64(hi-lo)))
					j := sort.Search(len(live), func(j int) bool { return live[j].end > off })
					if j == len(live) || off < live[j].off {
						break
					}
				}
			}
			restore := fl.flip(off, byte(1+r.Intn(255)))
			bad, err := s.Verify(nil)
			must(t, err)
			if want == nil {
				if len(bad) != 0 {
					t.Fatalf("flip at %d, outside every list: Verify reports %v", off, bad[0])
				}
				missed++
				restore()
				continue
			}
			if len(bad) != 1 || bad[0].List != want.list || bad[0].Part != want.part || bad[0].Off != want.off || bad[0].End != want.end {
				t.Fatalf("flip at %d in list %d's %s [%d, %d): Verify reports %v", off, want.list, want.part, want.off, want.end, bad)
			}
			if bad[0].File != v.st.m.name() || !errors.Is(bad[0], ErrCorrupt) {
				t.Fatalf("error %v: file %q, or not ErrCorrupt", bad[0], bad[0].File)
			}
			if err := v.Verify(want.list); !errors.As(err, new(*ListError)) {
				t.Fatalf("View.Verify(%d) after a flip in it: %v", want.list, err)
			}
			if i%10 == 0 {
				var le *ListError
				if err := s.Check(); !errors.As(err, &le) || le.List != want.list {
					t.Fatalf("Check after a flip in list %d: %v", want.list, err)
				}
			}
			hit++
			restore()
		}
		if bad, err := s.Verify(nil); err != nil || len(bad) != 0 {
			t.Fatalf("restored file: %v %v", bad, err)
		}
		t.Logf("%d flips in lists, all found; %d elsewhere, none reported (%d live bytes of %d)", hit, missed, liveBytes, v.st.fsize-headerSize)
	}
	run(s, trials, 4)
	must(t, s.Close())
	ro, err := OpenReadOnly(dir, nil)
	must(t, err)
	defer ro.Close()
	run(ro, trials/4, 5)
	must(t, ro.Check())
}

// TestCheckList checks bytes a caller read itself.
func TestCheckList(t *testing.T) {
	s := mustCreate(t, t.TempDir(), 4, 5)
	defer s.Close()
	r := rand.New(rand.NewSource(6))
	ids, codes := randEntries(r, 20, 5)
	if _, err := s.AddEntries(1, ids, codes); err != nil {
		t.Fatal(err)
	}
	v := mustView(t, s)
	defer v.Release()
	must(t, v.CheckList(1, ids, codes))
	if err := v.CheckList(0, nil, nil); err != nil {
		t.Fatalf("empty list: %v", err)
	}
	codes[7] ^= 1
	var le *ListError
	if err := v.CheckList(1, ids, codes); !errors.As(err, &le) || le.Part != "codes" || le.List != 1 {
		t.Fatalf("damaged codes: %v", err)
	}
	codes[7] ^= 1
	ids[19] ^= 1 << 40
	if err := v.CheckList(1, ids, codes); !errors.As(err, &le) || le.Part != "ids" {
		t.Fatalf("damaged ids: %v", err)
	}
	if err := v.CheckList(1, ids[:3], codes); !errors.Is(err, ErrEntry) {
		t.Fatalf("short list: %v", err)
	}
	if err := v.CheckList(9, nil, nil); !errors.Is(err, ErrList) {
		t.Fatalf("list 9 of 4: %v", err)
	}
}

// failingReader fails every read, as a disk with a bad sector would.
type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestVerifyUnreadable(t *testing.T) {
	e := entry{off: headerSize, cap: 4, size: 3, hwm: 3, crc: listCRC{1, 2}}
	_, le := readListCRC(failingReader{}, "lists.1.data", 7, e, 8, make([]byte, 16))
	if le == nil || le.List != 7 || le.Part != "codes" || !errors.Is(le, ErrCorrupt) || !errors.Is(le, io.ErrUnexpectedEOF) {
		t.Fatalf("unreadable list: %v", le)
	}
	t.Log(le)
}

// TestDamageIsNotCopied checks that no write turns a damaged list into
// one whose CRCs match: copies from it are refused, a shrink of it fails,
// and a compaction carries the damage with the list's old CRCs, so
// Verify still names it.
func TestDamageIsNotCopied(t *testing.T) {
	dir := t.TempDir()
	s := mustCreate(t, dir, 4, 8)
	defer s.Close()
	r := rand.New(rand.NewSource(7))
	for l := 0; l < 4; l++ {
		ids, codes := randEntries(r, 10+l, 8)
		if _, err := s.AddEntries(l, ids, codes); err != nil {
			t.Fatal(err)
		}
	}
	v := mustView(t, s)
	e := v.st.tab.get(1)
	openFlipper(t, v).flip(e.off+3, 0x10)
	v.Release()

	isList1 := func(what string, err error) {
		t.Helper()
		var le *ListError
		if !errors.As(err, &le) || le.List != 1 {
			t.Fatalf("%s from a damaged list: %v", what, err)
		}
	}
	dst := mustCreate(t, filepath.Join(dir, "dst"), 4, 8)
	defer dst.Close()
	_, err := s.CopySubsetTo(dst, Subset{Kind: SubsetLists, A: 0, B: 4})
	isList1("subset copy", err)
	v = mustView(t, s)
	_, err = dst.MergeFrom([]Source{v}, nil)
	v.Release()
	isList1("merge", err)
	if dst.NTotal() != 0 {
		t.Fatalf("a failed merge left %d entries", dst.NTotal())
	}
	isList1("shrink", s.Resize(1, 4))
	if n, _ := s.ListSize(1); n != 10+1 {
		t.Fatalf("a failed shrink left size %d", n)
	}
	if _, err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	bad, err := s.Verify(nil)
	if err != nil || len(bad) != 1 || bad[0].List != 1 || bad[0].Part != "codes" {
		t.Fatalf("after compaction: %v %v", bad, err)
	}
	// Appends to a damaged list keep it damaged, never valid.
	ids, codes := randEntries(r, 50, 8)
	if _, err := s.AddEntries(1, ids, codes); err != nil {
		t.Fatal(err)
	}
	if bad, err = s.Verify(nil); err != nil || len(bad) != 1 || bad[0].List != 1 {
		t.Fatalf("after an append: %v %v", bad, err)
	}
}

// toFormat1 rewrites a closed store's list table in format 1, without
// CRCs, in Pebble and in table.snap, as an older writer left it.
func toFormat1(t *testing.T, dir string) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, metaDirName), &pebble.Options{Logger: quietLogger{}})
	must(t, err)
	b := db.NewBatch()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: listPrefix, UpperBound: prefixEnd(listPrefix)})
	must(t, err)
	for it.First(); it.Valid(); it.Next() {
		_ = b.Set(append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()[:entryLenNoCRC]...), nil)
	}
	it.Close()
	var fv [4]byte
	binary.LittleEndian.PutUint32(fv[:], formatNoCRC)
	_ = b.Set(keyFormat, fv[:], nil)
	must(t, b.Commit(pebble.Sync))
	must(t, db.Close())
	raw, err := os.ReadFile(filepath.Join(dir, snapName))
	must(t, err)
	snap, err := decodeSnapshot(raw)
	must(t, err)
	tab := newTable(int(snap.nlist))
	tab.noCRC = true
	for l, e := range snap.rows {
		e.crc = listCRC{}
		tab.set(l, e) // never into the shared emptyChunk
	}
	must(t, os.WriteFile(filepath.Join(dir, snapName), encodeSnapshot(snap.conf, snap.stateRec, tab, snap.user), 0o644))
}

// TestToFormat1SharedChunk: rewriting a store in format 1 leaves the
// shared empty chunk alone. toFormat1 once wrote its rows straight into
// the chunks of a new table, which are all emptyChunk: every empty list
// of every store in the process then had those rows, and a later merge
// into a fresh store freed their slots (a double free of slots it had
// just filled).
func TestToFormat1SharedChunk(t *testing.T) {
	dir := t.TempDir()
	must(t, buildDamageStore(t, dir).Close())
	toFormat1(t, dir)
	if *emptyChunk != (chunk{}) {
		t.Fatal("toFormat1 wrote into the shared empty chunk")
	}
	s := mustCreate(t, t.TempDir(), 16, 12)
	defer s.Close()
	for l := range 16 {
		if e := s.current().tab.get(l); e != (entry{}) {
			t.Fatalf("list %d of a new store has row %+v", l, e)
		}
	}
}

// TestFormat1 reads a store an older writer left, without CRCs: a
// read-only process reads its lists and has nothing to verify them with;
// a writer adds the CRCs when it opens it, in one commit the read-only
// process then sees.
func TestFormat1(t *testing.T) {
	dir := t.TempDir()
	s := buildDamageStore(t, dir)
	m := storeModel(t, s)
	seq := s.Seq()
	must(t, s.Close())
	toFormat1(t, dir)

	ro, err := OpenReadOnly(dir, nil)
	must(t, err)
	defer ro.Close()
	must(t, compareStore(ro, m))
	if _, err := ro.Verify(nil); !errors.Is(err, ErrNoChecksums) {
		t.Fatalf("Verify of a table without CRCs: %v", err)
	}
	must(t, ro.Check())

	w, err := Open(dir, nil)
	must(t, err)
	defer w.Close()
	if w.Seq() != seq+1 {
		t.Fatalf("adding the CRCs committed seq %d, want %d", w.Seq(), seq+1)
	}
	must(t, w.Check()) // the CRCs in memory, in Pebble, and of the bytes agree
	must(t, compareStore(w, m))
	if changed, err := ro.Refresh(); err != nil || !changed {
		t.Fatalf("Refresh after the CRCs were added: %v %v", changed, err)
	}
	if bad, err := ro.Verify(nil); err != nil || len(bad) != 0 {
		t.Fatalf("read-only Verify after the CRCs were added: %v %v", bad, err)
	}
	v := mustView(t, w)
	defer v.Release()
	p := liveParts(v)[0]
	openFlipper(t, v).flip(p.end-1, 0x80)
	if bad, err := w.Verify(nil); err != nil || len(bad) != 1 || bad[0].List != p.list {
		t.Fatalf("flip in list %d after the upgrade: %v %v", p.list, bad, err)
	}
}

// storeModel reads a store's lists into a model.
func storeModel(t *testing.T, s *Store) *model {
	t.Helper()
	v := mustView(t, s)
	defer v.Release()
	m := newModel(v.NumLists(), v.CodeSize())
	for l := range m.lists {
		ids, codes, err := v.ReadList(l)
		must(t, err)
		m.lists[l] = toEnts(ids, codes, v.CodeSize())
	}
	for _, k := range s.MetaKeys() {
		val, _ := s.Meta(k)
		m.meta[k] = string(val)
	}
	return m
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
