package main

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/ivf"
)

// The operations behind the C functions, on Go values; the C layer itself
// (export.go) is run by the Python tests (python/tests).

// trainedHandle creates an index in dir (or in memory for ""), trains it
// on n clustered vectors and returns its handle and the vectors.
func trainedHandle(t *testing.T, dir string, n, d int) (int64, []float32) {
	t.Helper()
	h, err := create(dir, "IVF16,PQ4", int64(d), "l2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeHandle(h) })
	x := synth.Clustered(n, d, 20, 3).Data
	hd, ix, release, err := acquire(h, true)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := train(context.Background(), hd, ix, x, n, 1); err != nil {
		t.Fatal(err)
	}
	return h, x
}

func index(t *testing.T, h int64) *ivf.Index {
	t.Helper()
	_, ix, release, err := acquire(h, false)
	if err != nil {
		t.Fatal(err)
	}
	release()
	return ix
}

// TestSearchChunksMatchOneCall: search cuts the queries into calls of
// searchChunk and must return what one Search over all of them returns,
// with FAISS's values in empty slots.
func TestSearchChunksMatchOneCall(t *testing.T) {
	const d = 8
	h, x := trainedHandle(t, "", 3000, d)
	ix := index(t, h)
	if _, _, err := add(context.Background(), ix, x[:200*d], 200, nil); err != nil {
		t.Fatal(err)
	}
	nq, k := searchChunk+1500, 40 // k > what 1 probe finds: padded slots
	q := synth.Clustered(nq, d, 20, 4).Data
	wantD, wantI, err := ix.Search(q, nq, k, 1)
	if err != nil {
		t.Fatal(err)
	}
	dist, ids := make([]float32, nq*k), make([]int64, nq*k)
	if err := search(context.Background(), ix, q, nq, k, 1, dist, ids); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, wantI) {
		t.Fatal("chunked search returned other ids than one Search call")
	}
	pads := 0
	for i := range dist {
		if ids[i] == -1 {
			pads++
			if dist[i] != math.MaxFloat32 || !math.IsInf(float64(wantD[i]), 1) {
				t.Fatalf("empty slot %d: distance %g (Search: %g), want FAISS's %g", i, dist[i], wantD[i], math.MaxFloat32)
			}
		} else if dist[i] != wantD[i] {
			t.Fatalf("slot %d: distance %g, Search %g", i, dist[i], wantD[i])
		}
	}
	if pads == 0 {
		t.Fatal("no empty slots: the test does not cover the padding")
	}
}

