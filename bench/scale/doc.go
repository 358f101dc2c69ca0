// Command scale checks the storage engine at the scale it is built for:
// it builds an on-disk store of n synthetic PQ codes (default one
// billion, in 65,536 lists of uneven sizes) with the two-pass merge of 4
// shards (the parallel build's last step) or with durable adds, adds more
// entries after the build in durable commits, reopens it, counts every
// list and verifies a sample of them entry by entry through a read-only
// open, compacts it when the disk has room and runs the full consistency
// check, printing the throughput of each step and the process's peak
// memory. Entries are generated from their id, so nothing but the list or
// batch at hand is ever held in memory and every entry read back is
// checked.
//
//	go run ./bench/scale --dir /data/scale --headroom 0.1       # 1e9 x PQ16: 26.4 GB, ~50 GB free for compaction (exact slots: the adds grow it to 58.7 GB)
//	go run ./bench/scale --dir /tmp/scale --n 100000000 --build add
//
// It may import anything of the project; it uses store/ directly, being
// the storage engine's own benchmark.
package main
