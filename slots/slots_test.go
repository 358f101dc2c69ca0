package slots

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("slots.seed", 0, "seed for the randomized tests; 0 picks one from the clock")

// testSeed returns the seed for a randomized test and logs it so a failure
// can be replayed with -slots.seed.
func testSeed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -slots.seed=%d)", s, s)
	return s
}

// fr builds the extent [off, end).
func fr(off, end uint64) Extent { return Extent{Off: off, Len: end - off} }

// withFree returns an allocator over [base, end) whose free extents are
// exactly free, built by allocating the complement.
func withFree(t testing.TB, base, end uint64, free ...Extent) *Allocator {
	t.Helper()
	a := New(base, end)
	cur := base
	for _, f := range append(slices.Clone(free), Extent{Off: end}) {
		if f.Off > cur {
			if err := a.AllocAt(cur, f.Off-cur); err != nil {
				t.Fatalf("setup: %v", err)
			}
		}
		cur = f.End()
	}
	wantState(t, a, free...)
	return a
}

// wantState fails unless a passes Check and its free extents are want.
func wantState(t testing.TB, a *Allocator, want ...Extent) {
	t.Helper()
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	got := a.Extents()
	if len(want) == 0 {
		want = []Extent{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("free extents %v, want %v", got, want)
	}
	var sum uint64
	for _, e := range want {
		sum += e.Len
	}
	if a.FreeBytes() != sum || a.UsedBytes() != a.End()-a.Base()-sum {
		t.Fatalf("FreeBytes %d UsedBytes %d, want %d and %d", a.FreeBytes(), a.UsedBytes(), sum, a.End()-a.Base()-sum)
	}
	if a.NumExtents() != len(want) {
		t.Fatalf("NumExtents %d, want %d", a.NumExtents(), len(want))
	}
}

// wantErr fails unless err wraps ErrInvalid and mentions every part.
func wantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %q does not wrap ErrInvalid", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
}

func TestExtent(t *testing.T) {
	for _, tc := range []struct {
		e    Extent
		end  uint64
		text string
	}{
		{Extent{}, 0, "[0,0)"},
		{Extent{Off: 10, Len: 5}, 15, "[10,15)"},
		{Extent{Off: math.MaxUint64 - 1, Len: 1}, math.MaxUint64, "[18446744073709551614,18446744073709551615)"},
		{Extent{Off: math.MaxUint64, Len: 2}, 1, "[18446744073709551615,+2 overflows uint64)"},
	} {
		if got := tc.e.End(); got != tc.end {
			t.Errorf("%#v.End() = %d, want %d", tc.e, got, tc.end)
		}
		if got := tc.e.String(); got != tc.text {
			t.Errorf("%#v.String() = %q, want %q", tc.e, got, tc.text)
		}
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		base, end            uint64
		wantEnd              uint64
		want                 []Extent
		largest, tail, frees uint64
	}{
		{"empty", 0, 0, 0, nil, 0, 0, 0},
		{"empty at offset", 4096, 4096, 4096, nil, 0, 0, 0},
		{"end before base is empty", 100, 50, 100, nil, 0, 0, 0},
		{"whole range", 0, 100, 100, []Extent{fr(0, 100)}, 100, 100, 100},
		{"offset range", 4096, 8192, 8192, []Extent{fr(4096, 8192)}, 4096, 4096, 4096},
		{"top of uint64", math.MaxUint64 - 10, math.MaxUint64, math.MaxUint64, []Extent{fr(math.MaxUint64-10, math.MaxUint64)}, 10, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(tc.base, tc.end)
			if a.Base() != tc.base || a.End() != tc.wantEnd {
				t.Fatalf("range [%d,%d), want [%d,%d)", a.Base(), a.End(), tc.base, tc.wantEnd)
			}
			wantState(t, a, tc.want...)
			if a.Largest() != tc.largest || a.TailFree() != tc.tail || a.FreeBytes() != tc.frees {
				t.Fatalf("Largest %d TailFree %d FreeBytes %d, want %d %d %d", a.Largest(), a.TailFree(), a.FreeBytes(), tc.largest, tc.tail, tc.frees)
			}
			if a.UsedBytes() != 0 {
				t.Fatalf("UsedBytes %d, want 0", a.UsedBytes())
			}
		})
	}
}

