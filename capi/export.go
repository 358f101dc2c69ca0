package main

// The exported C functions, and the only cgo and unsafe code of the
// package. Arrays come from C as a pointer and sizes; each is made a Go
// slice over the caller's memory (no copy) only after its sizes were
// checked (ops.go), and only for the call: the caller keeps the memory
// alive and unchanged until the function returns, and no slice over it
// is kept afterwards (ivf copies what it stores, faissio reads files).
// Strings are copied (C.GoString). Results go to out-parameters; a
// message of an error to *errp, a C string the caller frees with
// shelf_free. Indexes are handles (handles.go), never pointers.

/*
#include <stdint.h>
#include <stdlib.h>
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/shelfdb/shelf/ivf"
)

// run runs f and returns its status, its error's message in *errp; a
// panic (a bug) becomes an error instead of the end of the caller's
// process.
func run(errp **C.char, f func() error) (st C.int) {
	defer func() {
		if r := recover(); r != nil {
			st = fail(errp, fmt.Errorf("shelf: internal error: %v", r))
		}
	}()
	return fail(errp, f())
}

func fail(errp **C.char, err error) C.int {
	if err != nil && errp != nil {
		*errp = C.CString(err.Error())
	}
	return C.int(status(err))
}

// withIndex runs f on the index of handle h, held open for the call.
func withIndex(h C.int64_t, f func(hd *handle, ix *ivf.Index) error) error {
	hd, ix, release, err := acquire(int64(h), false)
	if err != nil {
		return err
	}
	defer release()
	return f(hd, ix)
}

var errNilPointer = errors.New("shelf: null pointer for a non-empty array or a result")

// floats is the C array p of n floats as a slice, valid for the call only;
// n was checked (0 <= n <= maxElems).
func floats(p *C.float, n int64) ([]float32, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, errNilPointer
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), n), nil
}

// matrix checks n vectors of dimension d against the index's dimension
// (checkMatrix) and returns the C array p of them as a slice, valid for
// the call only.
func matrix(what string, p *C.float, n, d C.int64_t, want int) ([]float32, error) {
	if err := checkMatrix(what, int64(n), int64(d), want); err != nil {
		return nil, err
	}
	return floats(p, int64(n*d))
}

// int64s is the C array p of n int64 as a slice, valid for the call only;
// n was checked (0 <= n <= maxElems).
func int64s(p *C.int64_t, n int64) ([]int64, error) {
	if n == 0 {
		return []int64{}, nil
	}
	if p == nil {
		return nil, errNilPointer
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(p)), n), nil
}

// setString stores s in *out as a C string the caller frees.
func setString(out **C.char, s []byte) error {
	if out == nil {
		return errNilPointer
	}
	*out = C.CString(string(s))
	return nil
}

// shelf_free frees a string this library returned.
//
//export shelf_free
func shelf_free(p *C.char) { C.free(unsafe.Pointer(p)) }

// shelf_token_new returns a new cancellation token for one call.
//
//export shelf_token_new
func shelf_token_new() C.int64_t { return C.int64_t(newToken()) }

// shelf_token_cancel interrupts the call that holds token t (Ctrl-C).
//
//export shelf_token_cancel
func shelf_token_cancel(t C.int64_t) { cancelToken(int64(t)) }

// shelf_token_free forgets token t once its call has returned.
//
//export shelf_token_free
func shelf_token_free(t C.int64_t) { freeToken(int64(t)) }

// shelf_check_results checks that nq queries of k results each can be
// searched in one call, before the caller allocates the results.
//
//export shelf_check_results
func shelf_check_results(nq, k C.int64_t, errp **C.char) C.int {
	return run(errp, func() error { return checkResults(int64(nq), int64(k)) })
}

// shelf_create makes an untrained index (factory string, dimension d,
// metric "l2", "ip" or "cosine"); shelf_train makes dir an index
// directory (dir "" keeps the index in memory).
//
//export shelf_create
func shelf_create(dir, factory *C.char, d C.int64_t, metric *C.char, h *C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		if h == nil || factory == nil || metric == nil {
			return errNilPointer
		}
		var dirs string
		if dir != nil {
			dirs = C.GoString(dir)
		}
		v, err := create(dirs, C.GoString(factory), int64(d), C.GoString(metric))
		*h = C.int64_t(v)
		return err
	})
}

// shelf_open opens the index directory dir, read-only if readOnly != 0;
// memory > 0 is the memory budget of its searches in bytes (lists read
// from disk into buffers of at most that size, never mapped).
//
//export shelf_open
func shelf_open(dir *C.char, readOnly C.int, memory C.int64_t, h *C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		if h == nil || dir == nil {
			return errNilPointer
		}
		v, err := open(C.GoString(dir), readOnly != 0, int64(memory))
		*h = C.int64_t(v)
		return err
	})
}

// shelf_import_faiss imports the FAISS index file path into the new index
// directory dir and opens it.
//
//export shelf_import_faiss
func shelf_import_faiss(path, dir *C.char, cosine C.int, h *C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		if h == nil || path == nil || dir == nil {
			return errNilPointer
		}
		v, err := importFAISS(C.GoString(path), C.GoString(dir), cosine != 0)
		*h = C.int64_t(v)
		return err
	})
}

// shelf_close closes handle h (see closeHandle).
//
//export shelf_close
func shelf_close(h C.int64_t, errp **C.char) C.int {
	return run(errp, func() error { return closeHandle(int64(h)) })
}

// shelf_info returns the index's parameters, size and state as JSON.
//
//export shelf_info
func shelf_info(h C.int64_t, out **C.char, errp **C.char) C.int {
	return run(errp, func() error {
		var info indexInfo
		err := withIndex(h, func(hd *handle, ix *ivf.Index) error {
			info = infoOf(hd, ix)
			return nil
		})
		if errors.Is(err, errTraining) {
			p, pending, perr := params(int64(h))
			info, err = paramsInfo(p, pending), perr
		}
		if err != nil {
			return err
		}
		b, err := json.Marshal(info)
		if err != nil {
			return err
		}
		return setString(out, b)
	})
}

// shelf_ntotal returns the number of vectors in the index.
//
//export shelf_ntotal
func shelf_ntotal(h C.int64_t, n *C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		if n == nil {
			return errNilPointer
		}
		err := withIndex(h, func(_ *handle, ix *ivf.Index) error {
			*n = C.int64_t(ix.NTotal())
			return nil
		})
		if errors.Is(err, errTraining) {
			*n, err = 0, nil // an index being trained holds nothing
		}
		return err
	})
}

// shelf_stats returns the index's parameters and storage statistics as
// JSON.
//
//export shelf_stats
func shelf_stats(h C.int64_t, out **C.char, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(hd *handle, ix *ivf.Index) error {
			b, err := stats(hd, ix)
			if err != nil {
				return err
			}
			return setString(out, b)
		})
	})
}

// shelf_train trains the index on n vectors of dimension d at x.
//
//export shelf_train
func shelf_train(h C.int64_t, x *C.float, n, d, seed C.int64_t, tok C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		hd, ix, release, err := acquire(int64(h), true)
		if err != nil {
			return err
		}
		defer release()
		xs, err := matrix("training vectors", x, n, d, ix.Params().D)
		if err != nil {
			return err
		}
		return train(tokenContext(int64(tok)), hd, ix, xs, int(n), int64(seed))
	})
}

// shelf_add adds n vectors of dimension d at x, with the ids at ids (or
// sequential ids if ids is null); *first is the first sequential id,
// *added the vectors added (also when interrupted).
//
//export shelf_add
func shelf_add(h C.int64_t, x *C.float, n, d C.int64_t, ids *C.int64_t, first, added *C.int64_t, tok C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			if first == nil || added == nil {
				return errNilPointer
			}
			xs, err := matrix("vectors", x, n, d, ix.Params().D)
			if err != nil {
				return err
			}
			var iv []int64
			if ids != nil {
				if iv, err = int64s(ids, int64(n)); err != nil {
					return err
				}
			}
			f, a, err := add(tokenContext(int64(tok)), ix, xs, int(n), iv)
			*first, *added = C.int64_t(f), C.int64_t(a)
			return err
		})
	})
}

// shelf_search searches nq queries of dimension d at q for k results
// each in the nprobe nearest lists, into dist and ids (nq x k each).
//
//export shelf_search
func shelf_search(h C.int64_t, q *C.float, nq, d, k, nprobe C.int64_t, dist *C.float, ids *C.int64_t, tok C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			qs, err := matrix("queries", q, nq, d, ix.Params().D)
			if err != nil {
				return err
			}
			if err := checkResults(int64(nq), int64(k)); err != nil {
				return err
			}
			if nprobe < 1 || int64(nprobe) > maxElems {
				return fmt.Errorf("%w: nprobe = %d", ivf.ErrInput, int64(nprobe))
			}
			ds, err := floats(dist, int64(nq*k))
			if err != nil {
				return err
			}
			is, err := int64s(ids, int64(nq*k))
			if err != nil {
				return err
			}
			return search(tokenContext(int64(tok)), ix, qs, int(nq), int(k), int(nprobe), ds, is)
		})
	})
}

// shelf_merge_blocks merges the code blocks of dir; *out is the report as
// JSON.
//
//export shelf_merge_blocks
func shelf_merge_blocks(h C.int64_t, dir *C.char, idShift C.int64_t, autoShift, allowDuplicates C.int, headroom C.double, out **C.char, tok C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			if dir == nil {
				return errNilPointer
			}
			o, err := mergeOptions(int64(idShift), autoShift != 0, allowDuplicates != 0, float64(headroom))
			if err != nil {
				return err
			}
			b, err := mergeBlocks(tokenContext(int64(tok)), ix, C.GoString(dir), o)
			if err != nil {
				return err
			}
			return setString(out, b)
		})
	})
}

// shelf_merge_from merges every vector of the index of handle other into
// the index of h (one commit); *out is the report as JSON.
//
//export shelf_merge_from
func shelf_merge_from(h, other C.int64_t, idShift C.int64_t, autoShift, allowDuplicates C.int, headroom C.double, out **C.char, tok C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			return withIndex(other, func(_ *handle, ox *ivf.Index) error {
				o, err := mergeOptions(int64(idShift), autoShift != 0, allowDuplicates != 0, float64(headroom))
				if err != nil {
					return err
				}
				b, err := mergeFrom(tokenContext(int64(tok)), ix, ox, o)
				if err != nil {
					return err
				}
				return setString(out, b)
			})
		})
	})
}

// shelf_compact rewrites the index's lists contiguously, leaving headroom
// in each slot; *out tells the sizes before and after as JSON.
//
//export shelf_compact
func shelf_compact(h C.int64_t, headroom C.double, out **C.char, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			b, err := compact(ix, float64(headroom))
			if err != nil {
				return err
			}
			return setString(out, b)
		})
	})
}

// shelf_remove_ids removes the vectors with the n ids at ids; *removed is
// how many were found.
//
//export shelf_remove_ids
func shelf_remove_ids(h C.int64_t, ids *C.int64_t, n C.int64_t, removed *C.int64_t, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			if removed == nil {
				return errNilPointer
			}
			if err := checkCount("ids", int64(n)); err != nil {
				return err
			}
			iv, err := int64s(ids, int64(n))
			if err != nil {
				return err
			}
			r, err := ix.RemoveIDs(iv)
			*removed = C.int64_t(r)
			return err
		})
	})
}

// shelf_export_faiss writes the index as a FAISS index file at path, its
// lists in the OnDiskInvertedLists file onDisk if that is not empty.
//
//export shelf_export_faiss
func shelf_export_faiss(h C.int64_t, path, onDisk *C.char, cosineAsIP C.int, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			if path == nil {
				return errNilPointer
			}
			var od string
			if onDisk != nil {
				od = C.GoString(onDisk)
			}
			return exportFAISS(ix, C.GoString(path), od, cosineAsIP != 0)
		})
	})
}

// shelf_encode_block encodes the n vectors at x as block number of an
// encode run of size rows per block into dir (parallel build); *written
// is 0 when that block was there already.
//
//export shelf_encode_block
func shelf_encode_block(h C.int64_t, dir *C.char, number, size C.int64_t, x *C.float, n, d C.int64_t, written *C.int, errp **C.char) C.int {
	return run(errp, func() error {
		return withIndex(h, func(_ *handle, ix *ivf.Index) error {
			if dir == nil || written == nil {
				return errNilPointer
			}
			xs, err := matrix("vectors", x, n, d, ix.Params().D)
			if err != nil {
				return err
			}
			w, err := encodeBlock(ix, C.GoString(dir), int64(number), int64(size), xs, int64(n))
			*written = 0
			if w {
				*written = 1
			}
			return err
		})
	})
}
