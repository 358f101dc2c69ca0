package vecmath

// The kernels read and write n floats through raw pointers; Add and Axpy
// check the slice lengths before calling them and pass n rounded down to a
// multiple of 8, finishing the tail in Go.

//go:noescape
func addAVX2(dst, a, b *float32, n int)

//go:noescape
func axpyAVX2(dst *float32, alpha float32, x *float32, n int)

func add(dst, a, b []float32) {
	n8 := len(dst) &^ 7
	if useAVX2 && n8 > 0 {
		addAVX2(&dst[0], &a[0], &b[0], n8)
	}
	if !useAVX2 {
		n8 = 0
	}
	addGeneric(dst[n8:], a[n8:], b[n8:])
}

func axpy(dst []float32, alpha float32, x []float32) {
	n8 := len(dst) &^ 7
	if useAVX2 && n8 > 0 {
		axpyAVX2(&dst[0], alpha, &x[0], n8)
	}
	if !useAVX2 {
		n8 = 0
	}
	axpyGeneric(dst[n8:], alpha, x[n8:])
}

//go:noescape
func gemvTAVX2(out, q, mat *float32, rows, cols int)

func gemvT(out, q, mat []float32, cols int) {
	// The kernel's row stride is its column count, so it takes whole
	// matrices of a multiple of 32 columns (PQ tables have 256).
	if useAVX2 && cols > 0 && cols%32 == 0 && len(q) > 0 {
		gemvTAVX2(&out[0], &q[0], &mat[0], len(q), cols)
		return
	}
	gemvTGeneric(out, q, mat, cols)
}
