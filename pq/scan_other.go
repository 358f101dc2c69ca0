//go:build !amd64

package pq

func scan(table []float32, m int, codes []byte, n int, out []float32) {
	scanUnrolled(table, m, codes, n, out)
}
