package tools

import (
	"fmt"
	"path/filepath"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/ivf"
	"github.com/shelfdb/shelf/store"
)

func init() {
	register("compact", "rewrite an index's lists without free space, shrinking the data file", runCompact)
}

func runCompact(env *Env) error {
	fs := newFlags(env, "compact", "compact --index DIR [--headroom 0.1] [--quiet]", "shelf compact --index /tmp/idx")
	dir := fs.String("index", "", "index directory")
	headroom := fs.Float64("headroom", 0, "room left in every list's slot, as a share of its size, so later adds append in place (0: none)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --index is required", errUsage)
	}
	if !(*headroom >= 0 && *headroom <= 4) {
		return fmt.Errorf("%w: --headroom %v: want a share in [0, 4]", errUsage, *headroom)
	}
	// ivf.Open takes no store options, and the progress callback must be
	// set when the store is opened; so validate the index (model present,
	// lists matching it) through ivf first, then open its store directly.
	ix, err := ivf.OpenReadOnly(*dir)
	if err != nil {
		return err
	}
	if err := ix.Close(); err != nil {
		return err
	}
	var b *progress.Bar
	st, err := store.Open(filepath.Join(*dir, "lists"), &store.Options{Progress: func(p store.Progress) {
		if p.Op != "compact" {
			return
		}
		if b == nil {
			b = bar(env, *quiet, "compact", "entries", p.Total)
		}
		b.Set(p.Done, 0)
	}})
	if err != nil {
		return err
	}
	cst, err := st.CompactWith(store.CompactOptions{Headroom: *headroom})
	if b != nil {
		b.Finish()
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	saved := cst.BytesBefore - cst.BytesAfter
	pct := 0.0
	if cst.BytesBefore > 0 {
		pct = 100 * float64(saved) / float64(cst.BytesBefore)
	}
	fmt.Fprintf(env.Stdout, "compacted %s: %d entries\n  before %s\n  after  %s\n  saved  %s (%.1f%%)\n",
		*dir, cst.Entries, statsBytes(cst.BytesBefore), statsBytes(cst.BytesAfter), statsBytes(saved), pct)
	return nil
}
