//go:build cuda

package gpu

import (
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"gorgonia.org/cu"
)

//go:embed kernels/scan.ptx
var scanPTX string

// threads per block of both kernels.
const threads = 256

// Available reports whether a CUDA device is visible. (In a cuda build
// without a GPU the process has already ended in cu's init.)
func Available() bool {
	n, err := cu.NumDevices()
	return err == nil && n > 0
}

// Scanner scans inverted lists on one GPU. It keeps one context, the
// module (JIT-compiled once from the embedded PTX), and device and
// page-locked host buffers that grow to the largest block seen; Scan
// calls are serialised.
type Scanner struct {
	mu        sync.Mutex
	opts      Options
	ctx       *cu.Ctx
	mod       cu.Module
	scanFn    cu.Function
	mergeFn   cu.Function
	maxShared int

	dev      cu.DevicePtr // device buffer of devSize bytes
	devSize  int64
	host     unsafe.Pointer // pinned staging buffer of hostSize bytes
	hostSize int64
}

// NewScanner makes a Scanner on opts.Device.
func NewScanner(opts Options) (s *Scanner, err error) {
	if opts.ItemCodes <= 0 {
		opts.ItemCodes = 4096
	}
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	if opts.Device < 0 || opts.Device >= n {
		return nil, fmt.Errorf("gpu: device %d of %d", opts.Device, n)
	}
	s = &Scanner{opts: opts}
	defer func() {
		if r := recover(); r != nil { // cu.NewContext panics on failure
			err = fmt.Errorf("gpu: context on device %d: %v", opts.Device, r)
		}
	}()
	dev := cu.Device(opts.Device)
	s.ctx = cu.NewContext(dev, cu.SchedAuto)
	err = s.ctx.Do(func() error {
		var err error
		if s.mod, err = cu.LoadData(scanPTX); err != nil {
			return fmt.Errorf("gpu: loading kernels: %w", err)
		}
		if s.scanFn, err = s.mod.Function("ivfpq_scan"); err != nil {
			return err
		}
		if s.mergeFn, err = s.mod.Function("ivfpq_merge"); err != nil {
			return err
		}
		if s.maxShared, err = maxSharedOptin(dev); err != nil {
			return err
		}
		// Static shared memory of each kernel: 16 bytes (ptxas).
		return errors.Join(setMaxDynamicShared(s.scanFn, s.maxShared-64), setMaxDynamicShared(s.mergeFn, s.maxShared-64))
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close frees the buffers, the module and the context.
func (s *Scanner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil
	}
	err := s.ctx.Do(func() error {
		var errs []error
		if s.dev != 0 {
			errs = append(errs, cu.MemFree(s.dev))
		}
		if s.host != nil {
			errs = append(errs, cu.MemFreeHost(s.host))
		}
		if s.mod != (cu.Module{}) {
			errs = append(errs, s.mod.Unload())
		}
		return errors.Join(errs...)
	})
	s.dev, s.host = 0, nil
	err = errors.Join(err, s.ctx.Close())
	s.ctx = nil
	return err
}

// region is one array of the block: its bytes at off in both the staging
// buffer and the device buffer.
type region struct{ off, size int64 }

type layout struct{ at int64 }

func (l *layout) add(size int64) region {
	r := region{l.at, size}
	l.at = (l.at + size + 255) &^ 255 // 256-byte alignment, as cudaMalloc
	return r
}

// Scan scans the probed lists of req and returns the req.K best (score,
// id) pairs of every query, sorted, padded with +Inf and -1: the lists
// and tables are uploaded in one copy, one thread block per work item
// builds its pair table and selects its k best in shared memory, one
// block per query merges them, and only NQ*K results come back.
func (s *Scanner) Scan(req *Request, src ListSource) ([]float32, []int64, error) {
	p, err := newPlan(req, src, s.opts.ItemCodes)
	if err != nil {
		return nil, nil, err
	}
	nq, k, mk := req.NQ, req.K, req.M*req.Ksub
	dist := make([]float32, nq*k)
	ids := make([]int64, nq*k)
	if nq == 0 {
		return dist, ids, nil
	}
	sortScan, sortMerge := sortSize(k, threads), sortSize(k, threads)
	smemScan := 4*mk + 8*sortScan
	smemMerge := 12 * sortMerge
	if smemScan > s.maxShared-64 || smemMerge > s.maxShared-64 {
		return nil, nil, fmt.Errorf("gpu: m=%d with k=%d needs %d bytes of shared memory per block, the GPU allows %d",
			req.M, k, smemScan, s.maxShared-64)
	}
	ni, np := int64(len(p.itemPair)), int64(len(req.ProbeQuery))
	var l layout
	qtab := l.add(int64(4 * nq * mk))
	ltab := l.add(int64(4 * len(p.ltab)))
	codes := l.add(int64(len(p.codes)))
	idsR := l.add(int64(8 * len(p.ids)))
	listStart := l.add(int64(8 * len(p.listStart)))
	itemPair, itemStart, itemEnd := l.add(4*ni), l.add(4*ni), l.add(4*ni)
	pairQuery, pairList, pairCoarse := l.add(4*np), l.add(4*np), l.add(4*np)
	qItemStart, qItems := l.add(int64(4*(nq+1))), l.add(4*ni)
	upload := l.at
	outD, outI := l.add(int64(4*nq*k)), l.add(int64(8*nq*k))
	download := l.at - outD.off
	itemD, itemI := l.add(4*ni*int64(k)), l.add(8*ni*int64(k))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil, nil, errors.New("gpu: scanner closed")
	}
	err = s.ctx.Do(func() error {
		if err := s.grow(l.at, max(upload, download)); err != nil {
			return err
		}
		stage := func(r region, src unsafe.Pointer) {
			if r.size > 0 {
				copy(unsafe.Slice((*byte)(unsafe.Add(s.host, r.off)), r.size), unsafe.Slice((*byte)(src), r.size))
			}
		}
		stage(qtab, ptrF(req.QTables))
		stage(ltab, ptrF(p.ltab))
		stage(codes, ptrB(p.codes))
		stage(idsR, ptrI64(p.ids))
		stage(listStart, ptrI64(p.listStart))
		stage(itemPair, ptrI32(p.itemPair))
		stage(itemStart, ptrI32(p.itemStart))
		stage(itemEnd, ptrI32(p.itemEnd))
		stage(pairQuery, ptrI32(req.ProbeQuery))
		stage(pairList, ptrI32(p.pairList))
		stage(pairCoarse, ptrF(req.ProbeCoarse))
		stage(qItemStart, ptrI32(p.qItemStart))
		stage(qItems, ptrI32(p.qItems))
		if err := cu.MemcpyHtoD(s.dev, s.host, upload); err != nil {
			return fmt.Errorf("gpu: upload: %w", err)
		}
		d := func(r region) cu.DevicePtr { return s.dev + cu.DevicePtr(r.off) }
		ltabPtr := cu.DevicePtr(0) // the kernel reads no list term
		if req.ListTables != nil {
			ltabPtr = d(ltab)
		}
		m64, k64, ss64, sm64 := int64(req.M), int64(k), int64(sortScan), int64(sortMerge)
		if ni > 0 {
			a := []cu.DevicePtr{d(qtab), ltabPtr, d(codes), d(idsR), d(listStart), d(itemPair), d(itemStart), d(itemEnd),
				d(pairQuery), d(pairList), d(pairCoarse)}
			args := make([]unsafe.Pointer, 0, 16)
			for i := range a {
				args = append(args, unsafe.Pointer(&a[i]))
			}
			oD, oI := d(itemD), d(itemI)
			args = append(args, unsafe.Pointer(&m64), unsafe.Pointer(&k64), unsafe.Pointer(&ss64), unsafe.Pointer(&oD), unsafe.Pointer(&oI))
			if err := s.scanFn.Launch(int(ni), 1, 1, threads, 1, 1, smemScan, cu.NoStream, args); err != nil {
				return fmt.Errorf("gpu: scan kernel: %w", err)
			}
		}
		a := []cu.DevicePtr{d(itemD), d(itemI), d(qItemStart), d(qItems)}
		oD, oI := d(outD), d(outI)
		args := []unsafe.Pointer{unsafe.Pointer(&a[0]), unsafe.Pointer(&a[1]), unsafe.Pointer(&a[2]), unsafe.Pointer(&a[3]),
			unsafe.Pointer(&k64), unsafe.Pointer(&sm64), unsafe.Pointer(&oD), unsafe.Pointer(&oI)}
		if err := s.mergeFn.LaunchAndSync(nq, 1, 1, threads, 1, 1, smemMerge, cu.NoStream, args); err != nil {
			return fmt.Errorf("gpu: merge kernel: %w", err)
		}
		if err := cu.MemcpyDtoH(s.host, d(outD), download); err != nil {
			return fmt.Errorf("gpu: download: %w", err)
		}
		copy(dist, unsafe.Slice((*float32)(s.host), nq*k))
		copy(ids, unsafe.Slice((*int64)(unsafe.Add(s.host, outI.off-outD.off)), nq*k))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return dist, ids, nil
}

// grow makes the device buffer at least dev bytes and the staging buffer
// at least host bytes, doubling so that a stream of similar blocks
// allocates rarely. It runs on the context's thread.
func (s *Scanner) grow(dev, host int64) error {
	if dev > s.devSize {
		old := s.devSize
		if s.dev != 0 {
			if err := cu.MemFree(s.dev); err != nil {
				return err
			}
			s.dev, s.devSize = 0, 0
		}
		n := max(dev, 2*old)
		p, err := cu.MemAlloc(n)
		if err != nil {
			p, err = cu.MemAlloc(dev)
			n = dev
		}
		if err != nil {
			return fmt.Errorf("gpu: %d bytes of device memory: %w", dev, err)
		}
		s.dev, s.devSize = p, n
	}
	if host > s.hostSize {
		old := s.hostSize
		if s.host != nil {
			if err := cu.MemFreeHost(s.host); err != nil {
				return err
			}
			s.host, s.hostSize = nil, 0
		}
		n := max(host, 2*old)
		p, err := hostAlloc(n)
		if err != nil {
			return fmt.Errorf("gpu: %d bytes of pinned host memory: %w", n, err)
		}
		s.host, s.hostSize = p, n
	}
	return nil
}

func ptrF(s []float32) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}
func ptrB(s []byte) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}
func ptrI32(s []int32) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}
func ptrI64(s []int64) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}
