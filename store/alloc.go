package store

import (
	"fmt"

	"github.com/shelfdb/shelf/slots"
)

// Space for slots: taking free space, growing the data file, giving slots
// back. A batch records the slots it takes (allocated) so an abort gives
// them back and a commit keeps them; a committed slot it stops using is
// only freed after the commit (freed), and reused once no reader can see
// it (releasePending, commit.go).

// alloc takes n bytes of free space for one slot, growing the data file
// if needed.
func (b *Batch) alloc(n uint64) (uint64, error) {
	off, err := b.allocRegion(n)
	if err != nil {
		return 0, err
	}
	b.allocated[off] = n
	return off, nil
}

// allocRegion takes total contiguous bytes of free space, growing the
// data file if needed; the caller records the slots it cuts from it.
func (b *Batch) allocRegion(total uint64) (uint64, error) {
	s := b.s
	off, ok := s.alloc.Alloc(total)
	if !ok {
		if err := s.grow(total); err != nil {
			return 0, err
		}
		b.wrote = true
		if off, ok = s.alloc.Alloc(total); !ok {
			return 0, fmt.Errorf("store: no %d free bytes after growing %s", total, s.dir)
		}
	}
	return off, nil
}

// placeSlots gives every job with a non-empty slot a fresh one: with
// reuse, free space first (best fit); the rest packed one after another
// in one contiguous region, so writing them is sequential I/O.
func (b *Batch) placeSlots(jobs []*slotJob, reuse bool) error {
	s := b.s
	cs := int(s.conf.codeSize)
	var packed []*slotJob
	var total uint64
	for _, j := range jobs {
		n := slotBytes(j.cap, cs)
		if n == 0 {
			continue
		}
		if reuse {
			if off, ok := s.alloc.Alloc(n); ok {
				b.allocated[off] = n
				j.off = off
				continue
			}
		}
		packed = append(packed, j)
		total += n
	}
	if total == 0 {
		return nil
	}
	off, err := b.allocRegion(total)
	if err != nil {
		return err
	}
	for _, j := range packed {
		n := slotBytes(j.cap, cs)
		j.off = off
		b.allocated[off] = n
		off += n
	}
	return nil
}

// relocate moves list l (row e) to a new slot of capacity nc, copying its
// entries, and returns the new row (not yet stored in the draft).
func (b *Batch) relocate(l int, e entry, nc uint64) (entry, error) {
	off, err := b.alloc(slotBytes(nc, int(b.s.conf.codeSize)))
	if err != nil {
		return e, fmt.Errorf("list %d: %w", l, err)
	}
	if err := b.writeJob(&slotJob{l: l, old: e, keep: e.size, cap: nc, size: e.size, off: off}); err != nil {
		return e, err
	}
	if e.cap > 0 {
		if err := b.freeSlot(e); err != nil {
			return e, err
		}
	}
	return entry{off: off, cap: nc, size: e.size, hwm: e.size, crc: e.crc}, nil
}

// freeSlot gives back the slot of row e: at once if this batch allocated
// it (nobody else can see it), after the commit otherwise.
func (b *Batch) freeSlot(e entry) error {
	n := slotBytes(e.cap, int(b.s.conf.codeSize))
	if b.fresh(e) {
		delete(b.allocated, e.off)
		return b.s.alloc.Free(e.off, n)
	}
	b.freed = append(b.freed, slots.Extent{Off: e.off, Len: n})
	return nil
}

// grow extends the data file so a free extent of n bytes exists at its end
// (wmu held). It grows by at least 1/8 of the file (1 MiB to 1 GiB) so
// growth is rare, and remaps when the reservation is exceeded.
func (s *Store) grow(n uint64) error {
	end := s.alloc.End()
	need := n - s.alloc.TailFree()
	step := end / 8
	if step < 1<<20 {
		step = 1 << 20
	}
	if step > 1<<30 {
		step = 1 << 30
	}
	if need < step {
		need = step
	}
	newEnd := (end + need + 4095) &^ 4095
	if err := s.file.Truncate(int64(newEnd)); err != nil {
		// Give back what a partial fallocate may have reserved; the
		// committed size is still covered.
		_ = s.file.Truncate(int64(end))
		return fmt.Errorf("grow data file %s to %d bytes: %w", s.file.OS().Name(), newEnd, err)
	}
	if err := s.alloc.Grow(newEnd); err != nil {
		return err
	}
	if int64(newEnd) > s.m.reserve {
		m, err := mapFile(s.file.OS(), 0, int64(newEnd))
		if err != nil {
			return err
		}
		s.rmu.Lock()
		old := s.m
		s.m = m
		cp := *s.cur
		cp.m = m // s.cur.m == s.m always; views hold their own references
		s.cur = &cp
		s.dropMappingLocked(old)
		s.rmu.Unlock()
	}
	return nil
}
