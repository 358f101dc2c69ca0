// IVF-PQ list scan kernels. Launched by gpu_cuda.go; compiled to PTX by
// gen.sh. Scores are "smaller is better"; ties are broken by id so that
// the result is the same set, in the same order, as the CPU's TopK.

#include <math_constants.h>

#define KSUB 256

// less orders (distance, key) pairs as vecmath.TopK does: by distance,
// then by id. Entries with key < 0 are empty and sort last.
struct ById {
    const long long *ids; // ids of the chunk (kernel 1) or nullptr (kernel 2)
    long long base;       // index in ids of the list's entry 0
    __device__ long long id(long long key) const {
        if (key < 0) return 0x7fffffffffffffffLL;
        return ids ? ids[base + key] : key;
    }
    __device__ bool less(float da, long long ka, float db, long long kb) const {
        if (ka < 0) return false;
        if (kb < 0) return true;
        if (da < db) return true;
        if (da > db) return false;
        return id(ka) < id(kb);
    }
};

// bitonic_sort sorts n (a power of two) entries of shared memory in
// ascending order with all threads of the block.
template <typename Key>
__device__ void bitonic_sort(float *d, Key *key, int n, const ById &cmp) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
                int lo = 2 * i - (i & (stride - 1));
                int hi = lo + stride;
                bool asc = (lo & size) == 0;
                if (cmp.less(d[hi], (long long)key[hi], d[lo], (long long)key[lo]) == asc) {
                    float td = d[lo]; d[lo] = d[hi]; d[hi] = td;
                    Key tk = key[lo]; key[lo] = key[hi]; key[hi] = tk;
                }
            }
            __syncthreads();
        }
    }
}

// compact sorts the *n entries held and keeps the best min(*n, k); once k
// are kept, *thr becomes the k-th distance: a candidate must not exceed
// it to enter (<= lets ties reach the id comparison).
template <typename Key>
__device__ void compact(float *d, Key *key, int *n, float *thr, int k, int sortN, const ById &cmp) {
    int have = *n;
    for (int i = have + threadIdx.x; i < sortN; i += blockDim.x) {
        d[i] = CUDART_INF_F;
        key[i] = (Key)-1;
    }
    __syncthreads();
    bitonic_sort(d, key, sortN, cmp);
    if (threadIdx.x == 0) {
        int keep = have < k ? have : k;
        *n = keep;
        if (keep == k) *thr = d[k - 1];
    }
    __syncthreads();
}

