package vecmath

import (
	"math"

	"golang.org/x/sys/cpu"
)

// useAVX2 and useAVX512 select the assembly kernels of kernels_amd64.s.
// They are variables so tests can run every level on the same machine;
// useAVX512 is only consulted when useAVX2 is set.
var (
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	useAVX512 = useAVX2 && cpu.X86.HasAVX512F
)

// FastPath names the kernels in use: "avx512", "avx2" or "generic".
func FastPath() string {
	switch {
	case useAVX2 && useAVX512:
		return "avx512"
	case useAVX2:
		return "avx2"
	}
	return "generic"
}

// The assembly kernels read through raw pointers. Their callers below
// guarantee every pointer addresses at least as many elements as the kernel
// reads: n for dot/l2sq; 4 rows of d floats at stride ldx for x; d*16 floats
// per panel of p; 4 rows of 16 floats at stride ldo for out; 16 floats of
// norms per panel; 64 (AVX2) or 128 (AVX-512) floats of minv/mini; d*8
// floats of xp.

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func l2sqAVX2(a, b *float32, n int) float32

//go:noescape
func gemm4x16AVX2(x *float32, ldx int, p *float32, d int, out *float32, ldo int)

//go:noescape
func argmin8x16AVX512(xp *float32, p *float32, d int, npanels int, norms *float32, idx0 int32, minv *float32, mini *int32, final int)

//go:noescape
func argmin4x16AVX2(x *float32, ldx int, p *float32, d int, npanels int, norms *float32, idx0 int32, minv *float32, mini *int32)

// Below this length the call into assembly costs more than it saves.
const asmMinLen = 16

func dot(a, b []float32) float32 {
	if useAVX2 && len(a) >= asmMinLen {
		return dotAVX2(&a[0], &b[0], len(a))
	}
	return dotGeneric(a, b)
}

func l2sq(a, b []float32) float32 {
	if useAVX2 && len(a) >= asmMinLen {
		return l2sqAVX2(&a[0], &b[0], len(a))
	}
	return l2sqGeneric(a, b)
}

// panelWidth is the number of y rows per packed panel: two YMM registers.
const panelWidth = 16

// packPanels transposes y into panels of panelWidth columns, each stored as
// d rows of panelWidth floats, scaled by scale; missing columns of the last
// panel are zero. The kernels then read one contiguous 64-byte row per step.
func packPanels(y []float32, ny, d int, scale float32) []float32 {
	np := (ny + panelWidth - 1) / panelWidth
	p := make([]float32, np*panelWidth*d)
	for j := range ny {
		base := (j/panelWidth)*panelWidth*d + j%panelWidth
		row := y[j*d : (j+1)*d]
		for k, v := range row {
			p[base+k*panelWidth] = scale * v
		}
	}
	return p
}

// panelChunk returns how many panels to keep hot in L2 at once.
func panelChunk(d int) int {
	const l2Budget = 256 << 10
	return max(1, l2Budget/(panelWidth*d*4))
}

func innerProducts(x []float32, nx int, y []float32, ny int, d int, out []float32) {
	if !useAVX2 {
		innerProductsGeneric(x, nx, y, ny, d, out)
		return
	}
	if nx < 4 {
		innerProductsFew(x, nx, y, ny, d, out)
		return
	}
	innerProductsPanels(x, nx, packPanels(y, ny, d, 1), ny, d, out)
}

// packFor packs y for Packed, when the kernels use panels.
func packFor(y []float32, ny, d int) []float32 {
	if !useAVX2 {
		return nil
	}
	return packPanels(y, ny, d, 1)
}

func innerProductsPacked(x []float32, nx int, p *Packed, out []float32) {
	if p.panels == nil || !useAVX2 {
		innerProductsGeneric(x, nx, p.y, p.ny, p.d, out)
		return
	}
	if nx < 4 {
		innerProductsFew(x, nx, p.y, p.ny, p.d, out)
		return
	}
	innerProductsPanels(x, nx, p.panels, p.ny, p.d, out)
}

