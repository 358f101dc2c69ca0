package ivf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

// A code block is the output of one encode task: the flat two-level codes
// (list number, then PQ code) of a contiguous range of rows, with the row
// numbers as ids. Its layout, all little endian:
//
//	magic      "SHELFBLK"
//	version    uint32
//	model      uint32  CRC-32C of the index's model (modelID): blocks of another training are refused
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

var blockNameRE = regexp.MustCompile(`^block-(\d{8,})\.codes$`)

func blockName(b int64) string { return fmt.Sprintf("block-%08d.codes", b) }

// BlockPath is the file of block number b in dir.
func BlockPath(dir string, b int64) string { return filepath.Join(dir, blockName(b)) }

// Block names one block of an encode run: rows [First, First+Count) of
// the data, block number Number of blocks of Size rows (First ==
// Number*Size; Count < Size only for the last block).
type Block struct {
	Size, Number, First, Count int64
}

// blockInfo is a block's header.
type blockInfo struct {
	Model     uint32
	NList     int
	CodeSize  int
	BlockSize int64
	Block     int64
	First     int64
	Count     int64
	CRC       uint32 // the file's CRC-32C, as read (0 in a header to write)
}

// ErrBadBlock marks a code block file that is truncated or damaged.
var ErrBadBlock = errors.New("ivf: corrupt code block")

// ErrOtherBlock marks a code block of another encode run: another
// training, block size or rows.
var ErrOtherBlock = errors.New("ivf: code block of another encode run")

// modelID is a CRC-32C of the index's model file, which names its
// training: blocks encoded with another model are refused. The file ends
// with a CRC-32C of the rest, and the CRC of data followed by its own CRC
// is the same constant for all data, so the trailing four bytes are left
// out.
func (ix *Index) modelID() (uint32, error) {
	ix.mu.Lock()
	id := ix.modelCRC
	ix.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	b, err := ix.marshalModel()
	if err != nil {
		return 0, err
	}
	id = crc32.Checksum(b[:len(b)-4], castagnoli)
	ix.mu.Lock()
	ix.modelCRC = id
	ix.mu.Unlock()
	return id, nil
}

// blockHeader returns the header block b of this index has.
func (ix *Index) blockInfo(b Block) (blockInfo, error) {
	model, err := ix.modelID()
	return blockInfo{Model: model, NList: ix.p.NList, CodeSize: ix.TwoLayerCodeSize(),
		BlockSize: b.Size, Block: b.Number, First: b.First, Count: b.Count}, err
}

func checkBlock(b Block) error {
	if b.Size < 1 || b.Number < 0 || b.First != b.Number*b.Size || b.Count < 0 || b.Count > b.Size {
		return fmt.Errorf("%w: block %+v: want First = Number x Size and 0 <= Count <= Size", ErrInput, b)
	}
	return nil
}

// EncodeBlock encodes the b.Count vectors of x (rows b.First on of the
// data) as flat two-level codes, ids the row numbers, and writes them as
// block file b.Number in dir (made if missing), atomically: a block file that exists is
// complete. This is the map step of the parallel build; MergeBlocks is
// its reduce step.
func (ix *Index) EncodeBlock(dir string, b Block, x []float32) error {
	if err := checkBlock(b); err != nil {
		return err
	}
	h, err := ix.blockInfo(b)
	if err != nil {
		return err
	}
	codes, err := ix.SAEncode(x, int(b.Count))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ids := make([]int64, b.Count)
	for i := range ids {
		ids[i] = b.First + int64(i)
	}
	return writeBlock(dir, h, ids, codes)
}

