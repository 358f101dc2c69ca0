package gpu

import "fmt"

// plan is the host-side layout of one Request as the kernels read it:
// the probed lists back to back, and the work items. It is built without
// CUDA so that it is tested on any machine.
type plan struct {
	n         int     // entries of all probed lists
	codes     []byte  // n*M codes, list after list
	ids       []int64 // n ids
	listStart []int64 // entry offset of probed list i
	// Work item t scans entries [itemStart[t], itemEnd[t]) of the list of
	// pair itemPair[t]; pairs are the request's probes.
	itemPair, itemStart, itemEnd []int32
	pairList                     []int32 // index into Request.Lists
	// The items of query q are qItems[qItemStart[q]:qItemStart[q+1]].
	qItemStart, qItems []int32
	ltab               []float32 // len(Lists)*M*Ksub per-list terms, or nil
}

// newPlan reads every probed list once and splits each (query, list) pair
// into items of at most itemCodes codes.
func newPlan(r *Request, src ListSource, itemCodes int) (*plan, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	p := &plan{listStart: make([]int64, len(r.Lists)+1)}
	lens := make([]int, len(r.Lists))
	mk := r.M * r.Ksub
	for i, l := range r.Lists {
		ids, codes, err := src.ReadList(l)
		if err != nil {
			return nil, err
		}
		if len(codes) < len(ids)*r.M {
			return nil, fmt.Errorf("gpu: list %d has %d code bytes for %d entries of %d", l, len(codes), len(ids), r.M)
		}
		lens[i] = len(ids)
		p.ids = append(p.ids, ids...)
		p.codes = append(p.codes, codes[:len(ids)*r.M]...)
		p.listStart[i+1] = p.listStart[i] + int64(len(ids))
		if r.ListTables != nil {
			t := r.ListTables(l)
			if len(t) < mk {
				return nil, fmt.Errorf("gpu: list table of list %d has %d floats, want %d", l, len(t), mk)
			}
			p.ltab = append(p.ltab, t[:mk]...)
		}
	}
	p.n = len(p.ids)
	if p.n > 1<<31-1 {
		return nil, fmt.Errorf("gpu: %d entries in one block of lists (at most 2^31-1)", p.n)
	}
	p.pairList = make([]int32, len(r.ProbeQuery))
	perQuery := make([]int32, r.NQ+1)
	for i := range r.Lists {
		for j := r.ProbeStart[i]; j < r.ProbeStart[i+1]; j++ {
			p.pairList[j] = int32(i)
			for s := 0; s < lens[i]; s += itemCodes {
				p.itemPair = append(p.itemPair, int32(j))
				p.itemStart = append(p.itemStart, int32(s))
				p.itemEnd = append(p.itemEnd, int32(min(s+itemCodes, lens[i])))
				perQuery[r.ProbeQuery[j]+1]++
			}
		}
	}
	for q := 0; q < r.NQ; q++ {
		perQuery[q+1] += perQuery[q]
	}
	p.qItemStart = append([]int32(nil), perQuery...)
	p.qItems = make([]int32, len(p.itemPair))
	for t, j := range p.itemPair {
		q := r.ProbeQuery[j]
		p.qItems[perQuery[q]] = int32(t)
		perQuery[q]++
	}
	return p, nil
}

// sortSize is the number of entries of a kernel's selection buffer: a
// power of two holding the k kept plus one candidate per thread.
func sortSize(k, threads int) int {
	n := 1
	for n < k+threads {
		n <<= 1
	}
	return n
}
