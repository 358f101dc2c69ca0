package vecio

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The .npy layout (numpy/lib/format.py): the magic "\x93NUMPY", a major and
// a minor version byte, the header length (uint16 in version 1, uint32 in
// versions 2 and 3), then the header, a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (1000, 128), }, padded
// with spaces and a newline so the data starts on a 64-byte boundary.

const npyMagic = "\x93NUMPY"

// npyMaxHeader bounds the header length read from a file: real headers are
// under 200 bytes, and an absurd length must not turn into an allocation.
const npyMaxHeader = 1 << 16

// npyPrelude returns the offset and length of the header from the first
// bytes of a file; b needs at most 12 bytes.
func npyPrelude(b []byte) (hdrOff, hdrLen int, err error) {
	if len(b) < 10 {
		return 0, 0, formatErr("truncated: %d bytes is too short for a .npy header", len(b))
	}
	if string(b[:6]) != npyMagic {
		return 0, 0, formatErr("bad .npy magic %q (want %q)", b[:6], npyMagic)
	}
	switch major := b[6]; major {
	case 1:
		return 10, int(binary.LittleEndian.Uint16(b[8:10])), nil
	case 2, 3:
		if len(b) < 12 {
			return 0, 0, formatErr("truncated: %d bytes is too short for a .npy version %d header", len(b), major)
		}
		n := binary.LittleEndian.Uint32(b[8:12])
		if n > npyMaxHeader {
			return 0, 0, formatErr(".npy header length %d is absurd", n)
		}
		return 12, int(n), nil
	default:
		return 0, 0, formatErr("unsupported .npy version %d.%d (want 1.0, 2.0 or 3.0)", major, b[7])
	}
}

// npyHeader is the part of the header dict that vecio uses.
type npyHeader struct {
	descr   string
	fortran bool
	shape   []int64
}

// npyLayout validates a parsed header against the file size and derives the
// row layout; dataOff is where the data starts.
func npyLayout(h npyHeader, dataOff, size int64) (layout, error) {
	l := layout{kind: kindNpy, dataOff: dataOff}
	switch h.descr {
	case "<f4":
		l.elem = elemF4
	case "|u1", "<u1", ">u1", "u1":
		l.elem = elemU1
	case "<i4":
		l.elem = elemI4
	case "<i8":
		l.elem = elemI8
	case "<f8":
		l.elem = elemF8
	case ">f4", ">f8", ">i4", ">i8":
		return l, formatErr("big-endian dtype %q is not supported (want little-endian %q)", h.descr, "<"+h.descr[1:])
	default:
		return l, formatErr("unsupported dtype %q (want <f4, <f8, |u1, <i4 or <i8)", h.descr)
	}
	var n, d int64
	switch len(h.shape) {
	case 1:
		n, d = h.shape[0], 1
	case 2:
		n, d = h.shape[0], h.shape[1]
	default:
		return l, formatErr("shape %s has %d dimensions (want a 1-D or 2-D array)", shapeString(h.shape), len(h.shape))
	}
	if n < 0 || d <= 0 {
		return l, formatErr("shape %s: row count must be >= 0 and dimension > 0", shapeString(h.shape))
	}
	if d > MaxDim {
		return l, formatErr("shape %s: dimension %d is more than the maximum %d", shapeString(h.shape), d, MaxDim)
	}
	if h.fortran && n > 1 && d > 1 {
		return l, formatErr("Fortran-order (column-major) array of shape %s is not supported; save it in C order (np.ascontiguousarray)", shapeString(h.shape))
	}
	rowBytes := d * int64(l.elem.size())
	dataBytes := size - dataOff
	if dataBytes < 0 || n > dataBytes/rowBytes {
		return l, formatErr("truncated: %d bytes of data, shape %s of %s needs %s", max(dataBytes, 0), shapeString(h.shape), h.descr, needBytes(n, rowBytes))
	}
	if extra := dataBytes - n*rowBytes; extra != 0 {
		return l, formatErr("%d bytes after the data of shape %s of %s", extra, shapeString(h.shape), h.descr)
	}
	l.n, l.d, l.rowBytes = int(n), int(d), int(rowBytes)
	return l, nil
}

