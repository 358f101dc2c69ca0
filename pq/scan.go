package pq

import (
	"fmt"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// ksub8 is the number of table entries per sub-quantizer for 8-bit codes.
const ksub8 = 256

// ScanL2 writes out[i] = sum over j < m of table[j*256 + codes[i*m+j]] for
// the n codes of m bytes each: the asymmetric distances of n encoded vectors
// to the query the table was computed for (the scan loop of
// faiss::IndexIVFPQ's IVFPQScanner). Despite the name it only sums, so an
// inner-product table gives inner products. It panics if the slices are too
// short.
func ScanL2(table []float32, m int, codes []byte, n int, out []float32) {
	checkScan(table, m, codes, n)
	if len(out) < n {
		panic(fmt.Sprintf("pq: ScanL2 of %d codes into %d outputs", n, len(out)))
	}
	if n == 0 {
		return
	}
	scan(table[:m*ksub8], m, codes[:n*m], n, out[:n])
}

func checkScan(table []float32, m int, codes []byte, n int) {
	if m <= 0 || n < 0 || len(table) < m*ksub8 || len(codes) < n*m {
		panic(fmt.Sprintf("pq: scan of %d codes of %d bytes with %d code bytes and %d table entries",
			n, m, len(codes), len(table)))
	}
}

// scanBlock is the number of distances ScanTopK materialises at a time: a
// stack buffer that stays in L1.
const scanBlock = 256

// ScanTopK offers the distances of n codes (computed as in ScanL2) to heap,
// which keeps the k smallest across calls, so one heap can collect results
// from several inverted lists. The id of code i is ids[i], or i when ids is
// nil. heap must have been Reset to k. Distances are computed a block at a
// time and compared to the heap's threshold before being pushed, so most
// codes cost one comparison beyond the table sums.
func ScanTopK(table []float32, m int, codes []byte, ids []int64, n, k int, heap *vecmath.TopK) {
	checkScan(table, m, codes, n)
	if ids != nil && len(ids) < n {
		panic(fmt.Sprintf("pq: ScanTopK of %d codes with %d ids", n, len(ids)))
	}
	if heap.K() != k {
		panic(fmt.Sprintf("pq: ScanTopK for k=%d with a heap of k=%d", k, heap.K()))
	}
	if k == 0 {
		return
	}
	var buf [scanBlock]float32
	thr := heap.Threshold()
	for lo := 0; lo < n; lo += scanBlock {
		hi := min(n, lo+scanBlock)
		dist := buf[:hi-lo]
		scan(table[:m*ksub8], m, codes[lo*m:hi*m], hi-lo, dist)
		// <= lets equal distances reach Push, which breaks ties by id.
		for i := firstLE(dist, thr); i < len(dist); i += 1 + firstLE(dist[i+1:], thr) {
			id := int64(lo + i)
			if ids != nil {
				id = ids[lo+i]
			}
			heap.Push(dist[i], id)
			thr = heap.Threshold()
		}
	}
}
