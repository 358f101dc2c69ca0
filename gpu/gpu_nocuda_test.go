//go:build !cuda

package gpu_test

import (
	"errors"
	"testing"

	"github.com/shelfdb/shelf/gpu"
)

func TestNoCUDA(t *testing.T) {
	if gpu.Available() {
		t.Fatal("Available in a build without -tags cuda")
	}
	if _, err := gpu.NewScanner(gpu.Options{}); !errors.Is(err, gpu.ErrNoCUDA) || err.Error() != "gpu: built without -tags cuda" {
		t.Fatalf("NewScanner: %v", err)
	}
}

func TestNoCUDASharded(t *testing.T) {
	if _, err := gpu.NewShardedScanner(nil, 2, gpu.Options{}); !errors.Is(err, gpu.ErrNoCUDA) {
		t.Fatalf("NewShardedScanner: %v", err)
	}
	if _, err := gpu.PeakBandwidth(0); !errors.Is(err, gpu.ErrNoCUDA) {
		t.Fatalf("PeakBandwidth: %v", err)
	}
}
