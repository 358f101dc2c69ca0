package pq

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/vecmath"
)

func randVecs(r *rand.Rand, n, d int) []float32 {
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func trained(t testing.TB, d, m, n int) (*PQ, []float32) {
	t.Helper()
	p, err := New(d, m, 8)
	if err != nil {
		t.Fatal(err)
	}
	x := randVecs(rand.New(rand.NewPCG(uint64(d), uint64(m))), n, d)
	if err := p.Train(x, n, 1, 2); err != nil {
		t.Fatal(err)
	}
	return p, x
}

func close32(a, b, rel float32) bool {
	scale := max(float32(math.Abs(float64(a))), float32(math.Abs(float64(b))), 1)
	return float32(math.Abs(float64(a-b))) <= rel*scale
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		d, m, nbits int
		want        string
	}{
		{0, 1, 8, "dimension 0"}, {-4, 2, 8, "dimension -4"}, {10, 0, 8, "M = 0"},
		{10, 4, 8, "not a multiple"}, {16, 4, 4, "nbits = 4"}, {16, 4, 16, "nbits = 16"},
	} {
		_, err := New(tc.d, tc.m, tc.nbits)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%d, %d, %d) = %v, want ErrInvalid mentioning %q", tc.d, tc.m, tc.nbits, err, tc.want)
		}
	}
	p, err := New(128, 16, 8)
	if err != nil || p.Dsub != 8 || p.Ksub != 256 || p.CodeSize() != 16 || len(p.Centroids) != 128*256 {
		t.Errorf("New(128, 16, 8) = %+v, %v", p, err)
	}
}

func TestTrainErrors(t *testing.T) {
	p, _ := New(8, 2, 8)
	if err := p.Train(make([]float32, 100*8), 100, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("100 points: %v", err)
	}
	if err := p.Train(make([]float32, 10), 300, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("short x: %v", err)
	}
	x := randVecs(rand.New(rand.NewPCG(1, 1)), 300, 8)
	x[7*8+5] = float32(math.NaN())
	err := p.Train(x, 300, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "sub-quantizer 1") || !strings.Contains(err.Error(), "row 7") {
		t.Errorf("NaN: %v", err)
	}
}

func TestTrainDeterministic(t *testing.T) {
	a, _ := trained(t, 16, 4, 1000)
	b, err := New(16, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	x := randVecs(rand.New(rand.NewPCG(16, 4)), 1000, 16)
	if err := b.Train(x, 1000, 1, 1); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Centroids, b.Centroids) {
		t.Error("training with 1 and 2 threads differs")
	}
}

func TestEncodeCentroidsIsExact(t *testing.T) {
	p, _ := trained(t, 24, 3, 800)
	r := rand.New(rand.NewPCG(3, 3))
	const n = 50
	x := make([]float32, n*p.D)
	for i := range n {
		for m := range p.M {
			k := r.IntN(p.Ksub)
			copy(x[i*p.D+m*p.Dsub:], p.sub(m)[k*p.Dsub:(k+1)*p.Dsub])
		}
	}
	codes := make([]byte, n*p.CodeSize())
	p.Encode(x, n, codes)
	got := make([]float32, n*p.D)
	p.Decode(codes, n, got)
	if !slices.Equal(got, x) {
		t.Error("decoding the codes of centroid vectors does not give them back")
	}
}

func TestEncodeIsNearest(t *testing.T) {
	p, x := trained(t, 16, 2, 600)
	n := 200
	codes := make([]byte, n*p.M)
	p.EncodeThreads(x, n, codes, 3)
	for i := range n {
		for m := range p.M {
			sub := x[i*p.D+m*p.Dsub : i*p.D+(m+1)*p.Dsub]
			best := float32(math.Inf(1))
			for k := range p.Ksub {
				best = min(best, vecmath.L2Sq(sub, p.sub(m)[k*p.Dsub:(k+1)*p.Dsub]))
			}
			c := int(codes[i*p.M+m])
			if got := vecmath.L2Sq(sub, p.sub(m)[c*p.Dsub:(c+1)*p.Dsub]); !close32(got, best, 1e-4) {
				t.Fatalf("vector %d sub %d: code %d at %v, nearest at %v", i, m, c, got, best)
			}
		}
	}
}

