package vecio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func randMatrix(n, d int, seed uint64) Matrix {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := Matrix{N: n, D: d, Data: make([]float32, n*d)}
	for i := range m.Data {
		m.Data[i] = float32(rng.NormFloat64())
	}
	return m
}

func sameMatrix(t *testing.T, got, want Matrix) {
	t.Helper()
	if got.N != want.N || got.D != want.D {
		t.Fatalf("shape %dx%d, want %dx%d", got.N, got.D, want.N, want.D)
	}
	for i := range want.Data {
		// Bit equality, so that NaN payloads and -0 survive too.
		if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("value %d = %v, want %v", i, got.Data[i], want.Data[i])
		}
	}
}

func TestRoundTripFvecsAndNpy(t *testing.T) {
	dir := t.TempDir()
	m := randMatrix(37, 13, 1)
	// Values the index rejects must still pass through unchanged.
	m.Data[5] = float32(math.NaN())
	m.Data[6] = float32(math.Inf(-1))
	m.Data[7] = float32(math.Copysign(0, -1))
	for _, name := range []string{"a.fvecs", "a.npy", "A.FVECS"} {
		p := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(strings.ToLower(name), ".npy") {
			err = WriteNpyFloat32(p, m)
		} else {
			err = WriteFvecs(p, m)
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadFloat32(p)
		if err != nil {
			t.Fatal(err)
		}
		sameMatrix(t, got, m)
		if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
			t.Fatalf("%s.tmp left behind: %v", name, err)
		}
	}
}

func TestRoundTripBvecs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.bvecs")
	n, d := 9, 7
	data := make([]uint8, n*d)
	for i := range data {
		data[i] = uint8(i * 37)
	}
	if err := WriteBvecs(p, n, d, data); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFloat32(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Matrix{N: n, D: d, Data: make([]float32, n*d)}
	for i, v := range data {
		want.Data[i] = float32(v)
	}
	sameMatrix(t, got, want)
}

func TestRoundTripIvecs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gt.ivecs")
	n, d := 5, 4
	data := []int32{0, 1, 2, 3, -1, math.MaxInt32, math.MinInt32, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	if err := WriteIvecs(p, n, d, data); err != nil {
		t.Fatal(err)
	}
	gn, gd, got, err := ReadInt32(p)
	if err != nil || gn != n || gd != d || !slices.Equal(got, data) {
		t.Fatalf("ReadInt32 = %d, %d, %v, %v", gn, gd, got, err)
	}
	gn, gd, got64, err := ReadInt64(p)
	if err != nil || gn != n || gd != d {
		t.Fatalf("ReadInt64 = %d, %d, %v", gn, gd, err)
	}
	for i, v := range data {
		if got64[i] != int64(v) {
			t.Fatalf("ReadInt64[%d] = %d, want %d", i, got64[i], v)
		}
	}
}

func TestRoundTripNpyInt64(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ids.npy")
	ids := []int64{3, -1, 1 << 40, math.MinInt64, 0}
	if err := WriteNpyInt64(p, ids); err != nil {
		t.Fatal(err)
	}
	n, d, got, err := ReadInt64(p)
	if err != nil || n != len(ids) || d != 1 || !slices.Equal(got, ids) {
		t.Fatalf("ReadInt64 = %d, %d, %v, %v", n, d, got, err)
	}
	// The values do not fit in int32, so narrowing must fail, not wrap.
	if _, _, _, err := ReadInt32(p); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("ReadInt32 of wide ids: %v", err)
	}
	// An empty id list is a valid file.
	if err := WriteNpyInt64(p, nil); err != nil {
		t.Fatal(err)
	}
	if n, d, _, err := ReadInt64(p); err != nil || n != 0 || d != 1 {
		t.Fatalf("empty: %d, %d, %v", n, d, err)
	}
}

