package gpu

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type memLists struct {
	ids   [][]int64
	codes [][]byte
}

func (m *memLists) ReadList(l int) ([]int64, []byte, error) { return m.ids[l], m.codes[l], nil }

// randomRequest makes nl lists of random codes (some empty) and a block
// of nq queries probing nprobe lists each, with list terms and coarse
// terms.
func randomRequest(r *rand.Rand, nq, nl, nprobe, m, k, maxLen int) (*Request, *memLists) {
	src := &memLists{ids: make([][]int64, nl), codes: make([][]byte, nl)}
	next := int64(0)
	for l := range nl {
		n := r.IntN(maxLen + 1)
		if l%5 == 0 {
			n = 0
		}
		for range n {
			src.ids[l] = append(src.ids[l], next)
			next += 1 + int64(r.IntN(3))
		}
		src.codes[l] = make([]byte, n*m)
		for i := range src.codes[l] {
			src.codes[l][i] = byte(r.IntN(256))
		}
	}
	mk := m * 256
	req := &Request{NQ: nq, K: k, M: m, Ksub: 256, QTables: make([]float32, nq*mk)}
	for i := range req.QTables {
		req.QTables[i] = float32(r.IntN(64)) // small integers: exact sums, many ties
	}
	lt := make([]float32, nl*mk)
	for i := range lt {
		lt[i] = float32(r.IntN(16))
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
			req.ProbeCoarse = append(req.ProbeCoarse, float32(r.IntN(8)))
		}
		req.ProbeStart = append(req.ProbeStart, len(req.ProbeQuery))
	}
	return req, src
}

type hit struct {
	d  float32
	id int64
}

func best(h []hit, k int) []hit {
	slices.SortFunc(h, func(a, b hit) int {
		if a.d != b.d {
			if a.d < b.d {
				return -1
			}
			return 1
		}
		return int(a.id - b.id)
	})
	return h[:min(k, len(h))]
}

// pairTable builds the table of probe j of list i as the kernel does.
func pairTable(req *Request, i, j int) []float32 {
	mk := req.M * 256
	q := int(req.ProbeQuery[j])
	t := slices.Clone(req.QTables[q*mk : (q+1)*mk])
	if req.ListTables != nil {
		lt := req.ListTables(req.Lists[i])
		for e := range t {
			t[e] = lt[e] + t[e]
		}
	}
	for e := 0; e < 256; e++ {
		t[e] += req.ProbeCoarse[j]
	}
	return t
}

func score(t []float32, code []byte) float32 {
	var s float32
	for j, c := range code {
		s += t[j*256+int(c)]
	}
	return s
}

