package vecmath

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Dot returns the inner product of a and b, which must have the same length
// (faiss::fvec_inner_product).
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("vecmath: Dot of lengths %d and %d", len(a), len(b)))
	}
	return dot(a, b)
}

// L2Sq returns the squared Euclidean distance between a and b, which must have
// the same length (faiss::fvec_L2sqr).
func L2Sq(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("vecmath: L2Sq of lengths %d and %d", len(a), len(b)))
	}
	return l2sq(a, b)
}

// Norms2 writes the squared L2 norm of each of the len(out) rows of the
// row-major matrix x (row length d) into out (faiss::fvec_norms_L2sqr).
func Norms2(x []float32, d int, out []float32) {
	n := len(out)
	checkMatrix("Norms2", "x", x, n, d)
	for i := range n {
		r := x[i*d : (i+1)*d]
		out[i] = dot(r, r)
	}
}

// UnitRows reports whether every row of the row-major matrix x (row
// length d) has an L2 norm of 1, its squared norm within 1e-3 of 1 (what
// normalization leaves after float32 rounding): the centroids of
// spherical k-means, of which the nearest in L2 is the one of largest
// inner product.
func UnitRows(x []float32, d int) bool {
	for i := 0; i+d <= len(x); i += d {
		if math.Abs(float64(dot(x[i:i+d], x[i:i+d]))-1) > 1e-3 {
			return false
		}
	}
	return true
}

// InnerProducts writes out[i*ny+j] = <x_i, y_j> for the nx rows of x and the
// ny rows of y, both row-major with row length d. It is a cache-blocked
// matrix product x * y^T: y is cut into column panels that stay in L1/L2
// while every x row is streamed past them, and the inner kernel keeps a
// whole tile of outputs in registers (the role BLAS sgemm plays in
// faiss::exhaustive_L2sqr_blas).
func InnerProducts(x []float32, nx int, y []float32, ny int, d int, out []float32) {
	checkMatrix("InnerProducts", "x", x, nx, d)
	checkMatrix("InnerProducts", "y", y, ny, d)
	if len(out) < nx*ny {
		panic(fmt.Sprintf("vecmath: InnerProducts out has %d elements, need %d", len(out), nx*ny))
	}
	if nx == 0 || ny == 0 {
		return
	}
	if d == 0 {
		clear(out[:nx*ny])
		return
	}
	innerProducts(x, nx, y, ny, d, out)
}

// Packed is the y of InnerProducts prepared once for many calls (a
// quantizer's codebooks against blocks of queries): the kernels' panel
// layout is made by Pack instead of by every call. It keeps y, which must
// not change.
type Packed struct {
	y, panels []float32
	ny, d     int
}

// Pack prepares the ny rows of y (row length d) for InnerProducts.
func Pack(y []float32, ny, d int) *Packed {
	checkMatrix("Pack", "y", y, ny, d)
	return &Packed{y: y[:ny*d], panels: packFor(y, ny, d), ny: ny, d: d}
}

// InnerProducts is the package's InnerProducts(x, nx, y, ny, d, out) for
// the y p was made from.
func (p *Packed) InnerProducts(x []float32, nx int, out []float32) {
	checkMatrix("InnerProducts", "x", x, nx, p.d)
	if len(out) < nx*p.ny {
		panic(fmt.Sprintf("vecmath: InnerProducts out has %d elements, need %d", len(out), nx*p.ny))
	}
	if nx == 0 || p.ny == 0 {
		return
	}
	if p.d == 0 {
		clear(out[:nx*p.ny])
		return
	}
	innerProductsPacked(x, nx, p, out)
}

// L2SqrBatch writes out[i*ny+j] = ||x_i - y_j||^2 computed as
// ||x_i||^2 + ||y_j||^2 - 2<x_i, y_j>, clamped at 0 because the expansion can
// go slightly negative through cancellation. yNorms holds the squared norms of
// the y rows and may be nil, in which case they are computed.
func L2SqrBatch(x []float32, nx int, y []float32, ny int, d int, yNorms []float32, out []float32) {
	InnerProducts(x, nx, y, ny, d, out)
	if nx == 0 || ny == 0 {
		return
	}
	yNorms = normsOrCompute(y, ny, d, yNorms)
	for i := range nx {
		xr := x[i*d : (i+1)*d]
		xn := dot(xr, xr)
		row := out[i*ny : (i+1)*ny]
		for j, ip := range row {
			v := xn + yNorms[j] - 2*ip
			row[j] = max(v, 0)
		}
	}
}

