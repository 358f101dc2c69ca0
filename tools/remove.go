package tools

import (
	"fmt"
	"time"

	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/ivf"
)

func init() {
	register("remove", "remove the vectors with the given ids from an index", runRemove)
}

// runRemove is FAISS's remove_ids with an IDSelectorBatch: every entry
// whose id is in the file goes, in one commit (all or none of them).
func runRemove(env *Env) error {
	fs := newFlags(env, "remove", "remove --index DIR --ids FILE",
		"shelf remove --index /tmp/sift --ids stale_ids.npy\n"+
			"shelf compact --index /tmp/sift      # afterwards, to return the freed space to the file system")
	dir := fs.String("index", "", "index directory")
	idsFile := fs.String("ids", "", "ids to remove, one per row (.npy int64/int32, 1-D or one column, or an .ivecs of one column); ids the index does not hold are ignored")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" || *idsFile == "" {
		return fmt.Errorf("%w: --index and --ids are required", errUsage)
	}
	n, d, ids, err := vecio.ReadInt64(*idsFile)
	if err != nil {
		return err
	}
	if d != 1 && n > 0 {
		return fmt.Errorf("%s has %d columns, want one id per row", *idsFile, d)
	}
	distinct := make(map[int64]struct{}, len(ids))
	for _, id := range ids {
		distinct[id] = struct{}{}
	}
	ix, err := ivf.Open(*dir, nil)
	if err != nil {
		return err
	}
	before := ix.NTotal()
	t0 := time.Now()
	removed, err := ix.RemoveIDs(ids)
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("remove the ids of %s from %s: %w", *idsFile, *dir, err)
	}
	fmt.Fprintf(env.Stdout, "removed %d %s from %s (%d distinct ids in %s); %d of %d left, in %.2f s\n",
		removed, plural(int(min(removed, 2)), "vector", "vectors"), *dir, len(distinct), *idsFile, before-removed, before, time.Since(t0).Seconds())
	return nil
}
