package tools

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
)

// A code block is the output of one encode task: the flat two-level codes
// (list number, then PQ code) of a contiguous range of rows, with the row
// numbers as ids. Its layout, all little endian:
//
//	magic      "SHELFBLK"
//	version    uint32
//	model      uint32  CRC-32C of the index's model.shelf: blocks of another training are refused
//	nlist      uint32
//	codeSize   uint32  bytes of one two-level code
//	blockSize  uint64  rows per block of the encode run
//	block      uint64  block number
//	first      uint64  first row
//	count      uint64  entries
//	ids        count x int64
//	codes      count x codeSize
//	crc        uint32  CRC-32C of everything before it
//
// Entries are stored grouped by list (rows in order within a list), so
// that merge can read one list of a block with one contiguous read and
// never hold a whole block in memory.
const (
	blockMagic   = "SHELFBLK"
	blockVersion = 1
	blockHeader  = 8 + 4*4 + 8*4
)

var blockCRC = crc32.MakeTable(crc32.Castagnoli)

var blockNameRE = regexp.MustCompile(`^block-(\d{8,})\.codes$`)

func blockName(b int) string { return fmt.Sprintf("block-%08d.codes", b) }

// blockInfo is a block's header.
type blockInfo struct {
	Model     uint32
	NList     int
	CodeSize  int
	BlockSize int64
	Block     int64
	First     int64
	Count     int64
}

// errBadBlock marks a block file that is truncated or damaged.
var errBadBlock = errors.New("corrupt code block")

// blockModelIdentity returns a CRC-32C of the index's model file, which
// names its training: blocks encoded with another model are refused. The
// file ends with a CRC-32C of the rest, and the CRC of data followed by
// its own CRC is the same constant for all data, so the trailing four
// bytes are left out.
func blockModelIdentity(indexDir string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join(indexDir, "model.shelf"))
	if err != nil {
		return 0, err
	}
	if len(b) > 4 {
		b = b[:len(b)-4]
	}
	return crc32.Checksum(b, blockCRC), nil
}

// blockListBytes is how many bytes of a two-level code hold the list number.
func blockListBytes(nlist int) int {
	n := 1
	for (nlist-1)>>(8*n) > 0 {
		n++
	}
	return n
}

func blockListOf(code []byte, nb int) int {
	l := 0
	for b := 0; b < nb; b++ {
		l |= int(code[b]) << (8 * b)
	}
	return l
}

// writeBlock writes a block atomically: a *.tmp file, synced, renamed
// over the final name, and the directory synced, so a block file that
// exists is complete (the CRC still catches damage done later).
func writeBlock(dir string, h blockInfo, ids []int64, codes []byte) (err error) {
	// Group by list, stable in rows: a counting sort on the list number.
	nb := blockListBytes(h.NList)
	cs := h.CodeSize
	n := len(ids)
	start := make([]int, h.NList+1)
	for i := 0; i < n; i++ {
		start[blockListOf(codes[i*cs:], nb)+1]++
	}
	for l := 0; l < h.NList; l++ {
		start[l+1] += start[l]
	}
	sids := make([]int64, n)
	scodes := make([]byte, len(codes))
	for i := 0; i < n; i++ {
		l := blockListOf(codes[i*cs:], nb)
		p := start[l]
		start[l]++
		sids[p] = ids[i]
		copy(scodes[p*cs:(p+1)*cs], codes[i*cs:(i+1)*cs])
	}

	path := filepath.Join(dir, blockName(int(h.Block)))
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	crc := crc32.New(blockCRC)
	bw := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	hdr := make([]byte, 0, blockHeader)
	hdr = append(hdr, blockMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, blockVersion)
	hdr = binary.LittleEndian.AppendUint32(hdr, h.Model)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(h.NList))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(h.CodeSize))
	for _, v := range []int64{h.BlockSize, h.Block, h.First, h.Count} {
		hdr = binary.LittleEndian.AppendUint64(hdr, uint64(v))
	}
	bw.Write(hdr)
	buf := make([]byte, 8)
	for _, id := range sids {
		binary.LittleEndian.PutUint64(buf, uint64(id))
		bw.Write(buf)
	}
	bw.Write(scodes)
	if err = bw.Flush(); err != nil {
		return err
	}
	if _, err = f.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readBlockInfo reads and checks a whole block file: header, size and
