package ivf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"

	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/store"
)

// An index directory holds the trained model, written once, and the
// store of its lists:
//
//	DIR/model.shelf  magic, version, parameters, centroids, PQ, CRC-32C
//	DIR/lists/       the store (store/)
const (
	modelName    = "model.shelf"
	listsName    = "lists"
	modelMagic   = "SHELFIVF"
	modelVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (ix *Index) marshalModel() ([]byte, error) {
	p := ix.p
	b := []byte(modelMagic)
	b = binary.LittleEndian.AppendUint32(b, modelVersion)
	for _, v := range []int{p.D, p.NList, p.M, p.Nbits} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	flags := byte(0)
	if p.Flat {
		flags |= 1
	}
	if p.ByResidual {
		flags |= 2
	}
	b = append(b, flags, byte(p.Metric), 0, 0)
	for _, v := range ix.centroids {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	var pqb []byte
	if ix.pq != nil {
		var err error
		if pqb, err = ix.pq.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pqb)))
	b = append(b, pqb...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// unmarshalModel decodes a model file into an untrained-lists index.
func unmarshalModel(b []byte) (*Index, error) {
	const hdr = 8 + 4 + 16 + 4
	if len(b) < hdr+8 {
		return nil, fmt.Errorf("%w: model truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[:8]) != modelMagic {
		return nil, fmt.Errorf("%w: bad magic %q, not a shelf index model", ErrCorrupt, b[:8])
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: model checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != modelVersion {
		return nil, fmt.Errorf("%w: model format version %d, this build reads %d", ErrCorrupt, v, modelVersion)
	}
	u := func(i int) int { return int(binary.LittleEndian.Uint32(b[12+4*i:])) }
	flags := b[28]
	p := Params{D: u(0), NList: u(1), M: u(2), Nbits: u(3), Flat: flags&1 != 0, ByResidual: flags&2 != 0, Metric: Metric(b[29])}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	rest := body[hdr:]
	nc := p.NList * p.D
	if len(rest) < nc*4+4 {
		return nil, fmt.Errorf("%w: model truncated in the centroids", ErrCorrupt)
	}
	cents := make([]float32, nc)
	for i := range cents {
		cents[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
	}
	rest = rest[4*nc:]
	n := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if n != len(rest) {
		return nil, fmt.Errorf("%w: PQ section of %d bytes, %d present", ErrCorrupt, n, len(rest))
	}
	ix := &Index{p: p, trained: true}
	ix.setCentroids(cents)
	if !p.Flat {
		q := &pq.PQ{}
		if err := q.UnmarshalBinary(rest); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if q.D != p.D || q.M != p.M || q.Nbits != p.Nbits {
			return nil, fmt.Errorf("%w: PQ d=%d M=%d nbits=%d does not match the index", ErrCorrupt, q.D, q.M, q.Nbits)
		}
		ix.pq = q
	}
	ix.finishModel()
	return ix, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ToDisk moves the index to an index directory: it writes the model,
// creates the store and moves the in-memory lists into it with the
// store's two-pass merge (FAISS's "merge_from conversion" to
// OnDiskInvertedLists). Afterwards the index reads and writes dir.
func (ix *Index) ToDisk(dir string) error {
	if !ix.trained {
		return ErrNotTrained
	}
	if _, ok := ix.lists.(*MemLists); !ok {
		return fmt.Errorf("%w: index is already on disk in %s", ErrParams, ix.dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, modelName)); err == nil {
		return fmt.Errorf("%w: %s already holds an index", ErrParams, dir)
	}
	model, err := ix.marshalModel()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, modelName), model); err != nil {
		return fmt.Errorf("ivf: write %s: %w", filepath.Join(dir, modelName), err)
	}
	st, err := store.Create(filepath.Join(dir, listsName), store.Options{
		NumLists: ix.p.NList, CodeSize: ix.p.CodeSize(),
		Progress: func(p store.Progress) { ix.progress(p.Op, p.Done, p.Total) },
	})
	if err != nil {
		return err
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	snap, err := ix.lists.Snapshot()
	if err != nil {
		st.Close()
		return err
	}
	_, err = st.MergeFrom([]store.Source{snap}, nil)
	snap.Release()
	if err == nil {
		err = st.SetMeta(metaNextID, binary.LittleEndian.AppendUint64(nil, uint64(ix.nextIDValue())))
	}
	if err != nil {
		st.Close()
		return err
	}
	ix.lists = &DiskLists{S: st}
	ix.dir = dir
	return nil
}

// Open opens an index directory for reading and writing.
func Open(dir string) (*Index, error) { return open(dir, false) }

// OpenReadOnly opens an index directory for searching, also while another
// process writes it; Refresh picks up what that writer committed since.
func OpenReadOnly(dir string) (*Index, error) { return open(dir, true) }

func open(dir string, readOnly bool) (*Index, error) {
	raw, err := os.ReadFile(filepath.Join(dir, modelName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ivf: %s is not an index directory (no %s)", dir, modelName)
		}
		return nil, err
	}
	ix, err := unmarshalModel(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, modelName), err)
	}
	var st *store.Store
	if readOnly {
		st, err = store.OpenReadOnly(filepath.Join(dir, listsName), nil)
	} else {
		st, err = store.Open(filepath.Join(dir, listsName), nil)
	}
	if err != nil {
		return nil, err
	}
	if st.NumLists() != ix.p.NList || st.CodeSize() != ix.p.CodeSize() {
		st.Close()
		return nil, fmt.Errorf("%w: lists of %s (%d lists of %d bytes) do not match the model (%d of %d)",
			ErrCorrupt, dir, st.NumLists(), st.CodeSize(), ix.p.NList, ix.p.CodeSize())
	}
	ix.lists = &DiskLists{S: st}
	ix.dir = dir
	if v, ok := st.Meta(metaNextID); ok && len(v) == 8 {
		ix.nextID = int64(binary.LittleEndian.Uint64(v))
	}
	return ix, nil
}

// Refresh makes a read-only index see what its writer committed since.
func (ix *Index) Refresh() (bool, error) {
	dl, ok := ix.lists.(*DiskLists)
	if !ok {
		return false, nil
	}
	changed, err := dl.S.Refresh()
	if changed {
		ix.mu.Lock()
		ix.direct = nil
		ix.mu.Unlock()
	}
	return changed, err
}

// Dir returns the index directory ("" for an in-memory index).
func (ix *Index) Dir() string { return ix.dir }

// Close releases the lists.
func (ix *Index) Close() error { return ix.lists.Close() }