func TestAlloc(t *testing.T) {
	for _, tc := range []struct {
		name      string
		base, end uint64
		free      []Extent
		n         uint64
		wantOff   uint64
		wantOK    bool
		after     []Extent
	}{
		{"empty allocator", 0, 0, nil, 1, 0, false, nil},
		{"fully used", 0, 100, nil, 1, 0, false, nil},
		{"start of whole range", 0, 100, []Extent{fr(0, 100)}, 10, 0, true, []Extent{fr(10, 100)}},
		{"start of offset range", 4096, 8192, []Extent{fr(4096, 8192)}, 100, 4096, true, []Extent{fr(4196, 8192)}},
		{"exact fit removes extent", 0, 100, []Extent{fr(0, 100)}, 100, 0, true, nil},
		{"exact fit preferred over larger", 0, 100, []Extent{fr(0, 50), fr(60, 70), fr(80, 100)}, 10, 60, true, []Extent{fr(0, 50), fr(80, 100)}},
		{"smallest that fits", 0, 100, []Extent{fr(0, 50), fr(55, 75), fr(80, 95)}, 12, 80, true, []Extent{fr(0, 50), fr(55, 75), fr(92, 95)}},
		{"skips too small", 0, 100, []Extent{fr(0, 5), fr(10, 14), fr(20, 60)}, 6, 20, true, []Extent{fr(0, 5), fr(10, 14), fr(26, 60)}},
		{"tie broken by lowest offset", 0, 100, []Extent{fr(10, 20), fr(30, 40), fr(50, 60)}, 5, 10, true, []Extent{fr(15, 20), fr(30, 40), fr(50, 60)}},
		{"tie at high offsets", 0, 100, []Extent{fr(0, 50), fr(60, 70), fr(80, 90)}, 10, 60, true, []Extent{fr(0, 50), fr(80, 90)}},
		{"too large", 0, 100, []Extent{fr(0, 40), fr(50, 90)}, 41, 0, false, []Extent{fr(0, 40), fr(50, 90)}},
		{"zero", 0, 100, []Extent{fr(20, 40)}, 0, 0, true, []Extent{fr(20, 40)}},
		{"zero when full", 0, 100, nil, 0, 0, true, nil},
		{"max uint64", 0, 100, []Extent{fr(0, 100)}, math.MaxUint64, 0, false, []Extent{fr(0, 100)}},
		{"top of uint64", math.MaxUint64 - 10, math.MaxUint64, []Extent{fr(math.MaxUint64-10, math.MaxUint64)}, 10, math.MaxUint64 - 10, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := withFree(t, tc.base, tc.end, tc.free...)
			off, ok := a.Alloc(tc.n)
			if off != tc.wantOff || ok != tc.wantOK {
				t.Fatalf("Alloc(%d) = %d, %v, want %d, %v", tc.n, off, ok, tc.wantOff, tc.wantOK)
			}
			wantState(t, a, tc.after...)
		})
	}
}

func TestAllocAt(t *testing.T) {
	base := []Extent{fr(10, 20), fr(30, 60), fr(80, 100)}
	for _, tc := range []struct {
		name   string
		off, n uint64
		after  []Extent
		errHas []string // nil: no error
	}{
		{"middle splits in two", 40, 5, []Extent{fr(10, 20), fr(30, 40), fr(45, 60), fr(80, 100)}, nil},
		{"start", 30, 5, []Extent{fr(10, 20), fr(35, 60), fr(80, 100)}, nil},
		{"end", 55, 5, []Extent{fr(10, 20), fr(30, 55), fr(80, 100)}, nil},
		{"whole extent", 30, 30, []Extent{fr(10, 20), fr(80, 100)}, nil},
		{"last byte of range", 99, 1, []Extent{fr(10, 20), fr(30, 60), fr(80, 99)}, nil},
		{"zero length", 25, 0, base, nil},
		{"zero length outside range", 1000, 0, base, nil},
		{"starts in used space", 25, 5, base, []string{"[25,30)", "offset 25 is not free"}},
		{"starts at end of free extent", 20, 1, base, []string{"[20,21)", "not free"}},
		{"spans two extents", 15, 20, base, []string{"[15,35)", "[10,20)"}},
		{"runs into used space", 50, 20, base, []string{"[50,70)", "[30,60)"}},
		{"covers extent and more", 30, 31, base, []string{"[30,61)", "[30,60)"}},
		{"below base", 0, 5, base, []string{"[0,5)", "outside [5,100)"}},
		{"straddles base", 4, 8, base, []string{"[4,12)", "outside"}},
		{"beyond end", 100, 1, base, []string{"[100,101)", "outside"}},
		{"straddles end", 95, 10, base, []string{"[95,105)", "outside"}},
		{"overflows", 90, math.MaxUint64, base, []string{"overflows uint64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := withFree(t, 5, 100, base...)
			err := a.AllocAt(tc.off, tc.n)
			if tc.errHas == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantErr(t, err, tc.errHas...)
			}
			wantState(t, a, tc.after...)
		})
	}
}

