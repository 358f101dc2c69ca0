package store

import (
	"encoding/binary"
	"sort"
)

// entry is one list's row of the list table. off is the byte offset of the
// list's slot in the data file; capacity, size and hwm count entries. hwm
// (high-water mark) is the largest size committed since the slot was
// allocated: entries below it may be visible to some reader, so they are
// never rewritten in place. crc holds the CRC-32Cs of the first size
// entries' codes and ids (crc.go).
type entry struct {
	off, cap, size, hwm uint64
	crc                 listCRC
}

// entryLen is the encoded size of a row; entryLenNoCRC the size of a row
// of format 1, which had no CRCs.
const (
	entryLen      = 40
	entryLenNoCRC = 32
)

func (e entry) encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], e.off)
	binary.LittleEndian.PutUint64(b[8:], e.cap)
	binary.LittleEndian.PutUint64(b[16:], e.size)
	binary.LittleEndian.PutUint64(b[24:], e.hwm)
	binary.LittleEndian.PutUint32(b[32:], e.crc.codes)
	binary.LittleEndian.PutUint32(b[36:], e.crc.ids)
}

// decodeEntry decodes a row of entryLen bytes, or of entryLenNoCRC bytes
// (format 1: CRCs left 0).
func decodeEntry(b []byte) entry {
	e := entry{
		off:  binary.LittleEndian.Uint64(b[0:]),
		cap:  binary.LittleEndian.Uint64(b[8:]),
		size: binary.LittleEndian.Uint64(b[16:]),
		hwm:  binary.LittleEndian.Uint64(b[24:]),
	}
	if len(b) >= entryLen {
		e.crc = listCRC{binary.LittleEndian.Uint32(b[32:]), binary.LittleEndian.Uint32(b[36:])}
	}
	return e
}

// table is the list table as an immutable value shared by readers. It is
// split into fixed chunks so a commit copies only the chunks it changes
// (copy on write), not all nlist rows: with a million lists a commit that
// touches a few lists costs a few KiB, not 32 MiB.
type table struct {
	n      int
	chunks []*chunk
	// noCRC marks a table of format 1, whose rows have no CRCs: one a
	// read-only process finds published by an older writer. A writer
	// never holds one: opening a store of format 1 for writing adds the
	// CRCs first (addChecksums).
	noCRC bool
}

const (
	chunkBits = 9
	chunkLen  = 1 << chunkBits
)

type chunk [chunkLen]entry

// emptyChunk stands for every chunk whose lists are all empty, so a table
// costs a pointer per chunkLen lists plus the chunks that hold rows: a
// store of many mostly empty lists, or a damaged header claiming many,
// opens in the memory of its rows. It is never written: table.set and
// draft.set replace it by a chunk of their own first.
var emptyChunk = new(chunk)

func newTable(n int) *table {
	t := &table{n: n, chunks: make([]*chunk, (n+chunkLen-1)/chunkLen)}
	for i := range t.chunks {
		t.chunks[i] = emptyChunk
	}
	return t
}

func (t *table) get(l int) entry { return t.chunks[l>>chunkBits][l&(chunkLen-1)] }

// set writes list l's row into a table that is being built (loaded or
// decoded), before any reader can see it.
func (t *table) set(l int, e entry) {
	c := l >> chunkBits
	if t.chunks[c] == emptyChunk {
		t.chunks[c] = new(chunk)
	}
	t.chunks[c][l&(chunkLen-1)] = e
}

// rows calls fn for every list with a non-zero row, in list order,
// skipping whole chunks of empty lists.
func (t *table) rows(fn func(l int, e entry)) {
	for c, ch := range t.chunks {
		if ch == emptyChunk {
			continue
		}
		for i := range ch {
			if e := ch[i]; e != (entry{}) {
				fn(c<<chunkBits+i, e)
			}
		}
	}
}

// slotsByOffset returns the slots of the table's lists sorted by offset:
// off, end, list.
func (t *table) slotsByOffset(codeSize int) [][3]uint64 {
	var out [][3]uint64
	for l := 0; l < t.n; l++ {
		if e := t.get(l); e.cap > 0 {
			out = append(out, [3]uint64{e.off, e.off + slotBytes(e.cap, codeSize), uint64(l)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// draft is a writable copy of a table: chunks are copied on first write.
type draft struct {
	t     *table
	owned []bool
	dirty map[int]struct{} // lists whose row changed
}

func newDraft(base *table) *draft {
	t := &table{n: base.n, chunks: append([]*chunk(nil), base.chunks...), noCRC: base.noCRC}
	return &draft{t: t, owned: make([]bool, len(t.chunks)), dirty: map[int]struct{}{}}
}

func (d *draft) get(l int) entry { return d.t.get(l) }

func (d *draft) set(l int, e entry) {
	c := l >> chunkBits
	if !d.owned[c] {
		cp := *d.t.chunks[c]
		d.t.chunks[c] = &cp
		d.owned[c] = true
	}
	d.t.chunks[c][l&(chunkLen-1)] = e
	d.dirty[l] = struct{}{}
}
