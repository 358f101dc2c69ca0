package plot

import (
	"image/color"
	"math"
	"strings"
	"testing"
)

func twoSeries() *Chart {
	return &Chart{
		Title:  "recall vs QPS",
		XLabel: "recall@10",
		YLabel: "queries per second (log)",
		LogY:   true,
		Series: []Series{
			{Name: "IVF1024,PQ16", X: []float64{0.45, 0.62, 0.78, 0.9, 0.96}, Y: []float64{40000, 21000, 11000, 5200, 2600}},
			{Name: "IVF4096,PQ32", X: []float64{0.55, 0.74, 0.88, 0.95, 0.99}, Y: []float64{30000, 15000, 7000, 3500, 1600}},
		},
	}
}

func TestRenderTwoSeries(t *testing.T) {
	img, err := twoSeries().Render(640, 480)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 480 {
		t.Fatalf("image is %v, want 640x480", b)
	}
	for _, p := range [][2]int{{0, 0}, {639, 479}} {
		if c := img.RGBAAt(p[0], p[1]); c != (color.RGBA{255, 255, 255, 255}) {
			t.Errorf("corner %v is %v, want white", p, c)
		}
	}
	count := map[color.RGBA]int{}
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			count[img.RGBAAt(x, y)]++
		}
	}
	for i := range 2 {
		// The legend alone draws a short line of each colour, so demand
		// more than that: the curve itself must be there.
		if n := count[SeriesColor(i)]; n < 300 {
			t.Errorf("series %d colour %v has %d pixels, want a drawn curve", i, SeriesColor(i), n)
		}
	}
}

func TestRenderLinear(t *testing.T) {
	c := twoSeries()
	c.LogY = false
	c.Series[0].Y[0] = -5 // fine on a linear axis
	if _, err := c.Render(MinWidth, MinHeight); err != nil {
		t.Fatal(err)
	}
}

func TestRenderErrors(t *testing.T) {
	c := twoSeries()
	c.Series[1].Y[2] = 0
	if _, err := c.Render(640, 480); err == nil || !strings.Contains(err.Error(), "log scale") {
		t.Errorf("zero on a log axis: err = %v, want a log scale error", err)
	}
	c.Series[1].Y[2] = -1
	if _, err := c.Render(640, 480); err == nil {
		t.Error("negative value on a log axis: no error")
	}
	if _, err := (&Chart{}).Render(640, 480); err == nil {
		t.Error("no series: no error")
	}
	if _, err := twoSeries().Render(10, 10); err == nil {
		t.Error("tiny image: no error")
	}
	bad := twoSeries()
	bad.Series[0].X = bad.Series[0].X[:2]
	if _, err := bad.Render(640, 480); err == nil {
		t.Error("mismatched X and Y: no error")
	}
}

func TestAxes(t *testing.T) {
	a := linearAxis([]float64{0.48, 0.96})
	if a.lo != 0.4 || a.hi != 1 || a.ticks[0].label != "0.4" || a.ticks[len(a.ticks)-1].label != "1.0" {
		t.Errorf("recall axis %v..%v ticks %v", a.lo, a.hi, a.ticks)
	}
	a = linearAxis([]float64{0.9, 0.99})
	if !near(a.lo, 0.85) || a.hi != 1 || len(a.ticks) != 4 || a.ticks[1].label != "0.90" {
		t.Errorf("narrow recall axis %v..%v ticks %v", a.lo, a.hi, a.ticks)
	}
	a = linearAxis([]float64{120, 7300})
	if a.lo != 0 || a.hi != 8000 || a.ticks[1].label != "1000" {
		t.Errorf("linear axis %v..%v ticks %v", a.lo, a.hi, a.ticks)
	}
	l := logAxis([]float64{1600, 40000})
	var labels []string
	for _, tk := range l.ticks {
		labels = append(labels, tk.label)
	}
	if got := strings.Join(labels, " "); got != "1k 2k 5k 10k 20k 50k" {
		t.Errorf("log ticks %q", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