// needBytes formats n*rowBytes without overflowing for absurd shapes.
func needBytes(n, rowBytes int64) string {
	if n > math.MaxInt64/rowBytes {
		return "more than 2^63 bytes"
	}
	return strconv.FormatInt(n*rowBytes, 10) + " bytes"
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatInt(v, 10)
	}
	if len(s) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// parseNpyHeader parses the header dict. It accepts exactly the literals
// np.save writes (strings, True/False, tuples of integers) and rejects
// anything else, such as the list a structured dtype uses.
func parseNpyHeader(s string) (npyHeader, error) {
	p := npyParser{s: s}
	var h npyHeader
	seen := map[string]bool{}
	if !p.eat('{') {
		return h, p.errorf("header does not start with '{'")
	}
	for {
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return h, err
		}
		if seen[key] {
			return h, p.errorf("duplicate key %q", key)
		}
		seen[key] = true
		if !p.eat(':') {
			return h, p.errorf("missing ':' after key %q", key)
		}
		switch key {
		case "descr":
			if h.descr, err = p.str(); err != nil {
				return h, p.errorf("descr is not a simple dtype string (structured dtypes are not supported)")
			}
		case "fortran_order":
			if h.fortran, err = p.boolean(); err != nil {
				return h, err
			}
		case "shape":
			if h.shape, err = p.tuple(); err != nil {
				return h, err
			}
		default:
			if err := p.skipValue(); err != nil {
				return h, err
			}
		}
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			break
		}
		return h, p.errorf("expected ',' or '}'")
	}
	if p.ws(); p.i != len(s) {
		return h, p.errorf("unexpected text after the header dict")
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, formatErr(".npy header lacks %q", k)
		}
	}
	return h, nil
}

type npyParser struct {
	s string
	i int
}

func (p *npyParser) errorf(format string, args ...any) error {
	return formatErr("bad .npy header at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *npyParser) ws() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *npyParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *npyParser) str() (string, error) {
	p.ws()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", p.errorf("expected a quoted string")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", p.errorf("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.IndexByte(v, '\\') >= 0 {
		return "", p.errorf("escaped strings are not supported")
	}
	p.i += end + 2
	return v, nil
}

func (p *npyParser) boolean() (bool, error) {
	p.ws()
	switch {
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	}
	return false, p.errorf("fortran_order is not True or False")
}

func (p *npyParser) tuple() ([]int64, error) {
	if !p.eat('(') {
		return nil, p.errorf("shape is not a tuple")
	}
	var out []int64
	for {
		if p.eat(')') {
			return out, nil
		}
		v, err := p.integer()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if len(out) > 32 {
			return nil, p.errorf("shape has more than 32 dimensions")
		}
		if p.eat(',') {
			continue
		}
		if p.eat(')') {
			return out, nil
		}
		return nil, p.errorf("expected ',' or ')' in shape")
	}
}

func (p *npyParser) integer() (int64, error) {
	p.ws()
	neg := false
	if p.i < len(p.s) && p.s[p.i] == '-' {
		neg = true
		p.i++
	}
	start := p.i
	var v int64
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		digit := int64(p.s[p.i] - '0')
		if v > (math.MaxInt64-digit)/10 {
			return 0, p.errorf("shape value too large")
		}
		v = v*10 + digit
		p.i++
	}
	if p.i == start {
		return 0, p.errorf("expected an integer in shape")
	}
	// Python 2 wrote longs with an L suffix.
	if p.i < len(p.s) && p.s[p.i] == 'L' {
		p.i++
	}
	if neg {
		v = -v
	}
	return v, nil
}

// skipValue skips the value of a key vecio does not use.
func (p *npyParser) skipValue() error {
	p.ws()
	if p.i >= len(p.s) {
		return p.errorf("missing value")
	}
	switch c := p.s[p.i]; {
	case c == '\'' || c == '"':
		_, err := p.str()
		return err
	case c == '(':
		_, err := p.tuple()
		return err
	default:
		if _, err := p.boolean(); err == nil {
			return nil
		}
		if _, err := p.integer(); err == nil {
			return nil
		}
		return p.errorf("unsupported value")
	}
}