// TestNumpyFiles reads files written by np.save (numpy 1.24), which pins
// the header parser to what NumPy really emits rather than to what the
// writer here produces.
func TestNumpyFiles(t *testing.T) {
	m, err := ReadFloat32("testdata/np_f4.npy")
	if err != nil {
		t.Fatal(err)
	}
	want := Matrix{N: 3, D: 4, Data: make([]float32, 12)}
	for i := range want.Data {
		want.Data[i] = float32(i)*0.5 - 1
	}
	sameMatrix(t, m, want)

	m, err = ReadFloat32("testdata/np_u1.npy")
	if err != nil {
		t.Fatal(err)
	}
	want = Matrix{N: 2, D: 5, Data: make([]float32, 10)}
	for i := range want.Data {
		want.Data[i] = float32(i * 25)
	}
	sameMatrix(t, m, want)

	// float64 arrays (np.save of np.arange(4.0).reshape(2, 2)) are
	// rounded to float32.
	m, err = ReadFloat32("testdata/np_f8.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameMatrix(t, m, Matrix{N: 2, D: 2, Data: []float32{0, 1, 2, 3}})

	n, d, i32, err := ReadInt32("testdata/np_i4.npy")
	if err != nil || n != 3 || d != 2 || !slices.Equal(i32, []int32{1, -2, 3, math.MaxInt32, math.MinInt32, 0}) {
		t.Fatalf("np_i4: %d %d %v %v", n, d, i32, err)
	}
	n, d, i64, err := ReadInt64("testdata/np_i8.npy")
	if err != nil || n != 4 || d != 1 || !slices.Equal(i64, []int64{5, -1, 1 << 40, 7}) {
		t.Fatalf("np_i8: %d %d %v %v", n, d, i64, err)
	}

	for file, msg := range map[string]string{
		"np_fortran.npy":   "Fortran-order",
		"np_bigendian.npy": "big-endian",
		"np_3d.npy":        "3 dimensions",
	} {
		_, err := ReadFloat32("testdata/" + file)
		checkFormatErr(t, err, file, msg)
	}
}

// TestWriterMatchesNumpy checks that the header written here is byte for
// byte the one np.save writes for the same array.
func TestWriterMatchesNumpy(t *testing.T) {
	want, err := os.ReadFile("testdata/np_f4.npy")
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeNpyFloat32(want)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := encodeNpyFloat32(&buf, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("encoded\n%q\nnp.save wrote\n%q", buf.Bytes(), want)
	}
}

func checkFormatErr(t *testing.T, err error, file, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one containing %q", file, msg)
	}
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("%s: error %q does not wrap ErrFormat", file, err)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: error %q does not name the file and contain %q", file, err, msg)
	}
}