// CRC. It returns the header and, for each list, the range of the
// block's entries in it (offsets[l] to offsets[l+1]), which is all merge
// keeps in memory per block.
func readBlockInfo(path string) (blockInfo, []int32, error) {
	var h blockInfo
	f, err := os.Open(path)
	if err != nil {
		return h, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return h, nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", path, errBadBlock, fmt.Sprintf(format, args...))
	}
	size := st.Size()
	if size < blockHeader+4 {
		return h, nil, bad("%d bytes, shorter than a header", size)
	}
	crc := crc32.New(blockCRC)
	r := bufio.NewReaderSize(io.TeeReader(io.LimitReader(f, size-4), crc), 1<<20)
	hdr := make([]byte, blockHeader)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return h, nil, err
	}
	if string(hdr[:8]) != blockMagic {
		return h, nil, bad("not a code block (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != blockVersion {
		return h, nil, bad("format version %d, want %d", v, blockVersion)
	}
	h.Model = binary.LittleEndian.Uint32(hdr[12:])
	h.NList = int(binary.LittleEndian.Uint32(hdr[16:]))
	h.CodeSize = int(binary.LittleEndian.Uint32(hdr[20:]))
	h.BlockSize = int64(binary.LittleEndian.Uint64(hdr[24:]))
	h.Block = int64(binary.LittleEndian.Uint64(hdr[32:]))
	h.First = int64(binary.LittleEndian.Uint64(hdr[40:]))
	h.Count = int64(binary.LittleEndian.Uint64(hdr[48:]))
	nb := blockListBytes(max(h.NList, 1))
	if h.NList < 1 || h.CodeSize <= nb || h.Count < 0 || h.Count > h.BlockSize || h.First < 0 {
		return h, nil, bad("implausible header")
	}
	if want := blockHeader + h.Count*(8+int64(h.CodeSize)) + 4; size != want {
		return h, nil, bad("%d bytes, header says %d", size, want)
	}
	if _, err := io.CopyN(io.Discard, r, 8*h.Count); err != nil {
		return h, nil, err
	}
	offsets := make([]int32, h.NList+1)
	code := make([]byte, h.CodeSize)
	prev := 0
	for i := int64(0); i < h.Count; i++ {
		if _, err := io.ReadFull(r, code); err != nil {
			return h, nil, err
		}
		l := blockListOf(code, nb)
		if l >= h.NList || l < prev {
			return h, nil, bad("entry %d names list %d out of order", i, l)
		}
		prev = l
		offsets[l+1]++
	}
	for l := 0; l < h.NList; l++ {
		offsets[l+1] += offsets[l]
	}
	tail := make([]byte, 4)
	if _, err := f.ReadAt(tail, size-4); err != nil {
		return h, nil, err
	}
	if binary.LittleEndian.Uint32(tail) != crc.Sum32() {
		return h, nil, bad("checksum mismatch")
	}
	return h, offsets, nil
}

// listBlockFiles returns the block numbers and file names in dir, in order.
func listBlockFiles(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range ents {
		m := blockNameRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		b, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		nums = append(nums, b)
	}
	sort.Ints(nums)
	return nums, nil
}

// blockSource is one block file as a store.Source for the two-pass merge:
// pass 1 uses the per-list counts found when the block was checked, pass
// 2 reads a list's entries with two positioned reads. ReadList allocates
// per call, so concurrent calls are safe.
type blockSource struct {
	f       *os.File
	path    string
	h       blockInfo
	offsets []int32
	onRead  func(entries int64)
}

func (s *blockSource) NumLists() int { return s.h.NList }

func (s *blockSource) CodeSize() int { return s.h.CodeSize - blockListBytes(s.h.NList) }

func (s *blockSource) ListLen(l int) (int, error) {
	return int(s.offsets[l+1] - s.offsets[l]), nil
}

func (s *blockSource) ReadList(l int) ([]int64, []byte, error) {
	lo, hi := int64(s.offsets[l]), int64(s.offsets[l+1])
	n := hi - lo
	if n == 0 {
		return nil, nil, nil
	}
	tcs := int64(s.h.CodeSize)
	nb := int64(blockListBytes(s.h.NList))
	raw := make([]byte, n*max(8, tcs))
	if _, err := s.f.ReadAt(raw[:8*n], blockHeader+8*lo); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.path, err)
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	if _, err := s.f.ReadAt(raw[:tcs*n], blockHeader+8*s.h.Count+tcs*lo); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.path, err)
	}
	cs := tcs - nb
	codes := make([]byte, n*cs)
	for i := int64(0); i < n; i++ {
		c := raw[i*tcs : (i+1)*tcs]
		if blockListOf(c, int(nb)) != l {
			return nil, nil, fmt.Errorf("%s: %w: changed since it was checked", s.path, errBadBlock)
		}
		copy(codes[i*cs:], c[nb:])
	}
	if s.onRead != nil {
		s.onRead(n)
	}
	return ids, codes, nil
}
