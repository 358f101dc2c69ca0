package pq

import "golang.org/x/sys/cpu"

// useAsm selects the assembly scans of scan_amd64.s. It is a variable so
// tests can compare them with the Go loops on the same machine.
var useAsm = cpu.X86.HasAVX && cpu.X86.HasFMA

// The assembly scans read n*m bytes from codes and m*256 floats from table
// and write n floats to out; scan guarantees all three are in bounds, that m
// is a multiple of 8 (16 for scan16AVX) and that n > 0. Code bytes are at
// most 255, so every table read stays inside its sub-quantizer's entries.
// firstLEAVX2 reads n floats from d; firstLE passes n <= len(d).

//go:noescape
func scanScalarAVX(table *float32, codes *byte, m int, n int, out *float32)

//go:noescape
func scan16AVX(table *float32, codes *byte, n int, out *float32)

func scan(table []float32, m int, codes []byte, n int, out []float32) {
	switch {
	case !useAsm || n == 0:
	case m == 16:
		scan16AVX(&table[0], &codes[0], n, &out[0])
		return
	case m%8 == 0 && m > 8:
		scanScalarAVX(&table[0], &codes[0], m, n, &out[0])
		return
	}
	scanUnrolled(table, m, codes, n, out)
}

//go:noescape
func firstLEAVX2(d *float32, n int, thr float32) int

// useFirstLE selects firstLEAVX2 (AVX2, and BMI1 for TZCNT).
var useFirstLE = cpu.X86.HasAVX2 && cpu.X86.HasBMI1

// firstLE returns the index of the first d[i] <= thr, or len(d); NaN is
// never <= thr.
func firstLE(d []float32, thr float32) int {
	i := 0
	if n8 := len(d) &^ 7; useFirstLE && n8 > 0 {
		if i = firstLEAVX2(&d[0], n8, thr); i < n8 {
			return i
		}
	}
	for ; i < len(d); i++ {
		if d[i] <= thr {
			return i
		}
	}
	return i
}
