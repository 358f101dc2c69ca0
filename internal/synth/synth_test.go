package synth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/shelfdb/shelf/internal/vecio"
)

func bits(m vecio.Matrix) []byte {
	b := make([]byte, 0, 4*len(m.Data))
	for _, v := range m.Data {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func TestDeterministic(t *testing.T) {
	n := 5*chunkRows + 17
	mx := New(16, 20, 7)
	ref, refLabels := mx.sample(n, BaseStream, 1, true)
	if ref.N != n || ref.D != 16 || len(ref.Data) != n*16 {
		t.Fatalf("shape %dx%d with %d values", ref.N, ref.D, len(ref.Data))
	}
	for _, threads := range []int{2, 3, 8} {
		got, labels := mx.sample(n, BaseStream, threads, true)
		if !bytes.Equal(bits(got), bits(ref)) || !slices.Equal(labels, refLabels) {
			t.Fatalf("%d threads differ from 1 thread", threads)
		}
	}
	// A new Mixture with the same seed is the same mixture.
	if !bytes.Equal(bits(New(16, 20, 7).Sample(n, BaseStream)), bits(ref)) {
		t.Fatal("same seed, different data")
	}
	if !bytes.Equal(bits(Clustered(n, 16, 20, 7)), bits(ref)) {
		t.Fatal("Clustered differs from Sample(BaseStream)")
	}
	// Prefix stability, including a cut inside a chunk.
	for _, m := range []int{0, 1, chunkRows, 2*chunkRows + 5} {
		head := mx.Sample(m, BaseStream)
		if !bytes.Equal(bits(head), bits(ref)[:4*m*16]) {
			t.Fatalf("Sample(%d) is not a prefix of Sample(%d)", m, n)
		}
	}
	for name, other := range map[string]vecio.Matrix{
		"seed":   Clustered(n, 16, 20, 8),
		"stream": Queries(n, 16, 20, 7),
	} {
		if bytes.Equal(bits(other), bits(ref)) {
			t.Fatalf("a different %s gave the same data", name)
		}
	}
}

// TestStatistics checks the shape of the mixture: points sit about
// sigma*sqrt(d) from their own centre, much closer than centres are to each
// other, and cluster sizes are uneven.
func TestStatistics(t *testing.T) {
	const d, k, n = 64, 50, 40000
	mx := New(d, k, 3)
	x, labels := mx.SampleLabeled(n, BaseStream)
	for c := range k {
		if s := mx.Sigma(c); s < sigmaMin || s > sigmaMax {
			t.Fatalf("sigma %d = %v", c, s)
		}
	}
	var own, nearest, ratio float64
	counts := make([]int, k)
	for i := range n {
		row := x.Row(i)
		c := int(labels[i])
		counts[c]++
		dOwn := dist(row, mx.Centre(c))
		own += dOwn
		// Relative to the cluster's own sigma the distance is about
		// sqrt(d), with a standard deviation of 1/sqrt(2d) = 0.09.
		r := dOwn / (float64(mx.Sigma(c)) * math.Sqrt(d))
		if r < 0.5 || r > 1.5 {
			t.Fatalf("point %d is %.2f sigma*sqrt(d) from its centre", i, r)
		}
		ratio += r
		best := math.Inf(1)
		for cc := range k {
			best = min(best, dist(row, mx.Centre(cc)))
		}
		nearest += best
		if best < dOwn-1e-9 {
			t.Fatalf("point %d is nearer another centre than its own", i)
		}
	}
	own /= n
	nearest /= n
	if ratio /= n; math.Abs(ratio-1) > 0.02 {
		t.Fatalf("mean distance to own centre is %.3f sigma*sqrt(d)", ratio)
	}
	var between float64
	for a := range k {
		for b := range a {
			between += dist(mx.Centre(a), mx.Centre(b))
		}
	}
	between /= k * (k - 1) / 2
	t.Logf("mean distance to own centre %.2f, to nearest centre %.2f, between centres %.2f", own, nearest, between)
	if want := math.Sqrt(2 * d); math.Abs(between-want) > 0.1*want {
		t.Fatalf("mean distance between centres %.2f, want about %.2f", between, want)
	}
	if own > 0.5*between {
		t.Fatalf("points are %.2f from their centre, centres %.2f apart: clusters overlap", own, between)
	}
	// Sizes follow the weights and are uneven.
	var sq float64
	for c, cnt := range counts {
		exp := mx.Weight(c) * n
		if math.Abs(float64(cnt)-exp) > 5*math.Sqrt(exp)+5 {
			t.Fatalf("cluster %d has %d points, expected %.0f", c, cnt, exp)
		}
		sq += float64(cnt) * float64(cnt)
	}
	imbalance := sq * k / (n * n)
	t.Logf("cluster size imbalance factor %.2f", imbalance)
	if imbalance < 1.2 {
		t.Fatalf("imbalance factor %.2f: cluster sizes are too even", imbalance)
	}
	// Queries come from the same mixture.
	q, ql := mx.SampleLabeled(1000, QueryStream)
	var qown float64
	for i := range q.N {
		qown += dist(q.Row(i), mx.Centre(int(ql[i])))
	}
	if qown /= 1000; math.Abs(qown-own) > 0.1*own {
		t.Fatalf("queries are %.2f from their centres, base points %.2f", qown, own)
	}
}

func dist(a, b []float32) float64 {
	var s float64
	for i := range a {
		v := float64(a[i] - b[i])
		s += v * v
	}
	return math.Sqrt(s)
}

func TestPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"d":        func() { New(0, 1, 1) },
		"clusters": func() { New(1, 0, 1) },
		"n":        func() { New(1, 1, 1).Sample(-1, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// BenchmarkClustered measures generating base sets: bytes/s of float32
// values and values/s.
func BenchmarkClustered(b *testing.B) {
	for _, c := range []struct{ n, d int }{{200_000, 128}, {1_000_000, 128}} {
		b.Run(fmt.Sprintf("n=%d/d=%d/clusters=1000", c.n, c.d), func(b *testing.B) {
			b.SetBytes(int64(4 * c.n * c.d))
			b.ReportAllocs()
			for b.Loop() {
				Clustered(c.n, c.d, 1000, 1)
			}
			b.ReportMetric(float64(b.N)*float64(c.n*c.d)/b.Elapsed().Seconds(), "values/s")
		})
	}
}
