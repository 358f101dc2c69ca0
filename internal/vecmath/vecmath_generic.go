package vecmath

import "math"

// The generic kernels are written so the gc compiler keeps every accumulator
// in a register: at most 8 live sums and 6 live loads, which fits the 16 SSE
// registers of amd64 without spilling.

func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func l2sqGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d0 := a[i] - b[i]
		s0 += d0 * d0
	}
	return (s0 + s1) + (s2 + s3)
}

// genericYBlockBytes bounds the y rows kept hot while x rows stream past
// them: half of a typical 48 KiB L1 data cache.
const genericYBlockBytes = 24 << 10

func innerProductsGeneric(x []float32, nx int, y []float32, ny int, d int, out []float32) {
	by := max(4, genericYBlockBytes/(4*d)) &^ 3
	for j0 := 0; j0 < ny; j0 += by {
		j1 := min(ny, j0+by)
		i := 0
		for ; i+2 <= nx; i += 2 {
			x0 := x[i*d : (i+1)*d]
			x1 := x[(i+1)*d : (i+2)*d]
			o0 := out[i*ny : (i+1)*ny]
			o1 := out[(i+1)*ny : (i+2)*ny]
			j := j0
			for ; j+4 <= j1; j += 4 {
				y0 := y[j*d : (j+1)*d]
				y1 := y[(j+1)*d : (j+2)*d]
				y2 := y[(j+2)*d : (j+3)*d]
				y3 := y[(j+3)*d : (j+4)*d]
				x1 := x1[:len(x0)]
				y0, y1, y2, y3 = y0[:len(x0)], y1[:len(x0)], y2[:len(x0)], y3[:len(x0)]
				var s00, s01, s02, s03, s10, s11, s12, s13 float32
				for k, a := range x0 {
					b := x1[k]
					c0, c1, c2, c3 := y0[k], y1[k], y2[k], y3[k]
					s00 += a * c0
					s01 += a * c1
					s02 += a * c2
					s03 += a * c3
					s10 += b * c0
					s11 += b * c1
					s12 += b * c2
					s13 += b * c3
				}
				o0[j], o0[j+1], o0[j+2], o0[j+3] = s00, s01, s02, s03
				o1[j], o1[j+1], o1[j+2], o1[j+3] = s10, s11, s12, s13
			}
			for ; j < j1; j++ {
				yr := y[j*d : (j+1)*d]
				o0[j] = dotGeneric(x0, yr)
				o1[j] = dotGeneric(x1, yr)
			}
		}
		for ; i < nx; i++ {
			xr := x[i*d : (i+1)*d]
			o := out[i*ny : (i+1)*ny]
			for j := j0; j < j1; j++ {
				o[j] = dotGeneric(xr, y[j*d:(j+1)*d])
			}
		}
	}
}

// genericTileFloats bounds the block of distances materialised per goroutine
// by the generic ArgMinL2.
const genericTileFloats = 16 << 10

func argMinL2Generic(x []float32, nx int, y []float32, ny int, d int, yNorms []float32, outIdx []int32, outDist []float32, threads int) {
	rows := max(1, min(256, genericTileFloats/ny))
	t := Threads(threads)
	tiles := make([][]float32, t)
	ParallelFor(nx, rows, t, func(lo, hi, w int) {
		if tiles[w] == nil {
			tiles[w] = make([]float32, rows*ny)
		}
		tile := tiles[w]
		innerProductsGeneric(x[lo*d:hi*d], hi-lo, y, ny, d, tile)
		for i := lo; i < hi; i++ {
			ips := tile[(i-lo)*ny : (i-lo+1)*ny]
			best := float32(math.Inf(1))
			bestJ := 0
			for j, ip := range ips {
				if v := yNorms[j] - 2*ip; v < best {
					best, bestJ = v, j
				}
			}
			xr := x[i*d : (i+1)*d]
			outIdx[i] = int32(bestJ)
			outDist[i] = max(dotGeneric(xr, xr)+best, 0)
		}
	})
}
