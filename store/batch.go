package store

import (
	"fmt"

	"github.com/shelfdb/shelf/slots"
)

// Batch groups writes so they share one fdatasync and one synced Pebble
// commit (group commit): readers see all of a batch or none of it, and a
// crash keeps all of it or none of it. A Batch holds the store's writer
// lock from Begin until Commit or Abort, so it must be ended promptly.
// A Batch is not safe for concurrent use.
//
// Any error from an operation poisons the batch: Commit then returns it
// and commits nothing, and the store keeps its last committed state.
type Batch struct {
	s          *Store
	d          *draft
	nlist      int
	allocated  map[uint64]uint64 // slots allocated by this batch: off -> bytes
	freed      []slots.Extent    // committed slots this batch stops using
	user       map[string][]byte // records to set (nil value: delete)
	wrote      bool
	rewriteAll bool // list numbering changed: rewrite every row
	gen        uint64
	bufs       listBufs       // entries appended but not yet written
	spread     []*spreadBlock // AddSpread entries not yet sorted into lists
	bufBytes   uint64
	err        error
	done       bool
}

// Begin starts a batch, waiting for any other writer to finish.
func (s *Store) Begin() (*Batch, error) {
	if s.readOnly {
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, s.dir)
	}
	s.wmu.Lock()
	if err := s.writable(); err != nil {
		s.wmu.Unlock()
		return nil, err
	}
	s.releasePending()
	cur := s.current()
	return &Batch{
		s: s, d: newDraft(cur.tab), nlist: cur.nlist, gen: cur.gen,
		allocated: map[uint64]uint64{}, user: map[string][]byte{}, bufs: newListBufs(cur.nlist),
	}, nil
}

// writable reports whether writes may start (wmu held).
func (s *Store) writable() error {
	s.rmu.Lock()
	closed := s.closed
	s.rmu.Unlock()
	if closed {
		return ErrClosed
	}
	return s.failure()
}

func (b *Batch) check(l int) error {
	if b.done {
		return ErrBatchDone
	}
	if b.err != nil {
		return b.err
	}
	if l < 0 || l >= b.nlist {
		return fmt.Errorf("%w: list %d of %d in %s", ErrList, l, b.nlist, b.s.dir)
	}
	return nil
}

func (b *Batch) fail(err error) error {
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *Batch) fresh(e entry) bool {
	if e.cap == 0 {
		return false
	}
	_, ok := b.allocated[e.off]
	return ok
}

// ListLen returns the size of list l as this batch would commit it.
func (b *Batch) ListLen(l int) (int, error) {
	if err := b.check(l); err != nil {
		return 0, err
	}
	n := b.d.get(l).size
	if lb := b.bufs.peek(l); lb != nil {
		n += uint64(len(lb.ids))
	}
	n += uint64(b.bufs.count(int64(l)))
	return int(n), nil
}

// Add appends entries to list l and returns the position of the first
// (FAISS add_entries). len(codes) must be len(ids)*CodeSize. The entries
// are buffered and written at Commit (or when the batch buffers more than
// 64 MiB), so many small appends to a list cost one write.
func (b *Batch) Add(l int, ids []int64, codes []byte) (int, error) {
	if err := b.check(l); err != nil {
		return 0, err
	}
	cs := uint64(b.s.conf.codeSize)
	if uint64(len(codes)) != uint64(len(ids))*cs {
		return 0, fmt.Errorf("%w: %d bytes of codes for %d ids of %d bytes (list %d)", ErrCodeSize, len(codes), len(ids), cs, l)
	}
	if len(b.spread) > 0 {
		b.absorbSpread()
	}
	lb := b.bufs.get(l)
	pos := int(b.d.get(l).size) + len(lb.ids)
	lb.ids = append(lb.ids, ids...)
	lb.codes = append(lb.codes, codes...)
	b.bufBytes += uint64(len(codes) + 8*len(ids))
	if b.bufBytes > b.s.opts.flushLimit {
		if err := b.flushAll(); err != nil {
			return 0, b.fail(err)
		}
	}
	return pos, nil
}

