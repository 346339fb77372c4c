// Batched forward auction with ε-scaling on squared distances computed on the fly.
// The algorithm is `src/assignment/auction.rs`; its CPU twin is that code run in f32 with
// `Bidding::Jacobi`: the same phases, rounds, tie-breaks and float operations (no FMA
// contraction), so prices, assignments and counters agree exactly.
//
// One block of AU_THREADS per problem b (grid nb): rows (nb, n, dim) observed points,
// cols (nb, m, dim) model points, 1 ≤ n ≤ m, 1 ≤ dim ≤ 3; C[i, j] = ‖rows_i − cols_j‖²,
// padded to m×m with m − n zero-cost dummy rows (i ≥ n). In/out state per problem:
// prices (nb, m) and assign (nb, m) (column of each padded row): a valid permutation with
// finite prices is a warm start, anything else (e.g. all AU_NONE) a cold one; written back
// only on success. stats (nb, AU_STATS) = [status, warm, phases, bids, rounds] (counts
// saturate at 2³² − 1).
//
// Per round (Jacobi): the free rows are listed in ascending order (real rows first); one warp
// per free real row scans the m columns (lanes stride over j) for the best and second-best
// C[i, j] + p_j and bids p + (w₂ − w₁) + max(ε, 2 ulp(p)) with an atomicMax on the packed
// (bid, row) of its column; the free dummies bid jointly (one warp: the k cheapest columns
// by (price, index) at q + max(ε, 2 ulp(q)), q the (k+1)-th lowest price); then every column
// with a bid takes the highest (ties: the lowest row). ε₀ = (max C − min C)/2, ε ← max(ε/5,
// ε_final) per phase, assignments reset per phase, at most max_bids bids per phase.
//
// Shared memory (dynamic, 28 bytes per column): slot (m) u64 packed bids, p (m) prices,
// owner (m), col_of (m), list (m) free rows, tgt (m) dummy targets; m ≤ 1746 within 48 KiB.

#define AU_THREADS 512
#define AU_NONE 0xffffffffu
#define AU_STATS 5
#define AU_OK 0
#define AU_CAP 1       // a phase needed more than max_bids bids
#define AU_NONFINITE 2 // a cost (or the cost range) is not finite
#define AU_OVERFLOW 3  // a price overflowed

// C[i, j] = Σ_k (r_k − c_k)² from 0 in k order without FMA (the twin's `Points::cost`), for
// the row point (r0, r1, r2) (coordinates ≥ dim unused) and the column point c.
__device__ __forceinline__ float au_cost(float r0, float r1, float r2, const float* c, int dim) {
    float t = __fsub_rn(r0, c[0]);
    float acc = __fmul_rn(t, t);
    if (dim > 1) {
        t = __fsub_rn(r1, c[1]);
        acc = __fadd_rn(acc, __fmul_rn(t, t));
    }
    if (dim > 2) {
        t = __fsub_rn(r2, c[2]);
        acc = __fadd_rn(acc, __fmul_rn(t, t));
    }
    return acc;
}

// C[i, j] for rows R (n, dim) and cols C (m, dim).
__device__ __forceinline__ float au_cost_ij(const float* R, const float* C, int dim, size_t i,
                                            size_t j) {
    const float* r = R + i * dim;
    return au_cost(r[0], dim > 1 ? r[1] : 0.0f, dim > 2 ? r[2] : 0.0f, C + j * dim, dim);
}

// 2 ulp(x) = 2·(next_up(|x|) − |x|) (the twin's `two_ulp`).
__device__ __forceinline__ float au_two_ulp(float x) {
    float a = fabsf(x);
    float u = __fsub_rn(__int_as_float(__float_as_int(a) + 1), a);
    return __fadd_rn(u, u);
}

// The bid for a column of price p: p + ((w₂ − w₁) + max(ε, 2 ulp(p))); w₂ = w₁ when m = 1.
__device__ __forceinline__ float au_bid(float p, float w1, float w2, float eps) {
    if (w2 == CF_INF) w2 = w1;
    float e = fmaxf(eps, au_two_ulp(p));
    return __fadd_rn(p, __fadd_rn(__fsub_rn(w2, w1), e));
}

