package plot

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strconv"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Series is one named polyline: point i is (X[i], Y[i]), drawn in the
// order given, so callers sort the points if they want a monotone curve.
type Series struct {
	Name string
	X, Y []float64
}

// Chart describes a whole figure. The axis ranges follow the data:
// a linear axis is padded and rounded to its tick step (and kept inside
// [0, 1] when all values lie there, as recall does); a log axis is
// widened to the nearest 1, 2 or 5 times a power of ten.
type Chart struct {
	Title  string
	XLabel string
	YLabel string
	LogY   bool // y on a log10 scale; every Y must then be positive
	Series []Series
}

// Minimum image size: below it the margins leave no room for a plot.
const (
	MinWidth  = 320
	MinHeight = 240
)

var palette = []color.RGBA{
	{31, 119, 180, 255},  // blue
	{214, 39, 40, 255},   // red
	{44, 160, 44, 255},   // green
	{255, 127, 14, 255},  // orange
	{148, 103, 189, 255}, // purple
	{140, 86, 75, 255},   // brown
	{227, 119, 194, 255}, // pink
	{23, 190, 207, 255},  // cyan
	{188, 189, 34, 255},  // olive
	{127, 127, 127, 255}, // grey
}

// SeriesColor is the colour of series i. It is exported so that tests
// and callers can find a series' pixels: drawing has no anti-aliasing,
// so the colour is exact.
func SeriesColor(i int) color.RGBA { return palette[i%len(palette)] }

var (
	white     = color.RGBA{255, 255, 255, 255}
	black     = color.RGBA{0, 0, 0, 255}
	gridColor = color.RGBA{225, 225, 225, 255}
	textColor = color.RGBA{30, 30, 30, 255}
	face      = basicfont.Face7x13
)

// Render draws the chart on a w x h image with a white background.
func (c *Chart) Render(w, h int) (*image.RGBA, error) {
	if w < MinWidth || h < MinHeight {
		return nil, fmt.Errorf("plot: image %dx%d is smaller than %dx%d", w, h, MinWidth, MinHeight)
	}
	if len(c.Series) == 0 {
		return nil, errors.New("plot: no series")
	}
	var xs, ys []float64
	for _, s := range c.Series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("plot: series %q has %d x and %d y values", s.Name, len(s.X), len(s.Y))
		}
		if len(s.X) == 0 {
			return nil, fmt.Errorf("plot: series %q has no points", s.Name)
		}
		for i := range s.X {
			if !finite(s.X[i]) || !finite(s.Y[i]) {
				return nil, fmt.Errorf("plot: series %q point %d is not finite", s.Name, i)
			}
			if c.LogY && s.Y[i] <= 0 {
				return nil, fmt.Errorf("plot: series %q point %d: y = %g cannot be shown on a log scale", s.Name, i, s.Y[i])
			}
		}
		xs = append(xs, s.X...)
		ys = append(ys, s.Y...)
	}
	xa := linearAxis(xs)
	var ya axis
	if c.LogY {
		ya = logAxis(ys)
	} else {
		ya = linearAxis(ys)
	}

	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)

	// Margins: room for the title on top, tick labels and the axis title
	// below and to the left.
	yLabelW := 0
	for _, t := range ya.ticks {
		if t.label != "" {
			yLabelW = max(yLabelW, textWidth(t.label))
		}
	}
	top := 20
	if c.Title != "" {
		top = 16 + 2*face.Height + 12
	}
	left := 16 + face.Height + 8 + yLabelW + 8
	bottom := 8 + face.Height + 10 + face.Height + 12
	right := 24
	area := image.Rect(left, top, w-right, h-bottom)
	if area.Dx() < 50 || area.Dy() < 50 {
		return nil, fmt.Errorf("plot: image %dx%d leaves no room for the plot", w, h)
	}
	px := func(x float64) int { return area.Min.X + int(math.Round(xa.frac(x)*float64(area.Dx()-1))) }
	py := func(y float64) int { return area.Max.Y - 1 - int(math.Round(ya.frac(y)*float64(area.Dy()-1))) }

	// Grid and tick labels.
	for _, t := range xa.ticks {
		x := px(t.v)
		vline(img, x, area.Min.Y, area.Max.Y-1, gridColor)
		vline(img, x, area.Max.Y, area.Max.Y+4, black)
		if t.label != "" {
			drawText(img, t.label, x-textWidth(t.label)/2, area.Max.Y+8, 1, false, textColor)
		}
	}
	for _, t := range ya.ticks {
		y := py(t.v)
		if t.label == "" {
			hline(img, area.Min.X-3, area.Min.X-1, y, black)
			continue
		}
		hline(img, area.Min.X, area.Max.X-1, y, gridColor)
		hline(img, area.Min.X-5, area.Min.X-1, y, black)
		drawText(img, t.label, area.Min.X-8-textWidth(t.label), y-face.Height/2, 1, false, textColor)
	}
	frame(img, area.Inset(-1), black)

	// Titles.
	if c.Title != "" {
		drawText(img, c.Title, w/2-textWidth(c.Title), 16, 2, false, black)
	}
	if c.XLabel != "" {
		drawText(img, c.XLabel, area.Min.X+area.Dx()/2-textWidth(c.XLabel)/2, h-12-face.Height, 1, false, black)
	}
	if c.YLabel != "" {
		drawText(img, c.YLabel, 16, area.Min.Y+area.Dy()/2-textWidth(c.YLabel)/2, 1, true, black)
	}

	// Series, clipped to the plot area (markers may overhang it a little).
	clip := area.Inset(-6)
	var pts []image.Point
	for i, s := range c.Series {
		col := SeriesColor(i)
		sub := img.SubImage(clip).(*image.RGBA)
		for j := 1; j < len(s.X); j++ {
			thickLine(sub, px(s.X[j-1]), py(s.Y[j-1]), px(s.X[j]), py(s.Y[j]), col)
		}
		for j := range s.X {
			p := image.Pt(px(s.X[j]), py(s.Y[j]))
			marker(sub, i, p.X, p.Y, col)
			pts = append(pts, p)
		}
	}
	legend(img, area, c.Series, pts)
	return img, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// legend draws a boxed list of series in the plot-area corner holding
