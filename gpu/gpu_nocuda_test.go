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