func TestFree(t *testing.T) {
	base := []Extent{fr(10, 20), fr(30, 40), fr(60, 70)}
	for _, tc := range []struct {
		name   string
		off, n uint64
		after  []Extent
		errHas []string
	}{
		{"no neighbours", 45, 5, []Extent{fr(10, 20), fr(30, 40), fr(45, 50), fr(60, 70)}, nil},
		{"coalesces left", 40, 5, []Extent{fr(10, 20), fr(30, 45), fr(60, 70)}, nil},
		{"coalesces right", 55, 5, []Extent{fr(10, 20), fr(30, 40), fr(55, 70)}, nil},
		{"coalesces both", 20, 10, []Extent{fr(10, 40), fr(60, 70)}, nil},
		{"at base", 0, 3, []Extent{fr(0, 3), fr(10, 20), fr(30, 40), fr(60, 70)}, nil},
		{"at base coalesces right", 0, 10, []Extent{fr(0, 20), fr(30, 40), fr(60, 70)}, nil},
		{"at end", 90, 10, []Extent{fr(10, 20), fr(30, 40), fr(60, 70), fr(90, 100)}, nil},
		{"at end coalesces left", 70, 30, []Extent{fr(10, 20), fr(30, 40), fr(60, 100)}, nil},
		{"everything used", 0, 10, []Extent{fr(0, 20), fr(30, 40), fr(60, 70)}, nil},
		{"zero length", 15, 0, base, nil},
		{"zero length outside range", 500, 0, base, nil},
		{"double free", 30, 10, base, []string{"free [30,40) overlaps free extent [30,40)"}},
		{"inside free extent", 32, 2, base, []string{"[32,34)", "[30,40)"}},
		{"overlaps on the left side", 35, 10, base, []string{"[35,45)", "[30,40)"}},
		{"overlaps on the right side", 25, 10, base, []string{"[25,35)", "[30,40)"}},
		{"covers a free extent", 25, 20, base, []string{"[25,45)", "[30,40)"}},
		{"covers several free extents", 0, 100, base, []string{"[0,100)", "[10,20)"}},
		{"ends one past free start", 5, 6, base, []string{"[5,11)", "[10,20)"}},
		{"starts on last free byte", 39, 6, base, []string{"[39,45)", "[30,40)"}},
		{"beyond end", 100, 1, base, []string{"[100,101)", "outside [0,100)"}},
		{"straddles end", 95, 10, base, []string{"[95,105)", "outside"}},
		{"far outside", 1 << 40, 1, base, []string{"outside"}},
		{"overflows", 95, math.MaxUint64 - 10, base, []string{"overflows uint64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := withFree(t, 0, 100, base...)
			err := a.Free(tc.off, tc.n)
			if tc.errHas == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				wantErr(t, err, tc.errHas...)
			}
			wantState(t, a, tc.after...)
		})
	}
	t.Run("below base", func(t *testing.T) {
		a := withFree(t, 50, 100)
		wantErr(t, a.Free(40, 5), "[40,45)", "outside [50,100)")
		wantErr(t, a.Free(45, 10), "[45,55)", "outside [50,100)")
		wantState(t, a)
	})
	t.Run("allocation round trip", func(t *testing.T) {
		a := New(0, 1000)
		var offs []uint64
		for range 10 {
			off, ok := a.Alloc(100)
			if !ok {
				t.Fatal("Alloc(100) failed")
			}
			offs = append(offs, off)
		}
		wantState(t, a)
		for _, i := range []int{3, 5, 4, 0, 9, 1, 8, 2, 7, 6} {
			if err := a.Free(offs[i], 100); err != nil {
				t.Fatal(err)
			}
			if err := a.Check(); err != nil {
				t.Fatal(err)
			}
		}
		wantState(t, a, fr(0, 1000))
	})
}

func TestGrow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		base, end uint64
		free      []Extent
		newEnd    uint64
		after     []Extent
		errHas    []string
	}{
		{"coalesces with free tail", 0, 100, []Extent{fr(10, 20), fr(90, 100)}, 150, []Extent{fr(10, 20), fr(90, 150)}, nil},
		{"whole range free", 0, 100, []Extent{fr(0, 100)}, 200, []Extent{fr(0, 200)}, nil},
		{"used tail", 0, 100, []Extent{fr(10, 20)}, 150, []Extent{fr(10, 20), fr(100, 150)}, nil},
		{"fully used", 0, 100, nil, 101, []Extent{fr(100, 101)}, nil},
		{"empty range", 64, 64, nil, 128, []Extent{fr(64, 128)}, nil},
		{"same end", 0, 100, []Extent{fr(10, 20)}, 100, []Extent{fr(10, 20)}, nil},
		{"to top of uint64", 0, 100, []Extent{fr(50, 100)}, math.MaxUint64, []Extent{fr(50, math.MaxUint64)}, nil},
		{"smaller", 0, 100, []Extent{fr(10, 20), fr(90, 100)}, 99, []Extent{fr(10, 20), fr(90, 100)}, []string{"grow to 99", "current end 100"}},
		{"to zero", 10, 100, []Extent{fr(90, 100)}, 0, []Extent{fr(90, 100)}, []string{"grow to 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := withFree(t, tc.base, tc.end, tc.free...)
			err := a.Grow(tc.newEnd)
			if tc.errHas == nil {
				if err != nil {
					t.Fatal(err)
				}
				if a.End() != tc.newEnd {
					t.Fatalf("End %d, want %d", a.End(), tc.newEnd)
				}
			} else {
				wantErr(t, err, tc.errHas...)
				if a.End() != tc.end {
					t.Fatalf("End %d changed after failed Grow, want %d", a.End(), tc.end)
				}
			}
			wantState(t, a, tc.after...)
		})
	}
	t.Run("end before base", func(t *testing.T) {
		a := New(100, 10)
		if err := a.Grow(50); err == nil {
			t.Fatal("Grow below base succeeded")
		}
		if err := a.Grow(150); err != nil {
			t.Fatal(err)
		}
		wantState(t, a, fr(100, 150))
	})
}

