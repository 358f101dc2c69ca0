// Command storedemo exercises the storage engine alone (store/, no
// vectors): durable adds, a merge of 4 shards, adds after it, compaction
// while a view holds the old file, and a read-only scan, with the
// throughput of each step.
//
//	go run ./bench/storedemo [--n 2000000] [--nlist 1024] [--code-size 16] [--dir DIR]
//
// It may import anything of the project; it uses store/ directly, being
// the storage engine's own demonstration.
package main
