package ivf

import (
	"fmt"
	"testing"
)

// BenchmarkSearch measures search QPS of IVF256,PQ16 on 100k x 64
// clustered vectors, 1,000 queries per batch.
func BenchmarkSearch(b *testing.B) {
	const n, d, nq, k = 100000, 64, 1000, 10
	x := blobs(n, d, 200, 1)
	q := blobs(nq, d, 200, 2)
	ix, _ := NewFromFactory("IVF256,PQ16", d, L2)
	if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if _, err := ix.Add(x, n); err != nil {
		b.Fatal(err)
	}
	for _, threads := range []int{1, 2} {
		for _, nprobe := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("nprobe=%d/threads=%d", nprobe, threads), func(b *testing.B) {
				ix.Threads = threads
				for i := 0; i < b.N; i++ {
					if _, _, err := ix.Search(q, nq, k, nprobe); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*nq)/b.Elapsed().Seconds(), "QPS")
			})
		}
	}
}

// BenchmarkTrainAdd measures training plus adding (encoding) throughput.
func BenchmarkTrainAdd(b *testing.B) {
	const n, d = 100000, 64
	x := blobs(n, d, 200, 1)
	for i := 0; i < b.N; i++ {
		ix, _ := NewFromFactory("IVF256,PQ16", d, L2)
		if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
			b.Fatal(err)
		}
		if _, err := ix.Add(x, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "vectors/s")
}
