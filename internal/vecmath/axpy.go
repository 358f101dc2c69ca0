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

// GemvT sets out[k] = sum_j q[j] * mat[j*cols+k] for k < cols: a row
// vector times a len(q) x cols matrix. PQ distance tables are this
// product with the sub-centroids stored coordinate-major.
func GemvT(out, q, mat []float32, cols int) {
	if len(out) < cols || len(mat) < len(q)*cols {
		panic(fmt.Sprintf("vecmath: GemvT of %d x %d into %d from %d floats", len(q), cols, len(out), len(mat)))
	}
	gemvT(out, q, mat, cols)
}

func gemvTGeneric(out, q, mat []float32, cols int) {
	clear(out[:cols])
	gemvTTail(out, q, mat, cols, 0)
}

// gemvTTail computes columns [from, cols) of GemvT.
func gemvTTail(out, q, mat []float32, cols, from int) {
	for k := from; k < cols; k++ {
		var s float32
		for j, v := range q {
			s += v * mat[j*cols+k]
		}
		out[k] = s
	}
}
