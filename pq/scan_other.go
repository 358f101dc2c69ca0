//go:build !amd64

package pq

func scan(table []float32, m int, codes []byte, n int, out []float32) {
	scanUnrolled(table, m, codes, n, out)
}

// firstLE returns the index of the first d[i] <= thr, or len(d); NaN is
// never <= thr.
func firstLE(d []float32, thr float32) int {
	for i, v := range d {
		if v <= thr {
			return i
		}
	}
	return len(d)
}
