//go:build cuda

package gpu

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// The driver calls gorgonia.org/cu does not wrap. Like cu's package-level
// functions they must run on the context's thread (inside ctx.Do).

func drvErr(what string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return fmt.Errorf("gpu: %s: CUDA error %d", what, int(r))
}

// hostAlloc returns n bytes of page-locked host memory: the staging
// buffers of uploads and downloads, which the DMA engines read at full
// PCIe/NVLink speed (Go heap memory would be copied through a driver
// bounce buffer).
func hostAlloc(n int64) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	if err := drvErr("cuMemHostAlloc", C.cuMemHostAlloc(&p, C.size_t(n), 0)); err != nil {
		return nil, err
	}
	return p, nil
}

// maxSharedOptin is the most dynamic shared memory a block may opt in to
// (227 KiB on H100), beyond the default 48 KiB.
func maxSharedOptin(d cu.Device) (int, error) {
	var v C.int
	err := drvErr("cuDeviceGetAttribute", C.cuDeviceGetAttribute(&v, C.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, C.CUdevice(d)))
	return int(v), err
}

// setMaxDynamicShared lets fn launch with up to n bytes of dynamic shared
// memory: the pair table (M KiB) plus the selection buffer.
func setMaxDynamicShared(fn cu.Function, n int) error {
	h := *(*C.CUfunction)(unsafe.Pointer(&fn))
	return drvErr("cuFuncSetAttribute", C.cuFuncSetAttribute(h, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, C.int(n)))
}

// PeakBandwidth returns device's theoretical memory bandwidth in bytes/s:
// 2 transfers per memory clock (DDR) times the bus width.
func PeakBandwidth(device int) (float64, error) {
	var clock, width C.int // kHz, bits
	d := C.CUdevice(device)
	if err := drvErr("cuDeviceGetAttribute", C.cuDeviceGetAttribute(&clock, C.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, d)); err != nil {
		return 0, err
	}
	if err := drvErr("cuDeviceGetAttribute", C.cuDeviceGetAttribute(&width, C.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, d)); err != nil {
		return 0, err
	}
	return 2 * float64(clock) * 1e3 * float64(width) / 8, nil
}