func TestRebuild(t *testing.T) {
	for _, tc := range []struct {
		name      string
		base, end uint64
		used      []Extent
		want      []Extent
		errHas    []string
	}{
		{"nothing used", 0, 100, nil, []Extent{fr(0, 100)}, nil},
		{"empty range", 10, 10, nil, nil, nil},
		{"empty range with zero-length", 10, 10, []Extent{{Off: 10}, {Off: 99}}, nil, nil},
		{"unordered", 0, 100, []Extent{fr(60, 70), fr(10, 20), fr(30, 40)}, []Extent{fr(0, 10), fr(20, 30), fr(40, 60), fr(70, 100)}, nil},
		{"zero-length ignored anywhere", 0, 100, []Extent{fr(10, 20), {Off: 15}, {Off: 500}, {Off: math.MaxUint64}}, []Extent{fr(0, 10), fr(20, 100)}, nil},
		{"adjacent used", 0, 100, []Extent{fr(20, 30), fr(10, 20), fr(30, 40)}, []Extent{fr(0, 10), fr(40, 100)}, nil},
		{"used at both ends", 50, 150, []Extent{fr(140, 150), fr(50, 60)}, []Extent{fr(60, 140)}, nil},
		{"everything used", 0, 100, []Extent{fr(50, 100), fr(0, 50)}, nil, nil},
		{"overlap", 0, 100, []Extent{fr(15, 25), fr(10, 20)}, nil, []string{"used extents [10,20) and [15,25) overlap"}},
		{"overlap by one byte", 0, 100, []Extent{fr(19, 25), fr(10, 20)}, nil, []string{"used extents [10,20) and [19,25) overlap"}},
		{"overlap same start", 0, 100, []Extent{fr(10, 20), fr(10, 15)}, nil, []string{"[10,15)", "[10,20)", "overlap"}},
		{"duplicate", 0, 100, []Extent{fr(10, 20), fr(30, 40), fr(10, 20)}, nil, []string{"[10,20) and [10,20) overlap"}},
		{"contained in an earlier extent", 0, 100, []Extent{fr(30, 40), fr(0, 50), fr(10, 20)}, nil, []string{"[0,50) and [10,20) overlap"}},
		{"below base", 10, 100, []Extent{fr(20, 30), fr(5, 15)}, nil, []string{"used extent [5,15) lies outside [10,100)"}},
		{"beyond end", 0, 100, []Extent{fr(95, 105)}, nil, []string{"used extent [95,105) lies outside [0,100)"}},
		{"far beyond end", 0, 100, []Extent{fr(200, 300)}, nil, []string{"[200,300)", "outside"}},
		{"overflows", 0, 100, []Extent{{Off: 50, Len: math.MaxUint64}}, nil, []string{"overflows uint64", "outside"}},
		{"end before base", 100, 50, nil, nil, []string{"[100,50)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used := slices.Clone(tc.used)
			a, err := Rebuild(tc.base, tc.end, used)
			if !slices.Equal(used, tc.used) {
				t.Fatalf("Rebuild modified its argument: %v", used)
			}
			if tc.errHas != nil {
				wantErr(t, err, tc.errHas...)
				if a != nil {
					t.Fatal("Rebuild returned an allocator with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Base() != tc.base || a.End() != tc.end {
				t.Fatalf("range [%d,%d), want [%d,%d)", a.Base(), a.End(), tc.base, tc.end)
			}
			wantState(t, a, tc.want...)
		})
	}
}

func TestStats(t *testing.T) {
	a := withFree(t, 100, 1000, fr(100, 110), fr(200, 400), fr(500, 520), fr(900, 1000))
	if got := a.Largest(); got != 200 {
		t.Errorf("Largest = %d, want 200", got)
	}
	if got := a.TailFree(); got != 100 {
		t.Errorf("TailFree = %d, want 100", got)
	}
	if got := a.FreeBytes(); got != 330 {
		t.Errorf("FreeBytes = %d, want 330", got)
	}
	if got := a.UsedBytes(); got != 570 {
		t.Errorf("UsedBytes = %d, want 570", got)
	}
	if got := a.NumExtents(); got != 4 {
		t.Errorf("NumExtents = %d, want 4", got)
	}
	if err := a.AllocAt(950, 50); err != nil {
		t.Fatal(err)
	}
	if got := a.TailFree(); got != 0 {
		t.Errorf("TailFree after using the last byte = %d, want 0", got)
	}
	// A request that does not fit fits after growing by n - TailFree.
	a = withFree(t, 0, 100, fr(10, 20), fr(70, 100))
	n := uint64(50)
	if _, ok := a.Alloc(n); ok {
		t.Fatal("Alloc(50) fit before Grow")
	}
	if err := a.Grow(a.End() + n - a.TailFree()); err != nil {
		t.Fatal(err)
	}
	if off, ok := a.Alloc(n); !ok || off != 70 {
		t.Fatalf("Alloc(50) after Grow = %d, %v, want 70, true", off, ok)
	}
	// Extents returns a copy the caller may change.
	e := a.Extents()
	e[0].Len = 999
	wantState(t, a, fr(10, 20))
}

func TestClone(t *testing.T) {
	a := withFree(t, 0, 1000, fr(0, 100), fr(200, 300), fr(500, 1000))
	c := a.Clone()
	if _, ok := c.Alloc(100); !ok {
		t.Fatal("Alloc on clone failed")
	}
	if err := c.Free(100, 100); err != nil {
		t.Fatal(err)
	}
	if err := c.Grow(2000); err != nil {
		t.Fatal(err)
	}
	wantState(t, a, fr(0, 100), fr(200, 300), fr(500, 1000))
	if a.End() != 1000 {
		t.Fatalf("original End %d after clone grew", a.End())
	}
	wantState(t, c, fr(100, 300), fr(500, 2000))
	if err := a.AllocAt(0, 500); err == nil {
		t.Fatal("AllocAt over used space succeeded")
	}
	if err := a.AllocAt(600, 100); err != nil {
		t.Fatal(err)
	}
	wantState(t, a, fr(0, 100), fr(200, 300), fr(500, 600), fr(700, 1000))
	wantState(t, c, fr(100, 300), fr(500, 2000))
}

func TestNextPow2(t *testing.T) {
	for _, tc := range []struct{ n, want uint64 }{
		{0, 0}, {1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {7, 8}, {8, 8}, {9, 16},
		{1000, 1024}, {1024, 1024}, {1025, 2048},
		{1<<32 - 1, 1 << 32}, {1 << 32, 1 << 32}, {1<<32 + 1, 1 << 33},
		{1<<63 - 1, 1 << 63}, {1 << 63, 1 << 63}, {1<<63 + 1, 0}, {math.MaxUint64, 0},
	} {
		if got := NextPow2(tc.n); got != tc.want {
			t.Errorf("NextPow2(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	for i := 1; i < 64; i++ {
		p := uint64(1) << i
		if NextPow2(p) != p || NextPow2(p-1) != max(p>>1, 1)<<min(1, i-1) {
			t.Errorf("NextPow2 around 1<<%d wrong", i)
		}
		if i < 63 && NextPow2(p+1) != p<<1 {
			t.Errorf("NextPow2(1<<%d + 1) = %d", i, NextPow2(p+1))
		}
	}
}

func TestIsPow2(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want bool
	}{
		{0, false}, {1, true}, {2, true}, {3, false}, {4, true}, {6, false},
		{1 << 40, true}, {1<<40 + 1, false}, {1 << 63, true}, {math.MaxUint64, false},
	} {
		if got := IsPow2(tc.n); got != tc.want {
			t.Errorf("IsPow2(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	for i := range 64 {
		if !IsPow2(1 << i) {
			t.Errorf("IsPow2(1<<%d) = false", i)
		}
	}
}

// TestCheck corrupts the internal state in each way Check must notice.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(a *Allocator)
		errHas  string
	}{
		{"size index missing extent", func(a *Allocator) { a.bySize.Delete(fr(30, 40)) }, "offset index holds 3 extents, size index 2"},
		{"size index has other length", func(a *Allocator) {
			a.bySize.Delete(fr(30, 40))
			a.bySize.ReplaceOrInsert(fr(30, 39))
		}, "[30,40) is missing from the size index"},
		{"zero length", func(a *Allocator) { a.insert(Extent{Off: 50}) }, "zero length"},
		{"outside range", func(a *Allocator) { a.insert(fr(95, 105)) }, "[95,105) lies outside [0,100)"},
		{"below base", func(a *Allocator) { a.base = 20 }, "[10,20) lies outside [20,100)"},
		{"overlap", func(a *Allocator) { a.insert(fr(35, 45)) }, "[30,40) and [35,45) overlap"},
		{"adjacent", func(a *Allocator) { a.insert(fr(40, 45)) }, "[30,40) and [40,45) are adjacent"},
		{"free count", func(a *Allocator) { a.free++ }, "sum to 30 bytes but FreeBytes is 31"},
		{"end before base", func(a *Allocator) { a.end = 0; a.base = 1 }, "end 0 is before base 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := withFree(t, 0, 100, fr(10, 20), fr(30, 40), fr(60, 70))
			tc.corrupt(a)
			err := a.Check()
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("Check() = %v, want an error mentioning %q", err, tc.errHas)
			}
		})
	}
}

// model is a reference allocator simple enough to be obviously right: one
// byte of state per byte of range, with free extents found by scanning.
type model struct {
	base  uint64
	state []byte // state[i] is isFree or isUsed for byte base+i
	free  uint64
}

const (
	isFree byte = iota
	isUsed
)

func stateOf(used bool) byte {
	if used {
		return isUsed
	}
	return isFree
}

func newModel(base, end uint64) *model {
	return &model{base: base, state: make([]byte, end-base), free: end - base}
}

func (m *model) size() uint64 { return uint64(len(m.state)) }

func (m *model) end() uint64 { return m.base + m.size() }

// all reports whether [off, off+n) lies in range and every byte has the
// given state.
func (m *model) all(off, n uint64, used bool) bool {
	if off < m.base || off > m.end() || n > m.end()-off {
		return false
	}
	i := off - m.base
	return bytes.IndexByte(m.state[i:i+n], stateOf(!used)) < 0
}

func (m *model) set(off, n uint64, used bool) {
	if n == 0 {
		return // off may lie anywhere
	}
	seg := m.state[off-m.base : off-m.base+n]
	for i := range seg {
		seg[i] = stateOf(used)
	}
	if used {
		m.free -= n
	} else {
		m.free += n
	}
}

func (m *model) grow(n uint64) {
	m.state = append(m.state, make([]byte, n)...)
	m.free += n
}

// runs returns the maximal runs of bytes in the given state.
func (m *model) runs(used bool) []Extent {
	out := []Extent{}
	want, other := stateOf(used), stateOf(!used)
	for i := 0; i < len(m.state); {
		k := bytes.IndexByte(m.state[i:], want)
		if k < 0 {
			break
		}
		i += k
		n := bytes.IndexByte(m.state[i:], other)
		if n < 0 {
			n = len(m.state) - i
		}
		out = append(out, Extent{Off: m.base + uint64(i), Len: uint64(n)})
		i += n
	}
	return out
}

// alloc applies the documented rule directly: the shortest free run that
// fits, the lowest such run on ties, and the allocation at its start.
func (m *model) alloc(n uint64) (uint64, bool) {
	if n == 0 {
		return 0, true
	}
	var best Extent
	for _, r := range m.runs(false) {
		if r.Len >= n && (best.Len == 0 || r.Len < best.Len) {
			best = r
		}
	}
	if best.Len == 0 {
		return 0, false
	}
	m.set(best.Off, n, true)
	return best.Off, true
}

// pick returns a sub-range of the run in the given state that holds the
// first such byte at or after position p (wrapping): starting start bytes
// into the run, clipped to its end, of length at least 1.
func (m *model) pick(used bool, p, start, length uint64) (Extent, bool) {
	if m.size() == 0 {
		return Extent{}, false
	}
	want, other := stateOf(used), stateOf(!used)
	p %= m.size()
	var i int
	if k := bytes.IndexByte(m.state[p:], want); k >= 0 {
		i = int(p) + k
	} else if k := bytes.IndexByte(m.state[:p], want); k >= 0 {
		i = k
	} else {
		return Extent{}, false
	}
	s := bytes.LastIndexByte(m.state[:i], other) + 1
	e := len(m.state)
	if k := bytes.IndexByte(m.state[i:], other); k >= 0 {
		e = i + k
	}
	off := uint64(s) + start%uint64(e-s)
	n := max(1, min(length, uint64(e)-off))
	return Extent{Off: m.base + off, Len: n}, true
}

// harness drives an Allocator and a model with the same operations and
// fails as soon as they disagree.
type harness struct {
	tb   testing.TB
	a    *Allocator
	m    *model
	step int // operations verified so far, to place a failure in the sequence
}

func (h *harness) fail(format string, args ...any) {
	h.tb.Fatalf("step %d: "+format, append([]any{h.step}, args...)...)
}

func newHarness(tb testing.TB, base, end uint64) *harness {
	return &harness{tb: tb, a: New(base, end), m: newModel(base, end)}
}

func (h *harness) alloc(n uint64) {
	wantOff, wantOK := h.m.alloc(n)
	off, ok := h.a.Alloc(n)
	if off != wantOff || ok != wantOK {
		h.fail("Alloc(%d) = %d, %v, model says %d, %v", n, off, ok, wantOff, wantOK)
	}
	h.verify()
}

// result compares err from the call op(args) against whether the model
// says the call is valid.
func (h *harness) result(err error, valid bool, op string, args ...uint64) {
	if valid == (err == nil) && (err == nil || errors.Is(err, ErrInvalid)) {
		return
	}
	call := fmt.Sprintf("%s%v", op, args)
	switch {
	case valid:
		h.fail("%s: unexpected error %v", call, err)
	case err == nil:
		h.fail("%s succeeded, model says it is invalid", call)
	default:
		h.fail("%s: error %q does not wrap ErrInvalid", call, err)
	}
}

func (h *harness) allocAt(off, n uint64) {
	valid := n == 0 || h.m.all(off, n, false)
	h.result(h.a.AllocAt(off, n), valid, "AllocAt", off, n)
	if valid {
		h.m.set(off, n, true)
	}
	h.verify()
}

func (h *harness) free(off, n uint64) {
	valid := n == 0 || h.m.all(off, n, true)
	h.result(h.a.Free(off, n), valid, "Free", off, n)
	if valid {
		h.m.set(off, n, false)
	}
	h.verify()
}

func (h *harness) grow(newEnd uint64) {
	valid := newEnd >= h.m.end()
	h.result(h.a.Grow(newEnd), valid, "Grow", newEnd)
	if valid {
		h.m.grow(newEnd - h.m.end())
	}
	h.verify()
}

// rebuild replaces the allocator with one rebuilt from the model's used
// bytes, cut into pieces and shuffled so Rebuild sees them in any order.
func (h *harness) rebuild(rng *rand.Rand) {
	var used []Extent
	for _, r := range h.m.runs(true) {
		for r.Len > 0 {
			n := min(r.Len, 1+rng.Uint64N(r.Len))
			used = append(used, Extent{Off: r.Off, Len: n})
			r.Off, r.Len = r.Off+n, r.Len-n
		}
	}
	used = append(used, Extent{Off: rng.Uint64()})
	rng.Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
	if len(used) > 1 {
		// A piece that shares at least one byte with another, or that
		// sticks out of the range, must be rejected.
		p := used[rng.IntN(len(used))]
		if p.Len == 0 {
			p = used[0]
		}
		if p.Len > 0 {
			bad := Extent{Off: p.Off + rng.Uint64N(p.Len), Len: 1}
			bad.Len += rng.Uint64N(h.m.end() - bad.Off)
			if rng.IntN(4) == 0 {
				bad.Len = h.m.end() - bad.Off + 1
			}
			at := rng.IntN(len(used) + 1)
			if _, err := Rebuild(h.m.base, h.m.end(), slices.Insert(slices.Clone(used), at, bad)); !errors.Is(err, ErrInvalid) {
				h.fail("Rebuild with %v added to %v: error %v, want ErrInvalid", bad, used, err)
			}
		}
	}
	a, err := Rebuild(h.m.base, h.m.end(), used)
	if err != nil {
		h.fail("Rebuild: %v", err)
	}
	if !slices.Equal(a.Extents(), h.a.Extents()) {
		h.fail("Rebuild gave %v, operations gave %v", a.Extents(), h.a.Extents())
	}
	h.a = a
	h.verify()
}

// clone continues with a clone of the allocator after changing the
// original, or keeps the original after changing a clone, so that a write
// leaking through the shared copy-on-write trees shows up as a mismatch.
func (h *harness) clone(keepClone bool, n uint64) {
	c := h.a.Clone()
	other := c
	if keepClone {
		h.a, other = c, h.a
	}
	if off, ok := other.Alloc(n); ok && n > 1 {
		if err := other.Free(off+n/2, n-n/2); err != nil {
			h.fail("%v", err)
		}
	}
	if err := other.Grow(other.End() + min(n, math.MaxUint64-other.End())); err != nil {
		h.fail("%v", err)
	}
	if err := other.Check(); err != nil {
		h.fail("%v", err)
	}
	h.verify()
}

func (h *harness) verify() {
	h.step++
	a, m := h.a, h.m
	if err := a.Check(); err != nil {
		h.fail("%v", err)
	}
	want := m.runs(false)
	got := a.Extents()
	if !slices.Equal(got, want) {
		h.fail("free extents %v, model has %v", got, want)
	}
	var largest, tail uint64
	for _, e := range want {
		largest = max(largest, e.Len)
	}
	if len(want) > 0 && want[len(want)-1].End() == m.end() {
		tail = want[len(want)-1].Len
	}
	switch {
	case a.Base() != m.base || a.End() != m.end():
		h.fail("range [%d,%d), model [%d,%d)", a.Base(), a.End(), m.base, m.end())
	case a.FreeBytes() != m.free || a.UsedBytes() != m.size()-m.free:
		h.fail("FreeBytes %d UsedBytes %d, model free %d of %d", a.FreeBytes(), a.UsedBytes(), m.free, m.size())
	case a.NumExtents() != len(want):
		h.fail("NumExtents %d, model %d", a.NumExtents(), len(want))
	case a.Largest() != largest || a.TailFree() != tail:
		h.fail("Largest %d TailFree %d, model %d %d", a.Largest(), a.TailFree(), largest, tail)
	}
}

// maxModelSize bounds the range the model covers so its linear scans stay
// cheap enough to run after every step.
const maxModelSize = 4096

// randomStep applies one random operation, weighted towards valid calls
// so the state keeps changing, with a steady share of invalid ones.
func randomStep(h *harness, rng *rand.Rand) {
	size := h.m.size()
	// anyOff is an offset near or in the range, sometimes just outside it.
	anyOff := func() uint64 { return h.m.base - 8 + rng.Uint64N(size+16) }
	anyLen := func() uint64 {
		switch rng.IntN(10) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64 - rng.Uint64N(4)
		case 2, 3:
			return 1 + rng.Uint64N(size+1)
		}
		return 1 + rng.Uint64N(32)
	}
	switch op := rng.IntN(100); {
	case op < 30:
		var n uint64
		switch rng.IntN(8) {
		case 0:
			n = h.a.Largest()
		case 1:
			n = h.a.Largest() + 1
		case 2:
			n = rng.Uint64N(size + 2)
		default:
			n = 1 + rng.Uint64N(48)
		}
		h.alloc(n)
	case op < 45:
		if rng.IntN(4) == 0 {
			h.allocAt(anyOff(), anyLen())
		} else if r, ok := h.m.pick(false, rng.Uint64(), rng.Uint64N(4)*rng.Uint64(), 1+rng.Uint64N(64)); ok {
			h.allocAt(r.Off, r.Len)
		}
	case op < 88:
		if rng.IntN(4) == 0 {
			h.free(anyOff(), anyLen())
		} else {
			length := 1 + rng.Uint64N(64)
			if rng.IntN(3) == 0 {
				length = math.MaxUint64
			}
			if r, ok := h.m.pick(true, rng.Uint64(), rng.Uint64N(3)*rng.Uint64(), length); ok {
				h.free(r.Off, r.Len)
			}
		}
	case op < 95:
		switch {
		case rng.IntN(5) == 0 && h.m.end() > h.m.base:
			h.grow(h.m.end() - 1 - rng.Uint64N(h.m.end()-h.m.base))
		case size < maxModelSize:
			h.grow(h.m.end() + rng.Uint64N(min(256, maxModelSize-size+1)))
		}
	case op < 98:
		h.rebuild(rng)
	default:
		h.clone(rng.IntN(2) == 0, rng.Uint64N(32))
	}
}

// randomBase returns a base at zero, small, large, or so close to the top
// of uint64 that any end arithmetic that overflows would show.
func randomBase(rng *rand.Rand) uint64 {
	switch rng.IntN(4) {
	case 0:
		return 0
	case 1:
		return rng.Uint64N(1 << 20)
	case 2:
		return rng.Uint64N(1 << 62)
	}
	return math.MaxUint64 - maxModelSize - 8 - rng.Uint64N(64)
}

func TestModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	const steps, episode = 50000, 1000
	var h *harness
	for i := range steps {
		if i%episode == 0 {
			base := randomBase(rng)
			h = newHarness(t, base, base+rng.Uint64N(maxModelSize/2))
			h.verify()
		}
		randomStep(h, rng)
	}
}

