// factored.cuh: the first MLP layer factored over the step's distinct users and items, as the
// CPU backend does (crates/ncf-core/src/neumf_cpu/factored.rs), with deterministic reductions.
//
// The MLP input is [E_u || E_i] and nothing comes between it and layer 0, so
// Z0 = E_u W_u^T + E_i W_i^T (+ b0): per side, the distinct ids of the batch get dense slots in
// id order (ncf_mark, ncf_slots), their embedding rows are gathered once (ncf_gather_rows) and
// multiplied once by a GEMM (host, cuBLAS) into P; each sample's Z0 row is P_u[slot] + P_i[slot]
// (ncf_factored_z). Backward: the samples are sorted by slot with a stable radix sort
// (ncf_radix_hist, ncf_scan, ncf_radix_scatter: same bits for any launch, no atomics on floats),
// dZ0 rows are summed per slot in sample order (ncf_segment_sum: one warp per slot, FP32,
// sequential, so the sum has the bits of the CPU twin's), and two GEMMs per side give dW0's
// columns and the distinct rows' embedding gradients, added once per row (ncf_scatter_rows).
// Avoids materialising x0 [batch, 2e] and the per-sample first-layer GEMMs (61 % of the step's
// GEMM FLOPs at NVIDIA's config) and the per-sample embedding atomics.
//
// CPU twins: crates/ncf-cuda/src/factored.rs (host), checked on the host emulator in CI
// (kernels/emu/factored.cpp) and on a GPU by ncf_cuda::check::factored.
#pragma once

// Radix sort digit width and tile: 256 threads, 4 consecutive elements each.
#define NCF_RADIX_BITS 8u
#define NCF_RADIX 256u
#define NCF_TILE 1024u

// flags[ids[b]] = 1 for every sample (flags zero before; idempotent writes, no atomics).
extern "C" __global__ void ncf_mark(const u32* __restrict__ ids, u32 n, u32* flags) {
    NCF_FOR(b, n) flags[ids[b]] = 1u;
}

// Exclusive prefix sum of x[0..len) in place by one block of blockDim.x (a power of two <= 1024)
// threads, each owning a contiguous chunk; *total = the sum. Deterministic (integers, fixed order).
__device__ void ncf_block_exclusive_scan(u32* x, u64 len, u32* total) {
    __shared__ u32 part[1024];
    u32 t = threadIdx.x, nt = blockDim.x;
    u64 chunk = (len + nt - 1) / nt;
    u64 lo = min((u64)t * chunk, len), hi = min(lo + chunk, len);
    u32 s = 0;
    for (u64 i = lo; i < hi; ++i) s += x[i];
    part[t] = s;
    __syncthreads();
    // Hillis-Steele inclusive scan of the per-thread sums.
    for (u32 o = 1; o < nt; o <<= 1) {
        u32 v = t >= o ? part[t - o] : 0u;
        __syncthreads();
        part[t] += v;
        __syncthreads();
    }
    u32 run = t == 0 ? 0u : part[t - 1];
    for (u64 i = lo; i < hi; ++i) {
        u32 v = x[i];
        x[i] = run;
        run += v;
    }
    if (t == nt - 1 && total) *total = part[nt - 1];
}

// One block: slots[id] = number of marked ids below id, list[slot] = id, *count = distinct ids;
// flags are cleared on the way (ready for the next step).
extern "C" __global__ void ncf_slots(u32* flags, u32 len, u32* slots, u32* list, u32* count) {
    for (u32 i = threadIdx.x; i < len; i += blockDim.x) slots[i] = flags[i];
    __syncthreads();
    ncf_block_exclusive_scan(slots, len, count);
    __syncthreads();
    for (u32 i = threadIdx.x; i < len; i += blockDim.x) {
        if (flags[i]) {
            list[slots[i]] = i;
            flags[i] = 0u;
        }
    }
}

// keys[b] = slots[ids[b]] (the sample's slot), vals[b] = b.
extern "C" __global__ void ncf_keys(const u32* __restrict__ ids, u32 n, const u32* __restrict__ slots,
                                    u32* keys, u32* vals) {
    NCF_FOR(b, n) {
        keys[b] = slots[ids[b]];
        vals[b] = (u32)b;
    }
}

