package gpu_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shelfdb/shelf/gpu"
	"github.com/shelfdb/shelf/ivf"
)

// Both builds' Scanner is an ivf.Scanner.
var _ ivf.Scanner = (*gpu.Scanner)(nil)

type lists struct {
	ids   [][]int64
	codes [][]byte
}

func (l *lists) ReadList(i int) ([]int64, []byte, error) { return l.ids[i], l.codes[i], nil }

// versioned is a source with a content version, which a scanner's
// device cache may keep lists of.
type versioned struct {
	*lists
	v uint64
}

func (s versioned) Version() uint64 { return s.v }

// synthetic makes n random codes of m bytes in nl lists and a request of
// nq queries probing nprobe lists each, with per-list terms and coarse
// terms as an L2 index with precomputed tables has.
func synthetic(n, nl, m, nq, nprobe, k int, seed uint64) (*ivf.ScanRequest, *lists) {
	src := syntheticLists(n, nl, m, seed)
	return syntheticRequest(nl, m, nq, nprobe, k, seed), src
}

// syntheticLists makes n random codes of m bytes, with ids 0..n-1, spread
// at random over nl lists.
func syntheticLists(n, nl, m int, seed uint64) *lists {
	r := rand.New(rand.NewPCG(seed, 7))
	src := &lists{ids: make([][]int64, nl), codes: make([][]byte, nl)}
	code := make([]byte, m)
	for i := range n {
		l := r.IntN(nl)
		src.ids[l] = append(src.ids[l], int64(i))
		for j := 0; j < m; j += 8 {
			v := r.Uint64()
			for b := j; b < min(j+8, m); b++ {
				code[b] = byte(v >> (8 * (b - j)))
			}
		}
		src.codes[l] = append(src.codes[l], code...)
	}
	return src
}

// tableIDs names the synthetic precomputed tables.
var tableIDs atomic.Uint64

// syntheticRequest makes a request of nq queries probing nprobe of nl
// lists each, with a precomputed table of per-list terms of its own.
func syntheticRequest(nl, m, nq, nprobe, k int, seed uint64) *ivf.ScanRequest {
	r := rand.New(rand.NewPCG(seed, 8))
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
	req.Precomputed, req.PrecomputedID = lt, tableIDs.Add(1)
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
	return req
}

// Shape of the scan benchmarks (the CPU vs GPU table of bench/README.md):
// 10M codes of 16 bytes in 4096 lists, nprobe 64, k 10.
const benchN, benchNList, benchM, benchNProbe, benchK = 10_000_000, 4096, 16, 64, 10

var benchBatches = []int{1, 64, 1024}

// work counts the codes a request scans (one per probing query) and the
// bytes a scanner must read: each probed list's codes and ids once per
// batch, plus the query tables (the per-list terms come from a
// precomputed table that stays in the scanner's memory).
func work(req *ivf.ScanRequest, src *lists) (codes, bytes int64) {
	for i, l := range req.Lists {
		nc := int64(len(src.ids[l]))
		codes += nc * int64(req.ProbeStart[i+1]-req.ProbeStart[i])
		bytes += nc * int64(req.M+8)
	}
	bytes += int64(4 * req.NQ * req.M * 256)
	return codes, bytes
}

// benchScan runs s on the benchmark's requests and reports codes/s and
// bytes/s (and the share of peak when peak > 0). With cached the source
// has a content version, so a scanner with a device cache keeps the
// lists after the first (untimed) run.
func benchScan(b *testing.B, s ivf.Scanner, peak float64, cached bool) {
	for _, nq := range benchBatches {
		req, lsrc := synthetic(benchN, benchNList, benchM, nq, benchNProbe, benchK, 1)
		codes, bytes := work(req, lsrc)
		var src ivf.ListSource = lsrc
		if cached {
			src = versioned{lsrc, 1}
		}
		b.Run(fmt.Sprintf("batch=%d", nq), func(b *testing.B) {
			if _, _, err := s.Scan(req, src); err != nil { // warm: buffers, JIT
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, _, err := s.Scan(req, src); err != nil {
					b.Fatal(err)
				}
			}
			sec := time.Since(start).Seconds()
			// B/s counts the bytes a scanner must fetch (each probed list once
			// per batch, and the tables); scanB/s the code bytes the scan
			// reads (one code per probing query), which the GPU serves from
			// L2 and shared memory when several queries probe a list.
			b.ReportMetric(float64(codes)*float64(b.N)/sec, "codes/s")
			b.ReportMetric(float64(bytes)*float64(b.N)/sec, "B/s")
			scanned := float64(codes) * float64(req.M) * float64(b.N) / sec
			b.ReportMetric(scanned, "scanB/s")
			if peak > 0 {
				b.ReportMetric(100*float64(bytes)*float64(b.N)/sec/peak, "%peak")
				b.ReportMetric(100*scanned/peak, "scan%peak")
			}
		})
	}
}

// BenchmarkCPUScan is the CPU column: ivf.CPUScanner on all CPUs.
func BenchmarkCPUScan(b *testing.B) {
	b.Logf("%d threads", runtime.GOMAXPROCS(0))
	benchScan(b, &ivf.CPUScanner{}, 0, false)
}