// TestPlanMatchesReference runs the kernels' algorithm on the plan as
// the GPU scanner drives it (chunks staged alternately into two reused,
// poisoned buffers; each work item of a chunk keeps its k best; each
// query merges its items) and checks it against a direct per-query
// selection: the plan covers every (query, code) pair exactly once,
// whatever the item and chunk sizes.
func TestPlanMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		nq, nl, nprobe, m, k, maxLen, item int
		chunk                              int64
	}{
		{1, 4, 1, 4, 1, 50, 7, 1},
		{13, 20, 5, 8, 10, 300, 64, 100},
		{40, 30, 8, 16, 100, 1000, 256, 1000},
		{40, 30, 8, 16, 100, 1000, 256, 1 << 20}, // one chunk
		{3, 10, 10, 4, 1024, 200, 4096, 150},     // fewer codes than k: padding
	} {
		req, src := randomRequest(r, tc.nq, tc.nl, tc.nprobe, tc.m, tc.k, tc.maxLen)
		p, err := newPlan(req, src, tc.item, tc.chunk)
		if err != nil {
			t.Fatal(err)
		}
		// Reference: every probe of every query, directly from the source.
		want := make([][]hit, tc.nq)
		for i, l := range req.Lists {
			ids, codes, _ := src.ReadList(l)
			for j := req.ProbeStart[i]; j < req.ProbeStart[i+1]; j++ {
				tab := pairTable(req, i, j)
				q := req.ProbeQuery[j]
				for e := range ids {
					want[q] = append(want[q], hit{score(tab, codes[e*tc.m:(e+1)*tc.m]), ids[e]})
				}
			}
		}
		// Chunks: contiguous, in bounds, covering every item once.
		var bufCodes [2][]byte
		var bufIDs [2][]int64
		for b := range 2 {
			bufCodes[b] = make([]byte, p.chunkCap*int64(tc.m))
			bufIDs[b] = make([]int64, p.chunkCap)
		}
		items := make([][]hit, len(p.itemPair))
		scanned := make([]int, len(p.itemPair))
		for c, ch := range p.chunks {
			if c > 0 && (ch.segLo != p.chunks[c-1].segHi || ch.itemLo != p.chunks[c-1].itemHi || ch.entryLo != p.chunks[c-1].entryHi) {
				t.Fatalf("chunk %d %+v does not follow %+v", c, ch, p.chunks[c-1])
			}
			if n := ch.entryHi - ch.entryLo; n > max(tc.chunk, int64(tc.item)) || n > p.chunkCap || n <= 0 {
				t.Fatalf("chunk %d holds %d entries (chunk %d, item %d, cap %d)", c, n, tc.chunk, tc.item, p.chunkCap)
			}
			b := c % 2
			for i := range bufCodes[b] {
				bufCodes[b][i] = 0xAB
			}
			for i := range bufIDs[b] {
				bufIDs[b][i] = -7
			}
			p.stage(c, bufCodes[b], bufIDs[b], 3)
			// The scan kernel, one thread block per item of the chunk.
			for it := ch.itemLo; it < ch.itemHi; it++ {
				scanned[it]++
				j := int(p.itemPair[it])
				i := int(p.pairList[j])
				tab := pairTable(req, i, j)
				base := p.listStart[i] - ch.entryLo
				var h []hit
				for pos := p.itemStart[it]; pos < p.itemEnd[it]; pos++ {
					e := base + int64(pos)
					if e < 0 || e >= ch.entryHi-ch.entryLo {
						t.Fatalf("item %d reads entry %d of a chunk of %d", it, e, ch.entryHi-ch.entryLo)
					}
					h = append(h, hit{score(tab, bufCodes[b][e*int64(tc.m):(e+1)*int64(tc.m)]), bufIDs[b][e]})
				}
				items[it] = best(h, tc.k)
				if n := p.itemEnd[it] - p.itemStart[it]; n <= 0 || int(n) > tc.item {
					t.Fatalf("item %d has %d codes (at most %d)", it, n, tc.item)
				}
			}
		}
		for it, n := range scanned {
			if n != 1 {
				t.Fatalf("item %d scanned %d times", it, n)
			}
		}
		// The merge kernel.
		for q := range tc.nq {
			var h []hit
			for _, it := range p.qItems[p.qItemStart[q]:p.qItemStart[q+1]] {
				if int(req.ProbeQuery[p.itemPair[it]]) != q {
					t.Fatalf("item %d of query %d belongs to query %d", it, q, req.ProbeQuery[p.itemPair[it]])
				}
				h = append(h, items[it]...)
			}
			got, w := best(h, tc.k), best(want[q], tc.k)
			if !slices.Equal(got, w) {
				t.Fatalf("%+v query %d: plan gives %v, want %v", tc, q, got, w)
			}
		}
	}
}

func TestPlanErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	req, src := randomRequest(r, 2, 6, 3, 4, 5, 20)
	src.codes[req.Lists[0]] = src.codes[req.Lists[0]][:0]
	src.ids[req.Lists[0]] = append(src.ids[req.Lists[0]], 1)
	if _, err := newPlan(req, src, 16, 64); err == nil {
		t.Fatal("list with too few code bytes accepted")
	}
	req, src = randomRequest(r, 2, 6, 3, 4, 5, 20)
	req.ProbeQuery[0] = 9
	if _, err := newPlan(req, src, 16, 64); err == nil {
		t.Fatal("probe of a query outside the block accepted")
	}
}

func TestSortSizeAndValidate(t *testing.T) {
	for _, c := range [][3]int{{1, 256, 512}, {256, 256, 512}, {257, 256, 1024}, {1024, 256, 2048}} {
		if got := sortSize(c[0], c[1]); got != c[2] {
			t.Fatalf("sortSize(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
	req := &Request{NQ: 1, K: MaxK + 1, M: 1, Ksub: 256, QTables: make([]float32, 256), ProbeStart: []int{0}}
	if err := validate(req); err == nil {
		t.Fatal("k > MaxK accepted")
	}
	req.K = 1
	if err := validate(req); err != nil {
		t.Fatal(err)
	}
}
