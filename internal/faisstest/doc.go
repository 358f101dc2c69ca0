// Package faisstest is what the tests comparing Shelf with FAISS share:
// the interpreter that has Debian's FAISS, and the rule that a comparison
// that cannot run fails rather than passes.
//
// It imports only the standard library.
package faisstest
