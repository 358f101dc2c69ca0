// Command rqbench measures Shelf's residual quantizer on a data set,
// beside FAISS's on the same vectors in the same run:
//
//   - reconstruction MSE of rq.RQ and of faiss.ResidualQuantizer (same
//     layers, same beam, trained on the same rows, measured on the
//     queries), with the training times;
//
//   - for IVF<nlist>,RQ<M>x8 probing every list, recall of the index's
//     table search (norms in one byte, FAISS's ST_norm_cqint8) against an
//     exact search of the decoded vectors (FAISS's ST_decompress), so the
//     cost of the norm byte is measured apart from the codes.
//
//     bash bench/fmnist.sh /tmp/fmnist
//     go run ./bench/rqbench --data /tmp/fmnist/fmnist_base.fvecs --queries /tmp/fmnist/fmnist_query.fvecs \
//     --gt /tmp/fmnist/fmnist_gt.ivecs --layers 4 --beam 5
//
// It may import anything of the project (benchmarks measure it all).
package main