// One block: exclusive scan of x[0..len) in place (the radix histograms).
extern "C" __global__ void ncf_scan(u32* x, u32 len) { ncf_block_exclusive_scan(x, len, 0); }

// Radix pass, part 1: hist[d * tiles + tile] = elements of tile with digit d at `shift`.
// One block of 256 threads per tile of NCF_TILE elements.
extern "C" __global__ void ncf_radix_hist(const u32* __restrict__ keys, u32 n, u32 shift, u32* hist) {
    __shared__ u32 cnt[NCF_RADIX];
    u32 tile = blockIdx.x, tiles = gridDim.x;
    for (u32 d = threadIdx.x; d < NCF_RADIX; d += blockDim.x) cnt[d] = 0u;
    __syncthreads();
    u64 base = (u64)tile * NCF_TILE;
    for (u32 k = threadIdx.x; k < NCF_TILE; k += blockDim.x) {
        u64 i = base + k;
        if (i < n) atomicAdd(&cnt[(keys[i] >> shift) & (NCF_RADIX - 1u)], 1u);
    }
    __syncthreads();
    for (u32 d = threadIdx.x; d < NCF_RADIX; d += blockDim.x) hist[(u64)d * tiles + tile] = cnt[d];
}

// Radix pass, part 2: stable scatter of the tile's (key, val) by digit to
// out[scanned hist[d * tiles + tile] + rank among the tile's earlier elements of digit d].
// 256 threads = 8 warps; warp w ranks elements [128 w, 128 w + 128) of the tile in 4 rounds of
// 32 with __match_any_sync, then the warps' counts are prefix-summed per digit in warp order.
extern "C" __global__ void __launch_bounds__(256) ncf_radix_scatter(
    const u32* __restrict__ keys, const u32* __restrict__ vals, u32 n, u32 shift,
    const u32* __restrict__ hist, u32* __restrict__ keys_out, u32* __restrict__ vals_out) {
    __shared__ u32 wcnt[8][NCF_RADIX];
    u32 tile = blockIdx.x, tiles = gridDim.x;
    u32 lane = threadIdx.x & 31u, w = threadIdx.x >> 5;
    for (u32 d = lane; d < NCF_RADIX; d += 32) wcnt[w][d] = 0u;
    __syncwarp();
    u64 base = (u64)tile * NCF_TILE + (u64)w * 128u;
    u32 my_key[4], my_val[4], my_digit[4], my_rank[4];
    bool live[4];
#pragma unroll
    for (u32 r = 0; r < 4; ++r) {
        u64 i = base + r * 32u + lane;
        live[r] = i < n;
        my_key[r] = live[r] ? keys[i] : 0u;
        my_val[r] = live[r] ? vals[i] : 0u;
        // Dead lanes take a digit no live element has (NCF_RADIX), so they rank apart.
        my_digit[r] = live[r] ? (my_key[r] >> shift) & (NCF_RADIX - 1u) : NCF_RADIX;
        u32 peers = __match_any_sync(0xffffffffu, my_digit[r]);
        u32 below = peers & ((1u << lane) - 1u);
        u32 before = live[r] ? wcnt[w][my_digit[r]] : 0u;
        my_rank[r] = before + (u32)__popc(below);
        __syncwarp();
        // The lowest lane of each group of equal digits advances the warp's count.
        if (live[r] && below == 0u) wcnt[w][my_digit[r]] = before + (u32)__popc(peers);
        __syncwarp();
    }
    __syncthreads();
    // Per digit: exclusive prefix over the 8 warps, plus the tile's global offset.
    for (u32 d = threadIdx.x; d < NCF_RADIX; d += blockDim.x) {
        u32 run = hist[(u64)d * tiles + tile];
        for (u32 v = 0; v < 8; ++v) {
            u32 c = wcnt[v][d];
            wcnt[v][d] = run;
            run += c;
        }
    }
    __syncthreads();
#pragma unroll
    for (u32 r = 0; r < 4; ++r) {
        if (!live[r]) continue;
        u32 at = wcnt[w][my_digit[r]] + my_rank[r];
        keys_out[at] = my_key[r];
        vals_out[at] = my_val[r];
    }
}

