package rq

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
)

// collisions counts the rows whose code (m bytes) equals another row's.
func collisions(codes []byte, n, m int) int {
	count := map[string]int{}
	for i := range n {
		count[string(codes[i*m:(i+1)*m])]++
	}
	c := 0
	for _, v := range count {
		if v > 1 {
			c += v
		}
	}
	return c
}

// layerStats returns the codewords layer l uses and the largest number of
// rows on one of them.
func layerStats(codes []byte, n, m, l int) (used, most int) {
	var count [Ksub]int
	for i := range n {
		count[codes[i*m+l]]++
	}
	for _, c := range count {
		if c > 0 {
			used++
		}
		most = max(most, c)
	}
	return used, most
}

// With no epsilon, EncodeBalanced is the greedy encoder: EncodeLayers
// with a beam of 1, code for code.
func TestBalancedGreedyIsBeamOne(t *testing.T) {
	q, x := trainSmall(t, 16, 3, 1, 3000)
	const n = 3000
	want := make([]byte, n*q.M)
	if err := q.EncodeLayers(x, n, want, 0); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n*q.M)
	if err := q.EncodeBalanced(x, n, got, BalanceOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("EncodeBalanced with no epsilon differs from EncodeLayers with a beam of 1")
	}
	if err := q.EncodeBalanced(x, n, got, BalanceOptions{Eps: []float64{0, 0, 0}, Threads: 1}); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("EncodeBalanced with zero epsilons on one thread differs from EncodeLayers (%v)", err)
	}
}

// On clustered data the greedy last layer crowds the codewords near the
// cluster centres; the Sinkhorn layer spreads the rows out, so fewer
// codes collide and the largest codeword holds fewer rows.
func TestBalancedSpreadsCodes(t *testing.T) {
	const d, n = 16, 4000
	x := synth.Clustered(n, d, 20, 3).Data
	q, err := New(d, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	q.BeamSize = 1
	if err := q.Train(x, n, TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	greedy := make([]byte, n*2)
	if err := q.EncodeBalanced(x, n, greedy, BalanceOptions{}); err != nil {
		t.Fatal(err)
	}
	bal := make([]byte, n*2)
	if err := q.EncodeBalanced(x, n, bal, BalanceOptions{Eps: []float64{0, 0.003}, Iters: 50}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(firstLayer(greedy, n, 2), firstLayer(bal, n, 2)) {
		t.Error("layer 0 has epsilon 0 but its codes changed")
	}
	cg, cb := collisions(greedy, n, 2), collisions(bal, n, 2)
	ug, mg := layerStats(greedy, n, 2, 1)
	ub, mb := layerStats(bal, n, 2, 1)
	t.Logf("greedy: %d colliding rows, layer 1 uses %d codewords, at most %d rows on one", cg, ug, mg)
	t.Logf("Sinkhorn: %d colliding rows, layer 1 uses %d codewords, at most %d rows on one", cb, ub, mb)
	if cb >= cg {
		t.Errorf("Sinkhorn left %d colliding rows, greedy %d", cb, cg)
	}
	if mb >= mg || ub < ug {
		t.Errorf("Sinkhorn layer: %d codewords used, at most %d rows on one; greedy %d and %d", ub, mb, ug, mg)
	}
}

func firstLayer(codes []byte, n, m int) []byte {
	out := make([]byte, n)
	for i := range n {
		out[i] = codes[i*m]
	}
	return out
}

// From keeps the prefix: only the layers from From on are assigned.
func TestBalancedFrom(t *testing.T) {
	q, x := trainSmall(t, 16, 3, 1, 2000)
	const n = 300
	x = x[:n*16]
	codes := make([]byte, n*3)
	for i := range codes {
		codes[i] = byte(i * 7)
	}
	orig := bytes.Clone(codes)
	if err := q.EncodeBalanced(x, n, codes, BalanceOptions{From: 3}); err != nil || !bytes.Equal(codes, orig) {
		t.Fatalf("From = M changed the codes (%v)", err)
	}
	if err := q.EncodeBalanced(x, n, codes, BalanceOptions{From: 2, Eps: []float64{0, 0, 0.003}}); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range n {
		if codes[i*3] != orig[i*3] || codes[i*3+1] != orig[i*3+1] {
			t.Fatalf("row %d: prefix %v became %v", i, orig[i*3:i*3+2], codes[i*3:i*3+2])
		}
		if codes[i*3+2] != orig[i*3+2] {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no last-layer code was assigned")
	}
	// Greedy from the same prefix gives each row its nearest codeword to
	// the residual of that prefix.
	if err := q.EncodeBalanced(x, n, codes, BalanceOptions{From: 2}); err != nil {
		t.Fatal(err)
	}
	res := make([]float32, 16)
	for i := range n {
		q.residual(x[i*16:], codes[i*3:i*3+2], res)
		dd := make([]float32, Ksub)
		q.distances(res, 1, 2, dd)
		for k, v := range dd {
			if v < dd[codes[i*3+2]] {
				t.Fatalf("row %d: codeword %d is nearer than the chosen %d", i, k, codes[i*3+2])
			}
		}
	}
}

func TestBalancedErrors(t *testing.T) {
	q, x := trainSmall(t, 8, 2, 1, 1000)
	const n = 10
	x = x[:n*8]
	codes := make([]byte, n*2)
	nan := append([]float32(nil), x...)
	nan[13] = float32(math.NaN())
	untrained, _ := New(8, 2, 8)
	for name, f := range map[string]func() error{
		"short x":      func() error { return q.EncodeBalanced(x[:n*8-1], n, codes, BalanceOptions{}) },
		"short codes":  func() error { return q.EncodeBalanced(x, n, codes[:n*2-1], BalanceOptions{}) },
		"negative n":   func() error { return q.EncodeBalanced(x, -1, codes, BalanceOptions{}) },
		"eps count":    func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{Eps: []float64{0.1}}) },
		"negative eps": func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{Eps: []float64{0, -1}}) },
		"NaN eps":      func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{Eps: []float64{math.NaN(), 0}}) },
		"inf eps":      func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{Eps: []float64{0, math.Inf(1)}}) },
		"iters":        func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{Iters: -1}) },
		"from":         func() error { return q.EncodeBalanced(x, n, codes, BalanceOptions{From: 3}) },
		"NaN vector":   func() error { return q.EncodeBalanced(nan, n, codes, BalanceOptions{Eps: []float64{0, 0.003}}) },
		"untrained":    func() error { return untrained.EncodeBalanced(x, n, codes, BalanceOptions{}) },
	} {
		if err := f(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want an error wrapping ErrInvalid", name, err)
		}
	}
	if err := q.EncodeBalanced(nil, 0, nil, BalanceOptions{Eps: []float64{0, 0.003}}); err != nil {
		t.Errorf("no vectors: %v", err)
	}
}