// CheckBlock reports whether block file b.Number in dir is complete and
// is block b of this index's training: nil if so, an error wrapping
// os.ErrNotExist if it is missing, ErrOtherBlock if it is of another
// run, ErrBadBlock if it is damaged.
func (ix *Index) CheckBlock(dir string, b Block) error {
	if err := checkBlock(b); err != nil {
		return err
	}
	want, err := ix.blockInfo(b)
	if err != nil {
		return err
	}
	path := BlockPath(dir, b.Number)
	got, _, err := readBlockInfo(path)
	if err != nil {
		return err
	}
	got.CRC = 0
	if got != want {
		return fmt.Errorf("%s: %w (model, block size or rows differ)", path, ErrOtherBlock)
	}
	return nil
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
	nb := listNoBytes(h.NList)
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

	path := BlockPath(dir, h.Block)
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
	crc := crc32.New(castagnoli)
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
		return fmt.Errorf("%s: %w: %s", path, ErrBadBlock, fmt.Sprintf(format, args...))
	}
	size := st.Size()
	if size < blockHeader+4 {
		return h, nil, bad("%d bytes, shorter than a header", size)
	}
	crc := crc32.New(castagnoli)
	r := bufio.NewReaderSize(io.TeeReader(io.LimitReader(f, size-4), crc), int(min(size, 1<<20)))
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
	// Every count is checked against the file's size, and the list
	// number and code size against the index's limits, before anything
	// is allocated from them.
	nb := listNoBytes(h.NList)
	if h.NList < 1 || h.NList > maxLists || h.CodeSize <= nb || h.CodeSize > nb+4*maxDim ||
		h.Count < 0 || h.Count > h.BlockSize || h.Count > math.MaxInt32 || h.First < 0 {
		return h, nil, bad("implausible header: %d lists, %d-byte codes, %d entries of a block of %d from row %d",
			h.NList, h.CodeSize, h.Count, h.BlockSize, h.First)
	}
	entry := 8 + int64(h.CodeSize)
	if avail := size - blockHeader - 4; h.Count > avail/entry || h.Count*entry != avail {
		return h, nil, bad("%d bytes, header says %d entries of %d bytes after a %d-byte header", size, h.Count, entry, blockHeader)
	}
	if _, err := io.CopyN(io.Discard, r, 8*h.Count); err != nil {
		return h, nil, err
	}
	// offsets[l+1] counts the entries of lists <= l, for the lists up to
	// the last one the block names; lists past it are empty. So the
	// offsets take memory for the lists present, not for nlist.
	offsets := []int32{0}
	code := make([]byte, h.CodeSize)
	for i := int64(0); i < h.Count; i++ {
		if _, err := io.ReadFull(r, code); err != nil {
			return h, nil, err
		}
		l := blockListOf(code, nb)
		if l >= h.NList || l < len(offsets)-2 {
			return h, nil, bad("entry %d names list %d out of order", i, l)
		}
		for len(offsets) < l+2 {
			offsets = append(offsets, offsets[len(offsets)-1])
		}
		offsets[l+1]++
	}
	tail := make([]byte, 4)
	if _, err := f.ReadAt(tail, size-4); err != nil {
		return h, nil, err
	}
	if binary.LittleEndian.Uint32(tail) != crc.Sum32() {
		return h, nil, bad("checksum mismatch")
	}
	h.CRC = crc.Sum32()
	return h, offsets, nil
}

// listBlockFiles returns the block numbers and file names in dir, in order.
func listBlockFiles(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var nums []int64
	for _, e := range ents {
		m := blockNameRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		b, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, b)
	}
	slices.Sort(nums)
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
}

func (s *blockSource) NumLists() int { return s.h.NList }

func (s *blockSource) CodeSize() int { return s.h.CodeSize - listNoBytes(s.h.NList) }

// span returns the range of the block's entries in list l: empty past
// the last list the block names (readBlockInfo).
func (s *blockSource) span(l int) (lo, hi int64) {
	if l < 0 || l+1 >= len(s.offsets) {
		return 0, 0
	}
	return int64(s.offsets[l]), int64(s.offsets[l+1])
}

func (s *blockSource) ListLen(l int) (int, error) {
	lo, hi := s.span(l)
	return int(hi - lo), nil
}

func (s *blockSource) ReadList(l int) ([]int64, []byte, error) {
	lo, hi := s.span(l)
	n := hi - lo
	if n == 0 {
		return nil, nil, nil
	}
	tcs := int64(s.h.CodeSize)
	nb := int64(listNoBytes(s.h.NList))
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
			return nil, nil, fmt.Errorf("%s: %w: changed since it was checked", s.path, ErrBadBlock)
		}
		copy(codes[i*cs:], c[nb:])
	}
	return ids, codes, nil
}