// TestRebuildMatchesOps checks that rebuilding from the set of live
// allocations, as the store does on open, reproduces exactly the state the
// allocator reached through Alloc, AllocAt, Free and Grow.
func TestRebuildMatchesOps(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	for round := range 20 {
		base := rng.Uint64N(1 << 62)
		a := New(base, base+rng.Uint64N(1<<16))
		var live []Extent
		for range 2000 {
			switch op := rng.IntN(10); {
			case op < 5:
				n := 1 + rng.Uint64N(512)
				if off, ok := a.Alloc(n); ok {
					live = append(live, Extent{Off: off, Len: n})
				} else if rng.IntN(2) == 0 {
					if err := a.Grow(a.End() + n - a.TailFree()); err != nil {
						t.Fatal(err)
					}
				}
			case op < 6:
				if a.NumExtents() > 0 {
					e := a.Extents()[rng.IntN(a.NumExtents())]
					r := Extent{Off: e.Off + rng.Uint64N(e.Len), Len: 1}
					r.Len += rng.Uint64N(e.End() - r.Off)
					if err := a.AllocAt(r.Off, r.Len); err != nil {
						t.Fatal(err)
					}
					live = append(live, r)
				}
			default:
				if len(live) > 0 {
					i := rng.IntN(len(live))
					if err := a.Free(live[i].Off, live[i].Len); err != nil {
						t.Fatal(err)
					}
					live[i] = live[len(live)-1]
					live = live[:len(live)-1]
				}
			}
		}
		used := slices.Clone(live)
		rng.Shuffle(len(used), func(i, j int) { used[i], used[j] = used[j], used[i] })
		b, err := Rebuild(a.Base(), a.End(), used)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := b.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !slices.Equal(a.Extents(), b.Extents()) || a.FreeBytes() != b.FreeBytes() || a.Largest() != b.Largest() || a.TailFree() != b.TailFree() {
			t.Fatalf("round %d: rebuilt %v, operations gave %v", round, b.Extents(), a.Extents())
		}
	}
}