func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func fvecsRow(d int, vals ...float32) []byte {
	b := le32(int32(d))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func npyFile(header string, data []byte) []byte {
	b := []byte(npyMagic + "\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	return append(append(b, header...), data...)
}

func TestFormatErrors(t *testing.T) {
	row2 := fvecsRow(2, 1, 2)
	f4x2 := make([]byte, 2*2*4)
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"bad.txt", []byte("hello"), "unknown extension \".txt\""},
		{"noext", nil, "unknown extension"},
		{"short.fvecs", []byte{1, 0}, "truncated: file has 2 bytes"},
		{"trunc.fvecs", append(slices.Clone(row2), row2[:7]...), "truncated: last row has 7 of 12 bytes"},
		{"trunc.bvecs", append(le32(4), 1, 2, 3, 4, 4, 0, 0), "truncated: last row has 3 of 8 bytes"},
		{"dim.fvecs", slices.Concat(row2, row2, fvecsRow(1, 5, 6)), "row 2 has dimension 1, first row 2"},
		{"dim.bvecs", slices.Concat(le32(1), []byte{7}, le32(2), []byte{8}), "row 1 has dimension 2, first row 1"},
		{"zero.fvecs", le32(0), "row 0 has dimension 0, must be positive"},
		{"neg.ivecs", le32(-5), "row 0 has dimension -5"},
		{"huge.fvecs", slices.Concat(le32(1<<21), make([]byte, 64)), "more than the maximum"},
		{"magic.npy", append([]byte("\x93NUMPX\x01\x00\x10\x00"), make([]byte, 16)...), "bad .npy magic"},
		{"version.npy", append([]byte("\x93NUMPY\x09\x00\x10\x00"), make([]byte, 16)...), "unsupported .npy version 9.0"},
		{"tiny.npy", []byte("\x93NUM"), "too short for a .npy header"},
		{"hdrtrunc.npy", []byte("\x93NUMPY\x01\x00\xff\x00{'descr'"), "truncated: .npy header of 255 bytes"},
		{"hugehdr.npy", []byte("\x93NUMPY\x02\x00\xff\xff\xff\x7f{}"), "header length 2147483647 is absurd"},
		{"nodict.npy", npyFile("descr: '<f4'", nil), "does not start with '{'"},
		{"nokey.npy", npyFile("{'descr': '<f4', 'shape': (2, 2), }", f4x2), "lacks \"fortran_order\""},
		{"dup.npy", npyFile("{'descr': '<f4', 'descr': '<f4'}", nil), "duplicate key"},
		{"struct.npy", npyFile("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", nil), "structured dtypes"},
		{"dtype.npy", npyFile("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", f4x2[:8]), "unsupported dtype \"<f2\""},
		{"order.npy", npyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4x2), "Fortran-order"},
		{"bool.npy", npyFile("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 2), }", f4x2), "not True or False"},
		{"shape.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2], }", f4x2), "shape is not a tuple"},
		{"scalar.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f4x2[:4]), "0 dimensions"},
		{"negshape.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }", nil), "row count must be >= 0"},
		{"zerodim.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", nil), "dimension > 0"},
		{"bigshape.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", nil), "shape value too large"},
		{"short.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", f4x2), "truncated: 16 bytes of data, shape (3, 2) of <f4 needs 24 bytes"},
		{"absurd.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 1024), }", f4x2), "needs more than 2^63 bytes"},
		{"extra.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", f4x2), "8 bytes after the data"},
		{"ints.npy", npyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", f4x2), "not vectors"},
		{"ids.ivecs", slices.Concat(le32(1), le32(7)), "not vectors"},
		{"tail.npy", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), } x", f4x2), "unexpected text"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadFloat32(p)
			checkFormatErr(t, err, c.name, c.msg)
		})
	}
	// Integer readers reject float files the same way.
	p := filepath.Join(dir, "v.fvecs")
	if err := WriteFvecs(p, randMatrix(2, 3, 1)); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := ReadInt32(p)
	checkFormatErr(t, err, "v.fvecs", "not integers")
	_, _, _, err = ReadInt64(p)
	checkFormatErr(t, err, "v.fvecs", "not integers")
	p = filepath.Join(dir, "dim.ivecs")
	if err := os.WriteFile(p, slices.Concat(le32(1), le32(7), le32(2), le32(8)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = ReadInt32(p)
	checkFormatErr(t, err, "dim.ivecs", "row 1 has dimension 2, first row 1")
}

func TestEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "empty.fvecs")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ReadFloat32(p)
	if err != nil || m.N != 0 || m.D != 0 {
		t.Fatalf("empty file: %+v, %v", m, err)
	}
	r, err := OpenFloat32(p)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Read(make([]float32, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read of empty file = %d, %v", n, err)
	}
	r.Close()
	_, err = ReadFloat32(filepath.Join(dir, "missing.fvecs"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrFormat) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	m := randMatrix(2, 3, 1)
	for name, err := range map[string]error{
		"extension": WriteFvecs(filepath.Join(dir, "a.npy"), m),
		"short":     WriteFvecs(filepath.Join(dir, "a.fvecs"), Matrix{N: 3, D: 3, Data: m.Data}),
		"dim":       WriteNpyFloat32(filepath.Join(dir, "a.npy"), Matrix{}),
		"ivecs":     WriteIvecs(filepath.Join(dir, "a.ivecs"), 2, 2, []int32{1}),
		"bvecs":     WriteBvecs(filepath.Join(dir, "a.bvecs"), 1, 0, nil),
		"nodir":     WriteFvecs(filepath.Join(dir, "no", "a.fvecs"), m),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed writes left %d files", len(ents))
	}
}

func TestStreamingReader(t *testing.T) {
	dir := t.TempDir()
	m := randMatrix(1000, 24, 2)
	bytesData := make([]uint8, len(m.Data))
	for i := range bytesData {
		bytesData[i] = uint8(i % 251)
	}
	files := map[string]func(string) error{
		"s.fvecs": func(p string) error { return WriteFvecs(p, m) },
		"s.npy":   func(p string) error { return WriteNpyFloat32(p, m) },
		"s.bvecs": func(p string) error { return WriteBvecs(p, m.N, m.D, bytesData) },
	}
	for name, write := range files {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := write(p); err != nil {
				t.Fatal(err)
			}
			whole, err := ReadFloat32(p)
			if err != nil {
				t.Fatal(err)
			}
			r, err := OpenFloat32(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Len() != m.N || r.Dim() != m.D {
				t.Fatalf("Len, Dim = %d, %d", r.Len(), r.Dim())
			}
			// 7 rows plus a partial row per call: the remainder is ignored.
			dst := make([]float32, 7*m.D+5)
			var got []float32
			for {
				n, err := r.Read(dst)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, dst[:n*m.D]...)
			}
			sameMatrix(t, Matrix{N: len(got) / m.D, D: m.D, Data: got}, whole)
			if _, err := r.Read(make([]float32, 1)); err != io.EOF {
				t.Fatalf("Read after EOF: %v", err)
			}
			// Random access, in an order that jumps backwards.
			for _, s := range []int{990, 0, 513, 999, 17} {
				cnt := min(10, m.N-s)
				buf := make([]float32, cnt*m.D)
				if err := r.ReadRows(s, cnt, buf); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(buf, whole.Data[s*m.D:(s+cnt)*m.D]) {
					t.Fatalf("ReadRows(%d, %d) differs", s, cnt)
				}
			}
			for _, bad := range [][2]int{{-1, 1}, {995, 6}, {0, -1}} {
				if err := r.ReadRows(bad[0], bad[1], make([]float32, 1000)); err == nil {
					t.Fatalf("ReadRows(%d, %d) succeeded", bad[0], bad[1])
				}
			}
			if err := r.ReadRows(0, 2, make([]float32, m.D)); err == nil {
				t.Fatal("ReadRows into a short dst succeeded")
			}
		})
	}
	t.Run("small dst", func(t *testing.T) {
		r, err := OpenFloat32(filepath.Join(dir, "s.fvecs"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Read(make([]float32, m.D-1)); err == nil || err == io.EOF {
			t.Fatalf("Read into less than a row: %v", err)
		}
	})
}

// TestStreamingBadRow checks that a wrong dimension in the middle of a file
// is found by the streaming reader too, only when that row is read.
func TestStreamingBadRow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.fvecs")
	data := slices.Concat(fvecsRow(2, 1, 2), fvecsRow(2, 3, 4), fvecsRow(3, 5, 6))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFloat32(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.ReadRows(0, 2, make([]float32, 4)); err != nil {
		t.Fatal(err)
	}
	checkFormatErr(t, r.ReadRows(1, 2, make([]float32, 4)), "bad.fvecs", "row 2 has dimension 3, first row 2")
}

func TestReadLargeAcrossChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a file larger than one read chunk")
	}
	// More rows than one readChunk holds, so multi-chunk reads are covered.
	m := randMatrix(readChunk/(4*64)*2+3, 64, 3)
	p := filepath.Join(t.TempDir(), "big.fvecs")
	if err := WriteFvecs(p, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFloat32(p)
	if err != nil {
		t.Fatal(err)
	}
	sameMatrix(t, got, m)
}

