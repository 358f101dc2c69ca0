// Package layering holds no code, only the test that keeps the package
// map of the design true: which package may import which (the table in
// its test, the same as in the README), and a doc.go in every package
// saying what it owns and what it must not import. It imports nothing.
package layering
