package pq

// scanGeneric is the reference loop: one code at a time, one table entry
// at a time.
func scanGeneric(table []float32, m int, codes []byte, n int, out []float32) {
	for i := range n {
		code := codes[i*m : (i+1)*m]
		var s float32
		for j, c := range code {
			s += table[j*ksub8+int(c)]
		}
		out[i] = s
	}
}

// The unrolled scans below are what scan uses on architectures without an
// assembly path, and for M the assembly does not cover. Converting to array
// pointers and indexing with a byte plus a constant lets the compiler drop
// every bounds check, and the pairwise sums shorten the dependency chain of
// float adds from m to log2(m).

func scanUnrolled8(table []float32, codes []byte, n int, out []float32) {
	t := (*[8 * ksub8]float32)(table)
	for i := range out[:n] {
		c := (*[8]byte)(codes[i*8:])
		s0 := t[c[0]] + t[256+int(c[1])]
		s1 := t[512+int(c[2])] + t[768+int(c[3])]
		s2 := t[1024+int(c[4])] + t[1280+int(c[5])]
		s3 := t[1536+int(c[6])] + t[1792+int(c[7])]
		out[i] = (s0 + s1) + (s2 + s3)
	}
}

func scanUnrolled16(table []float32, codes []byte, n int, out []float32) {
	t := (*[16 * ksub8]float32)(table)
	for i := range out[:n] {
		c := (*[16]byte)(codes[i*16:])
		s0 := t[c[0]] + t[256+int(c[1])]
		s1 := t[512+int(c[2])] + t[768+int(c[3])]
		s2 := t[1024+int(c[4])] + t[1280+int(c[5])]
		s3 := t[1536+int(c[6])] + t[1792+int(c[7])]
		s4 := t[2048+int(c[8])] + t[2304+int(c[9])]
		s5 := t[2560+int(c[10])] + t[2816+int(c[11])]
		s6 := t[3072+int(c[12])] + t[3328+int(c[13])]
		s7 := t[3584+int(c[14])] + t[3840+int(c[15])]
		out[i] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
	}
}

// scanUnrolledBlocks handles any m that is a multiple of 8, eight
// sub-quantizers at a time.
func scanUnrolledBlocks(table []float32, m int, codes []byte, n int, out []float32) {
	for i := range out[:n] {
		code := codes[i*m : (i+1)*m]
		var s float32
		for b := 0; b+8 <= m; b += 8 {
			t := (*[8 * ksub8]float32)(table[b*ksub8:])
			c := (*[8]byte)(code[b:])
			s0 := t[c[0]] + t[256+int(c[1])]
			s1 := t[512+int(c[2])] + t[768+int(c[3])]
			s2 := t[1024+int(c[4])] + t[1280+int(c[5])]
			s3 := t[1536+int(c[6])] + t[1792+int(c[7])]
			s += (s0 + s1) + (s2 + s3)
		}
		out[i] = s
	}
}

// scanUnrolled picks the unrolled loop for m, falling back to the reference
// loop when m is not a multiple of 8.
func scanUnrolled(table []float32, m int, codes []byte, n int, out []float32) {
	switch {
	case m == 8:
		scanUnrolled8(table, codes, n, out)
	case m == 16:
		scanUnrolled16(table, codes, n, out)
	case m%8 == 0:
		scanUnrolledBlocks(table, m, codes, n, out)
	default:
		scanGeneric(table, m, codes, n, out)
	}
}
