package vecmath

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

func randMatrix(r *rand.Rand, n, d int) []float32 {
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func close32(a, b, rel float32) bool {
	diff := float32(math.Abs(float64(a - b)))
	scale := max(float32(math.Abs(float64(a))), float32(math.Abs(float64(b))), 1)
	return diff <= rel*scale
}

// withGeneric runs f with the assembly kernels switched off.
func withGeneric(t testing.TB, f func()) {
	withLevel("generic", f)
}

// levels lists the kernel levels this machine can run, best first.
func levels() []string {
	switch FastPath() {
	case "avx512":
		return []string{"avx512", "avx2", "generic"}
	case "avx2":
		return []string{"avx2", "generic"}
	}
	return []string{"generic"}
}

// withLevel runs f with the kernels of the named level.
func withLevel(level string, f func()) {
	s2, s512 := useAVX2, useAVX512
	defer func() { useAVX2, useAVX512 = s2, s512 }()
	useAVX2 = level != "generic"
	useAVX512 = level == "avx512"
	f()
}

func naiveDot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestDotL2SqAgainstFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 100, 128, 1000} {
		a := randMatrix(r, 1, n)
		b := randMatrix(r, 1, n)
		want := naiveDot(a, b)
		var wl float64
		for i := range a {
			d := float64(a[i]) - float64(b[i])
			wl += d * d
		}
		for _, fast := range []bool{false, true} {
			var gd, gl float32
			run := func() { gd, gl = Dot(a, b), L2Sq(a, b) }
			if fast {
				run()
			} else {
				withGeneric(t, run)
			}
			tol := 1e-4 * float32(math.Sqrt(float64(n)+1))
			if !close32(gd, float32(want), tol) {
				t.Errorf("n=%d fast=%v Dot=%v want %v", n, fast, gd, want)
			}
			if !close32(gl, float32(wl), tol) {
				t.Errorf("n=%d fast=%v L2Sq=%v want %v", n, fast, gl, wl)
			}
		}
	}
}

func TestNorms2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randMatrix(r, 5, 19)
	out := make([]float32, 5)
	Norms2(x, 19, out)
	for i := range 5 {
		row := x[i*19 : (i+1)*19]
		if want := naiveDot(row, row); !close32(out[i], float32(want), 1e-5) {
			t.Errorf("row %d: %v want %v", i, out[i], want)
		}
	}
}

func TestInnerProductsFastMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ nx, ny, d int }{
		{1, 1, 1}, {3, 5, 2}, {4, 16, 8}, {5, 17, 8}, {7, 33, 13},
		{64, 100, 32}, {9, 1024, 128}, {33, 47, 300}, {4, 3, 2000},
		// Fewer than 4 rows of x at lengths of the AVX2 dot product.
		{1, 300, 64}, {2, 70, 37}, {3, 9, 130},
	} {
		x := randMatrix(r, tc.nx, tc.d)
		y := randMatrix(r, tc.ny, tc.d)
		fast := make([]float32, tc.nx*tc.ny)
		gen := make([]float32, tc.nx*tc.ny)
		InnerProducts(x, tc.nx, y, tc.ny, tc.d, fast)
		withGeneric(t, func() { InnerProducts(x, tc.nx, y, tc.ny, tc.d, gen) })
		for i := range tc.nx {
			for j := range tc.ny {
				want := naiveDot(x[i*tc.d:(i+1)*tc.d], y[j*tc.d:(j+1)*tc.d])
				tol := 1e-4 * float32(math.Sqrt(float64(tc.d)))
				f, g := fast[i*tc.ny+j], gen[i*tc.ny+j]
				if !close32(f, g, tol) || !close32(f, float32(want), tol) {
					t.Fatalf("%+v (%d,%d): fast %v generic %v exact %v", tc, i, j, f, g, want)
				}
			}
		}
	}
}

