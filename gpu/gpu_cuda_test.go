//go:build cuda

package gpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shelfdb/shelf/gpu"
	"github.com/shelfdb/shelf/ivf"
)

type lists struct {
	ids   [][]int64
	codes [][]byte
}

func (l *lists) ReadList(i int) ([]int64, []byte, error) { return l.ids[i], l.codes[i], nil }

// synthetic makes n random codes of m bytes in nl lists and a request of
// nq queries probing nprobe lists each, with per-list terms and coarse
// terms as an L2 index with precomputed tables has.
func synthetic(n, nl, m, nq, nprobe, k int, seed uint64) (*ivf.ScanRequest, *lists) {
	r := rand.New(rand.NewPCG(seed, 7))
	src := &lists{ids: make([][]int64, nl), codes: make([][]byte, nl)}
	for i := range n {
		l := r.IntN(nl)
		src.ids[l] = append(src.ids[l], int64(i))
		for range m {
			src.codes[l] = append(src.codes[l], byte(r.IntN(256)))
		}
	}
	mk := m * 256
	req := &ivf.ScanRequest{NQ: nq, K: k, M: m, Ksub: 256, QTables: make([]float32, nq*mk)}
	for i := range req.QTables {
		req.QTables[i] = r.Float32()
	}
	lt := make([]float32, nl*mk)
	for i := range lt {
		lt[i] = r.Float32()
	}
	req.ListTables = func(l int) []float32 { return lt[l*mk : (l+1)*mk] }
	byList := make([][]int32, nl)
	for q := range nq {
		for _, l := range r.Perm(nl)[:nprobe] {
			byList[l] = append(byList[l], int32(q))
		}
	}
	req.ProbeStart = []int{0}
	for l, qs := range byList {
		if len(qs) == 0 {
			continue
		}
		req.Lists = append(req.Lists, l)
		for _, q := range qs {
			req.ProbeQuery = append(req.ProbeQuery, q)
			req.ProbeCoarse = append(req.ProbeCoarse, r.Float32())
		}
		req.ProbeStart = append(req.ProbeStart, len(req.ProbeQuery))
	}
	return req, src
}

// TestGPUMatchesCPU: 1M codes, 1,000 queries; the GPU's ids equal the
// CPU scanner's and distances agree to 1e-4 relative. The CPU sums table
// entries in a tree order and the GPU left to right, so two codes whose
// scores differ only in the last bits may swap: a differing id is
// accepted only where the two distances are within that tolerance.
func TestGPUMatchesCPU(t *testing.T) {
	s, err := gpu.NewScanner(gpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct{ m, k, nprobe int }{{16, 10, 16}, {32, 100, 8}, {8, 1024, 4}} {
		req, src := synthetic(1_000_000, 1024, c.m, 1000, c.nprobe, c.k, uint64(c.m))
		wd, wi, err := (&ivf.CPUScanner{}).Scan(req, src)
		if err != nil {
			t.Fatal(err)
		}
		gd, gi, err := ivfScanner{s}.Scan(req, src)
		if err != nil {
			t.Fatal(err)
		}
		swaps := 0
		for j := range wi {
			if !close32(wd[j], gd[j]) {
				t.Fatalf("%+v result %d: CPU (%v, %d), GPU (%v, %d)", c, j, wd[j], wi[j], gd[j], gi[j])
			}
			if wi[j] != gi[j] {
				swaps++
			}
		}
		t.Logf("%+v: %d results, %d near-tie id swaps", c, len(wi), swaps)
	}
}

func close32(a, b float32) bool {
	if a == b {
		return true
	}
	return math.Abs(float64(a-b)) <= 1e-4*math.Max(math.Abs(float64(a)), math.Abs(float64(b)))
}

// BenchmarkGPUScan: 10M codes of 16 bytes in 4096 lists, nprobe 64, k 10,
// batches of 1, 64 and 1024 queries; reports codes scanned per second
// (one code per probing query) and the bytes the GPU reads per second
// (each probed list's codes and ids once per batch, plus tables).
func BenchmarkGPUScan(b *testing.B) {
	s, err := gpu.NewScanner(gpu.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n, nl, m, nprobe, k = 10_000_000, 4096, 16, 64, 10
	for _, nq := range []int{1, 64, 1024} {
		req, src := synthetic(n, nl, m, nq, nprobe, k, 1)
		var codes, bytes int64
		for i, l := range req.Lists {
			nc := int64(len(src.ids[l]))
			codes += nc * int64(req.ProbeStart[i+1]-req.ProbeStart[i])
			bytes += nc * (m + 8)
		}
		bytes += int64(4 * (nq + len(req.Lists)) * m * 256)
		b.Run(fmt.Sprintf("batch=%d", nq), func(b *testing.B) {
			if _, _, err := (ivfScanner{s}).Scan(req, src); err != nil { // warm: buffers, JIT
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, _, err := (ivfScanner{s}).Scan(req, src); err != nil {
					b.Fatal(err)
				}
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(float64(codes)*float64(b.N)/sec, "codes/s")
			b.ReportMetric(float64(bytes)*float64(b.N)/sec, "GPU-B/s")
		})
	}
}
