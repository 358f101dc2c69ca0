package store

import (
	"fmt"
	"math/rand"
	"runtime"
	"testing"
)

// benchEntries makes n entries of code size cs spread over nlist lists.
func benchEntries(n, nlist, cs int, seed int64) (lists, ids []int64, codes []byte) {
	r := rand.New(rand.NewSource(seed))
	lists = make([]int64, n)
	ids = make([]int64, n)
	codes = make([]byte, n*cs)
	r.Read(codes)
	for i := range ids {
		lists[i] = int64(r.Intn(nlist))
		ids[i] = int64(i)
	}
	return
}

// BenchmarkAddEntries measures adding batches of 1,000 entries (PQ16
// codes, 1,024 lists), durable (fdatasync + synced Pebble commit):
//   - pattern=one-list: each batch goes to one list (FAISS add_entries of
//     1,000 entries);
//   - pattern=spread: each entry of a batch goes to its own list (the shape
//     of IndexIVF::add, which FAISS does one add_entry at a time);
//   - commit=N: N batches share one commit (group commit).
func BenchmarkAddEntries(b *testing.B) {
	const nlist, cs, batch = 1024, 16, 1000
	for _, pattern := range []string{"one-list", "spread"} {
		for _, group := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("pattern=%s/batch=%d/commit=%d", pattern, batch, group), func(b *testing.B) {
				s := mustCreate(b, b.TempDir(), nlist, cs)
				defer s.Close()
				lists, ids, codes := benchEntries(batch*64, nlist, cs, 1)
				b.SetBytes(batch * (cs + 8))
				b.ReportAllocs()
				b.ResetTimer()
				var bt *Batch
				for i := 0; i < b.N; i++ {
					if bt == nil {
						var err error
						if bt, err = s.Begin(); err != nil {
							b.Fatal(err)
						}
					}
					k := (i % 64) * batch
					var err error
					if pattern == "one-list" {
						_, err = bt.Add(i%nlist, ids[k:k+batch], codes[k*cs:(k+batch)*cs])
					} else {
						err = bt.AddSpread(lists[k:k+batch], ids[k:k+batch], codes[k*cs:(k+batch)*cs])
					}
					if err != nil {
						b.Fatal(err)
					}
					if (i+1)%group == 0 || i == b.N-1 {
						if err := bt.Commit(); err != nil {
							b.Fatal(err)
						}
						bt = nil
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkMergeFrom measures the two-pass merge of 4 in-memory sources
// of 250,000 PQ16 entries each into an empty store, including the
// fdatasync and the synced commit (FAISS's merge_from never syncs).
func BenchmarkMergeFrom(b *testing.B) {
	const nlist, cs, per, nsrc = 1024, 16, 250000, 4
	var srcs []Source
	for i := 0; i < nsrc; i++ {
		lists, ids, codes := benchEntries(per, nlist, cs, int64(i))
		src := &flatSource{nlist: nlist, cs: cs}
		src.build(lists, ids, codes)
		srcs = append(srcs, src)
	}
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sources=%d/entries=%d/sync=%v", nsrc, nsrc*per, sync), func(b *testing.B) {
			b.SetBytes(nsrc * per * (cs + 8))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s, err := Create(b.TempDir(), Options{NumLists: nlist, CodeSize: cs, NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := s.MergeFrom(srcs, nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N)*nsrc*per/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkCompact measures rewriting a store of 1,000,000 PQ16 entries
// in 1,024 lists into a new file (read the old file, write the new one,
// fdatasync, synced commit, publish). The store is filled by spread adds
// first, so the first compaction gathers lists from all over the file;
// later ones copy an already compact file.
func BenchmarkCompact(b *testing.B) {
	const nlist, cs, n = 1024, 16, 1_000_000
	for _, headroom := range []float64{0, 0.25} {
		b.Run(fmt.Sprintf("entries=%d/headroom=%v", n, headroom), func(b *testing.B) {
			s := mustCreate(b, b.TempDir(), nlist, cs)
			defer s.Close()
			lists, ids, codes := benchEntries(n, nlist, cs, 5)
			for k := 0; k < n; k += n / 4 {
				bt, err := s.Begin()
				if err != nil {
					b.Fatal(err)
				}
				if err := bt.AddSpread(lists[k:k+n/4], ids[k:k+n/4], codes[k*cs:(k+n/4)*cs]); err != nil {
					b.Fatal(err)
				}
				if err := bt.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(n * (cs + 8))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.CompactWith(CompactOptions{Headroom: headroom}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// flatSource is a Source with each list's entries contiguous, like
// FAISS's ArrayInvertedLists.
type flatSource struct {
	nlist, cs int
	ids       [][]int64
	codes     [][]byte
}

func (f *flatSource) build(lists, ids []int64, codes []byte) {
	f.ids = make([][]int64, f.nlist)
	f.codes = make([][]byte, f.nlist)
	for i, l := range lists {
		f.ids[l] = append(f.ids[l], ids[i])
		f.codes[l] = append(f.codes[l], codes[i*f.cs:(i+1)*f.cs]...)
	}
}

func (f *flatSource) NumLists() int              { return f.nlist }
func (f *flatSource) CodeSize() int              { return f.cs }
func (f *flatSource) ListLen(l int) (int, error) { return len(f.ids[l]), nil }
func (f *flatSource) ReadList(l int) ([]int64, []byte, error) {
	return f.ids[l], f.codes[l], nil
}

// BenchmarkPrefetch compares ways of bringing probed lists in from disk:
// each iteration drops the store's pages from the page cache, prefetches
// 64 random lists of 1,024 (about 6% of a 96 MB store) and then reads
// every byte of them, as a search would. mode=none reads without
// prefetching (page faults one at a time), madvise only advises
// WILLNEED, touch-N also touches the pages from N goroutines.
func BenchmarkPrefetch(b *testing.B) {
	const nlist, cs, n = 1024, 16, 4_000_000
	dir := b.TempDir()
	s := mustCreate(b, dir, nlist, cs)
	defer s.Close()
	lists, ids, codes := benchEntries(n, nlist, cs, 3)
	bt, _ := s.Begin()
	if err := bt.AddSpread(lists, ids, codes); err != nil {
		b.Fatal(err)
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Compact(); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for _, mode := range []struct {
		name    string
		prefect bool
		threads int
	}{{"none", false, 0}, {"madvise", true, 0}, {"touch-1", true, 1}, {"touch-2", true, 2}, {"touch-8", true, 8}} {
		b.Run("mode="+mode.name, func(b *testing.B) {
			var bytes int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				v, _ := s.View()
				if err := dropCache(v); err != nil {
					b.Skip("cannot drop the page cache here:", err)
				}
				probe := make([]int, 64)
				for j := range probe {
					probe[j] = r.Intn(nlist)
				}
				b.StartTimer()
				if mode.prefect {
					if err := v.Prefetch(probe, mode.threads); err != nil {
						b.Fatal(err)
					}
				}
				var sum byte
				for _, l := range probe {
					c, _ := v.Codes(l)
					ids, _ := v.IDs(l)
					for k := 0; k < len(c); k += 64 {
						sum ^= c[k]
					}
					for k := 0; k < len(ids); k += 8 {
						sum ^= byte(ids[k])
					}
					bytes += int64(len(c) + 8*len(ids))
				}
				runtime.KeepAlive(sum)
				v.Release()
			}
			b.SetBytes(bytes / int64(b.N))
		})
	}
}