// A Packed y gives InnerProducts' results, bit for bit.
func TestPackedInnerProducts(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct{ nx, ny, d int }{{1, 5, 3}, {4, 16, 8}, {17, 40, 33}, {16, 512, 64}, {1, 100, 64}, {3, 20, 48}} {
		x := randMatrix(r, tc.nx, tc.d)
		y := randMatrix(r, tc.ny, tc.d)
		want := make([]float32, tc.nx*tc.ny)
		InnerProducts(x, tc.nx, y, tc.ny, tc.d, want)
		got := make([]float32, tc.nx*tc.ny)
		Pack(y, tc.ny, tc.d).InnerProducts(x, tc.nx, got)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%+v: entry %d: packed %v, InnerProducts %v", tc, i, got[i], want[i])
			}
		}
	}
}

func TestL2SqrBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	nx, ny, d := 6, 21, 24
	x := randMatrix(r, nx, d)
	y := randMatrix(r, ny, d)
	copy(y[3*d:4*d], x[2*d:3*d]) // an exact match must come out as 0, not negative
	out := make([]float32, nx*ny)
	L2SqrBatch(x, nx, y, ny, d, nil, out)
	for i := range nx {
		for j := range ny {
			want := L2Sq(x[i*d:(i+1)*d], y[j*d:(j+1)*d])
			got := out[i*ny+j]
			if got < 0 || !close32(got, want, 1e-4) {
				t.Fatalf("(%d,%d): %v want %v", i, j, got, want)
			}
		}
	}
}

func bruteArgMin(x []float32, nx int, y []float32, ny, d int) ([]int32, []float32) {
	idx := make([]int32, nx)
	dist := make([]float32, nx)
	for i := range nx {
		best := math.Inf(1)
		for j := range ny {
			var s float64
			for k := range d {
				v := float64(x[i*d+k]) - float64(y[j*d+k])
				s += v * v
			}
			if s < best {
				best, idx[i] = s, int32(j)
			}
		}
		dist[i] = float32(best)
	}
	return idx, dist
}

func TestArgMinL2(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct{ nx, ny, d, threads int }{
		{1, 1, 3, 1}, {3, 2, 1, 1}, {5, 7, 8, 2}, {129, 17, 8, 2},
		{300, 256, 8, 3}, {77, 1000, 64, 2}, {10, 5000, 4, 1}, {20, 40, 700, 2},
		{1, 2000, 64, 2}, {3, 500, 33, 1},
	} {
		x := randMatrix(r, tc.nx, tc.d)
		y := randMatrix(r, tc.ny, tc.d)
		wantIdx, wantDist := bruteArgMin(x, tc.nx, y, tc.ny, tc.d)
		for _, level := range levels() {
			idx := make([]int32, tc.nx)
			dist := make([]float32, tc.nx)
			withLevel(level, func() { ArgMinL2(x, tc.nx, y, tc.ny, tc.d, nil, idx, dist, tc.threads) })
			for i := range tc.nx {
				// Near-ties may resolve either way in float32, so compare
				// the distance of the chosen row, not the index.
				chosen := L2Sq(x[i*tc.d:(i+1)*tc.d], y[int(idx[i])*tc.d:(int(idx[i])+1)*tc.d])
				if !close32(chosen, wantDist[i], 1e-4) || !close32(dist[i], wantDist[i], 1e-3) {
					t.Fatalf("%+v level=%s row %d: idx %d (d=%v, reported %v), want idx %d d=%v",
						tc, level, i, idx[i], chosen, dist[i], wantIdx[i], wantDist[i])
				}
			}
		}
	}
}

func TestArgMinL2TiesPickLowestIndex(t *testing.T) {
	d := 4
	ny := 40
	y := make([]float32, ny*d)
	for j := range ny {
		y[j*d] = float32(j % 5) // rows j, j+5, j+10, ... are identical
	}
	nx := 9
	x := make([]float32, nx*d)
	for i := range nx {
		x[i*d] = float32(i % 5)
	}
	for _, level := range levels() {
		idx := make([]int32, nx)
		dist := make([]float32, nx)
		withLevel(level, func() { ArgMinL2(x, nx, y, ny, d, nil, idx, dist, 2) })
		for i := range nx {
			if int(idx[i]) != i%5 || dist[i] != 0 {
				t.Errorf("level=%s row %d: idx %d dist %v, want %d, 0", level, i, idx[i], dist[i], i%5)
			}
		}
	}
}

