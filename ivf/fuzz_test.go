package ivf

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// withCRC appends the CRC-32C a model file or a code block ends with, so
// the fuzzer gets past the checksum into the decoding behind it.
func withCRC(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(slices.Clone(body), crc32.Checksum(body, castagnoli))
}

// fuzzModels trains small indexes of every kind a model file describes.
func fuzzModels(tb testing.TB) []*Index {
	const n, d = 300, 8
	x := blobs(n, d, 4, 5)
	var out []*Index
	for _, c := range []struct {
		factory string
		metric  Metric
	}{{"IVF4,PQ2", L2}, {"IVF4,PQ4", InnerProduct}, {"IVF3,PQ8", Cosine}, {"IVF4,Flat", L2}} {
		ix, err := NewFromFactory(c.factory, d, c.metric)
		if err != nil {
			tb.Fatal(err)
		}
		if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
			tb.Fatal(err)
		}
		out = append(out, ix)
	}
	return out
}

// FuzzModel feeds arbitrary bytes to the model decoder (what ivf.Open
// reads from model.shelf), with the checksum fixed up or not: it never
// panics, every error wraps ErrCorrupt, and a model it accepts encodes
// back to one that decodes the same and can be searched.
func FuzzModel(f *testing.F) {
	for _, ix := range fuzzModels(f) {
		b, err := ix.marshalModel()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:len(b)-4], true)
		f.Add(b, false)
	}
	f.Add([]byte(modelMagic), true)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC {
			b = withCRC(b)
		}
		ix, err := unmarshalModel(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		again, err := ix.marshalModel()
		if err != nil {
			t.Fatalf("accepted model does not encode: %v", err)
		}
		ix2, err := unmarshalModel(again)
		if err != nil {
			t.Fatalf("re-encoded model does not decode: %v", err)
		}
		if ix2.p != ix.p || !slices.Equal(ix2.centroids, ix.centroids) {
			t.Fatalf("round trip changed the model: %+v vs %+v", ix2.p, ix.p)
		}
		// Searchable: one vector added to in-memory lists, found again.
		p := ix.p
		ix.lists, ix.ids = NewMemLists(p.NList, p.CodeSize()), emptyIDs()
		v := make([]float32, p.D)
		for i := range v {
			v[i] = 1
		}
		if _, err := ix.Add(v, 1); err != nil {
			t.Fatalf("add to an accepted model: %v", err)
		}
		_, ids, err := ix.Search(v, 1, 2, p.NList)
		if err != nil || len(ids) != 2 || ids[1] != -1 {
			t.Fatalf("search of an accepted model: %v %v", ids, err)
		}
	})
}

// fuzzBlocks writes real code blocks: IVF-PQ with one- and two-byte list
// numbers, IVF-Flat, and an empty block.
func fuzzBlocks(tb testing.TB) [][]byte {
	dir := tb.TempDir()
	const n, d = 600, 8
	x := blobs(n, d, 6, 6)
	var out [][]byte
	for i, c := range []struct {
		factory string
		count   int64
	}{{"IVF4,PQ2", 40}, {"IVF300,PQ4", 50}, {"IVF4,Flat", 10}, {"IVF4,PQ2", 0}} {
		ix, err := NewFromFactory(c.factory, d, L2)
		if err != nil {
			tb.Fatal(err)
		}
		if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
			tb.Fatal(err)
		}
		b := Block{Size: 64, Number: int64(i), First: int64(i) * 64, Count: c.count}
		if err := ix.EncodeBlock(dir, b, x[:c.count*d]); err != nil {
			tb.Fatal(err)
		}
		raw, err := os.ReadFile(BlockPath(dir, b.Number))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// blockError reports whether err is what the block reader may return for
// a damaged file: ErrBadBlock, or an error of reading the file.
func blockError(err error) bool {
	var pe *fs.PathError
	return errors.Is(err, ErrBadBlock) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &pe)
}

// FuzzBlock writes arbitrary bytes as a code block file (checksum fixed
// up or not) and reads it as merge does: readBlockInfo, then ListLen and
// ReadList of every list of the resulting source. Nothing panics or
// allocates more than the file backs; errors wrap ErrBadBlock or are
// I/O errors; an accepted block's lists hold exactly its entries.
func FuzzBlock(f *testing.F) {
	for _, b := range fuzzBlocks(f) {
		f.Add(b[:len(b)-4], true)
		f.Add(b, false)
	}
	f.Add([]byte(blockMagic), true)
	path := filepath.Join(f.TempDir(), blockName(0))
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC {
			b = withCRC(b)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		h, offsets, err := readBlockInfo(path)
		if err != nil {
			if !blockError(err) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		src := &blockSource{f: fh, path: path, h: h, offsets: offsets}
		cs := src.CodeSize()
		var total int64
		// Lists past the offsets are empty: read a few of them, not all
		// of a large nlist.
		for l := range min(h.NList, len(offsets)+2) {
			n, err := src.ListLen(l)
			if err != nil {
				t.Fatalf("list %d: %v", l, err)
			}
			ids, codes, err := src.ReadList(l)
			if err != nil {
				if !blockError(err) {
					t.Fatalf("list %d: unexpected error kind: %v", l, err)
				}
				return
			}
			if len(ids) != n || len(codes) != n*cs {
				t.Fatalf("list %d: %d ids and %d code bytes, ListLen %d of %d bytes", l, len(ids), len(codes), n, cs)
			}
			total += int64(n)
		}
		if n, _ := src.ListLen(h.NList - 1); h.NList > len(offsets)+2 && n != 0 {
			t.Fatalf("last list %d past the offsets has %d entries", h.NList-1, n)
		}
		if total != h.Count {
			t.Fatalf("lists hold %d entries, header says %d", total, h.Count)
		}
	})
}
