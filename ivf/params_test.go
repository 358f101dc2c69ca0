package ivf

import (
	"errors"
	"strings"
	"testing"
)

// TestParseFactoryCodes checks that the factory takes only the PQ codes
// Shelf has (8-bit) and that the other bit counts FAISS knows are refused
// with an error that says only 8-bit codes are supported.
func TestParseFactoryCodes(t *testing.T) {
	for _, f := range []string{"IVF64,PQ8", "IVF64,PQ8x8", "IVF64,Flat"} {
		p, err := ParseFactory(f, 32, L2)
		if err != nil || p.NList != 64 || (!p.Flat && (p.M != 8 || p.Nbits != 8 || p.CodeSize() != 8)) {
			t.Errorf("%s: %+v, %v", f, p, err)
		}
	}
	for _, f := range []string{"IVF64,PQ8x4", "IVF64,PQ16x4", "IVF64,PQ8x12", "IVF64,PQ16x4fs", "IVF64,PQ8x"} {
		_, err := ParseFactory(f, 32, L2)
		if !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), "only 8-bit codes") || !strings.Contains(err.Error(), f) {
			t.Errorf("%s: %v; want an error saying only 8-bit codes are supported", f, err)
		}
	}
	if _, err := ParseFactory("IVF64,PQ8x4", 32, L2); !strings.Contains(err.Error(), "4-bit PQ codes are not supported") {
		t.Errorf("IVF64,PQ8x4: %v", err)
	}
	// Params made by hand are held to the same rule.
	p := Params{D: 32, NList: 64, M: 16, Nbits: 4, Metric: L2}
	if err := p.Validate(); !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), "only 8-bit codes") {
		t.Errorf("Validate of 4-bit codes: %v", err)
	}
	// No help of the package advertises another bit count.
	_, err := ParseFactory("HNSW32", 32, L2)
	if err == nil || strings.Contains(err.Error(), "nbits") || !strings.Contains(err.Error(), "IVF<nlist>,PQ<M>") {
		t.Errorf("bad factory: %v", err)
	}
}
