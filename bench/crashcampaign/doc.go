// Command crashcampaign attacks on-disk indexes with the real shelf
// binary and counts what survives (make crash-campaign; not part of CI).
//
// It builds ./tools/shelf, generates a small data set (20,000 x 32 base
// vectors and chunks of 500 more, IVF64,PQ8) and runs three kinds of
// trials:
//
//   - kill: a command (add, merge, compact, encode, build, train,
//     import-faiss) is killed with SIGKILL at a random moment of its run;
//   - full: a command (the same, and export-faiss, stats, search) runs on
//     a 24 MiB tmpfs filled with fallocate up to a random few bytes to a
//     few MiB of free space, so the disk fills at every stage of it (as
//     root; skipped with a message otherwise);
//   - flip: a byte is flipped in the WAL (lists/meta/*.log) after an
//     acknowledged add, in a table of the metadata (lists/meta/*.sst) or
//     in the data file (lists/lists.*.data), and the index is then read,
//     searched and added to.
//
// Every command runs under a timeout. After each trial the index is
// checked the way a user would meet it: shelf stats (read-only), an open
// for writing that dumps every list (this program, re-executed, through
// the ivf package), shelf stats again and shelf search. The checks:
//
//   - never a panic trace and never a hang; a refusal is one clear line;
//   - acknowledged entries lost: vectors of commands that exited 0 (and
//     of commits seen in an earlier check) that are missing, present
//     twice, or present with another list or code than the reference
//     (the model's own encoding, computed in memory with the ivf
//     package) — must be 0;
//   - silently wrong answers: a command that exits 0 with a wrong answer:
//     shelf stats whose ntotal is not what was acknowledged, shelf search
//     whose results differ from the reference index built in memory with
//     the ivf package from the expected vectors, vectors nobody added, an
//     index that opens with part of its vectors — must be 0.
//
// A kill or a full disk must leave an index that opens (after the disk
// has room again); a flipped byte may make it refuse, clearly, which is
// the fault detected.
//
//	go run ./bench/crashcampaign                      # 1,000 kill trials, 150 disk-full, 150 flips
//	go run ./bench/crashcampaign --trials 50 --full 20 --flips 30 --seed 7
//	go run ./bench/crashcampaign --lanes flip --ops add --flips 100
//
// It imports ivf and internal packages only to make data and references
// and to read indexes; every operation under test is the shelf binary.
package main
