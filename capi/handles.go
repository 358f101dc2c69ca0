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

// handle is one open index as the C side knows it: a number in the table.
type handle struct {
	mu sync.Mutex
	// ix is the index; train replaces an untrained one when it throws a
	// training away.
	ix *ivf.Index
	// dir is where train makes the index directory of an index created
	// by create ("" for an index in memory, or once it is on disk).
	dir string
	// training is set while train runs, so a second train waits for no
	// half-trained model.
	training bool
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
// meanwhile.
func acquire(h int64) (*handle, *ivf.Index, func(), error) {
	handles.Lock()
	hd := handles.m[h]
	handles.Unlock()
	if hd == nil {
		return nil, nil, nil, fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	hd.mu.Lock()
	defer hd.mu.Unlock()
	if hd.closed {
		return nil, nil, nil, fmt.Errorf("%w (handle %d)", errClosed, h)
	}
	hd.calls++
	return hd, hd.ix, func() {
		hd.mu.Lock()
		hd.calls--
		last := hd.closed && hd.calls == 0
		ix := hd.ix
		hd.mu.Unlock()
		if last {
			// Nobody is left to hear of an error: the index was
			// committed call by call, and a close releases.
			_ = ix.Close()
		}
	}, nil
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