// the fewest data points, so it rarely hides the curves.
func legend(img *image.RGBA, area image.Rectangle, series []Series, pts []image.Point) {
	rowH := face.Height + 4
	nameW := 0
	for _, s := range series {
		nameW = max(nameW, textWidth(s.Name))
	}
	bw, bh := 8+28+6+nameW+8, 6+len(series)*rowH+4
	bw, bh = min(bw, area.Dx()-16), min(bh, area.Dy()-16)
	corners := []image.Point{
		{area.Min.X + 8, area.Max.Y - 8 - bh}, // lower left: empty for recall-QPS curves
		{area.Max.X - 8 - bw, area.Max.Y - 8 - bh},
		{area.Max.X - 8 - bw, area.Min.Y + 8},
		{area.Min.X + 8, area.Min.Y + 8},
	}
	best, bestN := corners[0], -1
	for _, c := range corners {
		r := image.Rect(c.X, c.Y, c.X+bw, c.Y+bh).Inset(-4)
		n := 0
		for _, p := range pts {
			if p.In(r) {
				n++
			}
		}
		if bestN < 0 || n < bestN {
			best, bestN = c, n
		}
	}
	box := image.Rect(best.X, best.Y, best.X+bw, best.Y+bh)
	draw.Draw(img, box, image.NewUniform(white), image.Point{}, draw.Src)
	frame(img, box, color.RGBA{160, 160, 160, 255})
	sub := img.SubImage(box.Inset(1)).(*image.RGBA)
	for i, s := range series {
		y := box.Min.Y + 6 + i*rowH + face.Height/2
		col := SeriesColor(i)
		thickLine(sub, box.Min.X+8, y, box.Min.X+8+28, y, col)
		marker(sub, i, box.Min.X+8+14, y, col)
		drawText(sub, s.Name, box.Min.X+8+28+6, y-face.Height/2, 1, false, textColor)
	}
}

// tick is a position on an axis; an empty label marks a minor tick.
type tick struct {
	v     float64
	label string
}

type axis struct {
	lo, hi float64 // in axis units: log10 of the value on a log axis
	log    bool
	ticks  []tick
}

