//go:build cuda

package gpu

import (
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/shelfdb/shelf/ivf"
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

// Unsafe code in this file and driver_cuda.go: page-locked buffers are
// viewed as Go slices only within their size (every view is bounded by a
// layout computed from the same plan that sized the buffer), and Go
// slices passed as source pointers are live for the whole copy, which
// completes before the call returns.

// Scanner scans inverted lists on one GPU. It keeps one context, the
// module (JIT-compiled once from the embedded PTX), two streams, and
// device and page-locked host buffers that grow to the largest block
// seen; Scan calls are serialised. A Scanner is an ivf.Scanner.
type Scanner struct {
	mu        sync.Mutex
	opts      Options
	ctx       *cu.Ctx
	mod       cu.Module
	scanFn    cu.Function
	mergeFn   cu.Function
	maxShared int
	streams   [3]cu.Stream // pipeline slots 0 and 1; 2: lists in the cache
	nstreams  int

	// meta: tables, item arrays and results; chunk[b]: list bytes of
	// pipeline slot b. Each is a device buffer and a pinned host buffer
	// of the same size.
	meta  buffer
	chunk [2]buffer
	stats Stats
	// The device cache: arena of opts.CacheBytes (codes, then ids at
	// cache.idsOff()), allocated on first use.
	cache listCache
	arena cu.DevicePtr
	// The resident precomputed table (Options.ResidentTableBytes): a
	// device copy of the request's Precomputed with ID tableID.
	table     cu.DevicePtr
	tableSize int64
	tableID   uint64
}

// buffer is a device allocation and its page-locked host twin.
type buffer struct {
	dev  cu.DevicePtr
	host unsafe.Pointer
	size int64
}

// Stats returns the counters so far.
func (s *Scanner) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Cache = s.cache.snapshot()
	return st
}

func deviceCount() (int, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return 0, fmt.Errorf("gpu: %w", err)
	}
	return n, nil
}

func (o *Options) defaults() {
	if o.ItemCodes <= 0 {
		o.ItemCodes = 4096
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 32 << 20
	}
	if o.ResidentTableBytes == 0 {
		o.ResidentTableBytes = 2 << 30
	}
}