func TestADCMatchesDecodedDistance(t *testing.T) {
	p, x := trained(t, 32, 4, 700)
	r := rand.New(rand.NewPCG(4, 4))
	n := 100
	codes := make([]byte, n*p.M)
	p.Encode(x, n, codes)
	dec := make([]float32, n*p.D)
	p.Decode(codes, n, dec)
	q := randVecs(r, 1, p.D)
	l2 := make([]float32, p.M*p.Ksub)
	ip := make([]float32, p.M*p.Ksub)
	p.ComputeDistanceTable(q, l2)
	p.ComputeInnerProductTable(q, ip)
	for i := range n {
		code := codes[i*p.M : (i+1)*p.M]
		v := dec[i*p.D : (i+1)*p.D]
		if got, want := p.ADC(l2, code), vecmath.L2Sq(q, v); !close32(got, want, 1e-4) {
			t.Errorf("L2 ADC of %d = %v, decoded distance %v", i, got, want)
		}
		if got, want := p.ADC(ip, code), vecmath.Dot(q, v); !close32(got, want, 1e-4) {
			t.Errorf("IP ADC of %d = %v, decoded inner product %v", i, got, want)
		}
	}
}

func randTableCodes(r *rand.Rand, m, n int) ([]float32, []byte) {
	table := make([]float32, m*ksub8)
	for i := range table {
		table[i] = r.Float32() * 10
	}
	codes := make([]byte, n*m)
	for i := range codes {
		codes[i] = byte(r.Uint32())
	}
	return table, codes
}

func TestScanFastMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, m := range []int{1, 4, 8, 12, 16, 24, 32, 64} {
		for _, n := range []int{1, 3, 15, 17, 333} {
			table, codes := randTableCodes(r, m, n)
			want := make([]float32, n)
			scanGeneric(table, m, codes, n, want)
			got := make([]float32, n+1)
			got[n] = -1 // must stay untouched
			ScanL2(table, m, codes, n, got[:n])
			unrolled := make([]float32, n)
			scanUnrolled(table, m, codes, n, unrolled)
			p := &PQ{M: m, Ksub: ksub8}
			for i := range n {
				if !close32(got[i], want[i], 1e-5) || !close32(unrolled[i], want[i], 1e-5) {
					t.Fatalf("M=%d n=%d code %d: fast %v unrolled %v generic %v", m, n, i, got[i], unrolled[i], want[i])
				}
				if adc := p.ADC(table, codes[i*m:(i+1)*m]); adc != want[i] {
					t.Fatalf("M=%d code %d: ADC %v generic %v", m, i, adc, want[i])
				}
			}
			if got[n] != -1 {
				t.Fatalf("M=%d n=%d: scan wrote past n", m, n)
			}
		}
	}
}

func TestScanTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	const m = 16
	table, codes := randTableCodes(r, m, 1000)
	ids := make([]int64, 1000)
	for i := range ids {
		ids[i] = int64(10000 + i)
	}
	all := make([]float32, 1000)
	ScanL2(table, m, codes, 1000, all)
	order := make([]int, 1000)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return all[order[a]] < all[order[b]] })
	for _, k := range []int{1, 10, 999, 1000, 1500} {
		h := vecmath.NewTopK(k)
		// Two calls, as when probing two inverted lists.
		ScanTopK(table, m, codes[:600*m], ids[:600], 600, k, h)
		ScanTopK(table, m, codes[600*m:], ids[600:], 400, k, h)
		dist, got := h.Sorted()
		if len(got) != min(k, 1000) {
			t.Fatalf("k=%d: %d results", k, len(got))
		}
		for i := range got {
			if want := ids[order[i]]; got[i] != want || dist[i] != all[order[i]] {
				t.Fatalf("k=%d result %d: id %d (%v), want %d (%v)", k, i, got[i], dist[i], want, all[order[i]])
			}
		}
	}
	h := vecmath.NewTopK(3)
	ScanTopK(table, m, codes, nil, 1000, 3, h)
	if _, got := h.Sorted(); !slices.Equal(got, []int64{int64(order[0]), int64(order[1]), int64(order[2])}) {
		t.Errorf("nil ids: %v", got)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p, _ := trained(t, 16, 4, 600)
	data, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q PQ
	if err := q.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if q.D != p.D || q.M != p.M || q.Nbits != p.Nbits || q.Dsub != p.Dsub || q.Ksub != p.Ksub ||
		!slices.Equal(q.Centroids, p.Centroids) {
		t.Error("round trip changed the quantizer")
	}
}

