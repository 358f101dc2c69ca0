package ivf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shelfdb/shelf/store"
)

// An index directory belongs to this package: nothing else opens its
// files or writes its records.
//
//	DIR/model.shelf  magic, version, parameters, centroids, PQ, CRC-32C
//	DIR/lists/       the store of the lists (store/), with the index's
//	                 records (next id, id bounds) in its commits
//
// It is created one way only (createDir, for ToDisk and CreateFrom): the
// lists first, with the next id and the id bounds in the same commit as
// the vectors, the model last.
// A directory without a model is not an index: Open refuses it, and a
// new creation in it replaces what an interrupted one left.
const (
	modelName = "model.shelf"
	listsName = "lists"
)

// OpenOptions tune Open.
type OpenOptions struct {
	// ReadOnly opens the index for searching, also while another process
	// writes it; Refresh picks up what that writer committed since.
	ReadOnly bool
	// Progress, if set, becomes the index's Progress: it receives the
	// progress of long operations (merge, compaction).
	Progress func(stage string, done, total int64)
}

// Open opens an index directory; opts may be nil (read-write).
func Open(dir string, opts *OpenOptions) (*Index, error) {
	var o OpenOptions
	if opts != nil {
		o = *opts
	}
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
	ix.Progress = o.Progress
	so := &store.Options{Progress: ix.storeProgress}
	var st *store.Store
	if o.ReadOnly {
		st, err = store.OpenReadOnly(filepath.Join(dir, listsName), so)
	} else {
		st, err = store.Open(filepath.Join(dir, listsName), so)
	}
	if err != nil {
		return nil, err
	}
	if st.NumLists() != ix.p.NList || st.CodeSize() != ix.p.CodeSize() {
		st.Close()
		return nil, fmt.Errorf("%w: lists of %s (%d lists of %d bytes) do not match the model (%d of %d)",
			ErrCorrupt, dir, st.NumLists(), st.CodeSize(), ix.p.NList, ix.p.CodeSize())
	}
	dl := &diskLists{s: st}
	ix.lists, ix.disk, ix.dir = dl, dl, dir
	if err := ix.loadIDs(); err != nil {
		st.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return ix, nil
}

// OpenReadOnly is Open with ReadOnly set.
func OpenReadOnly(dir string) (*Index, error) { return Open(dir, &OpenOptions{ReadOnly: true}) }

// storeProgress forwards the store's progress to the index's, through the
// mapping of an operation in progress (a merge of several commits) if any.
func (ix *Index) storeProgress(p store.Progress) {
	ix.mu.Lock()
	f := ix.opProgress
	ix.mu.Unlock()
	if f != nil {
		f(p.Op, p.Done, p.Total)
		return
	}
	ix.progress(p.Op, p.Done, p.Total)
}

// createHook, when set (by tests), is called at each step of createDir;
// a test kills the process there.
var createHook func(step string)

func createStep(step string) {
	if createHook != nil {
		createHook(step)
	}
}

// createDir makes dir an index directory holding ix's trained model and
// the entries of src, and returns its store and the id bookkeeping it
// stored: start's, after the ids read from src (idTracker), so that the
// records describe exactly the vectors of the commit.
// The order is what makes an interrupted creation harmless: the lists
// first, their entries and ids' records in one commit, then the model,
// written atomically; until the model is there, dir is not an index, and
// a later createDir removes what was left.
func createDir(dir string, ix *Index, src Source, start idState, seal bool) (_ *store.Store, _ idState, err error) {
	created, err := prepareDir(dir)
	if err != nil {
		return nil, idState{}, err
	}
	listsDir := filepath.Join(dir, listsName)
	var st *store.Store
	defer func() {
		if err != nil {
			if st != nil {
				st.Close()
			}
			os.RemoveAll(listsDir)
			os.Remove(filepath.Join(dir, modelName+".tmp"))
			if created {
				os.Remove(dir)
			}
		}
	}()
	createStep("directory")
	st, err = store.Create(listsDir, store.Options{
		NumLists: ix.p.NList, CodeSize: ix.p.CodeSize(), Progress: ix.storeProgress,
	})
	if err != nil {
		return nil, idState{}, err
	}
	createStep("store")
	tr := newIDTracker(src, start)
	after := func() map[string][]byte { return tr.state().meta() }
	if _, err = st.MergeFrom([]store.Source{tr}, &store.MergeOptions{MetaAfter: after}); err != nil {
		return nil, idState{}, err
	}
	createStep("lists")
	if seal {
		if err = ix.writeModel(dir); err != nil {
			return nil, idState{}, err
		}
	}
	return st, tr.state(), nil
}

// writeModel writes the model file into dir, atomically: the last step
// of a creation, which makes dir an index.
func (ix *Index) writeModel(dir string) error {
	model, err := ix.marshalModel()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, modelName), model, createStep); err != nil {
		return fmt.Errorf("ivf: write %s: %w", filepath.Join(dir, modelName), err)
	}
	createStep("model")
	return nil
}

// prepareDir checks that dir may become an index (CheckNewDir), makes it
// if missing and removes what an interrupted creation left. It reports
// whether it made dir.
func prepareDir(dir string) (bool, error) {
	exists, leftovers, err := inspectNewDir(dir)
	if err != nil {
		return false, err
	}
	if !exists {
		return true, os.MkdirAll(dir, 0o755)
	}
	for _, name := range leftovers {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return false, fmt.Errorf("ivf: remove what an interrupted creation left in %s: %w", dir, err)
		}
	}
	return false, nil
}

