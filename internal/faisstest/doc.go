// Package faisstest is what the tests comparing Shelf with FAISS share:
// the interpreter that has Debian's FAISS, the rule that a comparison
// that cannot run fails rather than passes, and the runner of
// bench/faiss_io.py, the FAISS side of the FAISS file tests.
//
// It imports only the standard library.
package faisstest