// Float → unsigned with the same order, and back.
__device__ __forceinline__ unsigned int au_ord(float x) {
    unsigned int u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float au_unord(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

// A bid packed for atomicMax: higher bid first, then lower row.
__device__ __forceinline__ unsigned long long au_pack_bid(float bid, unsigned int row) {
    return ((unsigned long long)au_ord(bid) << 32) | (AU_NONE - row);
}

// Min / max of v over the block (every thread gets it); s holds 32 floats of shared memory.
__device__ __forceinline__ float au_block_min(float v, float* s) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) s[warp] = v;
    __syncthreads();
    v = s[0];
    for (int w = 1; w < nwarps; w++) v = fminf(v, s[w]);
    return v;
}
__device__ __forceinline__ float au_block_max(float v, float* s) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) s[warp] = v;
    __syncthreads();
    v = s[0];
    for (int w = 1; w < nwarps; w++) v = fmaxf(v, s[w]);
    return v;
}

// Best w₁ (column j1) and second-best w₂ of w_j = C[i, j] + p_j (dummy rows: p_j) over the m
// columns, computed by one warp (every lane gets the result). Ties in w₁ go to the first
// column in the order i, i+1, …, m−1, 0, …, i−1; w₂ is the second smallest counted with
// multiplicity (the twin's `best_two`).
__device__ __forceinline__ void au_best_two(const float* R, const float* C, const float* p,
                                            int n, int m, int dim, unsigned int i, float& w1,
                                            unsigned int& j1, float& w2) {
    const unsigned int lane = threadIdx.x & 31;
    const bool real = i < (unsigned int)n;
    const float* ri = R + (size_t)i * dim;
    const float r0 = real ? ri[0] : 0.0f;
    const float r1 = real && dim > 1 ? ri[1] : 0.0f;
    const float r2 = real && dim > 2 ? ri[2] : 0.0f;
    float b1 = CF_INF, b2 = CF_INF;
    unsigned int bj = AU_NONE, bk = AU_NONE;
    for (unsigned int j = lane; j < (unsigned int)m; j += 32) {
        float w = real ? __fadd_rn(au_cost(r0, r1, r2, C + (size_t)j * dim, dim), p[j]) : p[j];
        unsigned int key = j >= i ? j - i : j + m - i;
        if (w < b1 || (w == b1 && key < bk)) {
            b2 = b1;
            b1 = w;
            bj = j;
            bk = key;
        } else if (w < b2) {
            b2 = w;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float o1 = __shfl_xor_sync(0xffffffffu, b1, o);
        float o2 = __shfl_xor_sync(0xffffffffu, b2, o);
        unsigned int oj = __shfl_xor_sync(0xffffffffu, bj, o);
        unsigned int ok = __shfl_xor_sync(0xffffffffu, bk, o);
        if (o1 < b1 || (o1 == b1 && ok < bk)) {
            b2 = fminf(b1, o2);
            b1 = o1;
            bj = oj;
            bk = ok;
        } else {
            b2 = fminf(b2, o1);
        }
    }
    w1 = b1;
    j1 = bj;
    w2 = b2;
}

// Appends the rows i in [lo, hi) with col_of[i] == AU_NONE to list[at…] in ascending order;
// returns the new end (the same in every thread). s holds 32 unsigned ints of shared memory.
__device__ __forceinline__ unsigned int au_compact(const unsigned int* col_of, int lo, int hi,
                                                   unsigned int* list, unsigned int at,
                                                   unsigned int* s) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int base = lo; base < hi; base += blockDim.x) {
        int i = base + threadIdx.x;
        bool f = i < hi && col_of[i] == AU_NONE;
        unsigned int ballot = __ballot_sync(0xffffffffu, f);
        __syncthreads();
        if (lane == 0) s[warp] = __popc(ballot);
        __syncthreads();
        unsigned int off = 0, chunk = 0;
        for (int w = 0; w < nwarps; w++) {
            if (w < warp) off += s[w];
            chunk += s[w];
        }
        if (f) list[at + off + __popc(ballot & ((1u << lane) - 1u))] = (unsigned int)i;
        at += chunk;
    }
    return at;
}

