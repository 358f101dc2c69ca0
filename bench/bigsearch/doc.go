// Command bigsearch measures search of an index larger than the memory
// the search may use, side by side with FAISS's OnDiskInvertedLists on
// the same index, queries and caps.
//
//	go run ./bench/bigsearch --dir /data/big                 # 100M x 128, IVF4096,PQ16
//	go run ./bench/bigsearch --dir /tmp/b10 --n 10000000 --caps none,64M,128M,256M
//
// It builds the index the way users build a large one: train on a
// sample into an empty index, encode the seeded synthetic vectors
// (internal/synth, generated block by block and never stored raw) into
// code blocks, merge them; the same pass computes the exact ground truth
// of the queries. The index is exported with shelf export-faiss
// --ondisk. Then, per memory cap (none: uncapped and warm), per mode
// (batch: all queries in one call; single: one query per call) and per
// nprobe, it runs shelf search --memory CAP and bench/faiss_search.py
// (FAISS 1.7.3, the AVX2 build of ../shared/faiss-avx2.sh when present),
// each in a fresh memory cgroup with a cold page cache
// (bench/capped.sh: root and cgroup v1), and prints one table: QPS and
// their ratio, single-query p50/p99, recall, bytes read per query, read
// bandwidth and its share of the device's, and each group's peak. Rows
// also go to DIR/rows.jsonl. The device's figure is fio's (direct random
// reads of the lists' mean size): 64, 32 and 1 in flight at the start,
// and 64 in flight for 3 s just before each capped Shelf run, the figure
// that run's share is of (a virtual disk's speed drifts by 2x within
// minutes).
//
// It may import anything of the project (benchmarks measure it all).
package main
