package vecmath

import "fmt"

// Add sets dst[i] = a[i] + b[i]. It builds per-(query, list) distance
// tables from precomputed terms, so it runs once per probed list.
func Add(dst, a, b []float32) {
	if len(a) < len(dst) || len(b) < len(dst) {
		panic(fmt.Sprintf("vecmath: Add of %d floats from %d and %d", len(dst), len(a), len(b)))
	}
	add(dst, a, b)
}

// Axpy sets dst[i] += alpha * x[i] (BLAS saxpy).
func Axpy(dst []float32, alpha float32, x []float32) {
	if len(x) < len(dst) {
		panic(fmt.Sprintf("vecmath: Axpy of %d floats from %d", len(dst), len(x)))
	}
	axpy(dst, alpha, x)
}

func addGeneric(dst, a, b []float32) {
	a, b = a[:len(dst)], b[:len(dst)]
	for i := range dst {
		dst[i] = a[i] + b[i]
	}
}

func axpyGeneric(dst []float32, alpha float32, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += alpha * x[i]
	}
}
