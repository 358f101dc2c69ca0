package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/shelfdb/shelf/ivf"
)

// errClosed is the error of a call on a handle that is not (or no longer)
// in the table.
var errClosed = errors.New("shelf: index closed")

// errTraining is the error of a call on an index while it is trained.
var errTraining = errors.New("shelf: the index is being trained (a training interrupted by Ctrl-C runs on to its end, then is thrown away)")

// handle is one open index as the C side knows it: a number in the table.
type handle struct {
	// model is held for writing by train, which changes the index's
	// model (ivf allows no other call meanwhile), and for reading by
	// every other call: those do not wait for a training, they fail
	// with errTraining.
	model sync.RWMutex

	mu sync.Mutex // guards what follows
	// ix is the index; train replaces an untrained one when it throws a
	// training away. Read it with model held.
	ix *ivf.Index
	// dir is where train makes the index directory of an index created
	// by create ("" for an index in memory, or once it is on disk).
	dir string
	// calls counts the calls running on the index; closed is set by
	// shelf_close, and the last call to return closes the index.
	calls  int
	closed bool
}

var handles = struct {
	sync.Mutex
	m    map[int64]*handle
	next int64
}{m: map[int64]*handle{}}

// register puts an index in the table and returns its handle (> 0).
func register(ix *ivf.Index, dir string) int64 {
	handles.Lock()
	defer handles.Unlock()
	handles.next++
	handles.m[handles.next] = &handle{ix: ix, dir: dir}
	return handles.next
}

// acquire starts a call on handle h: it returns the handle and its index
// as they are now, and a release function to call when the call returns.
// The index stays open until release, even if the handle is closed
// meanwhile. A call that trains (exclusive) waits for the calls running
// on the index; the others fail with errTraining during a training.
func acquire(h int64, exclusive bool) (*handle, *ivf.Index, func(), error) {
	hd, err := lookup(h)
	if err != nil {
		return nil, nil, nil, err
	}
	hd.mu.Lock()
	if hd.closed {
		hd.mu.Unlock()
		return nil, nil, nil, fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	hd.calls++
	hd.mu.Unlock()
	unlock := hd.model.RUnlock
	if exclusive {
		hd.model.Lock()
		unlock = hd.model.Unlock
	} else if !hd.model.TryRLock() {
		hd.done()
		return nil, nil, nil, errTraining
	}
	hd.mu.Lock()
	ix := hd.ix
	hd.mu.Unlock()
	return hd, ix, func() {
		unlock()
		hd.done()
	}, nil
}

// done ends a call; the last call on a closed handle closes the index.
func (hd *handle) done() {
	hd.mu.Lock()
	hd.calls--
	last := hd.closed && hd.calls == 0
	ix := hd.ix
	hd.mu.Unlock()
	if last {
		// Nobody is left to hear of an error: the index was committed
		// call by call, and a close releases.
		_ = ix.Close()
	}
}

func lookup(h int64) (*handle, error) {
	handles.Lock()
	hd := handles.m[h]
	handles.Unlock()
	if hd == nil {
		return nil, fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	return hd, nil
}

// params returns the parameters of the index of h and the directory
// train will make, without waiting for a training: an index's
// parameters never change.
func params(h int64) (ivf.Params, string, error) {
	hd, err := lookup(h)
	if err != nil {
		return ivf.Params{}, "", err
	}
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.closed {
		return ivf.Params{}, "", fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	return hd.ix.Params(), hd.dir, nil
}

// closeHandle takes h out of the table. The index is closed now if no
// call runs on it (and the error of that close is returned), else when
// the last one returns.
func closeHandle(h int64) error {
	handles.Lock()
	hd := handles.m[h]
	delete(handles.m, h)
	handles.Unlock()
	if hd == nil {
		return fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	hd.mu.Lock()
	hd.closed = true
	now := hd.calls == 0
	ix := hd.ix
	hd.mu.Unlock()
	if now {
		return ix.Close()
	}
	return nil
}

// tokens are the cancellation tokens of calls in progress: a caller makes
// one per call, cancels it to interrupt the call (Ctrl-C), and frees it.
var tokens = struct {
	sync.Mutex
	m    map[int64]tokenState
	next int64
}{m: map[int64]tokenState{}}

type tokenState struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newToken() int64 {
	ctx, cancel := context.WithCancel(context.Background())
	tokens.Lock()
	defer tokens.Unlock()
	tokens.next++
	tokens.m[tokens.next] = tokenState{ctx, cancel}
	return tokens.next
}

// tokenContext is the context of token t; 0 (or an unknown token) is a
// call that cannot be interrupted.
func tokenContext(t int64) context.Context {
	tokens.Lock()
	defer tokens.Unlock()
	if s, ok := tokens.m[t]; ok {
		return s.ctx
	}
	return context.Background()
}

func cancelToken(t int64) {
	tokens.Lock()
	s, ok := tokens.m[t]
	tokens.Unlock()
	if ok {
		s.cancel()
	}
}

func freeToken(t int64) {
	tokens.Lock()
	s, ok := tokens.m[t]
	delete(tokens.m, t)
	tokens.Unlock()
	if ok {
		s.cancel()
	}
}