// withCRC recomputes the checksum of a modified serialization, so that the
// check under test is reached.
func withCRC(b []byte) []byte {
	b = slices.Clone(b)
	body := b[:len(b)-4]
	v := crcOf(body)
	b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return b
}

func TestUnmarshalCorrupt(t *testing.T) {
	p, _ := New(8, 2, 8)
	for i := range p.Centroids {
		p.Centroids[i] = float32(i)
	}
	good, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	set32 := func(off int, v uint32) []byte {
		b := slices.Clone(good)
		b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		return withCRC(b)
	}
	nan := slices.Clone(good)
	copy(nan[headerSize+8:], []byte{0, 0, 0xc0, 0x7f})
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":     {nil, "shorter"},
		"short":     {good[:10], "shorter"},
		"magic":     {withCRC(append([]byte("XXPQ"), good[4:]...)), "magic"},
		"version":   {set32(4, 2), "version 2"},
		"d%m":       {set32(8, 9), "not a multiple"},
		"nbits":     {set32(16, 4), "nbits"},
		"huge d":    {set32(8, 1<<31), "out of range"},
		"m zero":    {set32(12, 0), "M = 0"},
		"truncated": {good[:len(good)-1], "needs"},
		"extended":  {append(slices.Clone(good), 0), "needs"},
		"checksum":  {append(slices.Clone(good[:len(good)-1]), good[len(good)-1]^1), "checksum"},
		"nan":       {withCRC(nan), "non-finite"},
	}
	for name, tc := range cases {
		var q PQ
		err := q.UnmarshalBinary(tc.data)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCorrupt mentioning %q", name, err, tc.want)
		}
		if q.Centroids != nil {
			t.Errorf("%s: failed unmarshal modified the receiver", name)
		}
	}
	// Every single-bit flip is caught.
	for i := range good {
		b := slices.Clone(good)
		b[i] ^= 0x10
		var q PQ
		if err := q.UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at byte %d: %v", i, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	p, _ := New(4, 2, 8)
	for i := range p.Centroids {
		p.Centroids[i] = float32(i) / 7
	}
	good, _ := p.MarshalBinary()
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add(good[:len(good)-1])
	f.Add([]byte("SHPQ"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var q PQ
		if err := q.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := q.MarshalBinary()
		if err != nil || !slices.Equal(again, data) {
			t.Fatalf("accepted input does not re-marshal to itself: %v", err)
		}
	})
}

func BenchmarkScan(b *testing.B) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(7, 7))
	for _, m := range []int{8, 16, 32, 64} {
		table, codes := randTableCodes(r, m, n)
		out := make([]float32, n)
		for _, impl := range []string{"fast", "unrolled", "generic"} {
			b.Run(fmt.Sprintf("M=%d/n=1M/%s", m, impl), func(b *testing.B) {
				for b.Loop() {
					switch impl {
					case "fast":
						ScanL2(table, m, codes, n, out)
					case "unrolled":
						scanUnrolled(table, m, codes, n, out)
					default:
						scanGeneric(table, m, codes, n, out)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/code")
			})
		}
	}
}

func BenchmarkScanTopK(b *testing.B) {
	const n, m, k = 1 << 20, 16, 100
	table, codes := randTableCodes(rand.New(rand.NewPCG(8, 8)), m, n)
	h := vecmath.NewTopK(k)
	b.Run("M=16/n=1M/k=100", func(b *testing.B) {
		for b.Loop() {
			h.Reset(k)
			ScanTopK(table, m, codes, nil, n, k, h)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/code")
	})
}

func BenchmarkTrainEncode(b *testing.B) {
	const n, d, m = 100_000, 128, 16
	x := randVecs(rand.New(rand.NewPCG(9, 9)), n, d)
	codes := make([]byte, n*m)
	b.Run("n=100k/d=128/M=16", func(b *testing.B) {
		for b.Loop() {
			p, err := New(d, m, 8)
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Train(x, n, 1, 0); err != nil {
				b.Fatal(err)
			}
			p.Encode(x, n, codes)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
}

func BenchmarkEncode(b *testing.B) {
	const n, d, m = 100_000, 128, 16
	p, x := trained(b, d, m, 20_000)
	x = slices.Concat(x, x, x, x, x)
	codes := make([]byte, n*m)
	b.Run("n=100k/d=128/M=16", func(b *testing.B) {
		for b.Loop() {
			p.Encode(x, n, codes)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "vectors/s")
	})
}
