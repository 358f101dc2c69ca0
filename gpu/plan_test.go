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

// TestPlanMatchesReference runs the kernels' algorithm on the plan (each
// work item keeps its k best, each query merges its items) and checks it
// against a direct per-query selection: the plan covers every (query,
// code) pair exactly once, whatever the item size.
func TestPlanMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ nq, nl, nprobe, m, k, maxLen, item int }{
		{1, 4, 1, 4, 1, 50, 7},
		{13, 20, 5, 8, 10, 300, 64},
		{40, 30, 8, 16, 100, 1000, 256},
		{3, 10, 10, 4, 1024, 200, 4096}, // fewer codes than k: padding
	} {
		req, src := randomRequest(r, tc.nq, tc.nl, tc.nprobe, tc.m, tc.k, tc.maxLen)
		p, err := newPlan(req, src, tc.item)
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
		// The kernels' algorithm over the plan's arrays.
		items := make([][]hit, len(p.itemPair))
		for it := range items {
			j := int(p.itemPair[it])
			i := int(p.pairList[j])
			tab := pairTable(req, i, j)
			var h []hit
			for pos := p.itemStart[it]; pos < p.itemEnd[it]; pos++ {
				e := p.listStart[i] + int64(pos)
				h = append(h, hit{score(tab, p.codes[e*int64(tc.m):(e+1)*int64(tc.m)]), p.ids[e]})
			}
			items[it] = best(h, tc.k)
			if n := p.itemEnd[it] - p.itemStart[it]; n <= 0 || int(n) > tc.item {
				t.Fatalf("item %d has %d codes (at most %d)", it, n, tc.item)
			}
		}
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

func TestSortSizeAndValidate(t *testing.T) {
	for _, c := range [][3]int{{1, 256, 512}, {256, 256, 512}, {257, 256, 1024}, {1024, 256, 2048}} {
		if got := sortSize(c[0], c[1]); got != c[2] {
			t.Fatalf("sortSize(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
	req := &Request{NQ: 1, K: MaxK + 1, M: 1, Ksub: 256, QTables: make([]float32, 256), ProbeStart: []int{0}}
	if err := req.validate(); err == nil {
		t.Fatal("k > MaxK accepted")
	}
	req.K = 1
	if err := req.validate(); err != nil {
		t.Fatal(err)
	}
}
