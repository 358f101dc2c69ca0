package vecmath

import (
	"math/rand/v2"
	"testing"
)

func TestAddAxpyMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 100, 4096, 4099} {
		a, b, x := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i], x[i] = r.Float32()-0.5, r.Float32()-0.5, r.Float32()-0.5
		}
		got, want := make([]float32, n), make([]float32, n)
		Add(got, a, b)
		addGeneric(want, a, b)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("Add n=%d: [%d] %v, generic %v", n, i, got[i], want[i])
			}
		}
		copy(got, a)
		copy(want, a)
		Axpy(got, -2.5, x)
		axpyGeneric(want, -2.5, x)
		for i := range got {
			if d := got[i] - want[i]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("Axpy n=%d: [%d] %v, generic %v", n, i, got[i], want[i])
			}
		}
	}
}

func TestGemvTMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, rows := range []int{1, 2, 4, 8, 16} {
		for _, cols := range []int{1, 31, 32, 64, 256, 257} {
			q := make([]float32, rows)
			mat := make([]float32, rows*cols)
			for i := range q {
				q[i] = r.Float32() - 0.5
			}
			for i := range mat {
				mat[i] = r.Float32() - 0.5
			}
			got, want := make([]float32, cols), make([]float32, cols)
			GemvT(got, q, mat, cols)
			gemvTGeneric(want, q, mat, cols)
			for k := range got {
				if d := got[k] - want[k]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("rows %d cols %d: [%d] %v, generic %v", rows, cols, k, got[k], want[k])
				}
			}
		}
	}
}