func TestArgMinL2ThreadIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	nx, ny, d := 1000, 300, 16
	x := randMatrix(r, nx, d)
	y := randMatrix(r, ny, d)
	var ref []int32
	var refD []float32
	for _, th := range []int{1, 2, 3, 7} {
		idx := make([]int32, nx)
		dist := make([]float32, nx)
		ArgMinL2(x, nx, y, ny, d, nil, idx, dist, th)
		if ref == nil {
			ref, refD = idx, dist
			continue
		}
		if !slices.Equal(idx, ref) || !slices.Equal(dist, refD) {
			t.Fatalf("threads=%d gives a different result", th)
		}
	}
}

func TestTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, k := range []int{0, 1, 5, 31, 32, 33, 100} {
		h := NewTopK(k)
		type pair struct {
			d  float32
			id int64
		}
		var all []pair
		for range 300 {
			d := float32(r.IntN(50)) // many ties
			id := int64(r.IntN(1000))
			all = append(all, pair{d, id})
			if d <= h.Threshold() || h.Len() < k {
				h.Push(d, id)
			}
		}
		h.Push(float32(math.NaN()), 999)
		sort.Slice(all, func(a, b int) bool {
			if all[a].d != all[b].d {
				return all[a].d < all[b].d
			}
			return all[a].id < all[b].id
		})
		dist, ids := h.Sorted()
		if len(dist) != min(k, len(all)) {
			t.Fatalf("k=%d: got %d results", k, len(dist))
		}
		for i := range dist {
			if dist[i] != all[i].d || ids[i] != all[i].id {
				t.Fatalf("k=%d result %d: (%v,%d) want (%v,%d)", k, i, dist[i], ids[i], all[i].d, all[i].id)
			}
		}
	}
}

func TestPanicsOnBadShapes(t *testing.T) {
	for name, f := range map[string]func(){
		"dot":   func() { Dot(make([]float32, 2), make([]float32, 3)) },
		"ip":    func() { InnerProducts(make([]float32, 3), 2, make([]float32, 4), 2, 2, make([]float32, 4)) },
		"out":   func() { InnerProducts(make([]float32, 4), 2, make([]float32, 4), 2, 2, make([]float32, 3)) },
		"argny": func() { ArgMinL2(make([]float32, 2), 1, nil, 0, 2, nil, make([]int32, 1), make([]float32, 1), 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkInnerProducts(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ nx, ny, d int }{{10000, 1024, 128}, {4096, 256, 8}} {
		x := randMatrix(r, tc.nx, tc.d)
		y := randMatrix(r, tc.ny, tc.d)
		out := make([]float32, tc.nx*tc.ny)
		for _, level := range levels() {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", tc.nx, tc.ny, tc.d, level), func(b *testing.B) {
				withLevel(level, func() {
					for b.Loop() {
						InnerProducts(x, tc.nx, y, tc.ny, tc.d, out)
					}
				})
				flops := 2 * float64(tc.nx) * float64(tc.ny) * float64(tc.d) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

func BenchmarkArgMinL2(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct{ nx, ny, d int }{{20000, 1024, 128}, {65536, 256, 8}} {
		x := randMatrix(r, tc.nx, tc.d)
		y := randMatrix(r, tc.ny, tc.d)
		idx := make([]int32, tc.nx)
		dist := make([]float32, tc.nx)
		for _, level := range levels() {
			b.Run(fmt.Sprintf("%dx%dx%d/%s/threads=1", tc.nx, tc.ny, tc.d, level), func(b *testing.B) {
				withLevel(level, func() {
					for b.Loop() {
						ArgMinL2(x, tc.nx, y, tc.ny, tc.d, nil, idx, dist, 1)
					}
				})
				flops := 2 * float64(tc.nx) * float64(tc.ny) * float64(tc.d) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
