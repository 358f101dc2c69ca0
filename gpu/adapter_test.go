package gpu_test

import (
	"github.com/shelfdb/shelf/gpu"
	"github.com/shelfdb/shelf/ivf"
)

// ivfScanner is the adapter a package importing both ivf and gpu writes:
// gpu.Request and ivf.ScanRequest have identical fields, so the request
// converts with a pointer conversion, and ivf.Snapshot is a
// gpu.ListSource.
type ivfScanner struct{ s *gpu.Scanner }

func (a ivfScanner) Scan(r *ivf.ScanRequest, src ivf.ListSource) ([]float32, []int64, error) {
	return a.s.Scan((*gpu.Request)(r), src)
}

func (a ivfScanner) Close() error { return a.s.Close() }

var _ ivf.Scanner = ivfScanner{}
