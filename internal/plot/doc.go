// Package plot draws small line charts, such as recall–QPS curves, to an
// in-memory image that callers encode as PNG.
//
// It exists so that the shelf command can turn benchmark output into a
// picture without a plotting toolchain (gnuplot, Python) on the machine
// that ran the benchmark: it uses only the standard image packages and
// the fixed 7x13 bitmap font of golang.org/x/image/font/basicfont.
//
// Drawing is deliberately simple: no anti-aliasing, so every pixel of a
// series is exactly that series' colour (SeriesColor), which keeps the
// output deterministic and easy to check. Lines are two pixels thick,
// points get a per-series marker shape, the y axis may be logarithmic
// (base 10, ticks at 1, 2 and 5 times powers of ten), and a legend is
// placed in the corner of the plot area that covers the fewest points.
//
// # Imports
//
// The standard library and golang.org/x/image only (and
// internal/atomicfile to write its files).
package plot