func (a axis) frac(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// linearAxis pads the data range by 5% and rounds it out to a step of
// 1, 2 or 5 times a power of ten giving about ten ticks. Data wholly in
// [0, 1] is taken as a fraction such as recall: the axis stays inside
// [0, 1], since recall cannot leave it, with a step of 0.1 or 0.05.
func linearAxis(vs []float64) axis {
	lo, hi := minMax(vs)
	nonNeg, unit := lo >= 0, lo >= 0 && hi <= 1
	if hi-lo < 1e-9*max(1, math.Abs(hi)) {
		d := max(0.05, math.Abs(hi)*0.05)
		lo, hi = lo-d, hi+d
	}
	pad := (hi - lo) * 0.05
	lo, hi = lo-pad, hi+pad
	step := niceStep((hi - lo) / 10)
	if unit {
		// Recall reads best in tenths or twentieths; finer steps crowd.
		step = 0.1
		if hi-lo < 0.5 {
			step = 0.05
		}
	}
	lo = math.Floor(lo/step+1e-9) * step
	hi = math.Ceil(hi/step-1e-9) * step
	if nonNeg {
		lo = max(lo, 0) // padding must not invent negative values
	}
	if unit {
		hi = min(hi, 1)
	}
	a := axis{lo: lo, hi: hi}
	prec := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	for i := 0; ; i++ {
		v := lo + float64(i)*step
		if v > hi+step*1e-6 {
			break
		}
		a.ticks = append(a.ticks, tick{v, strconv.FormatFloat(v, 'f', prec, 64)})
	}
	return a
}

func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// logAxis spans the data rounded out to 1, 2 or 5 times a power of ten,
// with labelled ticks at those values, or only at powers of ten when the
// range covers more than four decades and the labels would crowd.
func logAxis(vs []float64) axis {
	lo, hi := minMax(vs)
	lo, hi = roundLog(lo, false), roundLog(hi, true)
	if hi <= lo {
		lo, hi = roundLog(lo*0.99, false), roundLog(hi*1.01, true)
	}
	a := axis{lo: math.Log10(lo), hi: math.Log10(hi), log: true}
	wide := a.hi-a.lo > 4
	for e := math.Floor(a.lo) - 1; e <= math.Ceil(a.hi); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			label := ""
			if m == 1 || !wide {
				label = siLabel(v)
			}
			a.ticks = append(a.ticks, tick{v, label})
		}
	}
	return a
}

// roundLog rounds v down (or up) to 1, 2 or 5 times a power of ten.
func roundLog(v float64, up bool) float64 {
	e := math.Floor(math.Log10(v))
	p := math.Pow(10, e)
	ms := []float64{1, 2, 5, 10}
	if up {
		for _, m := range ms {
			if m*p >= v*(1-1e-9) {
				return m * p
			}
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i]*p <= v*(1+1e-9) {
			return ms[i] * p
		}
	}
	return p
}

// siLabel writes tick values the way QPS is usually read: 500, 2k, 1M.
func siLabel(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'g', 3, 64) + "G"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func minMax(vs []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func frame(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	hline(img, r.Min.X, r.Max.X-1, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X-1, r.Max.Y-1, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y-1, c)
	vline(img, r.Max.X-1, r.Min.Y, r.Max.Y-1, c)
}

// thickLine draws a Bresenham line with a 2x2 pen; SetRGBA ignores
// pixels outside img, which clips to a sub-image for free.
func thickLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		img.SetRGBA(x0+1, y0, c)
		img.SetRGBA(x0, y0+1, c)
		img.SetRGBA(x0+1, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// marker draws a filled shape chosen by series index (circle, square,
// triangle, diamond), so series stay apart in grey-scale print too.
func marker(img *image.RGBA, kind, cx, cy int, c color.RGBA) {
	const r = 4
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			var in bool
			switch kind % 4 {
			case 0:
				in = dx*dx+dy*dy <= r*r
			case 1:
				in = abs(dx) <= r-1 && abs(dy) <= r-1
			case 2:
				in = dy >= -r && dy <= r-1 && 2*abs(dx) <= dy+r+1
			case 3:
				in = abs(dx)+abs(dy) <= r
			}
			if in {
				img.SetRGBA(cx+dx, cy+dy, c)
			}
		}
	}
}

func textWidth(s string) int { return font.MeasureString(face, s).Ceil() }

// drawText writes s with its top-left corner at (x, y), enlarged scale
// times, or turned a quarter anticlockwise (reading upwards, starting at
// the bottom of the box whose top-left is (x, y)) when up is set. The
// bitmap font has no partial coverage, so every inked pixel is exactly c.
func drawText(img *image.RGBA, s string, x, y, scale int, up bool, c color.RGBA) {
	tw := textWidth(s)
	if tw == 0 {
		return
	}
	mask := image.NewAlpha(image.Rect(0, 0, tw, face.Height))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: face, Dot: fixed.P(0, face.Ascent)}
	d.DrawString(s)
	for my := 0; my < face.Height; my++ {
		for mx := 0; mx < tw; mx++ {
			if mask.AlphaAt(mx, my).A < 128 {
				continue
			}
			ox, oy := mx, my
			if up {
				ox, oy = my, tw-1-mx
			}
			for sy := 0; sy < scale; sy++ {
				for sx := 0; sx < scale; sx++ {
					img.SetRGBA(x+ox*scale+sx, y+oy*scale+sy, c)
				}
			}
		}
	}
}
