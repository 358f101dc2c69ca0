package rq

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/internal/vecmath"
)

func trainSmall(t *testing.T, d, m, beam, n int) (*RQ, []float32) {
	t.Helper()
	x := synth.Clustered(n, d, 20, 3).Data
	q, err := New(d, m, 8)
	if err != nil {
		t.Fatal(err)
	}
	q.BeamSize = beam
	if err := q.Train(x, n, TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return q, x
}

func mse(q *RQ, x []float32, n int) float64 {
	codes := make([]byte, n*q.M)
	if err := q.EncodeLayers(x, n, codes, 0); err != nil {
		panic(err)
	}
	y := make([]float32, n*q.D)
	if err := q.Decode(codes, q.M, n, y); err != nil {
		panic(err)
	}
	var s float64
	for i := range x {
		e := float64(x[i] - y[i])
		s += e * e
	}
	return s / float64(n)
}

// Every layer lowers the error, and a wider beam does not raise it.
func TestLayersAndBeam(t *testing.T) {
	const d, n = 16, 4000
	x := synth.Clustered(n, d, 20, 3).Data
	var energy float64
	for _, v := range x {
		energy += float64(v) * float64(v)
	}
	energy /= n
	prev := energy
	for m := 1; m <= 3; m++ {
		q, err := New(d, m, 8)
		if err != nil {
			t.Fatal(err)
		}
		q.BeamSize = 1
		if err := q.Train(x, n, TrainOptions{Seed: 1}); err != nil {
			t.Fatal(err)
		}
		e := mse(q, x, n)
		if e >= prev {
			t.Errorf("%d layers: MSE %g, not below %g", m, e, prev)
		}
		prev = e
		greedy := e
		q.BeamSize = 8
		if wide := mse(q, x, n); wide > greedy*(1+1e-6) {
			t.Errorf("%d layers: beam 8 MSE %g above greedy %g on the same codebooks", m, wide, greedy)
		}
	}
}

// Joint refinement lowers the training error of layer-by-layer k-means.
func TestRefine(t *testing.T) {
	const d, n = 16, 4000
	x := synth.Clustered(n, d, 20, 3).Data
	var e [2]float64
	for i, rounds := range []int{0, 2} {
		q, _ := New(d, 3, 8)
		q.BeamSize = 2
		if err := q.Train(x, n, TrainOptions{Seed: 1, Refine: rounds}); err != nil {
			t.Fatal(err)
		}
		e[i] = mse(q, x, n)
	}
	t.Logf("MSE without refinement %.5g, with 2 rounds %.5g", e[0], e[1])
	if e[1] >= e[0] {
		t.Errorf("refinement did not lower the error: %g -> %g", e[0], e[1])
	}
}

// Brute force over all codes of a 2-layer quantizer with a beam of 256
// (every first-layer codeword kept) finds the exact best code.
func TestBeamExhaustive(t *testing.T) {
	q, x := trainSmall(t, 8, 2, 256, 1000)
	codes := make([]byte, 50*2)
	if err := q.EncodeLayers(x[:50*8], 50, codes, 1); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, 8)
	for i := range 50 {
		xi := x[i*8 : (i+1)*8]
		best := math.Inf(1)
		for a := range Ksub {
			for b := range Ksub {
				q.decodeLayers([]byte{byte(a), byte(b)}, y)
				best = min(best, float64(vecmath.L2Sq(xi, y)))
			}
		}
		q.decodeLayers(codes[2*i:2*i+2], y)
		if got := float64(vecmath.L2Sq(xi, y)); got > best*(1+1e-4)+1e-6 {
			t.Fatalf("vector %d: beam code at %g, best code at %g", i, got, best)
		}
	}
}

