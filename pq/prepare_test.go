package pq

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPreparedTablesMatch checks the transposed-centroid tables against
// the dot-product ones.
func TestPreparedTablesMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, m := range []int{4, 8, 16, 32} {
		p, err := New(64, m, 8)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Centroids {
			p.Centroids[i] = r.Float32()*2 - 1
		}
		q := make([]float32, 64)
		for i := range q {
			q[i] = r.Float32()*2 - 1
		}
		n := p.M * p.Ksub
		slowIP, slowL2 := make([]float32, n), make([]float32, n)
		p.ComputeInnerProductTable(q, slowIP)
		p.ComputeDistanceTable(q, slowL2)
		p.Prepare()
		fastIP, fastL2 := make([]float32, n), make([]float32, n)
		p.ComputeInnerProductTable(q, fastIP)
		p.ComputeDistanceTable(q, fastL2)
		for i := 0; i < n; i++ {
			if math.Abs(float64(fastIP[i]-slowIP[i])) > 1e-4 || math.Abs(float64(fastL2[i]-slowL2[i])) > 1e-4 {
				t.Fatalf("M=%d entry %d: ip %v vs %v, l2 %v vs %v", m, i, fastIP[i], slowIP[i], fastL2[i], slowL2[i])
			}
		}
	}
}

// TestFirstLE checks the threshold search ScanTopK skips with against a
// plain loop: lengths around the 8-wide blocks, equal values, NaNs.
func TestFirstLE(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 2000 {
		n := r.IntN(40)
		d := make([]float32, n)
		for i := range d {
			switch r.IntN(10) {
			case 0:
				d[i] = float32(math.NaN())
			default:
				d[i] = float32(r.IntN(20))
			}
		}
		thr := float32(r.IntN(24)) - 2
		if r.IntN(10) == 0 {
			thr = float32(math.Inf(1))
		}
		want := n
		for i, v := range d {
			if v <= thr {
				want = i
				break
			}
		}
		if got := firstLE(d, thr); got != want {
			t.Fatalf("firstLE(%v, %v) = %d, want %d", d, thr, got, want)
		}
	}
}
