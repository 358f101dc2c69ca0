package ivf

import (
	"fmt"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/rq"
)

// quantizer is what the index needs of the quantizer of its codes, a
// product quantizer (IVF,PQ) or a residual quantizer (IVF,RQ): both score
// a code by summing one entry per code byte from tables of 256 floats, so
// the tables, the scans, the precomputed tables and the Scanner interface
// serve both.
type quantizer interface {
	// tables is the number of sub-tables: the bytes of a code.
	tables() int
	// distanceTable: entries summing to ||q - decoded||^2.
	distanceTable(q, t []float32)
	// ipTable: entries summing to <q, decoded>.
	ipTable(q, t []float32)
	// ipTables: ipTable of nq queries, nq rows of tables()*256.
	ipTables(q []float32, nq int, t []float32)
	// normTable: entries summing to ||decoded||^2.
	normTable(t []float32)
	encode(x []float32, n int, codes []byte, threads int)
	decode(codes []byte, n int, x []float32)
	floats() int64 // the model's floats (memory)
	marshal() ([]byte, error)
}

type pqQuantizer struct{ *pq.PQ }

func (q pqQuantizer) tables() int                  { return q.M }
func (q pqQuantizer) distanceTable(x, t []float32) { q.ComputeDistanceTable(x, t) }
func (q pqQuantizer) ipTable(x, t []float32)       { q.ComputeInnerProductTable(x, t) }
func (q pqQuantizer) ipTables(x []float32, n int, t []float32) {
	mk := q.M * q.Ksub
	for i := range n {
		q.ComputeInnerProductTable(x[i*q.D:(i+1)*q.D], t[i*mk:(i+1)*mk])
	}
}
func (q pqQuantizer) decode(c []byte, n int, x []float32) { q.Decode(c, n, x) }
func (q pqQuantizer) floats() int64                       { return int64(2 * len(q.Centroids)) } // and transposed
func (q pqQuantizer) marshal() ([]byte, error)            { return q.MarshalBinary() }
func (q pqQuantizer) encode(x []float32, n int, codes []byte, threads int) {
	q.EncodeThreads(x, n, codes, threads)
}

// normTable of a PQ is the sub-centroids' squared norms: the sub-spaces
// are orthogonal, so a code's squared norm is their sum.
func (q pqQuantizer) normTable(t []float32) {
	for m := range q.M {
		sub := q.Centroids[m*q.Ksub*q.Dsub : (m+1)*q.Ksub*q.Dsub]
		vecmath.Norms2(sub, q.Dsub, t[m*q.Ksub:(m+1)*q.Ksub])
	}
}

type rqQuantizer struct{ *rq.RQ }

// rqRefine is the rounds of joint codebook refinement after an RQ's
// layers are trained (rq.TrainOptions.Refine): on Fashion-MNIST, RQ3x8,
// two rounds lower the reconstruction error by 1.7%, below FAISS's.
const rqRefine = 2

func (q rqQuantizer) tables() int                  { return q.Tables() }
func (q rqQuantizer) distanceTable(x, t []float32) { q.ComputeDistanceTable(x, t) }
func (q rqQuantizer) ipTable(x, t []float32)       { q.ComputeInnerProductTable(x, t) }
func (q rqQuantizer) ipTables(x []float32, n int, t []float32) {
	q.ComputeInnerProductTables(x, n, t)
}
func (q rqQuantizer) normTable(t []float32)    { q.NormTable(t) }
func (q rqQuantizer) floats() int64            { return int64(2*len(q.Codebooks) + len(q.NormLevels)) }
func (q rqQuantizer) marshal() ([]byte, error) { return q.MarshalBinary() }

// The index checks sizes before it encodes or decodes, so the errors of
// the rq calls are programming errors.
func (q rqQuantizer) encode(x []float32, n int, codes []byte, threads int) {
	if err := q.Encode(x, n, codes, threads); err != nil {
		panic(fmt.Sprintf("ivf: RQ encode: %v", err))
	}
}

func (q rqQuantizer) decode(c []byte, n int, x []float32) {
	if err := q.Decode(c, q.CodeSize(), n, x); err != nil {
		panic(fmt.Sprintf("ivf: RQ decode: %v", err))
	}
}
