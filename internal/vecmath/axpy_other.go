//go:build !amd64

package vecmath

func add(dst, a, b []float32)                        { addGeneric(dst, a, b) }
func axpy(dst []float32, alpha float32, x []float32) { axpyGeneric(dst, alpha, x) }

func gemvT(out, q, mat []float32, cols int) { gemvTGeneric(out, q, mat, cols) }
