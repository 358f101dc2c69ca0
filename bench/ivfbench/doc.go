// Command ivfbench builds the same IVF-PQ index with Shelf and with FAISS
// on one seeded synthetic data set and prints, side by side, training and
// add throughput and search QPS and recall per nprobe and thread count.
//
//	go run ./bench/ivfbench                       # 1M x 128, IVF1024,PQ16
//	go run ./bench/ivfbench -n 200000 -d 64 -factory IVF256,PQ16
//
// FAISS runs through bench/faiss_ivfpq.py with /usr/bin/python3; with
// -faiss-path (default /tmp/faiss-opt/python, what ../shared/faiss-avx2.sh
// builds) the AVX2 + OpenBLAS build is used when present.
//
// It may import anything of the project (benchmarks measure it all).
package main
