//go:build !amd64

package vecmath

func dot(a, b []float32) float32  { return dotGeneric(a, b) }
func l2sq(a, b []float32) float32 { return l2sqGeneric(a, b) }

func innerProducts(x []float32, nx int, y []float32, ny int, d int, out []float32) {
	innerProductsGeneric(x, nx, y, ny, d, out)
}

func packFor(y []float32, ny, d int) []float32 { return nil }

func innerProductsPacked(x []float32, nx int, p *Packed, out []float32) {
	innerProductsGeneric(x, nx, p.y, p.ny, p.d, out)
}

func argMinL2(x []float32, nx int, y []float32, ny int, d int, yNorms []float32, outIdx []int32, outDist []float32, threads int) {
	argMinL2Generic(x, nx, y, ny, d, yNorms, outIdx, outDist, threads)
}

// There are no assembly kernels on this architecture; the switches exist so
// that tests run the same way everywhere.
var useAVX2, useAVX512 bool

// FastPath names the kernels in use: always "generic" here.
func FastPath() string { return "generic" }
