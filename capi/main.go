package main

// main is never run: the package is built with -buildmode=c-shared, and
// a library's callers enter through the exported functions (export.go).
func main() {}
