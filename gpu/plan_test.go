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
	req.Precomputed, req.PrecomputedID = lt, 1
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

// kernelTable builds the table of probe j as the scan kernel does, from
// the per-list terms on the device: the plan's gathered rows, indexed by
// probed list, or with resident tables the whole precomputed table,
// indexed by list number.
func kernelTable(req *Request, p *plan, j int) []float32 {
	mk := req.M * 256
	q := int(req.ProbeQuery[j])
	t := slices.Clone(req.QTables[q*mk : (q+1)*mk])
	dev, row := p.ltab, int(p.pairList[j])
	if p.ltabRow != nil {
		dev, row = req.Precomputed, int(p.ltabRow[row])
	}
	if dev != nil {
		lt := dev[row*mk : (row+1)*mk]
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

// reference is the direct per-query selection: every probe of every
// query, straight from the source.
func reference(req *Request, src *memLists) [][]hit {
	want := make([][]hit, req.NQ)
	for i, l := range req.Lists {
		ids, codes, _ := src.ReadList(l)
		for j := req.ProbeStart[i]; j < req.ProbeStart[i+1]; j++ {
			tab := pairTable(req, i, j)
			q := req.ProbeQuery[j]
			for e := range ids {
				want[q] = append(want[q], hit{score(tab, codes[e*req.M:(e+1)*req.M]), ids[e]})
			}
		}
	}
	for q := range want {
		want[q] = best(want[q], req.K)
	}
	return want
}

// arena is the model of the device cache's arena.
type arena struct {
	codes []byte
	ids   []int64
}

// runModel runs the kernels' algorithm on plan p as the GPU scanner
// drives it, and returns each query's k best: the resident items scan
// the arena; the chunks are staged alternately into two reused, poisoned
// buffers, admitted lists' segments are copied from them into the arena,
// each work item keeps its k best, and each query merges its items. It
// fails t on any out-of-range read and on items scanned other than once.
func runModel(t *testing.T, req *Request, p *plan, ar *arena, item int, chunkEntries int64) [][]hit {
	t.Helper()
	m, k := req.M, req.K
	items := make([][]hit, len(p.itemPair))
	scanned := make([]int, len(p.itemPair))
	scanItem := func(it int, codes []byte, ids []int64, base int64) {
		scanned[it]++
		tab := kernelTable(req, p, int(p.itemPair[it]))
		var h []hit
		for pos := p.itemStart[it]; pos < p.itemEnd[it]; pos++ {
			e := base + int64(pos)
			if e < 0 || e >= int64(len(ids)) {
				t.Fatalf("item %d reads entry %d of a buffer of %d", it, e, len(ids))
			}
			h = append(h, hit{score(tab, codes[e*int64(m):(e+1)*int64(m)]), ids[e]})
		}
		items[it] = best(h, k)
		if n := p.itemEnd[it] - p.itemStart[it]; n <= 0 || int(n) > item {
			t.Fatalf("item %d has %d codes (at most %d)", it, n, item)
		}
	}
	// The resident launch.
	for it := 0; it < p.residentItems; it++ {
		i := p.pairList[p.itemPair[it]]
		if p.cacheStart == nil || p.cacheStart[i] < 0 {
			t.Fatalf("resident item %d of list %d, which is not resident", it, i)
		}
		scanItem(it, ar.codes, ar.ids, p.cacheStart[i])
	}
	// The pipeline.
	var bufCodes [2][]byte
	var bufIDs [2][]int64
	for b := range 2 {
		bufCodes[b] = make([]byte, p.chunkCap*int64(m))
		bufIDs[b] = make([]int64, p.chunkCap)
	}
	for c, ch := range p.chunks {
		prev := chunk{segHi: 0, itemHi: p.residentItems}
		if c > 0 {
			prev = p.chunks[c-1]
		} else if len(p.segList) > 0 {
			prev.entryHi = p.segEntry(0)
		}
		if ch.segLo != prev.segHi || ch.itemLo != prev.itemHi || ch.entryLo != prev.entryHi {
			t.Fatalf("chunk %d %+v does not follow %+v", c, ch, prev)
		}
		if n := ch.entryHi - ch.entryLo; n > max(chunkEntries, int64(item)) || n > p.chunkCap || n <= 0 {
			t.Fatalf("chunk %d holds %d entries (chunk %d, item %d, cap %d)", c, n, chunkEntries, item, p.chunkCap)
		}
		b := c % 2
		for i := range bufCodes[b] {
			bufCodes[b][i] = 0xAB
		}
		for i := range bufIDs[b] {
			bufIDs[b][i] = -7
		}
		p.stage(c, bufCodes[b], bufIDs[b], 3)
		for s := ch.segLo; s < ch.segHi; s++ { // device-side copies into the arena
			i := p.segList[s]
			if p.admitAt == nil || p.admitAt[i] < 0 {
				continue
			}
			from, to, n := p.segEntry(s)-ch.entryLo, p.admitAt[i]+int64(p.segStart[s]), int64(p.segEnd[s]-p.segStart[s])
			copy(ar.codes[to*int64(m):(to+n)*int64(m)], bufCodes[b][from*int64(m):(from+n)*int64(m)])
			copy(ar.ids[to:to+n], bufIDs[b][from:from+n])
		}
		for it := ch.itemLo; it < ch.itemHi; it++ {
			i := p.pairList[p.itemPair[it]]
			scanItem(it, bufCodes[b][:(ch.entryHi-ch.entryLo)*int64(m)], bufIDs[b][:ch.entryHi-ch.entryLo], p.listStart[i]-ch.entryLo)
		}
	}
	for it, n := range scanned {
		if n != 1 {
			t.Fatalf("item %d scanned %d times", it, n)
		}
	}
	// The merge kernel.
	got := make([][]hit, req.NQ)
	for q := range req.NQ {
		var h []hit
		for _, it := range p.qItems[p.qItemStart[q]:p.qItemStart[q+1]] {
			if int(req.ProbeQuery[p.itemPair[it]]) != q {
				t.Fatalf("item %d of query %d belongs to query %d", it, q, req.ProbeQuery[p.itemPair[it]])
			}
			h = append(h, items[it]...)
		}
		got[q] = best(h, k)
	}
	return got
}

// TestPlanMatchesReference: the plan covers every (query, code) pair
// exactly once, whatever the item and chunk sizes.
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
		for _, resident := range []bool{false, true} {
			p, err := newPlan(req, src, tc.item, tc.chunk, nil, resident)
			if err != nil {
				t.Fatal(err)
			}
			if resident != (p.ltabRow != nil) || resident == (p.ltab != nil) {
				t.Fatalf("resident tables %v: plan gathered %d floats, %d rows", resident, len(p.ltab), len(p.ltabRow))
			}
			got, want := runModel(t, req, p, nil, tc.item, tc.chunk), reference(req, src)
			for q := range want {
				if !slices.Equal(got[q], want[q]) {
					t.Fatalf("%+v resident tables %v, query %d: plan gives %v, want %v", tc, resident, q, got[q], want[q])
				}
			}
		}
	}
	// Tables that depend on the query only.
	req, src := randomRequest(r, 5, 12, 4, 8, 10, 100)
	req.ListTables, req.Precomputed = nil, nil
	p, err := newPlan(req, src, 32, 200, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got, want := runModel(t, req, p, nil, 32, 200), reference(req, src)
	for q := range want {
		if !slices.Equal(got[q], want[q]) {
			t.Fatalf("query tables only, query %d: plan gives %v, want %v", q, got[q], want[q])
		}
	}
	if _, err := newPlan(req, src, 32, 200, nil, true); err == nil {
		t.Fatal("resident tables accepted for a request without a precomputed table")
	}
}

// TestPlanWithCache runs blocks through one cache: results stay exact
// while lists become resident, are evicted (a cache smaller than the
// probed lists) and are dropped for a new content version or a failed
// block.
func TestPlanWithCache(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const nl, m, k, maxLen, item, chunkEntries = 40, 8, 20, 500, 128, 700
	for _, capLists := range []int{1000, 6} { // everything fits; a few lists fit
		req0, src := randomRequest(r, 10, nl, 6, m, k, maxLen)
		lt := req0.ListTables
		c := &listCache{}
		capBytes := int64(capLists*maxLen) * (m + 8)
		ar := &arena{}
		version := uint64(1)
		for block := range 12 {
			if block == 8 {
				version = 2 // new content: same lists, new codes
				for l := range src.codes {
					for i := range src.codes[l] {
						src.codes[l][i] = byte(r.IntN(256))
					}
				}
			}
			req, _ := randomRequest(r, 10, nl, 6, m, k, maxLen)
			req.ListTables, req.Precomputed = lt, req0.Precomputed
			c.begin(version, m, capBytes)
			if int64(len(ar.ids)) != c.capEntries {
				ar.codes, ar.ids = make([]byte, c.capEntries*m), make([]int64, c.capEntries)
			}
			before := c.snapshot()
			p, err := newPlan(req, src, item, chunkEntries, c, block%2 == 0)
			if err != nil {
				t.Fatal(err)
			}
			got, want := runModel(t, req, p, ar, item, chunkEntries), reference(req, src)
			for q := range want {
				if !slices.Equal(got[q], want[q]) {
					t.Fatalf("cache of %d lists, block %d, query %d: %v, want %v", capLists, block, q, got[q], want[q])
				}
			}
			if block == 5 {
				c.abort() // a failed block: its admissions are not resident
				for _, e := range c.lists {
					if !e.ready {
						t.Fatal("abort left an unfilled entry")
					}
				}
				continue
			}
			c.commit()
			after := c.snapshot()
			if after.UsedBytes > capBytes || c.idsOff()+8*c.capEntries > capBytes {
				t.Fatalf("cache holds %d bytes, arena ends at %d, of %d", after.UsedBytes, c.idsOff()+8*c.capEntries, capBytes)
			}
			if err := c.alloc.Check(); err != nil {
				t.Fatal(err)
			}
			t.Logf("cap %d lists, block %d: %+v", capLists, block, after)
			if capLists == 1000 && block > 0 && block != 6 && block != 8 && after.Hits == before.Hits {
				t.Fatalf("block %d: no hit in a cache holding every list", block)
			}
		}
		st := c.snapshot()
		if st.Resets != 1 || st.Admitted == 0 || (capLists == 6 && st.Evicted == 0) {
			t.Fatalf("cache of %d lists: %+v", capLists, st)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	req, src := randomRequest(r, 2, 6, 3, 4, 5, 20)
	src.codes[req.Lists[0]] = src.codes[req.Lists[0]][:0]
	src.ids[req.Lists[0]] = append(src.ids[req.Lists[0]], 1)
	if _, err := newPlan(req, src, 16, 64, nil, false); err == nil {
		t.Fatal("list with too few code bytes accepted")
	}
	req, src = randomRequest(r, 2, 6, 3, 4, 5, 20)
	req.ProbeQuery[0] = 9
	if _, err := newPlan(req, src, 16, 64, nil, false); err == nil {
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