// decodeNpyLayout parses the prelude and header of a whole .npy file held
// in b and returns its layout; the data is b[l.dataOff:].
func decodeNpyLayout(b []byte) (layout, error) {
	off, hlen, err := npyPrelude(b)
	if err != nil {
		return layout{}, err
	}
	if len(b)-off < hlen {
		return layout{}, formatErr("truncated: .npy header of %d bytes, file has %d after the prelude", hlen, len(b)-off)
	}
	h, err := parseNpyHeader(string(b[off : off+hlen]))
	if err != nil {
		return layout{}, err
	}
	return npyLayout(h, int64(off+hlen), int64(len(b)))
}

// decodeNpyFloat32 decodes the bytes of a <f4, <f8 or |u1 .npy file.
func decodeNpyFloat32(b []byte) (Matrix, error) {
	l, err := decodeNpyLayout(b)
	if err != nil {
		return Matrix{}, err
	}
	if !l.elem.isFloat() {
		return Matrix{}, formatErr("dtype %s holds integers, not vectors (want <f4, <f8 or |u1)", l.elem)
	}
	data := make([]float32, l.n*l.d)
	if err := decodeInto(&l, b[l.dataOff:], 0, data); err != nil {
		return Matrix{}, err
	}
	return Matrix{N: l.n, D: l.d, Data: data}, nil
}

// decodeNpyInt64 decodes the bytes of a <i4 or <i8 .npy file.
func decodeNpyInt64(b []byte) (n, d int, data []int64, err error) {
	l, err := decodeNpyLayout(b)
	if err != nil {
		return 0, 0, nil, err
	}
	if l.elem.isFloat() {
		return 0, 0, nil, formatErr("dtype %s does not hold integer ids (want <i4 or <i8)", l.elem)
	}
	data = make([]int64, l.n*l.d)
	if err := decodeInto(&l, b[l.dataOff:], 0, data); err != nil {
		return 0, 0, nil, err
	}
	return l.n, l.d, data, nil
}

// encodeNpyHeader writes the prelude and header for descr and shape,
// padded so the data starts on a 64-byte boundary as np.save does.
func encodeNpyHeader(w io.Writer, descr string, shape []int64) error {
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shapeString(shape))
	pre := 10
	if len(h)+1+pre > math.MaxUint16 {
		pre = 12
	}
	pad := (64 - (pre+len(h)+1)%64) % 64
	h += strings.Repeat(" ", pad) + "\n"
	buf := make([]byte, pre, pre+len(h))
	copy(buf, npyMagic)
	if pre == 10 {
		buf[6] = 1
		binary.LittleEndian.PutUint16(buf[8:], uint16(len(h)))
	} else {
		buf[6] = 2
		binary.LittleEndian.PutUint32(buf[8:], uint32(len(h)))
	}
	buf = append(buf, h...)
	_, err := w.Write(buf)
	return err
}

// encodeNpyPayload writes the header, then count values through put in
// blocks, so large matrices need no second full-size buffer.
func encodeNpyPayload(w io.Writer, descr string, shape []int64, count, size int, put func(dst []byte, i int)) error {
	if err := encodeNpyHeader(w, descr, shape); err != nil {
		return err
	}
	const block = 1 << 16
	buf := make([]byte, min(count, block)*size)
	for lo := 0; lo < count; lo += block {
		hi := min(count, lo+block)
		for i := lo; i < hi; i++ {
			put(buf[(i-lo)*size:], i)
		}
		if _, err := w.Write(buf[:(hi-lo)*size]); err != nil {
			return err
		}
	}
	return nil
}

func encodeNpyFloat32(w io.Writer, m Matrix) error {
	return encodeNpyPayload(w, "<f4", []int64{int64(m.N), int64(m.D)}, len(m.Data), 4, func(dst []byte, i int) {
		binary.LittleEndian.PutUint32(dst, math.Float32bits(m.Data[i]))
	})
}

func encodeNpyInt64(w io.Writer, ids []int64) error {
	return encodeNpyPayload(w, "<i8", []int64{int64(len(ids))}, len(ids), 8, func(dst []byte, i int) {
		binary.LittleEndian.PutUint64(dst, uint64(ids[i]))
	})
}
