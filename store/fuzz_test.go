package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// withCRC appends the checksum a snapshot ends with, so the fuzzer gets
// past the checksum into the validation behind it.
func withCRC(body []byte) []byte {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], crc32.Checksum(body, castagnoli))
	return append(append([]byte(nil), body...), n[:]...)
}

func seedSnapshot(tb testing.TB) (dir string, snap []byte) {
	dir = tb.TempDir()
	s := mustCreate(tb, dir, 6, 4)
	for l := 0; l < 6; l += 2 {
		ids := make([]int64, 3+l)
		if _, err := s.AddEntries(l, ids, make([]byte, 4*len(ids))); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.SetMeta("model", []byte("xyz")); err != nil {
		tb.Fatal(err)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	snap, err := os.ReadFile(filepath.Join(dir, snapName))
	if err != nil {
		tb.Fatal(err)
	}
	return dir, snap
}

// FuzzDecodeSnapshot feeds arbitrary (checksum-correct) snapshot bodies to
// the decoder and the table validation: they must return errors, never
// panic, and whatever they accept must describe non-overlapping slots.
func FuzzDecodeSnapshot(f *testing.F) {
	_, snap := seedSnapshot(f)
	f.Add(snap[:len(snap)-4])
	f.Add([]byte(snapMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeSnapshot(withCRC(body))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		tab := newTable(int(s.nlist))
		for l, e := range s.rows {
			tab.set(l, e)
		}
		used, err := validateTable(tab, int(s.codeSize), s.fsize)
		if err != nil {
			return
		}
		for i := 1; i < len(used); i++ {
			if used[i][0] < used[i-1][1] {
				t.Fatalf("accepted overlapping slots %v %v", used[i-1], used[i])
			}
		}
		for _, u := range used {
			if u[1] > s.fsize || u[0] < headerSize {
				t.Fatalf("accepted slot %v outside [%d, %d)", u, headerSize, s.fsize)
			}
		}
	})
}

// FuzzDataHeader checks the data file header decoder never panics and
// accepts nothing without the magic and a matching checksum.
func FuzzDataHeader(f *testing.F) {
	f.Add(dataHeader{codeSize: 16, gen: 3}.encode()[:dataHeaderBytes])
	f.Add([]byte("SHELFLST"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeDataHeader(b)
		if err != nil {
			return
		}
		if string(b[:8]) != dataMagic {
			t.Fatal("accepted a header without the magic")
		}
		if got := h.encode()[:40]; string(got) != string(b[:40]) {
			t.Fatalf("round trip differs: %x vs %x", got, b[:40])
		}
	})
}

// FuzzOpenReadOnly opens a real store whose published table was replaced
// by fuzzed bytes: the open fails with an error, or succeeds and then
// every list reads without faulting and Check passes, or finds lists
// whose bytes do not match their CRCs.
func FuzzOpenReadOnly(f *testing.F) {
	dir, snap := seedSnapshot(f)
	f.Add(snap[:len(snap)-4])
	f.Add(snap[:40])
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := os.WriteFile(filepath.Join(dir, snapName), withCRC(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := OpenReadOnly(dir, nil)
		if err != nil {
			return
		}
		defer s.Close()
		if s.NumLists() > 1<<16 {
			return
		}
		checkFuzzedStore(t, s)
	})
}

// checkFuzzedStore checks a store opened from fuzzed files: Check passes,
// or fails only on a list whose bytes do not match its CRCs (an open reads
// no list, so it cannot know; Check names the list), and every list reads
// without faulting.
func checkFuzzedStore(t *testing.T, s *Store) {
	t.Helper()
	var le *ListError
	if err := s.Check(); err != nil && !(errors.As(err, &le) && errors.Is(err, ErrCorrupt)) {
		t.Fatalf("opened but Check fails: %v", err)
	}
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	var sum byte
	for l := 0; l < v.NumLists(); l++ {
		ids, codes, err := v.ReadList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range codes {
			sum ^= c
		}
		for _, id := range ids {
			sum ^= byte(id)
		}
	}
	_ = sum
}

// TestCorruptMetadata edits Pebble's records the way a bug or a bad disk
// could and checks Open names what is wrong instead of mapping garbage.
func TestCorruptMetadata(t *testing.T) {
	cases := []struct {
		name string
		edit func(b *pebble.Batch)
	}{
		{"short state record", func(b *pebble.Batch) { b.Set(keyState, []byte{1, 2, 3}, nil) }},
		{"missing config", func(b *pebble.Batch) { b.Delete(keyConf, nil) }},
		{"newer format", func(b *pebble.Batch) { b.Set(keyFormat, []byte{9, 0, 0, 0}, nil) }},
		{"row past nlist", func(b *pebble.Batch) {
			var v [entryLen]byte
			entry{off: headerSize, cap: 1, size: 1, hwm: 1}.encode(v[:])
			b.Set(listKey(40), v[:], nil)
		}},
		{"overlapping slots", func(b *pebble.Batch) {
			var v [entryLen]byte
			entry{off: headerSize, cap: 4, size: 4, hwm: 4}.encode(v[:])
			b.Set(listKey(1), v[:], nil)
			b.Set(listKey(2), v[:], nil)
		}},
		{"size above capacity", func(b *pebble.Batch) {
			var v [entryLen]byte
			entry{off: headerSize, cap: 2, size: 4, hwm: 4}.encode(v[:])
			b.Set(listKey(1), v[:], nil)
		}},
		{"slot past the file", func(b *pebble.Batch) {
			var v [entryLen]byte
			entry{off: 1 << 30, cap: 2, size: 1, hwm: 1}.encode(v[:])
			b.Set(listKey(1), v[:], nil)
		}},
		{"bad row length", func(b *pebble.Batch) { b.Set(listKey(3), []byte{1}, nil) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustCreate(t, dir, 8, 4)
			if _, err := s.AddEntries(0, make([]int64, 5), make([]byte, 20)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			db, err := pebble.Open(filepath.Join(dir, metaDirName), &pebble.Options{Logger: quietLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			b := db.NewBatch()
			c.edit(b)
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			db.Close()
			s, err = Open(dir, nil)
			if err == nil {
				s.Close()
				t.Fatal("opened a store with corrupt metadata")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

// TestValidateTableAgreesWithSort cross-checks validateTable's overlap test.
func TestValidateTableAgreesWithSort(t *testing.T) {
	tab := newTable(3)
	tab.set(0, entry{off: headerSize + 64, cap: 2, size: 1, hwm: 1})
	tab.set(1, entry{off: headerSize, cap: 2, size: 2, hwm: 2})
	used, err := validateTable(tab, 8, headerSize+1024)
	if err != nil {
		t.Fatal(err)
	}
	if !sort.SliceIsSorted(used, func(i, j int) bool { return used[i][0] < used[j][0] }) || len(used) != 2 {
		t.Fatalf("used %v", used)
	}
	tab.set(2, entry{off: headerSize + 16, cap: 1, size: 0, hwm: 0})
	if _, err := validateTable(tab, 8, headerSize+1024); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("overlap not found: %v", err)
	}
}

// TestSnapshotCountsBounded crafts table.snap files with valid checksums
// and counts the rest of the file cannot back: each is ErrCorrupt before
// anything is allocated from it. A table of MaxLists mostly empty lists
// is valid and opens in the memory of its rows.
func TestSnapshotCountsBounded(t *testing.T) {
	dir, snap := seedSnapshot(t)
	body := snap[:len(snap)-4]
	craft := func(at int, v uint64) []byte {
		b := append([]byte(nil), body...)
		binary.LittleEndian.PutUint64(b[at:], v)
		return withCRC(b)
	}
	for _, c := range []struct {
		name string
		snap []byte
	}{
		{"nlist 2^31", craft(32, 1<<31)},
		{"nlist 2^32-1", craft(32, 1<<32-1)},
		{"nlist 2^63", craft(32, 1<<63)},
		{"nlist above MaxLists", craft(32, MaxLists+1)},
		{"rows 2^62", craft(64, 1<<62)},
		{"user records 2^40", craft(72, 1<<40)},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The decoder first: on its own it allocates nothing from nlist,
			// so a table it accepted is not built here.
			if _, err := decodeSnapshot(c.snap); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeSnapshot: err = %v, want ErrCorrupt", err)
			}
			if err := os.WriteFile(filepath.Join(dir, snapName), c.snap, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := OpenReadOnly(dir, nil)
			if err == nil {
				s.Close()
				t.Fatal("opened a table.snap with an impossible count")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), snapName) {
				t.Fatalf("err = %v, want ErrCorrupt naming %s", err, snapName)
			}
		})
	}

	t.Run("MaxLists mostly empty", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, snapName), craft(32, MaxLists), 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		s, err := OpenReadOnly(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		runtime.ReadMemStats(&after)
		if s.NumLists() != MaxLists {
			t.Fatalf("%d lists", s.NumLists())
		}
		// A dense table would be 32 bytes a list: 2 GiB.
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
			t.Fatalf("opening %d lists with 3 rows allocated %d MiB", MaxLists, got>>20)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("opening took %v", d)
		}
		v, err := s.View()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Release()
		ids, _, err := v.ReadList(4)
		if err != nil || len(ids) != 7 {
			t.Fatalf("list 4: %d ids, %v", len(ids), err)
		}
	})
}
