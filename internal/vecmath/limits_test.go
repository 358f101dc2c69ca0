package vecmath

import (
	"runtime"
	"testing"
)

// TestTopKHugeK checks that a heap costs what it holds, not k: a k from a
// caller (above the candidates it will see) must not be allocated ahead.
func TestTopKHugeK(t *testing.T) {
	const k = 1 << 24
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h := NewTopK(k)
	for i := range 5000 {
		h.Push(float32(i%100), int64(i))
	}
	h.Reset(k)
	h.Push(1, 1)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("a heap of k = %d holding 5000 pairs allocated %d KiB", k, got>>10)
	}
	if d, ids := h.Sorted(); len(d) != 1 || ids[0] != 1 {
		t.Fatalf("after Reset: %v %v", d, ids)
	}
}

func TestResultCountAndThreads(t *testing.T) {
	maxInt := int(^uint(0) >> 1)
	for _, c := range []struct {
		nq, k int
		ok    bool
	}{
		{0, 1, true}, {0, MaxResults, true}, {0, MaxResults + 1, false},
		{1, 0, false}, {-1, 1, false}, {2, MaxResults / 2, true}, {2, MaxResults/2 + 1, false},
		{1 << 32, 1 << 32, false}, {maxInt, maxInt, false}, {3, maxInt / 2, false},
	} {
		if n, ok := ResultCount(c.nq, c.k); ok != c.ok || (ok && n != c.nq*c.k) {
			t.Errorf("ResultCount(%d, %d) = %d, %v", c.nq, c.k, n, ok)
		}
	}
	if got := Threads(maxInt); got != MaxThreads {
		t.Errorf("Threads(max int) = %d", got)
	}
}
