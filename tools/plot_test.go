package tools

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fabricated points: the test checks the drawing, not the numbers.
const (
	plotDemoLines = `{"factory":"IVF1024,PQ16","n":200000,"dim":64,"nprobe":1,"qps":41000,"recall1":0.21,"recall10":0.45}
{"factory":"IVF1024,PQ16","n":200000,"dim":64,"nprobe":4,"qps":15000,"recall1":0.38,"recall10":0.81}
not json at all
{"factory":"IVF1024,PQ16","n":200000,"dim":64,"nprobe":2,"qps":24000,"recall1":0.31,"recall10":0.66}
{"factory":"IVF1024,PQ16","n":200000,"dim":64,"nprobe":16,"qps":4100,"recall1":0.47,"recall10":0.96}
[1,2,3]
`
	plotSearchLines = `{"nprobe":2,"k":10,"qps":18000,"recall1":0.35,"recallk":0.70,"nq":1000,"threads":2}
{"nprobe":8,"k":10,"qps":6000,"recall1":0.50,"recallk":0.93,"nq":1000,"threads":2}
{"nprobe":32,"k":10,"qps":1700,"recall1":0.55,"recallk":0.99,"nq":1000,"threads":2}
{"nprobe":64,"k":10,"qps":900,"nq":1000,"threads":2}
`
)

func writePlotInput(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	a := writePlotInput(t, dir, "demo.jsonl", plotDemoLines)
	b := writePlotInput(t, dir, "search-ivf4096.jsonl", plotSearchLines)
	out := filepath.Join(dir, "recall-qps.png")
	var stdout, stderr bytes.Buffer
	code := Main([]string{"plot", "--results", a, "--results", b, "--out", out, "--width", "800", "--height", "500"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "2 curves, 7 points") {
		t.Errorf("stdout %q", stdout.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 800 || b.Dy() != 500 {
		t.Errorf("PNG is %v, want 800x500", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestPlotNoUsablePoint(t *testing.T) {
	dir := t.TempDir()
	good := writePlotInput(t, dir, "good.jsonl", plotDemoLines)
	bad := writePlotInput(t, dir, "bad.jsonl", "hello\n{\"qps\":100}\n[]\n")
	out := filepath.Join(dir, "x.png")
	var stdout, stderr bytes.Buffer
	code := Main([]string{"plot", "--results", good, "--results", bad, "--out", out}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	msg := stderr.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, bad) {
		t.Errorf("stderr %q, want one line naming %s", msg, bad)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s written despite the error", out)
	}
}

func TestPlotUsage(t *testing.T) {
	dir := t.TempDir()
	a := writePlotInput(t, dir, "a.jsonl", plotDemoLines)
	for _, args := range [][]string{
		{"plot", "--results", a},
		{"plot", "--out", filepath.Join(dir, "x.png")},
		{"plot", "--results", a, "--out", filepath.Join(dir, "x.png"), "--recall", "recall5"},
		{"plot", "--results", a, "--out", filepath.Join(dir, "x.png"), "--width", "10"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

// TestPlotCurveNames checks what names a curve: the "index" of search
// --json lines, else the "factory" of demo --json lines, else the file.
func TestPlotCurveNames(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ file, text, field, name, label string }{
		{"demo.jsonl", plotDemoLines, "", "IVF1024,PQ16", "recall@10"},
		{"search.jsonl", plotSearchLines, "", "search", "recall@10"},
		{"indexed.jsonl", `{"index":"/data/idx4096/","nprobe":2,"k":10,"qps":18000,"recall1":0.35,"recallk":0.70,"intersectionk":0.52}
{"index":"/data/idx4096/","nprobe":8,"k":10,"qps":6000,"recall1":0.50,"recallk":0.93,"intersectionk":0.81}
`, "intersectionk", "/data/idx4096", "intersection recall@10"},
	} {
		cv, err := readPlotCurve(writePlotInput(t, dir, c.file, c.text), c.field)
		if err != nil || cv.name != c.name || cv.label != c.label {
			t.Errorf("%s: %+v, %v; want name %q, label %q", c.file, cv, err, c.name, c.label)
		}
	}
}