extern "C" __global__ void __launch_bounds__(AU_THREADS)
    auction_points_f32(const float* rows, const float* cols, int nb, int n, int m, int dim,
                       float eps_final, int max_bids, float* prices, unsigned int* assign,
                       unsigned int* stats) {
    extern __shared__ unsigned long long au_smem[];
    unsigned long long* slot = au_smem;
    float* p = (float*)(slot + m);
    unsigned int* owner = (unsigned int*)(p + m);
    unsigned int* col_of = owner + m;
    unsigned int* list = col_of + m;
    unsigned int* tgt = list + m;
    __shared__ float s_f[32];
    __shared__ unsigned int s_u[32];

    const int b = blockIdx.x;
    if (b >= nb) return;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
    const float* R = rows + (size_t)b * n * dim;
    const float* C = cols + (size_t)b * m * dim;
    float* P = prices + (size_t)b * m;
    unsigned int* A = assign + (size_t)b * m;
    unsigned int* S = stats + (size_t)b * AU_STATS;

    // ε₀ from the cost range over the padded matrix (dummy rows cost 0).
    float lo = n < m ? 0.0f : CF_INF, hi = n < m ? 0.0f : -CF_INF;
    int bad = 0;
    const long long nm = (long long)n * m;
    for (long long e = tid; e < nm; e += blockDim.x) {
        int i = (int)(e / m), j = (int)(e % m);
        float c = au_cost_ij(R, C, dim, i, j);
        if (!isfinite(c)) bad = 1;
        lo = fminf(lo, c);
        hi = fmaxf(hi, c);
    }
    bad = __syncthreads_or(bad);
    lo = au_block_min(lo, s_f);
    hi = au_block_max(hi, s_f);
    const float eps0 = __fmul_rn(__fsub_rn(hi, lo), 0.5f);
    if (bad || !isfinite(eps0)) {
        if (tid == 0) {
            S[0] = AU_NONFINITE;
            for (int k = 1; k < AU_STATS; k++) S[k] = 0;
        }
        return;
    }

    // Warm start: a permutation with finite prices, shifted to min p = 0, whose largest ε-CS
    // violation g under these costs is below ε₀ starts the scaling at max(g, ε_final).
    int ok = 1;
    for (int j = tid; j < m; j += blockDim.x) {
        p[j] = P[j];
        col_of[j] = A[j];
        owner[j] = AU_NONE;
        if (!isfinite(p[j])) ok = 0;
    }
    __syncthreads();
    for (int i = tid; i < m; i += blockDim.x) {
        unsigned int c = col_of[i];
        if (c >= (unsigned int)m || atomicCAS(&owner[c], AU_NONE, (unsigned int)i) != AU_NONE)
            ok = 0;
    }
    ok = __syncthreads_and(ok);
    int warm = 0;
    float eps = fmaxf(eps0, eps_final);
    if (ok) {
        float pmin = CF_INF;
        for (int j = tid; j < m; j += blockDim.x) pmin = fminf(pmin, p[j]);
        pmin = au_block_min(pmin, s_f);
        for (int j = tid; j < m; j += blockDim.x) p[j] = __fsub_rn(p[j], pmin);
        __syncthreads();
        float gap = 0.0f;
        for (int i = warp; i < m; i += nwarps) {
            float w1, w2;
            unsigned int j1;
            au_best_two(R, C, p, n, m, dim, (unsigned int)i, w1, j1, w2);
            unsigned int c = col_of[i];
            float own = i < n ? __fadd_rn(au_cost_ij(R, C, dim, i, c), p[c]) : p[c];
            gap = fmaxf(gap, __fsub_rn(own, w1));
        }
        gap = au_block_max(gap, s_f);
        if (gap < eps0) {
            warm = 1;
            eps = fmaxf(gap, eps_final);
        }
    }
    if (!warm) {
        for (int j = tid; j < m; j += blockDim.x) p[j] = 0.0f;
    }

    int status = AU_OK;
    unsigned int phases = 0;
    unsigned long long bids = 0, rounds = 0;
    for (;;) {
        for (int j = tid; j < m; j += blockDim.x) {
            owner[j] = AU_NONE;
            col_of[j] = AU_NONE;
            slot[j] = 0ull;
        }
        __syncthreads();
        unsigned long long phase_bids = 0;
        for (;;) {
            const unsigned int r = au_compact(col_of, 0, n, list, 0, s_u);
            const unsigned int total = au_compact(col_of, n, m, list, r, s_u);
            __syncthreads(); // list complete
            const unsigned int k = total - r;
            if (total == 0) break;
            if (phase_bids + total > (unsigned long long)max_bids) {
                status = AU_CAP;
                break;
            }
            phase_bids += total;
            rounds++;
            int overflow = 0;
            // real rows: one warp per free row (the last warp bids for the dummies if any)
            const int bidders = k > 0 ? nwarps - 1 : nwarps;
            if (warp < bidders) {
                for (unsigned int t = warp; t < r; t += bidders) {
                    const unsigned int i = list[t];
                    float w1, w2;
                    unsigned int j1;
                    au_best_two(R, C, p, n, m, dim, i, w1, j1, w2);
                    if (lane == 0) {
                        float bid = au_bid(p[j1], w1, w2, eps);
                        if (isfinite(bid))
                            atomicMax(&slot[j1], au_pack_bid(bid, i));
                        else
                            overflow = 1;
                    }
                }
            } else {
                // dummies: the k + 1 cheapest columns by (price, index), one selection pass each
                unsigned long long prev = 0ull, key = 0ull;
                for (unsigned int t = 0; t <= k; t++) {
                    key = ~0ull;
                    for (int j = lane; j < m; j += 32) {
                        unsigned long long kj = ((unsigned long long)au_ord(p[j]) << 32) | j;
                        if (kj > prev && kj < key) key = kj;
                    }
                    for (int o = 16; o > 0; o >>= 1) {
                        unsigned long long ko = __shfl_xor_sync(0xffffffffu, key, o);
                        key = ko < key ? ko : key;
                    }
                    if (t < k && lane == 0) tgt[t] = (unsigned int)(key & 0xffffffffull);
                    prev = key;
                }
                __syncwarp();
                const float q = au_unord((unsigned int)(key >> 32));
                const float qbid = __fadd_rn(q, fmaxf(eps, au_two_ulp(q)));
                if (!isfinite(qbid)) {
                    overflow = 1;
                } else {
                    for (unsigned int t = lane; t < k; t += 32)
                        atomicMax(&slot[tgt[t]], au_pack_bid(qbid, list[r + t]));
                }
            }
            if (__syncthreads_or(overflow)) {
                status = AU_OVERFLOW;
                break;
            }
            // every column with a bid takes the highest; its previous owner becomes free
            for (int j = tid; j < m; j += blockDim.x) {
                unsigned long long s = slot[j];
                if (s == 0ull) continue;
                unsigned int row = AU_NONE - (unsigned int)(s & 0xffffffffull);
                unsigned int old = owner[j];
                if (old != AU_NONE) col_of[old] = AU_NONE;
                owner[j] = row;
                col_of[row] = (unsigned int)j;
                p[j] = au_unord((unsigned int)(s >> 32));
                slot[j] = 0ull;
            }
            __syncthreads();
        }
        if (status != AU_OK) break;
        bids += phase_bids;
        phases++;
        if (eps <= eps_final) break;
        eps = fmaxf(__fdiv_rn(eps, 5.0f), eps_final);
    }

    if (status == AU_OK) {
        for (int j = tid; j < m; j += blockDim.x) {
            P[j] = p[j];
            A[j] = col_of[j];
        }
    }
    if (tid == 0) {
        S[0] = (unsigned int)status;
        S[1] = (unsigned int)warm;
        S[2] = phases;
        S[3] = bids > 0xffffffffull ? 0xffffffffu : (unsigned int)bids;
        S[4] = rounds > 0xffffffffull ? 0xffffffffu : (unsigned int)rounds;
    }
}
