package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"

	"github.com/cockroachdb/pebble/v2"
)

// Format versions. A store written by a newer format is refused, not guessed.
// formatVersion is the list table's, in Pebble (keyFormat) and in
// table.snap: 2 added each list's CRCs (crc.go) to its row. A table of
// format 1 is still read: a writer adds the CRCs when it opens it
// (addChecksums), a read-only process reads it without them (table.noCRC).
// The data file's layout did not change: its header keeps dataVersion.
const (
	formatVersion   = 2
	formatNoCRC     = 1
	dataVersion     = 1
	headerSize      = 4096 // data file header; slots start here
	dataMagic       = "SHELFLST"
	snapMagic       = "SHELFSNP"
	logMagic        = "SHELFLOG"
	dataHeaderBytes = 44
)

// MaxLists is the most lists a store may have (an index's limit too). A
// count read from the metadata or table.snap above it is corruption; the
// list table costs memory only for lists with rows, so a store of this
// many lists opens in small memory when most are empty.
const MaxLists = 1 << 26

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Pebble keys. Rows of empty lists (all zero) are not stored.
var (
	keyFormat  = []byte("c/format")
	keyConf    = []byte("c/conf")
	keyState   = []byte("c/state")
	listPrefix = []byte("l/")
	userPrefix = []byte("u/")
)

func listKey(l int) []byte {
	k := make([]byte, 6)
	copy(k, listPrefix)
	binary.BigEndian.PutUint32(k[2:], uint32(l))
	return k
}

func userKey(k string) []byte { return append(append([]byte(nil), userPrefix...), k...) }

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	e[len(e)-1]++
	return e
}

// conf is the part of the metadata fixed at creation.
type conf struct {
	codeSize uint32
	id       [16]byte
}

func (c conf) encode() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b, c.codeSize)
	copy(b[4:], c.id[:])
	return b
}

func decodeConf(b []byte) (conf, error) {
	if len(b) != 20 {
		return conf{}, fmt.Errorf("%w: config record has %d bytes, want 20", ErrCorrupt, len(b))
	}
	var c conf
	c.codeSize = binary.LittleEndian.Uint32(b)
	copy(c.id[:], b[4:])
	if c.codeSize == 0 || c.codeSize > 1<<20 {
		return conf{}, fmt.Errorf("%w: code size %d", ErrCorrupt, c.codeSize)
	}
	return c, nil
}

// stateRec is rewritten by every commit.
type stateRec struct {
	nlist, gen, fsize, seq uint64
}

func (s stateRec) encode() []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint64(b[0:], s.nlist)
	binary.LittleEndian.PutUint64(b[8:], s.gen)
	binary.LittleEndian.PutUint64(b[16:], s.fsize)
	binary.LittleEndian.PutUint64(b[24:], s.seq)
	return b
}

func decodeState(b []byte) (stateRec, error) {
	if len(b) != 32 {
		return stateRec{}, fmt.Errorf("%w: state record has %d bytes, want 32", ErrCorrupt, len(b))
	}
	s := stateRec{
		nlist: binary.LittleEndian.Uint64(b[0:]),
		gen:   binary.LittleEndian.Uint64(b[8:]),
		fsize: binary.LittleEndian.Uint64(b[16:]),
		seq:   binary.LittleEndian.Uint64(b[24:]),
	}
	if s.nlist > MaxLists || s.fsize < headerSize || s.gen == 0 {
		return stateRec{}, fmt.Errorf("%w: state record nlist=%d gen=%d file size=%d", ErrCorrupt, s.nlist, s.gen, s.fsize)
	}
	return s, nil
}

// dataHeader is the first bytes of a data file.
type dataHeader struct {
	codeSize uint32
	gen      uint64
	id       [16]byte
}

func (h dataHeader) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, dataMagic)
	binary.LittleEndian.PutUint32(b[8:], dataVersion)
	binary.LittleEndian.PutUint32(b[12:], h.codeSize)
	binary.LittleEndian.PutUint64(b[16:], h.gen)
	copy(b[24:40], h.id[:])
	binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[:40], castagnoli))
	return b
}

