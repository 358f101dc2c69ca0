package kmeans

import (
	"errors"
	"testing"
)

// TestSizeLimits checks that sizes from the caller are bounded before
// anything is allocated from them: n*d that wraps around, and point caps
// whose product with K overflows.
func TestSizeLimits(t *testing.T) {
	x := make([]float32, 8)
	for i := range x {
		x[i] = float32(i)
	}
	// n*d wraps to len(x) = 8 for n = 2^62 + 2, d = 4.
	if _, err := Train(x, 1<<62+2, 4, Config{K: 1}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("n*d wrapping: err = %v", err)
	}
	const n, d = 64, 2
	y := make([]float32, n*d)
	for i := range y {
		y[i] = float32(i % 7)
	}
	huge := int(^uint(0) >> 1)
	for _, cfg := range []Config{
		{K: 4, MaxPointsPerCentroid: huge},
		{K: 4, MaxPointsPerCentroid: huge / 3},
		{K: 4, MinPointsPerCentroid: huge / 3, Warn: func(string) {}},
	} {
		c, err := Train(y, n, d, cfg)
		if err != nil || len(c) != 4*d {
			t.Errorf("%+v: %d floats, %v", cfg, len(c), err)
		}
	}
}