// ArgMinL2 finds, for each of the nx rows of x, the row of y nearest in L2
// distance: outIdx[i] is its index (the lowest one on ties) and outDist[i]
// the squared distance, computed through norms and clamped at 0. It never
// materialises the nx*ny distance matrix: x is processed in blocks of rows,
// spread over threads goroutines (GOMAXPROCS when threads <= 0). yNorms may be
// nil. This is the assignment step of k-means and of IVF coarse quantization
// (faiss::knn_L2sqr with k = 1). Each row's answer depends only on that row,
// so the result is the same for every thread count. It panics if ny == 0.
func ArgMinL2(x []float32, nx int, y []float32, ny int, d int, yNorms []float32, outIdx []int32, outDist []float32, threads int) {
	checkMatrix("ArgMinL2", "x", x, nx, d)
	checkMatrix("ArgMinL2", "y", y, ny, d)
	if len(outIdx) < nx || len(outDist) < nx {
		panic(fmt.Sprintf("vecmath: ArgMinL2 outputs have %d and %d elements, need %d", len(outIdx), len(outDist), nx))
	}
	if nx == 0 {
		return
	}
	if ny == 0 {
		panic("vecmath: ArgMinL2 with no y rows")
	}
	if ny > math.MaxInt32 {
		panic("vecmath: ArgMinL2 with more than MaxInt32 y rows")
	}
	yNorms = normsOrCompute(y, ny, d, yNorms)
	argMinL2(x, nx, y, ny, d, yNorms, outIdx, outDist, threads)
}

func normsOrCompute(y []float32, ny, d int, yNorms []float32) []float32 {
	if yNorms != nil {
		if len(yNorms) < ny {
			panic(fmt.Sprintf("vecmath: yNorms has %d elements, need %d", len(yNorms), ny))
		}
		return yNorms
	}
	yNorms = make([]float32, ny)
	Norms2(y, d, yNorms)
	return yNorms
}

func checkMatrix(fn, name string, m []float32, n, d int) {
	if n < 0 || d < 0 {
		panic(fmt.Sprintf("vecmath: %s with negative size %s %dx%d", fn, name, n, d))
	}
	if len(m) < n*d {
		panic(fmt.Sprintf("vecmath: %s %s has %d elements, need %d x %d", fn, name, len(m), n, d))
	}
}

// MaxThreads bounds the goroutines Threads hands out: callers keep
// scratch space per goroutine (heaps, tables, distance buffers), so a
// thread count from a command line must not size it unchecked.
const MaxThreads = 1024

// Threads returns the number of goroutines to use for a requested count:
// GOMAXPROCS when threads <= 0, and at most MaxThreads.
func Threads(threads int) int {
	if threads <= 0 {
		return min(runtime.GOMAXPROCS(0), MaxThreads)
	}
	return min(threads, MaxThreads)
}

// ParallelFor calls fn(lo, hi, worker) for consecutive chunks [lo, hi) of
// [0, n) of at most chunk elements, from at most threads goroutines (see
// Threads). Chunks are handed out dynamically, so callers must make each
// chunk's result independent of which worker ran it; worker (in
// [0, threads)) only indexes per-goroutine scratch space.
func ParallelFor(n, chunk, threads int, fn func(lo, hi, worker int)) {
	if n <= 0 {
		return
	}
	if chunk <= 0 {
		chunk = 1
	}
	nchunks := (n + chunk - 1) / chunk
	t := min(Threads(threads), nchunks)
	if t <= 1 {
		for lo := 0; lo < n; lo += chunk {
			fn(lo, min(lo+chunk, n), 0)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range t {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c := int(next.Add(1) - 1)
				if c >= nchunks {
					return
				}
				lo := c * chunk
				fn(lo, min(lo+chunk, n), w)
			}
		}()
	}
	wg.Wait()
}
