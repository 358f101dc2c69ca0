//go:build !cuda

package gpu

// Available reports whether a CUDA GPU can be used: never in a build
// without -tags cuda.
func Available() bool { return false }

func deviceCount() (int, error) { return 0, ErrNoCUDA }

// Scanner scans lists on a GPU; in a build without -tags cuda none can
// be made.
type Scanner struct{}

// NewScanner returns ErrNoCUDA: this build has no GPU code.
func NewScanner(Options) (*Scanner, error) { return nil, ErrNoCUDA }

// Scan returns ErrNoCUDA.
func (*Scanner) Scan(*Request, ListSource) ([]float32, []int64, error) { return nil, nil, ErrNoCUDA }

// Stats returns zero counters.
func (*Scanner) Stats() Stats { return Stats{} }

// Close does nothing.
func (*Scanner) Close() error { return nil }

// PeakBandwidth returns ErrNoCUDA.
func PeakBandwidth(int) (float64, error) { return 0, ErrNoCUDA }
