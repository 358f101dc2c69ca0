package pq

import (
	"math/rand/v2"
	"testing"
)

// TestEncodeIsNearest checks every code byte names the nearest
// sub-centroid (up to float rounding ties) against a naive search.
func TestEncodeIsNearestNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	const n, d, m = 3000, 64, 16
	p, _ := New(d, m, 8)
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	if err := p.Train(x, n, 1, 2); err != nil {
		t.Fatal(err)
	}
	codes := make([]byte, n*m)
	p.Encode(x, n, codes)
	worse := 0
	for i := 0; i < n; i++ {
		for mm := 0; mm < m; mm++ {
			xs := x[i*d+mm*p.Dsub : i*d+(mm+1)*p.Dsub]
			best, bestD := -1, float32(0)
			for k := 0; k < p.Ksub; k++ {
				c := p.sub(mm)[k*p.Dsub : (k+1)*p.Dsub]
				var s float32
				for j := range xs {
					s += (xs[j] - c[j]) * (xs[j] - c[j])
				}
				if best < 0 || s < bestD {
					best, bestD = k, s
				}
			}
			got := codes[i*m+mm]
			c := p.sub(mm)[int(got)*p.Dsub : (int(got)+1)*p.Dsub]
			var s float32
			for j := range xs {
				s += (xs[j] - c[j]) * (xs[j] - c[j])
			}
			if s > bestD*1.0001+1e-6 {
				worse++
			}
		}
	}
	if worse > 0 {
		t.Fatalf("%d of %d sub-vectors encoded to a centroid that is not the nearest", worse, n*m)
	}
}