// fuzzReader hands out the fuzz input as small numbers, then zeros.
type fuzzReader []byte

func (r *fuzzReader) u8() uint64 {
	if len(*r) == 0 {
		return 0
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return uint64(v)
}

func (r *fuzzReader) u16() uint64 { return r.u8() | r.u8()<<8 }

// The fuzz target keeps each input cheap, a millisecond or two, because
// the fuzzer replays an input many times while minimizing it.
const (
	fuzzMaxSize  = 1024
	fuzzMaxSteps = 200
)

// FuzzOps decodes its input into a base, an initial size and a sequence of
// operations, and runs them against the allocator and the model together.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0x00, 0x01})
	f.Add([]byte{1, 0x00, 0x04, 0, 16, 0, 0, 16, 0, 0, 16, 0, 3, 1, 0, 0, 3, 1, 16, 0})
	f.Add([]byte{2, 0x40, 0x00, 1, 8, 0, 4, 0, 2, 0, 9, 0, 5, 0, 0, 0, 6, 1, 0, 0, 7})
	f.Add([]byte{3, 0x10, 0x00, 0, 1, 0, 0, 2, 0, 0, 3, 0, 4, 1, 0, 0, 4, 2, 0, 0, 2, 7, 0, 0, 6, 3})
	f.Add([]byte{0, 0x00, 0x00, 5, 0, 1, 0, 5, 0, 1, 0, 6, 9, 7, 2})
	f.Fuzz(runOps)
}