func decodeDataHeader(b []byte) (dataHeader, error) {
	if len(b) < dataHeaderBytes {
		return dataHeader{}, fmt.Errorf("%w: header truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[:8]) != dataMagic {
		return dataHeader{}, fmt.Errorf("%w: bad magic %q, not a shelf data file", ErrCorrupt, b[:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[40:]), crc32.Checksum(b[:40], castagnoli); got != want {
		return dataHeader{}, fmt.Errorf("%w: header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != dataVersion {
		return dataHeader{}, fmt.Errorf("%w: format version %d, this build reads %d", ErrCorrupt, v, dataVersion)
	}
	var h dataHeader
	h.codeSize = binary.LittleEndian.Uint32(b[12:])
	h.gen = binary.LittleEndian.Uint64(b[16:])
	copy(h.id[:], b[24:40])
	return h, nil
}

// snapshot is the published list table read by read-only processes.
type snapshot struct {
	conf
	stateRec
	rows  map[int]entry
	user  map[string][]byte
	noCRC bool // format 1: rows without CRCs
}

// encodeSnapshot encodes the table in the current format, or in format 1
// when it has no CRCs.
func encodeSnapshot(c conf, st stateRec, tab *table, user map[string][]byte) []byte {
	var buf bytes.Buffer
	var hdr [8 + 4 + 4 + 16 + 32 + 8 + 8]byte
	copy(hdr[:], snapMagic)
	version, rowLen := uint32(formatVersion), 4+entryLen
	if tab.noCRC {
		version, rowLen = formatNoCRC, 4+entryLenNoCRC
	}
	binary.LittleEndian.PutUint32(hdr[8:], version)
	binary.LittleEndian.PutUint32(hdr[12:], c.codeSize)
	copy(hdr[16:32], c.id[:])
	copy(hdr[32:64], st.encode())
	var nrows uint64
	tab.rows(func(int, entry) { nrows++ })
	binary.LittleEndian.PutUint64(hdr[64:], nrows)
	binary.LittleEndian.PutUint64(hdr[72:], uint64(len(user)))
	buf.Write(hdr[:])
	var row [4 + entryLen]byte
	tab.rows(func(l int, e entry) {
		binary.LittleEndian.PutUint32(row[:], uint32(l))
		e.encode(row[4:])
		buf.Write(row[:rowLen])
	})
	keys := make([]string, 0, len(user))
	for k := range user {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var n [4]byte
	for _, k := range keys {
		binary.LittleEndian.PutUint32(n[:], uint32(len(k)))
		buf.Write(n[:])
		buf.WriteString(k)
		binary.LittleEndian.PutUint32(n[:], uint32(len(user[k])))
		buf.Write(n[:])
		buf.Write(user[k])
	}
	binary.LittleEndian.PutUint32(n[:], crc32.Checksum(buf.Bytes(), castagnoli))
	buf.Write(n[:])
	return buf.Bytes()
}

func decodeSnapshot(b []byte) (*snapshot, error) {
	const hdrLen = 80
	if len(b) < hdrLen+4 {
		return nil, fmt.Errorf("%w: snapshot truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[:8]) != snapMagic {
		return nil, fmt.Errorf("%w: bad snapshot magic %q", ErrCorrupt, b[:8])
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: snapshot checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	v := binary.LittleEndian.Uint32(b[8:])
	if v != formatVersion && v != formatNoCRC {
		return nil, fmt.Errorf("%w: snapshot format version %d, this build reads %d and %d", ErrCorrupt, v, formatNoCRC, formatVersion)
	}
	rowLen := uint64(4 + entryLen)
	s := &snapshot{rows: map[int]entry{}, user: map[string][]byte{}, noCRC: v == formatNoCRC}
	if s.noCRC {
		rowLen = 4 + entryLenNoCRC
	}
	s.codeSize = binary.LittleEndian.Uint32(b[12:])
	copy(s.id[:], b[16:32])
	st, err := decodeState(b[32:64])
	if err != nil {
		return nil, err
	}
	s.stateRec = st
	if s.codeSize == 0 || s.codeSize > 1<<20 {
		return nil, fmt.Errorf("%w: snapshot code size %d", ErrCorrupt, s.codeSize)
	}
	nrows := binary.LittleEndian.Uint64(b[64:])
	nuser := binary.LittleEndian.Uint64(b[72:])
	// Every count is bounded by the bytes left before anything is
	// allocated or looped over: a row takes 4+entryLen bytes, a user
	// record at least 8, and rows come in increasing list order.
	p := body[hdrLen:]
	if nrows > uint64(len(p))/rowLen {
		return nil, fmt.Errorf("%w: snapshot claims %d rows in %d bytes", ErrCorrupt, nrows, len(p))
	}
	if left := uint64(len(p)) - nrows*rowLen; nuser > left/8 {
		return nil, fmt.Errorf("%w: snapshot claims %d user records in %d bytes", ErrCorrupt, nuser, left)
	}
	s.rows = make(map[int]entry, nrows)
	prev := -1
	for i := uint64(0); i < nrows; i++ {
		l := int(binary.LittleEndian.Uint32(p))
		if uint64(l) >= s.nlist {
			return nil, fmt.Errorf("%w: snapshot row for list %d of %d", ErrCorrupt, l, s.nlist)
		}
		if l <= prev {
			return nil, fmt.Errorf("%w: snapshot row %d for list %d after list %d", ErrCorrupt, i, l, prev)
		}
		prev = l
		s.rows[l] = decodeEntry(p[4:rowLen])
		p = p[rowLen:]
	}
	for i := uint64(0); i < nuser; i++ {
		k, rest, ok := cutLen(p)
		if !ok {
			return nil, fmt.Errorf("%w: snapshot user record %d truncated", ErrCorrupt, i)
		}
		v, rest, ok := cutLen(rest)
		if !ok {
			return nil, fmt.Errorf("%w: snapshot user record %q truncated", ErrCorrupt, k)
		}
		s.user[string(k)] = append([]byte{}, v...)
		p = rest
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in snapshot", ErrCorrupt, len(p))
	}
	return s, nil
}

// logHeader begins table.log: the snapshot the log extends (its store and
// commit) and a random id, so a reader that read part of one log knows
// whether the file it finds later is still that log.
type logHeader struct {
	conf
	snapSeq uint64
	logID   uint64
}

const logHeaderLen = 8 + 4 + 4 + 16 + 8 + 8 + 4

func (h logHeader) encode() []byte {
	b := make([]byte, logHeaderLen)
	copy(b, logMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint32(b[12:], h.codeSize)
	copy(b[16:32], h.id[:])
	binary.LittleEndian.PutUint64(b[32:], h.snapSeq)
	binary.LittleEndian.PutUint64(b[40:], h.logID)
	binary.LittleEndian.PutUint32(b[48:], crc32.Checksum(b[:48], castagnoli))
	return b
}

func decodeLogHeader(b []byte) (logHeader, error) {
	if len(b) < logHeaderLen {
		return logHeader{}, fmt.Errorf("%w: log header truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[:8]) != logMagic {
		return logHeader{}, fmt.Errorf("%w: bad log magic %q", ErrCorrupt, b[:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[48:]), crc32.Checksum(b[:48], castagnoli); got != want {
		return logHeader{}, fmt.Errorf("%w: log header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return logHeader{}, fmt.Errorf("%w: log format version %d, this build reads %d", ErrCorrupt, v, formatVersion)
	}
	var h logHeader
	h.codeSize = binary.LittleEndian.Uint32(b[12:])
	copy(h.id[:], b[16:32])
	h.snapSeq = binary.LittleEndian.Uint64(b[32:])
	h.logID = binary.LittleEndian.Uint64(b[40:])
	return h, nil
}

// logRecord is one commit in table.log: its state record (list count,
// generation, file size, sequence number), the list rows it changed and
// the user records it set or deleted. On disk: the payload's length and
// CRC-32C (4 bytes each), then the payload: the state record, the number
// of rows, each row as list (4 bytes) and entry, the number of user
// changes, each as key length, key, value length (all ones: deleted) and
// value.
type logRecord struct {
	stateRec
	rows []logRow
	user []userChange
}

type logRow struct {
	l int
	e entry
}

type userChange struct {
	key string
	val []byte // nil: deleted
}

const userDeleted = ^uint32(0)

// appendTo appends the encoded record to b.
func (r *logRecord) appendTo(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, 8)...)
	b = append(b, r.stateRec.encode()...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.rows)))
	var row [entryLen]byte
	for _, w := range r.rows {
		b = binary.LittleEndian.AppendUint32(b, uint32(w.l))
		w.e.encode(row[:])
		b = append(b, row[:]...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.user)))
	for _, u := range r.user {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(u.key)))
		b = append(b, u.key...)
		if u.val == nil {
			b = binary.LittleEndian.AppendUint32(b, userDeleted)
			continue
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(u.val)))
		b = append(b, u.val...)
	}
	payload := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// decodeLogRecord decodes the record at the start of b and returns its
// length. ok is false where no whole, intact record starts: the end of
// the log, a record torn by a crash or still being written, or damage.
// Records are checksummed, so a reader stops there rather than guess.
func decodeLogRecord(b []byte) (r logRecord, n int, ok bool) {
	if len(b) < 8 {
		return logRecord{}, 0, false
	}
	size := binary.LittleEndian.Uint32(b)
	if uint64(size) > uint64(len(b)-8) || size < 32+8 {
		return logRecord{}, 0, false
	}
	p := b[8 : 8+size]
	if binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(p, castagnoli) {
		return logRecord{}, 0, false
	}
	st, err := decodeState(p[:32])
	if err != nil {
		return logRecord{}, 0, false
	}
	r.stateRec = st
	p = p[32:]
	nrows := uint64(binary.LittleEndian.Uint32(p))
	p = p[4:]
	if nrows > uint64(len(p))/(4+entryLen) {
		return logRecord{}, 0, false
	}
	r.rows = make([]logRow, nrows)
	for i := range r.rows {
		l := binary.LittleEndian.Uint32(p)
		if uint64(l) >= st.nlist {
			return logRecord{}, 0, false
		}
		r.rows[i] = logRow{l: int(l), e: decodeEntry(p[4:])}
		p = p[4+entryLen:]
	}
	if len(p) < 4 {
		return logRecord{}, 0, false
	}
	nuser := binary.LittleEndian.Uint32(p)
	p = p[4:]
	for i := uint32(0); i < nuser; i++ {
		k, rest, ok := cutLen(p)
		if !ok || len(rest) < 4 {
			return logRecord{}, 0, false
		}
		u := userChange{key: string(k)}
		if binary.LittleEndian.Uint32(rest) == userDeleted {
			p = rest[4:]
		} else {
			v, rest, ok := cutLen(rest)
			if !ok {
				return logRecord{}, 0, false
			}
			u.val = append([]byte{}, v...)
			p = rest
		}
		r.user = append(r.user, u)
	}
	if len(p) != 0 {
		return logRecord{}, 0, false
	}
	return r, 8 + int(size), true
}

func cutLen(p []byte) (v, rest []byte, ok bool) {
	if len(p) < 4 {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return nil, nil, false
	}
	return p[4 : 4+n], p[4+n:], true
}

// loadMeta reads the whole metadata from Pebble. A table of format 1
// comes back marked noCRC.
func loadMeta(db *pebble.DB) (conf, stateRec, *table, map[string][]byte, error) {
	get := func(k []byte) ([]byte, error) {
		v, c, err := db.Get(k)
		if err != nil {
			if err == pebble.ErrNotFound {
				return nil, fmt.Errorf("%w: metadata key %q missing", ErrCorrupt, k)
			}
			return nil, err
		}
		defer c.Close()
		return append([]byte(nil), v...), nil
	}
	fv, err := get(keyFormat)
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	if len(fv) != 4 || (binary.LittleEndian.Uint32(fv) != formatVersion && binary.LittleEndian.Uint32(fv) != formatNoCRC) {
		return conf{}, stateRec{}, nil, nil, fmt.Errorf("%w: metadata format %x, this build reads %d and %d", ErrCorrupt, fv, formatNoCRC, formatVersion)
	}
	rowLen := entryLen
	if binary.LittleEndian.Uint32(fv) == formatNoCRC {
		rowLen = entryLenNoCRC
	}
	cv, err := get(keyConf)
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	c, err := decodeConf(cv)
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	sv, err := get(keyState)
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	st, err := decodeState(sv)
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	tab := newTable(int(st.nlist))
	tab.noCRC = rowLen == entryLenNoCRC
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: listPrefix, UpperBound: prefixEnd(listPrefix)})
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 6 || len(it.Value()) != rowLen {
			it.Close()
			return conf{}, stateRec{}, nil, nil, fmt.Errorf("%w: list row key %x value %d bytes", ErrCorrupt, k, len(it.Value()))
		}
		l := int(binary.BigEndian.Uint32(k[2:]))
		if uint64(l) >= st.nlist {
			it.Close()
			return conf{}, stateRec{}, nil, nil, fmt.Errorf("%w: row for list %d but nlist is %d", ErrCorrupt, l, st.nlist)
		}
		tab.set(l, decodeEntry(it.Value()))
	}
	if err := it.Close(); err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	user := map[string][]byte{}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: userPrefix, UpperBound: prefixEnd(userPrefix)})
	if err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		user[string(it.Key()[len(userPrefix):])] = append([]byte{}, it.Value()...)
	}
	if err := it.Close(); err != nil {
		return conf{}, stateRec{}, nil, nil, err
	}
	return c, st, tab, user, nil
}

