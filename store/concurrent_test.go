package store

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const concCS = 8

func concCode(id int64, ver byte) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(id)*0x9E3779B97F4A7C15+uint64(ver)*0xBF58476D1CE4E5B9)
	b[0] = ver
	return b
}

// checkList verifies one list as a reader sees it: entry j has id
// l<<32|j and a code consistent with its id (any version).
func checkList(l int, ids []int64, codes []byte) error {
	if len(codes) != len(ids)*concCS {
		return fmt.Errorf("list %d: %d ids, %d code bytes", l, len(ids), len(codes))
	}
	for j, id := range ids {
		if id != int64(l)<<32|int64(j) {
			return fmt.Errorf("list %d entry %d: id %x", l, j, id)
		}
		c := codes[j*concCS : (j+1)*concCS]
		if string(c) != string(concCode(id, c[0])) {
			return fmt.Errorf("list %d entry %d: torn code %x", l, j, c)
		}
	}
	return nil
}

// TestConcurrentReaders runs readers (views in this process and a
// read-only store as another process would) while a writer adds, updates,
// relocates, grows the file past its mapping and compacts. Every list a
// reader sees must be a consistent snapshot and never shrink.
func TestConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	const nlist = 24
	s, err := Create(dir, Options{NumLists: nlist, CodeSize: concCS, MapReserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ro, err := OpenReadOnly(dir, &Options{MapReserve: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	dur := 3 * time.Second
	if testing.Short() {
		dur = 500 * time.Millisecond
	}
	var stop atomic.Bool
	var reads atomic.Int64
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	reader := func(st *Store, refresh bool, seed int64) {
		defer wg.Done()
		r := rand.New(rand.NewSource(seed))
		last := make([]int, nlist)
		for !stop.Load() {
			if refresh {
				if _, err := st.Refresh(); err != nil {
					errc <- err
					return
				}
			}
			v, err := st.View()
			if err != nil {
				errc <- err
				return
			}
			for i := 0; i < 6; i++ {
				l := r.Intn(nlist)
				ids, codes, err := v.ReadList(l)
				if err == nil {
					err = checkList(l, ids, codes)
				}
				if err == nil && len(ids) < last[l] {
					err = fmt.Errorf("list %d shrank from %d to %d", l, last[l], len(ids))
				}
				if err != nil {
					v.Release()
					errc <- fmt.Errorf("seq %d: %w", v.Seq(), err)
					return
				}
				last[l] = len(ids)
				reads.Add(1)
			}
			if r.Intn(4) == 0 {
				time.Sleep(time.Duration(r.Intn(500)) * time.Microsecond) // hold the view a while
			}
			v.Release()
		}
	}
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go reader(s, false, int64(i))
	}
	wg.Add(1)
	go reader(ro, true, 99)

	r := rand.New(rand.NewSource(7))
	sizes := make([]int, nlist)
	commits, compactions := 0, 0
	deadline := time.Now().Add(dur)
	for time.Now().Before(deadline) {
		b, err := s.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for k := 1 + r.Intn(4); k > 0; k-- {
			l := r.Intn(nlist)
			n := 1 + r.Intn(64)
			if r.Intn(20) == 0 {
				n = 2000 // grow the file past the mapping
			}
			ids := make([]int64, n)
			var codes []byte
			for i := range ids {
				ids[i] = int64(l)<<32 | int64(sizes[l]+i)
				codes = append(codes, concCode(ids[i], 0)...)
			}
			if _, err := b.Add(l, ids, codes); err != nil {
				t.Fatal(err)
			}
			sizes[l] += n
			if r.Intn(2) == 0 { // rewrite an entry: copy on write
				j := r.Intn(sizes[l])
				id := int64(l)<<32 | int64(j)
				if err := b.Update(l, j, []int64{id}, concCode(id, byte(1+r.Intn(200)))); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		commits++
		if r.Intn(40) == 0 {
			if _, err := s.Compact(); err != nil {
				t.Fatal(err)
			}
			compactions++
		}
		select {
		case err := <-errc:
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		default:
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Stats()
	t.Logf("%d commits, %d compactions, %d list reads, file %d bytes", commits, compactions, reads.Load(), st.FileBytes)
	if reads.Load() == 0 || commits == 0 {
		t.Fatal("nothing ran")
	}
}