// innerProductsFew is innerProducts for fewer than 4 rows of x (a query
// searched alone): one AVX2 dot product per pair. The panel kernels take
// rows in groups of 4 and their packing of y costs more than a few rows
// save; the generic loops are scalar (a single query's coarse step
// against 8,192 centroids of 64 dimensions took 0.3 ms there).
func innerProductsFew(x []float32, nx int, y []float32, ny int, d int, out []float32) {
	for i := range nx {
		xr := x[i*d : (i+1)*d]
		o := out[i*ny : (i+1)*ny]
		for j := range o {
			o[j] = dot(xr, y[j*d:(j+1)*d])
		}
	}
}

// innerProductsPanels is innerProducts with y already packed.
func innerProductsPanels(x []float32, nx int, packed []float32, ny, d int, out []float32) {
	np := (ny + panelWidth - 1) / panelWidth
	chunk := panelChunk(d)
	var tile [4 * panelWidth]float32
	xpad := make([]float32, 4*d)
	for p0 := 0; p0 < np; p0 += chunk {
		p1 := min(np, p0+chunk)
		for i := 0; i < nx; i += 4 {
			rows := min(4, nx-i)
			xr := &x[i*d]
			if rows < 4 {
				clear(xpad)
				copy(xpad, x[i*d:nx*d])
				xr = &xpad[0]
			}
			for p := p0; p < p1; p++ {
				j := p * panelWidth
				pp := &packed[p*panelWidth*d]
				if rows == 4 && j+panelWidth <= ny {
					gemm4x16AVX2(xr, d, pp, d, &out[i*ny+j], ny)
					continue
				}
				gemm4x16AVX2(xr, d, pp, d, &tile[0], panelWidth)
				cols := min(panelWidth, ny-j)
				for r := range rows {
					copy(out[(i+r)*ny+j:(i+r)*ny+j+cols], tile[r*panelWidth:r*panelWidth+cols])
				}
			}
		}
	}
}

// argRowsPerTask is the number of x rows one goroutine takes at a time.
const argRowsPerTask = 128

