package ivf

import (
	"errors"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"
)

// recordingScanner is a CPUScanner that remembers the lists of every
// request it gets, and can be told to fail.
type recordingScanner struct {
	CPUScanner
	mu    sync.Mutex
	lists []int
	fail  error
}

func (r *recordingScanner) Scan(req *ScanRequest, src ListSource) ([]float32, []int64, error) {
	r.mu.Lock()
	r.lists = append(r.lists, req.Lists...)
	r.mu.Unlock()
	if r.fail != nil {
		return nil, nil, r.fail
	}
	return r.CPUScanner.Scan(req, src)
}

// TestShardedScannerMatchesSearch: with 1 to 4 shards the results are
// bit-identical to Search, every probed list goes to exactly one shard,
// and the shards' work is balanced.
func TestShardedScannerMatchesSearch(t *testing.T) {
	const n, d = 6000, 32
	x := blobs(n, d, 24, 5)
	for _, c := range []struct {
		factory string
		metric  Metric
	}{{"IVF64,PQ8", L2}, {"IVF32,PQ16", InnerProduct}} {
		ix, err := NewFromFactory(c.factory, d, c.metric)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Train(x, n, &TrainOptions{Seed: 9}); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Add(x, n); err != nil {
			t.Fatal(err)
		}
		for shards := 1; shards <= 4; shards++ {
			rec := make([]*recordingScanner, shards)
			sc := make([]Scanner, shards)
			for i := range rec {
				rec[i] = &recordingScanner{CPUScanner: CPUScanner{Threads: 1}}
				sc[i] = rec[i]
			}
			s, err := NewShardedScanner(sc...)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ nq, k, nprobe int }{{1, 5, 3}, {50, 10, 8}, {7, 2000, 4}} {
				for _, r := range rec {
					r.lists = nil
				}
				q := blobs(tc.nq, d, 24, uint64(100+tc.nq))
				wd, wi, err := ix.Search(q, tc.nq, tc.k, tc.nprobe)
				if err != nil {
					t.Fatal(err)
				}
				gd, gi, err := ix.SearchWith(q, tc.nq, tc.k, tc.nprobe, s)
				if err != nil {
					t.Fatal(err)
				}
				for j := range wi {
					if wi[j] != gi[j] || math.Float32bits(wd[j]) != math.Float32bits(gd[j]) {
						t.Fatalf("%s, %d shards, %+v, result %d: Search (%v, %d), sharded (%v, %d)",
							c.factory, shards, tc, j, wd[j], wi[j], gd[j], gi[j])
					}
				}
				seen := map[int]int{}
				busy := 0
				for _, r := range rec {
					if len(r.lists) > 0 {
						busy++
					}
					for _, l := range r.lists {
						seen[l]++
					}
				}
				for l, cnt := range seen {
					if cnt != 1 {
						t.Fatalf("list %d went to %d shards", l, cnt)
					}
				}
				if tc.nq*tc.nprobe >= 4*shards && busy != shards {
					t.Fatalf("%d shards, %d probes: only %d shards got work", shards, tc.nq*tc.nprobe, busy)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSplitRequestBalances(t *testing.T) {
	// Lists of sizes 100, 90, ..., 10 probed once each, over 3 shards:
	// largest first to the least loaded gives loads within one list.
	src := &sliceSource{}
	req := &ScanRequest{NQ: 1, K: 1, M: 1, Ksub: 256, QTables: make([]float32, 256), ProbeStart: []int{0}}
	for l := 0; l < 10; l++ {
		src.ids = append(src.ids, make([]int64, 100-10*l))
		src.codes = append(src.codes, make([]byte, 100-10*l))
		req.Lists = append(req.Lists, l)
		req.ProbeQuery = append(req.ProbeQuery, 0)
		req.ProbeCoarse = append(req.ProbeCoarse, 0)
		req.ProbeStart = append(req.ProbeStart, l+1)
	}
	owner := map[int]int{}
	parts, err := splitRequest(req, src, 3, owner)
	if err != nil {
		t.Fatal(err)
	}
	var loads []int
	total := 0
	for _, p := range parts {
		load := 0
		for i, l := range p.Lists {
			if i > 0 && l <= p.Lists[i-1] {
				t.Fatalf("part lists out of order: %v", p.Lists)
			}
			load += len(src.ids[l])
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		loads = append(loads, load)
		total += load
	}
	if total != 550 {
		t.Fatalf("parts hold %d entries, want 550", total)
	}
	for _, l := range loads {
		if l < 170 || l > 200 {
			t.Fatalf("unbalanced loads %v", loads)
		}
	}
	// The same lists again: each goes back to its shard.
	first := maps.Clone(owner)
	if _, err := splitRequest(req, src, 3, owner); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(first, owner) {
		t.Fatalf("owners moved: %v, then %v", first, owner)
	}
	// A block where one shard's lists carry all the work: that shard keeps
	// what fits within 1.1x an even share, the rest moves.
	heavy := &ScanRequest{NQ: 1, K: 1, M: 1, Ksub: 256, QTables: make([]float32, 256), ProbeStart: []int{0}}
	for l := 0; l < 10; l++ {
		if owner[l] == 0 {
			heavy.Lists = append(heavy.Lists, l)
			heavy.ProbeQuery = append(heavy.ProbeQuery, 0)
			heavy.ProbeCoarse = append(heavy.ProbeCoarse, 0)
			heavy.ProbeStart = append(heavy.ProbeStart, len(heavy.Lists))
		}
	}
	parts, err = splitRequest(heavy, src, 3, owner)
	if err != nil {
		t.Fatal(err)
	}
	busy := 0
	for _, p := range parts {
		if p != nil {
			busy++
		}
	}
	if len(heavy.Lists) >= 3 && busy < 2 {
		t.Fatalf("one shard kept all %d lists of the block", len(heavy.Lists))
	}
}

type sliceSource struct {
	ids   [][]int64
	codes [][]byte
}

func (s *sliceSource) ReadList(l int) ([]int64, []byte, error) { return s.ids[l], s.codes[l], nil }

func TestShardedScannerErrors(t *testing.T) {
	if _, err := NewShardedScanner(); !errors.Is(err, ErrInput) {
		t.Fatalf("no shards: err = %v", err)
	}
	const n, d = 2000, 16
	x := blobs(n, d, 10, 2)
	ix, err := NewFromFactory("IVF16,PQ4", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(x, n, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x, n); err != nil {
		t.Fatal(err)
	}
	bad := &recordingScanner{fail: errors.New("device lost")}
	s, err := NewShardedScanner(&CPUScanner{}, bad)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ix.SearchWith(x[:10*d], 10, 5, 8, s)
	if err == nil || !strings.Contains(err.Error(), "shard 1: device lost") {
		t.Fatalf("failing shard: err = %v", err)
	}
}
