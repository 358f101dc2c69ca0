package gpu

import (
	"errors"
	"fmt"
	"time"

	"github.com/shelfdb/shelf/ivf"
)

// Request is one block of queries with their probed lists: ivf's
// ScanRequest, so that a *Scanner is an ivf.Scanner and
// ix.SearchWith(q, nq, k, nprobe, scanner) runs a search on the GPU.
type Request = ivf.ScanRequest

// ListSource reads one inverted list; an ivf Snapshot is one.
type ListSource = ivf.ListSource

// Options configure a Scanner.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// ItemCodes is the most codes of one list one thread block scans for
	// one query (default 4096): long lists are split so that a block of
	// queries spreads over all the GPU's multiprocessors.
	ItemCodes int
	// ChunkBytes bounds the list bytes (codes and ids) uploaded per
	// pipeline step (default 32 MiB; raised to one item's codes when
	// smaller). Two chunks are in flight: one is copied from the store
	// into page-locked memory while the other is uploaded and scanned,
	// so device memory for lists stays 2 x ChunkBytes however many lists
	// a block probes.
	ChunkBytes int64
	// HostThreads copy lists into the staging buffers (0: GOMAXPROCS).
	HostThreads int
	// CacheBytes is the size of the device-side list cache (0: none).
	// Lists probed by a block stay on the GPU for later blocks, least
	// recently used out first, as long as the source's content version
	// (ivf.VersionedSource: index snapshots have one) is unchanged; any
	// change to the index empties it. A cache large enough for the hot
	// lists turns a stream over PCIe into a scan of device memory.
	CacheBytes int64
	// ResidentTableBytes bounds the precomputed table (ScanRequest's
	// Precomputed: an L2 index's NList x M x 256 floats, 16 MiB for
	// IVF1024,PQ16) that the scanner keeps on the device, uploaded once
	// per table instead of the probed lists' rows with every block
	// (default 2 GiB; negative: never kept).
	ResidentTableBytes int64
}

// Stats are a Scanner's cumulative counters.
type Stats struct {
	Blocks    int64 // Scan calls
	Chunks    int64 // pipeline steps
	ListBytes int64 // list codes and ids uploaded
	// TableBytes are per-list tables uploaded: the probed lists' rows
	// with every block, or a resident precomputed table once.
	TableBytes int64
	Stage      time.Duration // copying lists into page-locked memory
	Wait       time.Duration // waiting for the GPU (uploads, kernels)
	Cache      CacheStats
}

// ErrNoCUDA is returned by the constructors in builds without -tags cuda.
var ErrNoCUDA = errors.New("gpu: built without -tags cuda")

// MaxK is the largest k a Scanner selects on the GPU.
const MaxK = 1024

func validate(r *Request) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("gpu: %w", err)
	}
	if r.K > MaxK {
		return fmt.Errorf("gpu: k = %d, the GPU selects at most %d per query", r.K, MaxK)
	}
	return nil
}

// NewShardedScanner returns a scanner that spreads each block's lists
// over shardsPerDevice scanners on each of devices (nil: every visible
// GPU) and merges their results (ivf.ShardedScanner); with one device and
// shardsPerDevice 2 it runs two logical shards on one GPU, each with its
// own context, streams and buffers. opts.Device is ignored.
func NewShardedScanner(devices []int, shardsPerDevice int, opts Options) (*ivf.ShardedScanner, error) {
	if !Available() {
		return nil, ErrNoCUDA
	}
	if devices == nil {
		n, err := deviceCount()
		if err != nil {
			return nil, err
		}
		for d := range n {
			devices = append(devices, d)
		}
	}
	if len(devices) == 0 || shardsPerDevice < 1 {
		return nil, fmt.Errorf("gpu: %d devices x %d shards per device", len(devices), shardsPerDevice)
	}
	var shards []ivf.Scanner
	for _, d := range devices {
		for range shardsPerDevice {
			o := opts
			o.Device = d
			s, err := NewScanner(o)
			if err != nil {
				for _, sh := range shards {
					sh.Close()
				}
				return nil, err
			}
			shards = append(shards, s)
		}
	}
	return ivf.NewShardedScanner(shards...)
}