// CheckNewDir reports whether dir may become an index directory: missing,
// empty, or holding only what an interrupted creation leaves (the lists
// and a temporary model, which a creation removes). It changes nothing,
// so a command can refuse before a long training rather than after it.
func CheckNewDir(dir string) error {
	_, _, err := inspectNewDir(dir)
	return err
}

func inspectNewDir(dir string) (exists bool, leftovers []string, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	for _, e := range ents {
		switch e.Name() {
		case modelName:
			return true, nil, fmt.Errorf("%w: %s already holds an index", ErrIndexExists, dir)
		case listsName, modelName + ".tmp":
			leftovers = append(leftovers, e.Name())
		default:
			return true, nil, fmt.Errorf("%w: %s is not empty (it holds %s) and is not an index", ErrExists, dir, e.Name())
		}
	}
	return true, leftovers, nil
}

// ToDisk moves the index to a new index directory: the in-memory lists
// go into the store with its two-pass merge (FAISS's "merge_from
// conversion" to OnDiskInvertedLists), then the model is written.
// Afterwards the index reads and writes dir. dir must not exist, be
// empty, or hold only what an interrupted creation left.
func (ix *Index) ToDisk(dir string) error { return ix.toDisk(dir, true) }

// ToDiskUnsealed is ToDisk without the last step: dir gets the lists but
// not the model file, so it is not an index yet (Open refuses it, and a
// new creation in it replaces it) while this Index keeps adding to it;
// Seal makes it one. A long build (shelf build: train, add everything,
// compact) runs this way, so a build killed halfway leaves a directory a
// re-run replaces instead of an index holding part of the data.
func (ix *Index) ToDiskUnsealed(dir string) error { return ix.toDisk(dir, false) }

// Seal writes the model file of an index moved to disk with
// ToDiskUnsealed, making its directory an index; it does nothing for an
// index whose directory is one already.
func (ix *Index) Seal() error {
	if ix.disk == nil {
		return fmt.Errorf("%w: seal needs an index on disk", ErrParams)
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	if _, err := os.Stat(filepath.Join(ix.dir, modelName)); err == nil {
		return nil
	}
	return ix.writeModel(ix.dir)
}

func (ix *Index) toDisk(dir string, seal bool) error {
	if !ix.trained {
		return ErrNotTrained
	}
	if ix.disk != nil {
		return fmt.Errorf("%w: index is already on disk in %s", ErrParams, ix.dir)
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	snap, err := ix.lists.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	ix.mu.Lock()
	start := ix.ids
	ix.mu.Unlock()
	st, ids, err := createDir(dir, ix, snap, start, seal)
	if err != nil {
		return err
	}
	dl := &diskLists{s: st}
	ix.mu.Lock()
	ix.lists, ix.disk, ix.dir, ix.ids = dl, dl, dir, ids
	ix.mu.Unlock()
	return nil
}

// Refresh makes a read-only index see what its writer committed since.
func (ix *Index) Refresh() (bool, error) {
	changed, err := ix.lists.Refresh()
	if changed {
		if lerr := ix.loadIDs(); err == nil {
			err = lerr
		}
		ix.mu.Lock()
		ix.direct = nil
		ix.mu.Unlock()
	}
	return changed, err
}

// Dir returns the index directory ("" for an in-memory index).
func (ix *Index) Dir() string { return ix.dir }

// Unregistered is nil, unless this read-only index could not register
// as a reader of its directory (no write access, a full disk) and reads
// unregistered; the error says why. Such a read is still safe: the
// writer reuses no freed space while it lasts (store.Store.Unregistered).
func (ix *Index) Unregistered() error {
	if ix.disk == nil {
		return nil
	}
	return ix.disk.s.Unregistered()
}

// ReadOnly reports whether the index was opened read-only.
func (ix *Index) ReadOnly() bool { return ix.disk != nil && ix.disk.s.ReadOnly() }

// Close releases the lists.
func (ix *Index) Close() error { return ix.lists.Close() }

// CompactStats tells what a compaction did.
type CompactStats = store.CompactStats

// Compact rewrites the lists of an index directory contiguously in list
// order into a new data file, leaving headroom (a share of each list's
// size, 0 for exact slots) free in every slot for adds to come, and
// returns the space saved. Readers keep their snapshots meanwhile.
func (ix *Index) Compact(headroom float64) (CompactStats, error) {
	if ix.disk == nil {
		return CompactStats{}, fmt.Errorf("%w: compaction needs an index on disk", ErrParams)
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	return ix.disk.s.CompactWith(store.CompactOptions{Headroom: headroom})
}

// StorageStats are the sizes and space accounting of an index directory's
// lists. A read-only opener does not know the writer's free extents and
// pending frees (PendingBytes, FreeExtents and LargestFree are zero).
type StorageStats = store.Stats

// StorageStats returns the sizes and space accounting of the index's
// lists as of their last commit.
func (ix *Index) StorageStats() (StorageStats, error) {
	if ix.disk == nil {
		return StorageStats{}, fmt.Errorf("%w: storage statistics need an index on disk", ErrParams)
	}
	return ix.disk.s.Stats()
}

// writeFileAtomic writes data to path through path.tmp, synced, renamed
// over path, with the directory synced; step (may be nil) is called
// between the stages.
func writeFileAtomic(path string, data []byte, step func(string)) error {
	if step == nil {
		step = func(string) {}
	}
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
	step("model written")
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	step("model renamed")
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