// AddSpread appends entry i to list lists[i], for every i: the shape of an
// IVF add, where each vector goes to its own list.
func (b *Batch) AddSpread(lists []int64, ids []int64, codes []byte) error {
	cs := int(b.s.conf.codeSize)
	if len(lists) != len(ids) || len(codes) != len(ids)*cs {
		return fmt.Errorf("%w: %d list numbers, %d ids, %d bytes of codes of %d bytes", ErrCodeSize, len(lists), len(ids), len(codes), cs)
	}
	for i, l := range lists {
		if l < 0 || l >= int64(b.nlist) {
			return fmt.Errorf("%w: entry %d goes to list %d of %d in %s", ErrList, i, l, b.nlist, b.s.dir)
		}
	}
	if b.done {
		return ErrBatchDone
	}
	if b.err != nil {
		return b.err
	}
	// Keep the entries in call order (one copy into pooled blocks); they
	// are sorted into their lists once per flush, so a batch spread over
	// many lists costs no per-entry lookups or buffer growth here.
	for len(ids) > 0 {
		var k *spreadBlock
		if n := len(b.spread); n > 0 && b.spread[n-1].room(cs) > 0 {
			k = b.spread[n-1]
		} else {
			k = newSpreadBlock(cs)
			b.spread = append(b.spread, k)
		}
		m := min(k.room(cs), len(ids))
		b.appendSpread(k, lists[:m], ids[:m], codes[:m*cs])
		lists, ids, codes = lists[m:], ids[m:], codes[m*cs:]
		b.bufBytes += uint64(m * (cs + 8))
		if b.bufBytes > b.s.opts.flushLimit {
			if err := b.flushAll(); err != nil {
				return b.fail(err)
			}
		}
	}
	return nil
}

// appendNow writes entries at the end of list l immediately.
func (b *Batch) appendNow(l int, ids []int64, codes []byte) error {
	e := b.d.get(l)
	pos := e.size
	if len(ids) == 0 {
		return nil
	}
	need := e.size + uint64(len(ids))
	if need > e.cap || !(b.fresh(e) || e.size == e.hwm) {
		nc := e.cap
		if need > nc {
			nc = slots.NextPow2(need)
		}
		var err error
		if e, err = b.relocate(l, e, nc); err != nil {
			return err
		}
	}
	e, err := b.writeEntries(e, pos, ids, codes)
	if err != nil {
		return err
	}
	b.d.set(l, e)
	return nil
}

// Update overwrites entries [pos, pos+len(ids)) of list l (FAISS
// update_entries). The list is copied to a new slot first unless this
// batch already did, so readers of the old commit keep seeing old data.
func (b *Batch) Update(l, pos int, ids []int64, codes []byte) error {
	if err := b.check(l); err != nil {
		return err
	}
	cs := uint64(b.s.conf.codeSize)
	if uint64(len(codes)) != uint64(len(ids))*cs {
		return fmt.Errorf("%w: %d bytes of codes for %d ids of %d bytes (list %d)", ErrCodeSize, len(codes), len(ids), cs, l)
	}
	if err := b.flushList(l); err != nil {
		return b.fail(err)
	}
	e := b.d.get(l)
	if pos < 0 || uint64(pos)+uint64(len(ids)) > e.size {
		return fmt.Errorf("%w: update [%d, %d) of list %d (size %d)", ErrEntry, pos, pos+len(ids), l, e.size)
	}
	if len(ids) == 0 {
		return nil
	}
	if !b.fresh(e) {
		var err error
		if e, err = b.relocate(l, e, e.cap); err != nil {
			return b.fail(err)
		}
		b.d.set(l, e)
	}
	e, err := b.writeEntries(e, uint64(pos), ids, codes)
	if err != nil {
		return b.fail(err)
	}
	b.d.set(l, e)
	return nil
}

// Resize sets the size of list l (FAISS resize). Shrinking keeps the slot;
// growing past the capacity moves the list to a slot of the next power of
// two. New entries have zero codes and id -1.
func (b *Batch) Resize(l, size int) error {
	if err := b.check(l); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: resize list %d to %d", ErrEntry, l, size)
	}
	if err := b.flushList(l); err != nil {
		return b.fail(err)
	}
	e := b.d.get(l)
	n := uint64(size)
	if n <= e.size {
		if n < e.size {
			crc, err := shrunkCRC(b.s.m, l, e, n, uint64(b.s.conf.codeSize))
			if err != nil {
				return b.fail(err)
			}
			e.crc = crc
		}
		e.size = n
		b.d.set(l, e)
		return nil
	}
	if n > e.cap || !(b.fresh(e) || e.size == e.hwm) {
		nc := e.cap
		if n > nc {
			nc = slots.NextPow2(n)
		}
		var err error
		if e, err = b.relocate(l, e, nc); err != nil {
			return b.fail(err)
		}
	}
	add := n - e.size
	ids := make([]int64, add)
	for i := range ids {
		ids[i] = -1
	}
	e, err := b.writeEntries(e, e.size, ids, make([]byte, add*uint64(b.s.conf.codeSize)))
	if err != nil {
		return b.fail(err)
	}
	b.d.set(l, e)
	return nil
}