func argMinL2(x []float32, nx int, y []float32, ny int, d int, yNorms []float32, outIdx []int32, outDist []float32, threads int) {
	if !useAVX2 || d == 0 {
		argMinL2Generic(x, nx, y, ny, d, yNorms, outIdx, outDist, threads)
		return
	}
	if nx < 4 {
		// A query or few searched alone: dot products on the AVX2
		// kernel, no packing (see innerProductsFew).
		for i := range nx {
			xr := x[i*d : (i+1)*d]
			best, bestJ := float32(math.Inf(1)), 0
			for j := range ny {
				if v := yNorms[j] - 2*dot(xr, y[j*d:(j+1)*d]); v < best {
					best, bestJ = v, j
				}
			}
			outIdx[i] = int32(bestJ)
			outDist[i] = max(dot(xr, xr)+best, 0)
		}
		return
	}
	np := (ny + panelWidth - 1) / panelWidth
	// Scaling by -2 at packing time lets the kernel produce
	// ||y||^2 - 2<x,y> with one add per output.
	packed := packPanels(y, ny, d, -2)
	norms := make([]float32, np*panelWidth)
	copy(norms, yNorms[:ny])
	for j := ny; j < len(norms); j++ {
		// Padding columns can never win.
		norms[j] = float32(math.Inf(1))
	}
	chunk := panelChunk(d)
	t := Threads(threads)
	// rowsPerGroup x rows go through the kernel together: 4 for AVX2, 8
	// interleaved ones for AVX-512.
	rowsPerGroup := 4
	if useAVX512 {
		rowsPerGroup = 8
	}
	groupState := rowsPerGroup * panelWidth
	type scratch struct {
		minv []float32
		mini []int32
		xpad []float32
	}
	scr := make([]scratch, t)
	ParallelFor(nx, argRowsPerTask, t, func(lo, hi, w int) {
		s := &scr[w]
		if s.minv == nil {
			s.minv = make([]float32, argRowsPerTask*panelWidth)
			s.mini = make([]int32, argRowsPerTask*panelWidth)
			if useAVX512 {
				s.xpad = make([]float32, argRowsPerTask*d)
			} else {
				s.xpad = make([]float32, 4*d)
			}
		}
		copy(s.minv, initMinV[:])
		copy(s.mini, initMinI[:])
		if useAVX512 {
			// Interleave each group of 8 rows: xp[g][k][r] = x[lo+8g+r][k].
			clear(s.xpad)
			for i := lo; i < hi; i++ {
				g, r := (i-lo)/8, (i-lo)%8
				base := g * 8 * d
				for k, v := range x[i*d : (i+1)*d] {
					s.xpad[base+k*8+r] = v
				}
			}
		}
		for p0 := 0; p0 < np; p0 += chunk {
			p1 := min(np, p0+chunk)
			for i := lo; i < hi; i += rowsPerGroup {
				g := (i - lo) / rowsPerGroup
				st := g * groupState
				if useAVX512 {
					argmin8x16(s.xpad[g*8*d:], packed, p0, p1, d, norms, s.minv[st:], s.mini[st:], p1 == np)
					continue
				}
				xr := &x[i*d]
				if i+4 > hi {
					clear(s.xpad)
					copy(s.xpad, x[i*d:hi*d])
					xr = &s.xpad[0]
				}
				argmin4x16AVX2(xr, d, &packed[p0*panelWidth*d], d, p1-p0, &norms[p0*panelWidth],
					int32(p0*panelWidth), &s.minv[st], &s.mini[st])
			}
		}
		for i := lo; i < hi; i++ {
			g := (i - lo) * panelWidth
			var best float32
			var bestJ int32
			if useAVX512 {
				// The kernel reduced the lanes in its last call.
				best, bestJ = s.minv[g], max(s.mini[g], 0)
			} else {
				best, bestJ = reduceLanes((*[panelWidth]float32)(s.minv[g:]), (*[panelWidth]int32)(s.mini[g:]))
			}
			xr := x[i*d : (i+1)*d]
			outIdx[i] = bestJ
			outDist[i] = max(dot(xr, xr)+best, 0)
		}
	})
}

var (
	initMinV [argRowsPerTask * panelWidth]float32
	initMinI [argRowsPerTask * panelWidth]int32
)

func init() {
	for k := range initMinV {
		initMinV[k] = float32(math.Inf(1))
		initMinI[k] = -1
	}
}

// reduceLanes returns the smallest value of v and, among the lanes holding
// it, the smallest index, so ties resolve to the lowest column as in the
// generic code. A first branch-free pass finds the value; ties are rare, so
// the second pass rarely changes its first pick.
func reduceLanes(v *[panelWidth]float32, idx *[panelWidth]int32) (float32, int32) {
	best := v[0]
	for _, x := range v[1:] {
		best = min(best, x)
	}
	bestJ := int32(math.MaxInt32)
	for l, x := range v {
		if x == best && idx[l] < bestJ {
			bestJ = idx[l]
		}
	}
	if bestJ < 0 || bestJ == math.MaxInt32 {
		// Only when every distance was NaN or +Inf.
		bestJ = 0
	}
	return best, bestJ
}

func argmin8x16(xp []float32, packed []float32, p0, p1, d int, norms []float32, minv []float32, mini []int32, final bool) {
	f := 0
	if final {
		f = 1
	}
	argmin8x16AVX512(&xp[0], &packed[p0*panelWidth*d], d, p1-p0, &norms[p0*panelWidth],
		int32(p0*panelWidth), &minv[0], &mini[0], f)
}
