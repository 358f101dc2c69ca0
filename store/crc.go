package store

import (
	"fmt"
	"hash/crc32"
)

// The checksum of a list's contents. Every row of the list table carries
// two CRC-32Cs (Castagnoli): one of the list's codes, the size*codeSize
// bytes at the start of its slot, and one of its ids, the 8*size bytes
// (int64 little endian) of its ids region. Two, not one, because a slot
// keeps codes and ids in two regions: an append extends each CRC with the
// bytes it writes at the end of each region (CRC-32C is streaming), and a
// mismatch says which region is damaged. An empty list's CRCs are 0, the
// CRC-32C of no bytes.
//
// How each write keeps them (never by reading back what it wrote):
//
//   - appends, merges, the growth of Resize: the slot writer extends the
//     CRCs with the new bytes as it queues them (writeSlot);
//   - relocations, compaction, crop: the entries move unchanged, so their
//     CRCs move with them, unread;
//   - an overwrite (Update): the CRCs are patched with the old and the new
//     bytes of the entries replaced (replace), with no pass over the rest;
//   - a shrink (Resize, SetAllListsSizes): the CRCs of the entries kept
//     are computed from the list's bytes, which are checked first against
//     the list's CRCs (shrunkCRC).
//
// No write computes a CRC over bytes it read from a slot without checking
// them against the CRCs they had: a damaged list is copied with its
// damage and its old CRCs, so it stays detectable, never blessed.
type listCRC struct {
	codes, ids uint32
}

// extend returns the CRCs of a list with codes and ids appended.
func (c listCRC) extend(codes []byte, ids []int64) listCRC {
	return listCRC{
		codes: crc32.Update(c.codes, castagnoli, codes),
		ids:   crc32.Update(c.ids, castagnoli, int64Bytes(ids)),
	}
}

// replace returns the CRCs of the list once the codes and ids of some of
// its entries, followed by tail more entries, change from oldCodes,
// oldIDs to newCodes, newIDs (as many bytes each). For messages
// A||w||C and A||w'||C, the CRCs differ by crc(w) xor crc(w') shifted
// over C (see crcShift), whatever A is.
func (c listCRC) replace(oldCodes, oldIDs, newCodes, newIDs []byte, tail, cs uint64) listCRC {
	dc := crc32.Checksum(oldCodes, castagnoli) ^ crc32.Checksum(newCodes, castagnoli)
	di := crc32.Checksum(oldIDs, castagnoli) ^ crc32.Checksum(newIDs, castagnoli)
	return listCRC{codes: c.codes ^ crcShift(dc, tail*cs), ids: c.ids ^ crcShift(di, 8*tail)}
}

// castagnoliReversed is the CRC-32C polynomial in the bit order
// hash/crc32 uses (lowest degree in the highest bit).
const castagnoliReversed = 0x82f63b78

// crcMulMod returns a*b modulo the CRC-32C polynomial, both in
// hash/crc32's bit order (zlib's multmodp). a must not be 0.
func crcMulMod(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; ; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ castagnoliReversed
		} else {
			b >>= 1
		}
	}
}

// crcX2n[k] is x^(2^k) modulo the polynomial.
var crcX2n = func() (t [64]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = crcMulMod(p, p)
	}
	return t
}()

// crcShift returns crc multiplied by x^(8n) modulo the polynomial: what
// crc becomes when n bytes follow the message it is the CRC of, less the
// CRC of those bytes: crc(A||B) = crcShift(crc(A), len(B)) ^ crc(B)
// (zlib's crc32_combine). It costs O(log n).
func crcShift(crc uint32, n uint64) uint32 {
	if crc == 0 {
		return 0
	}
	n *= 8
	for k := 0; n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			crc = crcMulMod(crcX2n[k], crc)
		}
	}
	return crc
}

// ListError reports a list whose bytes on disk do not match the CRC-32C
// the list table holds for them, or could not be read. It wraps
// ErrCorrupt (and the read error, if any), so errors.Is(err, ErrCorrupt)
// holds.
type ListError struct {
	File string // the data file
	List int
	Part string // "codes" or "ids"
	// Off, End delimit the part's bytes in the file: [Off, End).
	Off, End uint64
	// Want is the CRC-32C of the list table, Got the one of the bytes read.
	Want, Got uint32
	// Err is the error that kept the bytes from being read (Got is then 0).
	Err error
}

func (e *ListError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: list %d: %s at [%d, %d) of %s unreadable: %v", ErrCorrupt, e.List, e.Part, e.Off, e.End, e.File, e.Err)
	}
	return fmt.Sprintf("%v: list %d: %s at [%d, %d) of %s have CRC-32C %08x, the list table says %08x",
		ErrCorrupt, e.List, e.Part, e.Off, e.End, e.File, e.Got, e.Want)
}

// Unwrap returns ErrCorrupt and the read error, if any.
func (e *ListError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

// partRange returns the bytes of the codes (part 0) or the ids (part 1) of
// row e in the data file.
func partRange(e entry, part int, cs uint64) (off, n uint64) {
	if part == 0 {
		return e.off, e.size * cs
	}
	return e.off + align8(e.cap*cs), 8 * e.size
}

var partNames = [2]string{"codes", "ids"}

// mismatch returns the error for list l of row e whose bytes have CRCs
// got, or nil when they match the row's.
func mismatch(file string, l int, e entry, cs uint64, got listCRC) *ListError {
	for part, name := range partNames {
		if want := e.crc.part(part); want != got.part(part) {
			off, n := partRange(e, part, cs)
			return &ListError{File: file, List: l, Part: name, Off: off, End: off + n, Want: want, Got: got.part(part)}
		}
	}
	return nil
}

// shrunkCRC returns the CRCs of the first n entries of list l (row e),
// read through m, after checking all of the list's entries against the
// row's CRCs: a shrink never computes CRCs over damaged bytes.
func shrunkCRC(m *mapping, l int, e entry, n, cs uint64) (listCRC, error) {
	codes := m.bytes(e.off, e.size*cs)
	ids := m.bytes(e.off+align8(e.cap*cs), 8*e.size)
	kept := listCRC{crc32.Checksum(codes[:n*cs], castagnoli), crc32.Checksum(ids[:8*n], castagnoli)}
	all := listCRC{crc32.Update(kept.codes, castagnoli, codes[n*cs:]), crc32.Update(kept.ids, castagnoli, ids[8*n:])}
	if err := mismatch(m.name(), l, e, cs, all); err != nil {
		return listCRC{}, err
	}
	return kept, nil
}