// ivfpq_scan scans one work item of a chunk: item itemBase+blockIdx.x,
// a range [itemStart, itemEnd) of the codes of one probed list for one
// query. The chunk's codes and ids (entries [entryBase, ...) of the
// block's entry space, see plan.go) are in codes and ids, so entry e of
// probed list pl is at index listStart[pl]-entryBase+e. The kernel builds
// the pair's table in shared memory (per-query term + per-list term,
// coarse term added to sub-table 0, in the CPU's order of operations;
// the per-list term is row pl of ltab, or row ltabRow[pl] when ltabRow
// is given: ltab is then a whole precomputed table kept on the device),
// sums one entry per sub-quantizer for each code, and keeps the k best
// of the range in shared memory, writing them (padded with +Inf and id
// -1) to outD/outI[item*k ...]. Dynamic shared memory: M*256 floats, then
// sortN floats and sortN ints (positions in the list); sortN is a power
// of two >= k + blockDim.x.
extern "C" __global__ void ivfpq_scan(
    const float *qtab, const float *ltab, const int *ltabRow, const unsigned char *codes, const long long *ids,
    const long long *listStart, const int *itemPair, const int *itemStart, const int *itemEnd,
    const int *pairQuery, const int *pairList, const float *pairCoarse,
    long long M, long long k, long long sortN, float *outD, long long *outI,
    long long itemBase, long long entryBase) {
    extern __shared__ float smem[];
    __shared__ int n;
    __shared__ float thr;
    const int mk = (int)M * KSUB;
    float *tab = smem;
    float *bd = tab + mk;
    int *bp = (int *)(bd + sortN);

    const long long item = itemBase + blockIdx.x;
    const int pair = itemPair[item];
    const int q = pairQuery[pair];
    const int pl = pairList[pair];
    const float coarse = pairCoarse[pair];
    const float *qt = qtab + (long long)q * mk;
    const float *lt = ltab ? ltab + (long long)(ltabRow ? ltabRow[pl] : pl) * mk : nullptr;
    for (int i = threadIdx.x; i < mk; i += blockDim.x) {
        float v = lt ? __fadd_rn(lt[i], qt[i]) : qt[i];
        if (i < KSUB && coarse != 0.0f) v = __fadd_rn(v, coarse);
        tab[i] = v;
    }
    if (threadIdx.x == 0) {
        n = 0;
        thr = CUDART_INF_F;
    }
    __syncthreads();

    const long long base = listStart[pl] - entryBase; // may be < 0: pos >= itemStart keeps indexes in the chunk
    ById cmp{ids, base};
    const int start = itemStart[item], end = itemEnd[item];
    for (int tile = start; tile < end; tile += blockDim.x) {
        if (n + (int)blockDim.x > sortN) compact(bd, bp, &n, &thr, (int)k, (int)sortN, cmp);
        int pos = tile + threadIdx.x;
        if (pos < end) {
            const unsigned char *c = codes + (base + pos) * M;
            float s = 0.0f;
            if ((M & 3) == 0) {
                // Four code bytes per load: every code starts at a multiple
                // of M bytes from a 256-byte aligned buffer, so the words
                // are aligned. Same additions, same order, as below.
                const unsigned int *w = (const unsigned int *)c;
                for (int j = 0; j < M; j += 4) {
                    unsigned int v = w[j >> 2];
                    s = __fadd_rn(s, tab[j * KSUB + (v & 0xff)]);
                    s = __fadd_rn(s, tab[(j + 1) * KSUB + ((v >> 8) & 0xff)]);
                    s = __fadd_rn(s, tab[(j + 2) * KSUB + ((v >> 16) & 0xff)]);
                    s = __fadd_rn(s, tab[(j + 3) * KSUB + (v >> 24)]);
                }
            } else {
                for (int j = 0; j < M; j++) s = __fadd_rn(s, tab[j * KSUB + c[j]]);
            }
            if (s <= thr) { // drops NaN, as TopK.Push does
                int slot = atomicAdd(&n, 1);
                bd[slot] = s;
                bp[slot] = pos;
            }
        }
        __syncthreads();
    }
    compact(bd, bp, &n, &thr, (int)k, (int)sortN, cmp);
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        bool has = i < n;
        outD[item * k + i] = has ? bd[i] : CUDART_INF_F;
        outI[item * k + i] = has ? ids[base + bp[i]] : -1;
    }
}

// ivfpq_merge merges, for query blockIdx.x, the k-best lists of its work
// items qItems[qItemStart[q] .. qItemStart[q+1]) (rows of inD/inI, k
// entries each) into its final k best, sorted, padded with +Inf and -1.
// Dynamic shared memory: sortN long longs then sortN floats; sortN is a
// power of two >= k + blockDim.x.
extern "C" __global__ void ivfpq_merge(
    const float *inD, const long long *inI, const int *qItemStart, const int *qItems,
    long long k, long long sortN, float *outD, long long *outI) {
    extern __shared__ long long smem64[];
    __shared__ int n;
    __shared__ float thr;
    long long *bi = smem64;
    float *bd = (float *)(bi + sortN);
    const int q = blockIdx.x;
    ById cmp{nullptr, 0};
    if (threadIdx.x == 0) {
        n = 0;
        thr = CUDART_INF_F;
    }
    __syncthreads();
    for (int it = qItemStart[q]; it < qItemStart[q + 1]; it++) {
        const long long row = (long long)qItems[it] * k;
        for (int lo = 0; lo < k; lo += blockDim.x) {
            if (n + (int)blockDim.x > sortN) compact(bd, bi, &n, &thr, (int)k, (int)sortN, cmp);
            int i = lo + threadIdx.x;
            if (i < k) {
                long long id = inI[row + i];
                float v = inD[row + i];
                if (id >= 0 && v <= thr) {
                    int slot = atomicAdd(&n, 1);
                    bd[slot] = v;
                    bi[slot] = id;
                }
            }
            __syncthreads();
        }
    }
    compact(bd, bi, &n, &thr, (int)k, (int)sortN, cmp);
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        bool has = i < n;
        outD[(long long)q * k + i] = has ? bd[i] : CUDART_INF_F;
        outI[(long long)q * k + i] = has ? bi[i] : -1;
    }
}