// Tables give the distances and inner products of decoded vectors, with
// the norm quantized to its level.
func TestTables(t *testing.T) {
	q, x := trainSmall(t, 16, 3, 4, 3000)
	const n = 200
	codes := make([]byte, n*q.CodeSize())
	if err := q.Encode(x[:n*16], n, codes, 0); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	qv := make([]float32, 16)
	for j := range qv {
		qv[j] = float32(rng.NormFloat64())
	}
	dt := make([]float32, q.Tables()*Ksub)
	it := make([]float32, q.Tables()*Ksub)
	nt := make([]float32, q.Tables()*Ksub)
	q.ComputeDistanceTable(qv, dt)
	q.ComputeInnerProductTable(qv, it)
	q.NormTable(nt)
	// The batch tables equal the single ones to rounding.
	qs := make([]float32, 5*16)
	for j := range qs {
		qs[j] = float32(rng.NormFloat64())
	}
	copy(qs[2*16:], qv)
	bt := make([]float32, 5*q.Tables()*Ksub)
	for j := range bt {
		bt[j] = float32(math.NaN()) // every entry must be written
	}
	q.ComputeInnerProductTables(qs, 5, bt)
	for i := range 5 {
		one := make([]float32, q.Tables()*Ksub)
		q.ComputeInnerProductTable(qs[i*16:(i+1)*16], one)
		for j, v := range one {
			if w := bt[i*len(one)+j]; math.Abs(float64(w-v)) > 1e-4*(1+math.Abs(float64(v))) || math.IsNaN(float64(w)) {
				t.Fatalf("query %d entry %d: batch table %g, single %g", i, j, w, v)
			}
		}
	}
	y := make([]float32, 16)
	var sumNormErr float64
	for i := range n {
		code := codes[i*q.CodeSize() : (i+1)*q.CodeSize()]
		q.decodeLayers(code[:q.M], y)
		var ds, is, ns float32
		for m, c := range code {
			ds += dt[m*Ksub+int(c)]
			is += it[m*Ksub+int(c)]
			ns += nt[m*Ksub+int(c)]
		}
		norm := vecmath.Dot(y, y)
		level := q.NormLevels[code[q.M]]
		if ns != level {
			t.Fatalf("code %d: norm table sum %g, level %g", i, ns, level)
		}
		// The level is the nearest to the true norm.
		for _, l := range q.NormLevels {
			if math.Abs(float64(l-norm)) < math.Abs(float64(level-norm))-1e-6 {
				t.Fatalf("code %d: level %g for norm %g, %g is nearer", i, level, norm, l)
			}
		}
		sumNormErr += math.Abs(float64(level-norm)) / float64(norm)
		want := vecmath.L2Sq(qv, y) - norm + level
		if math.Abs(float64(ds-want)) > 1e-3*(1+math.Abs(float64(want))) {
			t.Fatalf("code %d: table distance %g, want %g", i, ds, want)
		}
		if ipw := vecmath.Dot(qv, y); math.Abs(float64(is-ipw)) > 1e-3*(1+math.Abs(float64(ipw))) {
			t.Fatalf("code %d: table inner product %g, want %g", i, is, ipw)
		}
	}
	if e := sumNormErr / n; e > 0.01 {
		t.Errorf("norm levels off by %.4f of the norm on average", e)
	}
}

func TestMarshal(t *testing.T) {
	q, x := trainSmall(t, 8, 2, 2, 1000)
	b, err := q.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var r RQ
	if err := r.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	c1 := make([]byte, 100*3)
	c2 := make([]byte, 100*3)
	if err := q.Encode(x[:800], 100, c1, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Encode(x[:800], 100, c2, 1); err != nil {
		t.Fatal(err)
	}
	if string(c1) != string(c2) || r.BeamSize != 2 {
		t.Fatal("codes differ after a round trip")
	}
	for i := 0; i < len(b); i += 97 {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x40
		if err := new(RQ).UnmarshalBinary(bad); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for _, n := range []int{0, 10, len(b) - 1} {
		if err := new(RQ).UnmarshalBinary(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, c := range [][3]int{{0, 2, 8}, {8, 0, 8}, {8, 2, 4}, {8, 65, 8}} {
		if _, err := New(c[0], c[1], c[2]); !errors.Is(err, ErrInvalid) {
			t.Errorf("New%v: %v", c, err)
		}
	}
	q, _ := New(4, 2, 8)
	if err := q.Train(make([]float32, 4*100), 100, TrainOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("100 training vectors: %v", err)
	}
	x := make([]float32, 4*300)
	x[7] = float32(math.NaN())
	if err := q.Train(x, 300, TrainOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NaN: %v", err)
	}
	if err := q.Encode(make([]float32, 4), 1, make([]byte, 3), 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("untrained encode: %v", err)
	}
	if _, err := FromCodebooks(4, 2, make([]float32, 10), nil, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("short codebooks: %v", err)
	}
}

func FuzzUnmarshal(f *testing.F) {
	q, err := FromCodebooks(2, 1, make([]float32, 2*Ksub), make([]float32, Ksub), 1)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := q.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r RQ
		if r.UnmarshalBinary(b) != nil {
			return
		}
		out, err := r.MarshalBinary()
		if err != nil || string(out) != string(b) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// TestTrainNormLevels: 256 ascending levels within the norms' range, each
// norm coded near its value; no norms or a NaN is an error.
func TestTrainNormLevels(t *testing.T) {
	norms := make([]float32, 5000)
	for i := range norms {
		norms[i] = float32(i%1000) / 10
	}
	lv, err := TrainNormLevels(norms)
	if err != nil || len(lv) != Ksub || !slices.IsSorted(lv) || lv[0] < 0 || lv[Ksub-1] > 99.9 {
		t.Fatalf("levels %v, %v", lv, err)
	}
	r := &RQ{NormLevels: lv}
	for _, v := range norms {
		if e := math.Abs(float64(lv[r.NormCode(v)] - v)); e > 0.5 {
			t.Fatalf("norm %g coded as %g", v, lv[r.NormCode(v)])
		}
	}
	if _, err := TrainNormLevels(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no norms: %v", err)
	}
	if _, err := TrainNormLevels([]float32{1, float32(math.NaN())}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NaN norm: %v", err)
	}
}