// starts[k] = first sorted position of slot k, starts[*count] = n (every slot in [0, count)
// occurs: slots are the batch's own ids).
extern "C" __global__ void ncf_segments(const u32* __restrict__ sorted_keys, u32 n,
                                        const u32* __restrict__ count, u32* starts) {
    NCF_FOR(b, n) {
        u32 k = sorted_keys[b];
        if (b == 0 || sorted_keys[b - 1] != k) starts[k] = (u32)b;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) starts[*count] = n;
}

// out[k] = table[list[k]] as act_t for k < *count, 0 for count <= k < cap (GEMM operand rows).
// One warp per row.
extern "C" __global__ void ncf_gather_rows(const u32* __restrict__ list, const u32* __restrict__ count,
                                           u32 cap, u32 e, const float* __restrict__ table,
                                           act_t* __restrict__ out) {
    u32 lane = threadIdx.x & 31u;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    u32 d = *count;
    for (u64 k = warp; k < cap; k += warps) {
        act_t* o = out + k * e;
        if (k < d) {
            const float* row = table + (u64)list[k] * e;
            for (u32 j = lane; j < e; j += 32) o[j] = f_to_act(row[j]);
        } else {
            for (u32 j = lane; j < e; j += 32) o[j] = f_to_act(0.0f);
        }
    }
}

// z[b, o] = pu[ku[b], o] + pi[ki[b], o]: layer 0's pre-activation without the bias (FP32).
extern "C" __global__ void ncf_factored_z(const u32* __restrict__ ku, const u32* __restrict__ ki,
                                          u32 n, u32 width, const float* __restrict__ pu,
                                          const float* __restrict__ pi, float* __restrict__ z) {
    NCF_FOR(x, (u64)n * width) {
        u64 b = x / width, o = x % width;
        z[x] = pu[(u64)ku[b] * width + o] + pi[(u64)ki[b] * width + o];
    }
}

// s[k] = sum over the sorted samples order[starts[k] .. starts[k + 1]) of dz rows, in that order
// (FP32, then act_t), for k < *count; 0 for count <= k < cap. One warp per slot, lanes over units.
extern "C" __global__ void ncf_segment_sum(const act_t* __restrict__ dz, u32 width,
                                           const u32* __restrict__ order,
                                           const u32* __restrict__ starts,
                                           const u32* __restrict__ count, u32 cap,
                                           act_t* __restrict__ s) {
    u32 lane = threadIdx.x & 31u;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    u32 d = *count;
    for (u64 k = warp; k < cap; k += warps) {
        act_t* o = s + k * width;
        u32 lo = k < d ? starts[k] : 0u, hi = k < d ? starts[k + 1] : 0u;
        for (u32 j = lane; j < width; j += 32) {
            float acc = 0.0f;
            for (u32 q = lo; q < hi; ++q) acc += act_to_f(dz[(u64)order[q] * width + j]);
            o[j] = f_to_act(acc);
        }
    }
}

// out[k] = sum over the sorted samples order[starts[k] .. starts[k + 1]) of their FP32 rows
// src[order[q] * stride .. + width), in that order, for k < *count; 0 for count <= k < cap. The
// deterministic scatter of per-sample gradient rows (the MLP input's halves, the GMF rows): one
// warp per slot, lanes over units.
extern "C" __global__ void ncf_segment_sum_rows(const float* __restrict__ src, u32 stride,
                                                u32 width, const u32* __restrict__ order,
                                                const u32* __restrict__ starts,
                                                const u32* __restrict__ count, u32 cap,
                                                float* __restrict__ out) {
    u32 lane = threadIdx.x & 31u;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    u32 d = *count;
    for (u64 k = warp; k < cap; k += warps) {
        float* o = out + k * width;
        u32 lo = k < d ? starts[k] : 0u, hi = k < d ? starts[k + 1] : 0u;
        for (u32 j = lane; j < width; j += 32) {
            float acc = 0.0f;
            for (u32 q = lo; q < hi; ++q) acc += src[(u64)order[q] * stride + j];
            o[j] = acc;
        }
    }
}

// g[list[k]] += rows[k] for k < *count: each distinct row once, so no atomics.
extern "C" __global__ void ncf_scatter_rows(const u32* __restrict__ list, const u32* __restrict__ count,
                                            u32 e, const float* __restrict__ rows, float* g) {
    u32 d = *count;
    NCF_FOR(x, (u64)d * e) {
        u64 k = x / e, j = x % e;
        g[(u64)list[k] * e + j] += rows[x];
    }
}
