package tools

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shelfdb/shelf/internal/atomicfile"
	"github.com/shelfdb/shelf/internal/plot"
)

func init() {
	register("plot", "draw a recall-QPS curve (PNG) from the --json lines of demo or search", runPlot)
}

// plotFiles is a flag that may be given several times.
type plotFiles []string

func (l *plotFiles) String() string     { return strings.Join(*l, ",") }
func (l *plotFiles) Set(v string) error { *l = append(*l, v); return nil }

// plotRecallFields are the JSON fields --recall may name; each run of demo
// or search reports some of them.
var plotRecallFields = map[string]string{
	"recall1":       "recall@1",
	"recall10":      "recall@10",
	"recallk":       "recall@k",
	"intersectionk": "intersection recall@k",
}

func runPlot(env *Env) error {
	fs := newFlags(env, "plot", "plot --results FILE.jsonl [--results FILE2.jsonl ...] --out recall-qps.png [--recall recall10|recallk|recall1|intersectionk] [--title T] [--width 900] [--height 600]",
		"shelf demo --json > ivf.jsonl\nshelf plot --results ivf.jsonl --out recall-qps.png\n"+
			"shelf search --index idx1024 --queries q.fvecs --gt gt.ivecs --nprobe 1,4,16,64 --json > a.jsonl\n"+
			"shelf search --index idx4096 --queries q.fvecs --gt gt.ivecs --nprobe 1,4,16,64 --json > b.jsonl\n"+
			"shelf plot --results a.jsonl --results b.jsonl --recall intersectionk --out recall-qps.png   # curves named idx1024, idx4096")
	var results plotFiles
	fs.Var(&results, "results", "JSON lines file from 'shelf demo --json' or 'shelf search --json' (repeat for one curve per file, named by the lines' \"index\", else \"factory\", else the file name)")
	out := fs.String("out", "", "PNG file to write")
	field := fs.String("recall", "", "JSON field for x: recall10, recallk or recall1 (share of queries whose true nearest neighbour is in the first 10, k or 1 results), or intersectionk (intersection recall@k, from search --gt) (default: recall10 where a file has it, else recallk)")
	title := fs.String("title", "recall vs. queries per second (up and right is better)", "chart title")
	width := fs.Int("width", 900, "image width in pixels")
	height := fs.Int("height", 600, "image height in pixels")
	if err := parse(fs, env.Args); err != nil {
		return err
	}
	switch {
	case len(results) == 0:
		return fmt.Errorf("%w: --results is required", errUsage)
	case *out == "":
		return fmt.Errorf("%w: --out is required", errUsage)
	case *width < plot.MinWidth || *height < plot.MinHeight || *width > 10000 || *height > 10000:
		return fmt.Errorf("%w: --width and --height must be within %dx%d and 10000x10000", errUsage, plot.MinWidth, plot.MinHeight)
	}
	if _, ok := plotRecallFields[*field]; *field != "" && !ok {
		return fmt.Errorf("%w: --recall must be recall10, recallk, recall1 or intersectionk, not %q", errUsage, *field)
	}

	chart := plot.Chart{Title: *title, YLabel: "queries per second (log)", LogY: true}
	labels := map[string]bool{}
	names := map[string]int{}
	points, skipped := 0, 0
	for _, path := range results {
		c, err := readPlotCurve(path, *field)
		if err != nil {
			return err
		}
		// Two runs of one factory are still two curves: tell them apart.
		if names[c.name]++; names[c.name] > 1 {
			c.name += " (" + filepath.Base(path) + ")"
		}
		chart.Series = append(chart.Series, plot.Series{Name: c.name, X: c.x, Y: c.y})
		labels[c.label] = true
		points += len(c.x)
		skipped += c.skipped
	}
	chart.XLabel = "recall"
	if len(labels) == 1 {
		for l := range labels {
			chart.XLabel = l
		}
	}
	img, err := chart.Render(*width, *height)
	if err != nil {
		return err
	}
	// Through a temporary renamed into place: a reader (or an image viewer
	// reloading it) never sees a half-written file.
	if err := atomicfile.Write(*out, 0o644, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s: %d curves, %d points", *out, len(chart.Series), points)
	if skipped > 0 {
		fmt.Fprintf(env.Stdout, " (%d lines skipped)", skipped)
	}
	fmt.Fprintln(env.Stdout)
	return nil
}

// plotCurve is one results file turned into points sorted by recall.
type plotCurve struct {
	name    string
	label   string // x axis title, e.g. recall@10
	x, y    []float64
	skipped int // non-blank lines that were not usable points
}

// readPlotCurve reads JSON lines, keeping those with a positive finite "qps"
// and a finite recall field. Other lines are skipped rather than fatal,
// so a log with progress text or a header mixed in can still be plotted.
func readPlotCurve(path, field string) (*plotCurve, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []map[string]any
	skipped := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row map[string]any
		if json.Unmarshal([]byte(line), &row) != nil || row == nil {
			skipped++
			continue
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if field == "" {
		// Decided per file, not per line, so one curve never mixes
		// recall@10 with recall@k.
		field = "recallk"
		for _, r := range rows {
			if _, ok := plotNumber(r, "recall10"); ok {
				field = "recall10"
				break
			}
		}
	}
	c := &plotCurve{name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), label: plotRecallFields[field]}
	type pt struct{ x, y float64 }
	var pts []pt
	ks := map[float64]bool{}
	for _, r := range rows {
		q, okQ := plotNumber(r, "qps")
		x, okX := plotNumber(r, field)
		if !okQ || !okX || q <= 0 {
			skipped++
			continue
		}
		pts = append(pts, pt{x, q})
		if len(pts) == 1 {
			// The index directory (search --json) names the curve best;
			// the factory (demo --json) next.
			if s, ok := r["index"].(string); ok && s != "" {
				c.name = filepath.Clean(s)
			} else if s, ok := r["factory"].(string); ok && s != "" {
				c.name = s
			}
		}
		if k, ok := plotNumber(r, "k"); ok {
			ks[k] = true
		}
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("%s: no usable point (want JSON objects with numeric \"qps\" and %q)", path, field)
	}
	if (field == "recallk" || field == "intersectionk") && len(ks) == 1 {
		for k := range ks {
			c.label = strings.Replace(c.label, "@k", fmt.Sprintf("@%g", k), 1)
		}
	}
	sort.Slice(pts, func(i, j int) bool {
		if pts[i].x != pts[j].x {
			return pts[i].x < pts[j].x
		}
		return pts[i].y > pts[j].y
	})
	for _, p := range pts {
		c.x = append(c.x, p.x)
		c.y = append(c.y, p.y)
	}
	c.skipped = skipped
	return c, nil
}

func plotNumber(row map[string]any, key string) (float64, bool) {
	v, ok := row[key].(float64)
	return v, ok && !math.IsNaN(v) && !math.IsInf(v, 0)
}