// Clear empties list l and gives its slot back.
func (b *Batch) Clear(l int) error {
	if err := b.check(l); err != nil {
		return err
	}
	if len(b.spread) > 0 {
		b.absorbSpread()
	}
	if lb := b.bufs.peek(l); lb != nil {
		b.bufs.drop(l)
		b.bufBytes -= uint64(len(lb.codes) + 8*len(lb.ids))
	}
	e := b.d.get(l)
	if e.cap == 0 {
		return nil
	}
	if err := b.freeSlot(e); err != nil {
		return b.fail(err)
	}
	b.d.set(l, entry{})
	return nil
}

// SetMeta stores a record of the index layer; it commits with the batch.
func (b *Batch) SetMeta(key string, value []byte) error {
	if b.done {
		return ErrBatchDone
	}
	// A copy that is never nil, even of an empty value: nil marks a
	// deleted record.
	b.user[key] = append([]byte{}, value...)
	return nil
}

// DeleteMeta removes a record of the index layer.
func (b *Batch) DeleteMeta(key string) error {
	if b.done {
		return ErrBatchDone
	}
	b.user[key] = nil
	return nil
}

// writeEntries writes ids and codes at entry position pos <= e.size of
// slot e, space no committed list references (see commit.go), and returns
// the row that describes the result: entries appended (pos == e.size)
// extend the list and its CRCs, entries overwritten (Update) patch its
// CRCs with the bytes they replace, read before they are (replace).
func (b *Batch) writeEntries(e entry, pos uint64, ids []int64, codes []byte) (entry, error) {
	if len(ids) == 0 {
		return e, nil
	}
	j := &slotJob{old: e, off: e.off, cap: e.cap, keep: pos, size: pos + uint64(len(ids)),
		inPlace: true, bufs: [2]entryBuf{{ids: ids, codes: codes}}}
	crc := e.crc
	if j.overwrites() {
		cs := uint64(b.s.conf.codeSize)
		n := uint64(len(ids))
		old := b.s.m // the slot is this batch's: the current mapping covers it
		crc = crc.replace(old.bytes(e.off+pos*cs, n*cs), old.bytes(e.off+align8(e.cap*cs)+8*pos, 8*n),
			codes, int64Bytes(ids), e.size-j.size, cs)
	}
	if err := b.writeJob(j); err != nil {
		return e, err
	}
	if j.overwrites() {
		e.crc = crc
		return e, nil
	}
	e.crc = j.crc
	e.size = j.size
	e.hwm = max(e.hwm, j.size)
	return e, nil
}

// writeJob writes one slot job now, through the current mapping.
func (b *Batch) writeJob(j *slotJob) error {
	if j.size == j.keep && (j.inPlace || j.keep == 0) {
		return nil // nothing to write
	}
	w := newSlotWriter(b.s.file, b.s.m, int(b.s.conf.codeSize))
	defer w.release()
	if err := w.writeSlot(j); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	b.wrote = true
	return nil
}

// AddEntries appends entries to list l in a batch of its own and returns
// the position of the first.
func (s *Store) AddEntries(l int, ids []int64, codes []byte) (int, error) {
	b, err := s.Begin()
	if err != nil {
		return 0, err
	}
	pos, err := b.Add(l, ids, codes)
	if err != nil {
		b.Abort()
		return 0, err
	}
	return pos, b.Commit()
}

// UpdateEntries overwrites entries of list l in a batch of its own.
func (s *Store) UpdateEntries(l, pos int, ids []int64, codes []byte) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if err := b.Update(l, pos, ids, codes); err != nil {
		b.Abort()
		return err
	}
	return b.Commit()
}

// Resize sets the size of list l in a batch of its own.
func (s *Store) Resize(l, size int) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if err := b.Resize(l, size); err != nil {
		b.Abort()
		return err
	}
	return b.Commit()
}

// Reset empties every list and frees all their space (FAISS reset).
func (s *Store) Reset() error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	for l := 0; l < b.nlist; l++ {
		if err := b.Clear(l); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Commit()
}

// SetMeta stores one record of the index layer in a batch of its own.
func (s *Store) SetMeta(key string, value []byte) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	_ = b.SetMeta(key, value)
	return b.Commit()
}
