package slots

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var benchExtents = []int{100, 10000, 100000}

// fragmentedUsed returns the used extents of a range holding n free
// extents of 1 to 4 KiB, each followed by a used gap of 1 to 256 bytes, the
// shape of a data file after many lists were rewritten.
func fragmentedUsed(n int) (end uint64, used []Extent) {
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	var off uint64
	for range n {
		off += 1024 + rng.Uint64N(3072)
		gap := 1 + rng.Uint64N(256)
		used = append(used, Extent{Off: off, Len: gap})
		off += gap
	}
	return off, used
}

func fragmented(b *testing.B, n int) *Allocator {
	b.Helper()
	end, used := fragmentedUsed(n)
	a, err := Rebuild(0, end, used)
	if err != nil {
		b.Fatal(err)
	}
	if a.NumExtents() != n {
		b.Fatalf("setup: %d extents, want %d", a.NumExtents(), n)
	}
	return a
}

// benchSizes is a fixed cycle of request sizes below the smallest free
// extent, so every request is served and the tree shape stays realistic.
func benchSizes() []uint64 {
	rng := rand.New(rand.NewPCG(7, 7))
	s := make([]uint64, 4096)
	for i := range s {
		s[i] = 1 + rng.Uint64N(1023)
	}
	return s
}

// BenchmarkAlloc measures Alloc alone: a best-fit lookup, the removal of
// the chosen extent and the insertion of its remainder. The allocator is
// rebuilt, off the clock, whenever a request no longer fits.
func BenchmarkAlloc(b *testing.B) {
	for _, n := range benchExtents {
		b.Run(fmt.Sprintf("extents=%d", n), func(b *testing.B) {
			a := fragmented(b, n)
			sizes := benchSizes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok := a.Alloc(sizes[i%len(sizes)]); !ok {
					b.StopTimer()
					a = fragmented(b, n)
					b.StartTimer()
				}
			}
		})
	}
}

// BenchmarkAllocFree measures an Alloc followed by the Free of the same
// range, the steady state of a store that rewrites lists in place: the free
// merges back into the remainder the allocation left.
func BenchmarkAllocFree(b *testing.B) {
	for _, n := range benchExtents {
		b.Run(fmt.Sprintf("extents=%d", n), func(b *testing.B) {
			a := fragmented(b, n)
			sizes := benchSizes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				size := sizes[i%len(sizes)]
				off, ok := a.Alloc(size)
				if !ok {
					b.Fatal("Alloc failed")
				}
				if err := a.Free(off, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFreeCoalesce measures freeing a used gap between two free
// extents, which merges all three, followed by the AllocAt that splits the
// merged extent back; gaps are visited in random order so the lookups do
// not stay in cache.
func BenchmarkFreeCoalesce(b *testing.B) {
	for _, n := range benchExtents {
		b.Run(fmt.Sprintf("extents=%d", n), func(b *testing.B) {
			a := fragmented(b, n)
			_, used := fragmentedUsed(n)
			// The last gap ends the range and has no free right neighbour.
			used = used[:len(used)-1]
			rand.New(rand.NewPCG(1, 1)).Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				g := used[i%len(used)]
				if err := a.Free(g.Off, g.Len); err != nil {
					b.Fatal(err)
				}
				if err := a.AllocAt(g.Off, g.Len); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRebuild measures recovering an allocator from its used extents
// in random order, the cost paid when the store opens a file.
func BenchmarkRebuild(b *testing.B) {
	for _, n := range benchExtents {
		b.Run(fmt.Sprintf("extents=%d", n), func(b *testing.B) {
			end, used := fragmentedUsed(n)
			rand.New(rand.NewPCG(2, 2)).Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Rebuild(0, end, used); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
