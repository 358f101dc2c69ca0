// Package progress draws the progress of long operations (train, add,
// encode, merge, compact): a bar with rate and ETA redrawn in place when
// the output is a terminal, occasional plain lines when asked for on a
// pipe or file, and nothing otherwise. It imports only the standard
// library and golang.org/x/sys.
package progress
