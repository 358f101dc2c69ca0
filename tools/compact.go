package tools

import (
	"fmt"

	"github.com/shelfdb/shelf/internal/progress"
	"github.com/shelfdb/shelf/ivf"
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
	if err := checkHeadroom(*headroom); err != nil {
		return err
	}
	var b *progress.Bar
	ix, err := ivf.Open(*dir, &ivf.OpenOptions{Progress: func(stage string, done, total int64) {
		if stage != "compact" {
			return
		}
		if b == nil {
			b = bar(env, *quiet, "compact", "entries", total)
		}
		b.Set(done, 0)
	}})
	if err != nil {
		return err
	}
	cst, err := ix.Compact(*headroom)
	if b != nil {
		b.Finish()
	}
	if cerr := ix.Close(); err == nil {
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