func FuzzReadFvecs(f *testing.F) {
	var buf bytes.Buffer
	encodeFvecs(&buf, randMatrix(3, 4, 1))
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add(fvecsRow(2, 1, 2)[:7])
	f.Add(slices.Concat(fvecsRow(2, 1, 2), fvecsRow(1, 5, 6)))
	f.Add(le32(-1))
	f.Add(le32(1 << 30))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeFvecs(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if len(m.Data) != m.N*m.D {
			t.Fatalf("%dx%d matrix with %d values", m.N, m.D, len(m.Data))
		}
		if m.N == 0 {
			return
		}
		// A file that decodes is re-encoded to the same bytes.
		var out bytes.Buffer
		if err := encodeFvecs(&out, m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatal("re-encoding differs")
		}
		// The other *vecs decoders see the same bytes without panicking.
		decodeBvecs(b)
		decodeIvecs(b)
	})
}

func FuzzReadNpy(f *testing.F) {
	var buf bytes.Buffer
	encodeNpyFloat32(&buf, randMatrix(3, 4, 1))
	f.Add(buf.Bytes())
	buf.Reset()
	encodeNpyInt64(&buf, []int64{1, 2, 3})
	f.Add(buf.Bytes())
	for _, name := range []string{"np_f4", "np_u1", "np_i4", "np_i8", "np_fortran", "np_bigendian", "np_3d"} {
		if b, err := os.ReadFile("testdata/" + name + ".npy"); err == nil {
			f.Add(b)
		}
	}
	f.Add(npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807, 1048576), }", nil))
	f.Add([]byte("\x93NUMPY\x02\x00\x08\x00\x00\x00{}      "))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ferr := decodeNpyFloat32(b)
		n, d, ids, ierr := decodeNpyInt64(b)
		for _, err := range []error{ferr, ierr} {
			if err != nil && !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
		}
		if ferr == nil && len(m.Data) != m.N*m.D {
			t.Fatalf("%dx%d matrix with %d values", m.N, m.D, len(m.Data))
		}
		if ierr == nil && len(ids) != n*d {
			t.Fatalf("%dx%d ids with %d values", n, d, len(ids))
		}
	})
}