// NewScanner makes a Scanner on opts.Device.
func NewScanner(opts Options) (s *Scanner, err error) {
	opts.defaults()
	n, err := deviceCount()
	if err != nil {
		return nil, err
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
		for i := range s.streams {
			if s.streams[i], err = cu.MakeStream(cu.NonBlocking); err != nil {
				return fmt.Errorf("gpu: stream: %w", err)
			}
			s.nstreams++
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

// Close frees the buffers, the streams, the module and the context.
func (s *Scanner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil
	}
	err := s.ctx.Do(func() error {
		var errs []error
		for _, b := range []*buffer{&s.meta, &s.chunk[0], &s.chunk[1]} {
			errs = append(errs, b.free())
		}
		if s.arena != 0 {
			errs = append(errs, cu.MemFree(s.arena))
			s.arena = 0
		}
		if s.table != 0 {
			errs = append(errs, cu.MemFree(s.table))
			s.table, s.tableSize, s.tableID = 0, 0, 0
		}
		for i := range s.nstreams {
			errs = append(errs, s.streams[i].Destroy())
		}
		s.nstreams = 0
		if s.mod != (cu.Module{}) {
			errs = append(errs, s.mod.Unload())
		}
		return errors.Join(errs...)
	})
	err = errors.Join(err, s.ctx.Close())
	s.ctx = nil
	return err
}

// region is one array of the meta buffer: its bytes at off in both the
// staging buffer and the device buffer.
type region struct{ off, size int64 }

type layout struct{ at int64 }

func (l *layout) add(size int64) region {
	r := region{l.at, size}
	l.at = align(l.at + size)
	return r
}

// Scan scans the probed lists of req and returns the req.K best (score,
// id) pairs of every query, sorted, padded with +Inf and -1.
//
// The tables and work items go up in one copy. Then the lists stream
// through two pipeline slots, chunk by chunk (Options.ChunkBytes): while
// the GPU uploads and scans chunk c on one stream, the host copies chunk
// c+1 from the store into the other slot's page-locked buffer. Each list
// is uploaded once per block, however many queries probe it. One thread
// block per work item builds its pair table and selects its k best in
// shared memory; one block per query merges them at the end, so only
// NQ*K results come back.
func (s *Scanner) Scan(req *Request, src ListSource) ([]float32, []int64, error) {
	m := int64(req.M)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return nil, nil, errors.New("gpu: scanner closed")
	}
	var cache *listCache
	if vs, ok := src.(ivf.VersionedSource); ok && s.opts.CacheBytes > 0 && vs.Version() != 0 {
		cache = &s.cache
		cache.begin(vs.Version(), req.M, s.opts.CacheBytes)
	}
	resident, err := s.residentTable(req)
	if err != nil {
		if cache != nil {
			cache.abort()
		}
		return nil, nil, err
	}
	p, err := newPlan(req, src, s.opts.ItemCodes, max(1, s.opts.ChunkBytes/(m+8)), cache, resident)
	if err != nil {
		if cache != nil {
			cache.abort()
		}
		return nil, nil, err
	}
	dist, ids, err := s.run(req, p, cache)
	if cache != nil {
		if err != nil {
			cache.abort()
		} else {
			cache.commit()
		}
	}
	return dist, ids, err
}

// residentTable reports whether req's precomputed table is on the
// device, uploading it when it is new and small enough; a table for which
// no device memory is left is not kept (the probed lists' rows then go up
// with each block). s.mu held.
func (s *Scanner) residentTable(req *Request) (bool, error) {
	size := 4 * int64(len(req.Precomputed))
	if req.Precomputed == nil || req.PrecomputedID == 0 || s.opts.ResidentTableBytes < 0 || size > s.opts.ResidentTableBytes {
		return false, nil
	}
	if err := req.Validate(); err != nil { // the table must cover the probed lists
		return false, fmt.Errorf("gpu: %w", err)
	}
	if s.tableID == req.PrecomputedID && s.tableSize >= size {
		return true, nil
	}
	ok := false
	err := s.ctx.Do(func() error {
		s.tableID = 0
		if size > s.tableSize {
			if s.table != 0 {
				if err := cu.MemFree(s.table); err != nil {
					return fmt.Errorf("gpu: freeing the precomputed table: %w", err)
				}
				s.table, s.tableSize = 0, 0
			}
			t, err := cu.MemAlloc(size)
			if err != nil {
				return nil // no room: per-block rows
			}
			s.table, s.tableSize = t, size
		}
		if err := cu.MemcpyHtoD(s.table, ptrF(req.Precomputed), size); err != nil {
			return fmt.Errorf("gpu: precomputed table upload: %w", err)
		}
		s.tableID, ok = req.PrecomputedID, true
		s.stats.TableBytes += size
		return nil
	})
	return ok, err
}

// run uploads and scans plan p of req (s.mu held).
func (s *Scanner) run(req *Request, p *plan, cache *listCache) ([]float32, []int64, error) {
	m := int64(req.M)
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
	ltabRow := l.add(int64(4 * len(p.ltabRow)))
	listStart := l.add(int64(8 * len(p.listStart)))
	cacheStart := l.add(int64(8 * len(p.cacheStart)))
	itemPair, itemStart, itemEnd := l.add(4*ni), l.add(4*ni), l.add(4*ni)
	pairQuery, pairList, pairCoarse := l.add(4*np), l.add(4*np), l.add(4*np)
	qItemStart, qItems := l.add(int64(4*(nq+1))), l.add(4*ni)
	upload := l.at
	outD, outI := l.add(int64(4*nq*k)), l.add(int64(8*nq*k))
	itemD, itemI := l.add(4*ni*int64(k)), l.add(8*ni*int64(k))
	idsOff := align(p.chunkCap * m) // chunk slot: codes, then ids
	chunkSize := idsOff + 8*p.chunkCap

	s.stats.Blocks++
	err := s.ctx.Do(func() (err error) {
		defer func() {
			if err != nil { // let work in flight finish before the buffers are reused
				for i := range s.streams {
					_ = s.streams[i].Synchronize()
				}
			}
		}()
		if cache != nil && s.arena == 0 {
			a, err := cu.MemAlloc(s.opts.CacheBytes)
			if err != nil {
				return fmt.Errorf("gpu: %d bytes of device memory for the list cache: %w", s.opts.CacheBytes, err)
			}
			s.arena = a
		}
		if err := s.meta.grow(l.at); err != nil {
			return err
		}
		for b := range s.chunk {
			if err := s.chunk[b].grow(chunkSize); err != nil {
				return err
			}
		}
		stage := func(r region, src unsafe.Pointer) {
			if r.size > 0 {
				copy(unsafe.Slice((*byte)(unsafe.Add(s.meta.host, r.off)), r.size), unsafe.Slice((*byte)(src), r.size))
			}
		}
		stage(qtab, ptrF(req.QTables))
		stage(ltab, ptrF(p.ltab))
		stage(ltabRow, ptrI32(p.ltabRow))
		stage(listStart, ptrI64(p.listStart))
		stage(cacheStart, ptrI64(p.cacheStart))
		stage(itemPair, ptrI32(p.itemPair))
		stage(itemStart, ptrI32(p.itemStart))
		stage(itemEnd, ptrI32(p.itemEnd))
		stage(pairQuery, ptrI32(req.ProbeQuery))
		stage(pairList, ptrI32(p.pairList))
		stage(pairCoarse, ptrF(req.ProbeCoarse))
		stage(qItemStart, ptrI32(p.qItemStart))
		stage(qItems, ptrI32(p.qItems))
		if err := cu.MemcpyHtoD(s.meta.dev, s.meta.host, upload); err != nil {
			return fmt.Errorf("gpu: upload: %w", err)
		}
		d := func(r region) cu.DevicePtr { return s.meta.dev + cu.DevicePtr(r.off) }
		ltabPtr, rowPtr := cu.DevicePtr(0), cu.DevicePtr(0) // the kernel reads no list term
		switch {
		case p.ltabRow != nil:
			ltabPtr, rowPtr = s.table, d(ltabRow)
		case req.ListTables != nil:
			ltabPtr = d(ltab)
			s.stats.TableBytes += ltab.size
		}
		m64, k64, ss64, sm64 := m, int64(k), int64(sortScan), int64(sortMerge)
		// scan launches the scan kernel over items [lo, hi) on st, reading
		// lists from codes/ids at index starts[list]-entryBase+e.
		scan := func(st cu.Stream, lo, hi int, codes, idsP, starts cu.DevicePtr, entryBase int64) error {
			a := []cu.DevicePtr{d(qtab), ltabPtr, rowPtr, codes, idsP, starts, d(itemPair), d(itemStart), d(itemEnd),
				d(pairQuery), d(pairList), d(pairCoarse)}
			args := make([]unsafe.Pointer, 0, 19)
			for i := range a {
				args = append(args, unsafe.Pointer(&a[i]))
			}
			oD, oI := d(itemD), d(itemI)
			itemBase := int64(lo)
			args = append(args, unsafe.Pointer(&m64), unsafe.Pointer(&k64), unsafe.Pointer(&ss64), unsafe.Pointer(&oD), unsafe.Pointer(&oI),
				unsafe.Pointer(&itemBase), unsafe.Pointer(&entryBase))
			if err := s.scanFn.Launch(hi-lo, 1, 1, threads, 1, 1, smemScan, st, args); err != nil {
				return fmt.Errorf("gpu: scan kernel: %w", err)
			}
			return nil
		}
		var arenaIDs cu.DevicePtr
		if cache != nil {
			arenaIDs = s.arena + cu.DevicePtr(cache.idsOff())
		}
		if p.residentItems > 0 {
			if err := scan(s.streams[2], 0, p.residentItems, s.arena, arenaIDs, d(cacheStart), 0); err != nil {
				return err
			}
		}
		for c, ch := range p.chunks {
			b := c % 2
			st, buf := s.streams[b], &s.chunk[b]
			if c >= 2 { // slot b's previous chunk must be uploaded before its buffer is refilled
				t := time.Now()
				if err := st.Synchronize(); err != nil {
					return fmt.Errorf("gpu: chunk %d: %w", c-2, err)
				}
				s.stats.Wait += time.Since(t)
			}
			n := ch.entryHi - ch.entryLo
			t := time.Now()
			p.stage(c, unsafe.Slice((*byte)(buf.host), n*m), unsafe.Slice((*int64)(unsafe.Add(buf.host, idsOff)), n), s.opts.HostThreads)
			s.stats.Stage += time.Since(t)
			s.stats.Chunks++
			s.stats.ListBytes += n * (m + 8)
			if err := cu.MemcpyHtoDAsync(buf.dev, buf.host, n*m, st); err != nil {
				return fmt.Errorf("gpu: chunk upload: %w", err)
			}
			if err := cu.MemcpyHtoDAsync(buf.dev+cu.DevicePtr(idsOff), unsafe.Add(buf.host, idsOff), n*8, st); err != nil {
				return fmt.Errorf("gpu: chunk upload: %w", err)
			}
			for sg := ch.segLo; sg < ch.segHi && cache != nil; sg++ { // admitted lists: into the cache
				i := p.segList[sg]
				if p.admitAt[i] < 0 {
					continue
				}
				from, to, cnt := p.segEntry(sg)-ch.entryLo, p.admitAt[i]+int64(p.segStart[sg]), int64(p.segEnd[sg]-p.segStart[sg])
				if err := errors.Join(
					cu.MemcpyDtoDAsync(s.arena+cu.DevicePtr(to*m), buf.dev+cu.DevicePtr(from*m), cnt*m, st),
					cu.MemcpyDtoDAsync(arenaIDs+cu.DevicePtr(8*to), buf.dev+cu.DevicePtr(idsOff+8*from), 8*cnt, st)); err != nil {
					return fmt.Errorf("gpu: copy into the list cache: %w", err)
				}
			}
			if ch.itemHi > ch.itemLo {
				if err := scan(st, ch.itemLo, ch.itemHi, buf.dev, buf.dev+cu.DevicePtr(idsOff), d(listStart), ch.entryLo); err != nil {
					return err
				}
			}
		}
		t := time.Now()
		for i := range s.streams {
			if err := s.streams[i].Synchronize(); err != nil {
				return fmt.Errorf("gpu: scan: %w", err)
			}
		}
		s.stats.Wait += time.Since(t)
		a := []cu.DevicePtr{d(itemD), d(itemI), d(qItemStart), d(qItems)}
		oD, oI := d(outD), d(outI)
		args := []unsafe.Pointer{unsafe.Pointer(&a[0]), unsafe.Pointer(&a[1]), unsafe.Pointer(&a[2]), unsafe.Pointer(&a[3]),
			unsafe.Pointer(&k64), unsafe.Pointer(&sm64), unsafe.Pointer(&oD), unsafe.Pointer(&oI)}
		if err := s.mergeFn.LaunchAndSync(nq, 1, 1, threads, 1, 1, smemMerge, cu.NoStream, args); err != nil {
			return fmt.Errorf("gpu: merge kernel: %w", err)
		}
		if err := cu.MemcpyDtoH(unsafe.Add(s.meta.host, outD.off), d(outD), outI.off+outI.size-outD.off); err != nil {
			return fmt.Errorf("gpu: download: %w", err)
		}
		copy(dist, unsafe.Slice((*float32)(unsafe.Add(s.meta.host, outD.off)), nq*k))
		copy(ids, unsafe.Slice((*int64)(unsafe.Add(s.meta.host, outI.off)), nq*k))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return dist, ids, nil
}

// grow makes b at least n bytes on both sides, doubling so that a stream
// of similar blocks allocates rarely. It runs on the context's thread.
func (b *buffer) grow(n int64) error {
	if n <= b.size {
		return nil
	}
	old := b.size
	if err := b.free(); err != nil {
		return err
	}
	size := max(n, 2*old)
	dev, err := cu.MemAlloc(size)
	if err != nil {
		size = n
		dev, err = cu.MemAlloc(size)
	}
	if err != nil {
		return fmt.Errorf("gpu: %d bytes of device memory: %w", n, err)
	}
	host, err := hostAlloc(size)
	if err != nil {
		cu.MemFree(dev)
		return fmt.Errorf("gpu: %d bytes of pinned host memory: %w", size, err)
	}
	b.dev, b.host, b.size = dev, host, size
	return nil
}

// free releases both sides of b.
func (b *buffer) free() error {
	var errs []error
	if b.dev != 0 {
		errs = append(errs, cu.MemFree(b.dev))
	}
	if b.host != nil {
		errs = append(errs, cu.MemFreeHost(b.host))
	}
	b.dev, b.host, b.size = 0, nil, 0
	return errors.Join(errs...)
}

func ptrF(s []float32) unsafe.Pointer {
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