// runOps is the body of FuzzOps. The first byte picks the base and the next
// two the initial size; then each operation is one opcode byte followed by
// its arguments. Rebuild and Clone, the costly operations, get one opcode
// each so that a typical input stays cheap to replay.
func runOps(t *testing.T, data []byte) {
	r := fuzzReader(data)
	var base uint64
	switch r.u8() % 4 {
	case 1:
		base = 4096
	case 2:
		base = 1 << 40
	case 3:
		base = math.MaxUint64 - fuzzMaxSize - 1024
	}
	h := newHarness(t, base, base+r.u16()%fuzzMaxSize)
	rng := rand.New(rand.NewPCG(uint64(len(data)), 1))
	for steps := 0; len(r) > 0 && steps < fuzzMaxSteps; steps++ {
		size := h.m.size()
		// off is near or in the range, reaching a little outside it.
		off := func() uint64 { return h.m.base - 4 + r.u16()%(size+8) }
		switch r.u8() % 16 {
		case 0, 1:
			h.alloc(1 + r.u8()%64)
		case 2:
			h.alloc(r.u16() % (size + 2))
		case 3:
			h.allocAt(off(), r.u8())
		case 4, 5:
			if e, ok := h.m.pick(false, r.u16(), r.u8(), 1+r.u8()); ok {
				h.allocAt(e.Off, e.Len)
			}
		case 6:
			h.free(off(), r.u8())
		case 7:
			h.free(off(), math.MaxUint64-r.u8())
		case 8, 9, 10:
			if e, ok := h.m.pick(true, r.u16(), r.u8(), 1+r.u8()); ok {
				h.free(e.Off, e.Len)
			}
		case 11, 12:
			if e, ok := h.m.pick(true, r.u16(), 0, math.MaxUint64); ok {
				h.free(e.Off, e.Len)
			}
		case 13:
			if grow := r.u8(); size+grow <= fuzzMaxSize {
				h.grow(h.m.end() + grow)
			} else if shrink := 1 + grow%(size+1); shrink <= h.m.end() {
				h.grow(h.m.end() - shrink)
			}
		case 14:
			h.rebuild(rng)
		case 15:
			h.clone(r.u8()%2 == 0, r.u8()%32)
		}
	}
}