// TestInterrupted: a cancelled token stops add and search before their
// next chunk, and a training cancelled while it ran is thrown away.
func TestInterrupted(t *testing.T) {
	const d = 8
	dir := filepath.Join(t.TempDir(), "idx")
	h, err := create(dir, "IVF16,PQ4", d, "l2")
	if err != nil {
		t.Fatal(err)
	}
	defer closeHandle(h)
	x := synth.Clustered(2000, d, 20, 3).Data
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	hd, ix, release, err := acquire(h, true)
	if err != nil {
		t.Fatal(err)
	}
	err = train(ctx, hd, ix, x, 2000, 1)
	release()
	if status(err) != statusInterrupted {
		t.Fatalf("train with a cancelled token: %v, want interrupted", err)
	}
	if ix := index(t, h); ix.IsTrained() {
		t.Fatal("an interrupted training was kept")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted training made %s: %v", dir, err)
	}

	hd, ix, release, err = acquire(h, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := train(context.Background(), hd, ix, x, 2000, 1); err != nil {
		t.Fatal(err)
	}
	release()
	ix = index(t, h)
	if ix.Dir() != dir {
		t.Fatalf("trained index in %q, want %q", ix.Dir(), dir)
	}
	_, added, err := add(ctx, ix, x, 2000, nil)
	if status(err) != statusInterrupted || added != 0 || ix.NTotal() != 0 {
		t.Fatalf("add with a cancelled token: %v, %d added, ntotal %d", err, added, ix.NTotal())
	}
	err = search(ctx, ix, x[:d], 1, 1, 1, make([]float32, 1), make([]int64, 1))
	if status(err) != statusInterrupted {
		t.Fatalf("search with a cancelled token: %v", err)
	}
	if _, added, err = add(context.Background(), ix, x, 2000, nil); err != nil || added != 2000 {
		t.Fatalf("add: %v, %d added", err, added)
	}
}

// TestCloseWhileRunning: a handle closed while a call runs on it is gone
// for new calls at once, and its index is closed when the call returns.
func TestCloseWhileRunning(t *testing.T) {
	h, _ := trainedHandle(t, filepath.Join(t.TempDir(), "idx"), 1000, 8)
	_, ix, release, err := acquire(h, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := closeHandle(h); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := acquire(h, false); !errors.Is(err, errClosed) {
		t.Fatalf("call on a closed handle: %v", err)
	}
	if err := closeHandle(h); !errors.Is(err, errClosed) {
		t.Fatalf("second close: %v", err)
	}
	// The running call still has an open index.
	if _, err := ix.StorageStats(); err != nil {
		t.Fatalf("index closed under a running call: %v", err)
	}
	release()
	again, err := ivf.Open(ix.Dir(), nil)
	if err != nil {
		t.Fatalf("the index was not closed when the last call returned (open for writing: %v)", err)
	}
	again.Close()
}

// TestCallsDuringTraining: while train holds an index (also a training
// interrupted and left to end in the background), other calls fail at
// once instead of racing with it, and its parameters can still be read.
func TestCallsDuringTraining(t *testing.T) {
	h, err := create("", "IVF16,PQ4", 8, "cosine")
	if err != nil {
		t.Fatal(err)
	}
	defer closeHandle(h)
	_, _, release, err := acquire(h, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := acquire(h, false); !errors.Is(err, errTraining) {
		t.Fatalf("call during a training: %v, want errTraining", err)
	}
	p, _, err := params(h)
	if err != nil || p.D != 8 || p.Metric != ivf.Cosine {
		t.Fatalf("params during a training: %+v, %v", p, err)
	}
	if err := closeHandle(h); err != nil {
		t.Fatal(err)
	}
	release()
	if _, _, _, err := acquire(h, false); !errors.Is(err, errClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

// TestSizesChecked: sizes from C are checked before a slice is made over
// them or anything is allocated.
func TestSizesChecked(t *testing.T) {
	for _, c := range []struct {
		n, d int64
		want int
		msg  string
	}{
		{10, 16, 8, "vectors of dimension 16, the index has dimension 8"},
		{-1, 8, 8, "-1 vectors"},
		{math.MaxInt64 / 4, 8, 8, "vectors of dimension 8"},
		{1, 0, 0, "1 vectors of dimension 0"},
		{1<<40 + 1, 1, 1, "1099511627777 vectors"},
	} {
		err := checkMatrix("vectors", c.n, c.d, c.want)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("checkMatrix(%d, %d, %d) = %v, want %q", c.n, c.d, c.want, err, c.msg)
		}
	}
	if err := checkMatrix("vectors", 1<<20, 1<<20, 1<<20); err != nil {
		t.Errorf("2^40 elements refused: %v", err)
	}
	for _, c := range [][2]int64{{1, 0}, {-1, 1}, {1 << 20, 1 << 9}, {1, math.MaxInt64}, {math.MaxInt64, 2}} {
		if err := checkResults(c[0], c[1]); err == nil {
			t.Errorf("checkResults(%d, %d) accepted", c[0], c[1])
		}
	}
	if err := checkResults(0, 10); err != nil {
		t.Errorf("no queries refused: %v", err)
	}
	if _, err := encodeBlock(nil, "", math.MaxInt64/2, 4, nil, 1); err == nil {
		t.Error("a block whose first row overflows was accepted")
	}
	for _, hr := range []float64{-0.1, math.NaN(), 11} {
		if err := checkHeadroom(hr); err == nil {
			t.Errorf("headroom %g accepted", hr)
		}
	}
}

// TestEncodeBlockResumes: a block that is there is not encoded again, and
// the merged blocks hold the rows under their numbers.
func TestEncodeBlockResumes(t *testing.T) {
	const d, n, bs = 8, 1000, 300
	tmp := t.TempDir()
	h, x := trainedHandle(t, filepath.Join(tmp, "idx"), n, d)
	ix := index(t, h)
	blocks := filepath.Join(tmp, "blocks")
	for pass := 0; pass < 2; pass++ {
		for b := int64(0); b*bs < n; b++ {
			lo, hi := b*bs, min((b+1)*bs, n)
			w, err := encodeBlock(ix, blocks, b, bs, x[lo*d:hi*d], hi-lo)
			if err != nil {
				t.Fatal(err)
			}
			if w != (pass == 0) {
				t.Fatalf("pass %d, block %d: written %v", pass, b, w)
			}
		}
	}
	if _, err := mergeBlocks(context.Background(), ix, blocks, &ivf.MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	if ix.NTotal() != n {
		t.Fatalf("ntotal %d after merging blocks of %d rows", ix.NTotal(), n)
	}
	// The same training (same data and seed), rows added in order: the
	// same search results.
	h2, _ := trainedHandle(t, "", n, d)
	ix2 := index(t, h2)
	if _, _, err := add(context.Background(), ix2, x, n, nil); err != nil {
		t.Fatal(err)
	}
	nq, k := 50, 10
	q := synth.Clustered(nq, d, 20, 4).Data
	d1, i1 := make([]float32, nq*k), make([]int64, nq*k)
	d2, i2 := make([]float32, nq*k), make([]int64, nq*k)
	if err := search(context.Background(), ix, q, nq, k, 4, d1, i1); err != nil {
		t.Fatal(err)
	}
	if err := search(context.Background(), ix2, q, nq, k, 4, d2, i2); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(i1, i2) || !slices.Equal(d1, d2) {
		t.Fatal("merged blocks search differently from the same rows added")
	}
}