// validateTable checks that every row of tab describes a slot inside
// [headerSize, fsize) with size <= hwm <= capacity, and that no two slots
// overlap. It returns the used extents sorted by offset.
func validateTable(tab *table, codeSize int, fsize uint64) ([][2]uint64, error) {
	used := make([][2]uint64, 0, 64)
	var err error
	tab.rows(func(l int, e entry) {
		if err == nil {
			err = checkRow(l, e, codeSize, fsize)
		}
		if err == nil && e.cap > 0 {
			used = append(used, [2]uint64{e.off, e.off + slotBytes(e.cap, codeSize)})
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(used, func(i, j int) bool { return used[i][0] < used[j][0] })
	for i := 1; i < len(used); i++ {
		if used[i][0] < used[i-1][1] {
			return nil, fmt.Errorf("%w: slots [%d, %d) and [%d, %d) overlap", ErrCorrupt, used[i-1][0], used[i-1][1], used[i][0], used[i][1])
		}
	}
	return used, nil
}

// checkRow checks one row of a list table on its own: a slot inside
// [headerSize, fsize) with size <= hwm <= capacity, or an empty row.
func checkRow(l int, e entry, codeSize int, fsize uint64) error {
	if e.cap == 0 {
		if e != (entry{}) {
			return fmt.Errorf("%w: list %d has capacity 0 but offset %d size %d hwm %d", ErrCorrupt, l, e.off, e.size, e.hwm)
		}
		return nil
	}
	if e.size == 0 && e.crc != (listCRC{}) {
		return fmt.Errorf("%w: list %d is empty but has CRCs %08x %08x", ErrCorrupt, l, e.crc.codes, e.crc.ids)
	}
	if e.size > e.hwm || e.hwm > e.cap {
		return fmt.Errorf("%w: list %d size %d, high-water mark %d, capacity %d", ErrCorrupt, l, e.size, e.hwm, e.cap)
	}
	if e.cap > 1<<40 {
		return fmt.Errorf("%w: list %d capacity %d", ErrCorrupt, l, e.cap)
	}
	n := slotBytes(e.cap, codeSize)
	if e.off < headerSize || e.off%8 != 0 || e.off+n > fsize || e.off+n < e.off {
		return fmt.Errorf("%w: list %d slot [%d, %d) outside data [%d, %d)", ErrCorrupt, l, e.off, e.off+n, headerSize, fsize)
	}
	return nil
}

// slotBytes is the size of a slot of capacity c: codes padded to 8 bytes
// so the ids that follow are 8-byte aligned, then the ids.
func slotBytes(c uint64, codeSize int) uint64 { return align8(c*uint64(codeSize)) + 8*c }

func align8(n uint64) uint64 { return (n + 7) &^ 7 }
