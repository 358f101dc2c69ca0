package groundtruth

import (
	"testing"

	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
)

// TestKNNSizeLimits checks that k and the matrix shapes are bounded before
// the results are allocated: errors, never a panic or an allocation of
// nq*k; a k above the base rows is padded as FAISS pads.
func TestKNNSizeLimits(t *testing.T) {
	base := vecio.Matrix{N: 4, D: 2, Data: []float32{0, 0, 1, 0, 0, 1, 1, 1}}
	q := vecio.Matrix{N: 2, D: 2, Data: []float32{0, 0, 1, 1}}
	for _, k := range []int{0, -1, vecmath.MaxResults/2 + 1, 1 << 62, int(^uint(0) >> 1)} {
		if _, _, err := KNN(base, q, k, L2, 1); err == nil {
			t.Errorf("k = %d for 2 queries: no error", k)
		}
	}
	// N*D wraps to len(Data) for N = 2^62 + 1, D = 4.
	wrap := vecio.Matrix{N: 1<<62 + 1, D: 4, Data: make([]float32, 4)}
	if _, _, err := KNN(base, wrap, 1, L2, 1); err == nil {
		t.Error("queries of 2^62+1 rows in 4 floats: no error")
	}
	if _, _, err := KNN(wrap, q, 1, L2, 1); err == nil {
		t.Error("base of 2^62+1 rows in 4 floats: no error")
	}
	ids, dist, err := KNN(base, q, 6, L2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 0 || ids[3] < 0 || ids[4] != -1 || ids[5] != -1 || dist[3] > dist[4] {
		t.Fatalf("k = 6 over 4 rows: ids %v dist %v", ids[:6], dist[:6])
	}
}
