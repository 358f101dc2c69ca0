// Command capi is Shelf's C interface, the library under the Python
// package (python/shelf). It is built as a shared library, not run:
//
//	go build -buildmode=c-shared -o python/shelf/_libshelf.so ./capi
//
// and exports C functions named shelf_* (export.go) over the index
// (ivf/) and FAISS files (faissio/): create, open, train, add, search,
// stats, merges, compaction, removal, code blocks of the parallel build,
// FAISS import and export.
//
// # Invariants
//
//   - No Go pointer is handed to C. An open index is an integer handle
//     into a table (handles.go); a call in progress is cancelled through
//     an integer token.
//   - C arrays (numpy buffers) are read and written in place: export.go,
//     the one file with cgo and unsafe code, turns a pointer and its sizes
//     into a Go slice only after the sizes were checked against the index
//     and against overflow (ops.go), and no slice over C memory outlives
//     the call that received it (ivf keeps none of its inputs).
//   - Every call returns a status code (0 done, 1 error, 2 interrupted
//     through its token) and, on failure, the Go error's message as a C
//     string the caller releases with shelf_free.
//   - A handle is closed once: shelf_close takes it out of the table at
//     once, and the index itself is closed when the last call still
//     running on it returns, so no call ever runs on a closed index.
//   - Long calls are cut at the points where stopping leaves whole
//     commits (add: every batch Add commits; search: every 1,024 queries;
//     merge_blocks: every commit), and the token is checked there.
//     Training cannot be stopped inside: a training whose token was
//     cancelled runs to its end and is then thrown away.
//   - A training holds its index alone (ivf allows no other call on an
//     index while its model changes): other calls on it fail at once,
//     except those that read only its parameters.
//
// # Imports
//
// ivf/, faissio/ and internal/; never store/ (an index directory is
// ivf's), tools/ or gpu/.
package main
