// ncf.cu: the NeuMF training and scoring kernels of the CUDA backend (crates/ncf-cuda).
// Compiled by NVRTC once per activation type: NCF_ACT = 0 (float), 1 (half), 2 (bfloat16).
// Layouts: activations are row-major [batch, width] (= cuBLAS column-major [width, batch]);
// parameters and gradients are the flat FP32 vector of ncf_core::model::Layout.
#include "rng.cuh"
#include "sampler.cuh"

#ifndef NCF_ACT
#define NCF_ACT 0
#endif

#if NCF_ACT == 0
typedef float act_t;
__device__ __forceinline__ float act_to_f(act_t x) { return x; }
__device__ __forceinline__ act_t f_to_act(float x) { return x; }
#elif NCF_ACT == 1
#include <cuda_fp16.h>
typedef __half act_t;
__device__ __forceinline__ float act_to_f(act_t x) { return __half2float(x); }
__device__ __forceinline__ act_t f_to_act(float x) { return __float2half_rn(x); }
#elif NCF_ACT == 2
#include <cuda_bf16.h>
typedef __nv_bfloat16 act_t;
__device__ __forceinline__ float act_to_f(act_t x) { return __bfloat162float(x); }
__device__ __forceinline__ act_t f_to_act(float x) { return __float2bfloat16_rn(x); }
#else
#error "NCF_ACT must be 0, 1 or 2"
#endif

// The per-step arguments in device memory (`step`, 16 words; crates/ncf-cuda/src/fused.rs):
// the epoch, the first position (lo, hi), the epoch permutation's keys and half_bits, the loss
// slot of a queued step, and Adam's step_size, bc2_sqrt, inv_scale (float bits).
#define NCF_STEP_EPOCH 0
#define NCF_STEP_P0 1
#define NCF_STEP_KEYS 4
#define NCF_STEP_HALF_BITS 8
#define NCF_STEP_SLOT 9
#define NCF_STEP_ADAM 12

// Grid-stride loop over [0, n).
#define NCF_FOR(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)gridDim.x * blockDim.x)

__device__ __forceinline__ float ncf_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ---- vectorised access helpers ------------------------------------------------------------------
// The fast paths of the kernels below move 4 elements per access (float4, or 8 bytes of 16-bit
// activations); each kernel checks widths and pointer alignment at run time and falls back to
// its scalar path otherwise, so odd shapes stay correct.

__device__ __forceinline__ bool ncf_aligned(const void* p, u64 bytes) {
    return ((u64)p & (bytes - 1ull)) == 0ull;
}

#if NCF_ACT == 1
__device__ __forceinline__ float ncf_bits_to_f(u32 h) {
    return __half2float(__ushort_as_half((unsigned short)h));
}
__device__ __forceinline__ u32 ncf_f_to_bits(float x) {
    return (u32)__half_as_ushort(__float2half_rn(x));
}
#elif NCF_ACT == 2
__device__ __forceinline__ float ncf_bits_to_f(u32 h) {
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)h));
}
__device__ __forceinline__ u32 ncf_f_to_bits(float x) {
    return (u32)__bfloat16_as_ushort(__float2bfloat16_rn(x));
}
#endif

// Bytes of 4 activations: the alignment the 4-wide act_t accesses need.
#define NCF_ACT4_BYTES (4ull * sizeof(act_t))

__device__ __forceinline__ void ncf_ld_f4(const float* p, float* v) {
    float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
}

__device__ __forceinline__ void ncf_st_f4(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}

// v[0..4) = p[0..4) as float; p aligned to NCF_ACT4_BYTES.
__device__ __forceinline__ void ncf_ld_act4(const act_t* p, float* v) {
#if NCF_ACT == 0
    ncf_ld_f4(p, v);
#else
    uint2 q = *reinterpret_cast<const uint2*>(p);
    v[0] = ncf_bits_to_f(q.x & 0xffffu);
    v[1] = ncf_bits_to_f(q.x >> 16);
    v[2] = ncf_bits_to_f(q.y & 0xffffu);
    v[3] = ncf_bits_to_f(q.y >> 16);
#endif
}

// p[0..4) = (act_t) v[0..4); p aligned to NCF_ACT4_BYTES. Rounding is f_to_act's.
__device__ __forceinline__ void ncf_st_act4(act_t* p, const float* v) {
#if NCF_ACT == 0
    ncf_st_f4(p, v);
#else
    uint2 q;
    q.x = ncf_f_to_bits(v[0]) | (ncf_f_to_bits(v[1]) << 16);
    q.y = ncf_f_to_bits(v[2]) | (ncf_f_to_bits(v[3]) << 16);
    *reinterpret_cast<uint2*>(p) = q;
#endif
}

// v[0..16) = p[0..16) as float; p 16-byte aligned (16-byte accesses for every act_t).
__device__ __forceinline__ void ncf_ld_act16(const act_t* p, float* v) {
#if NCF_ACT == 0
#pragma unroll
    for (int q = 0; q < 4; ++q) ncf_ld_f4(p + 4 * q, v + 4 * q);
#else
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        uint4 q = *reinterpret_cast<const uint4*>(p + 8 * h);
        u32 w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            v[8 * h + 2 * k] = ncf_bits_to_f(w[k] & 0xffffu);
            v[8 * h + 2 * k + 1] = ncf_bits_to_f(w[k] >> 16);
        }
    }
#endif
}

// p[0..16) = (act_t) v[0..16); p 16-byte aligned.
__device__ __forceinline__ void ncf_st_act16(act_t* p, const float* v) {
#if NCF_ACT == 0
#pragma unroll
    for (int q = 0; q < 4; ++q) ncf_st_f4(p + 4 * q, v + 4 * q);
#else
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        u32 w[4];
#pragma unroll
        for (int k = 0; k < 4; ++k)
            w[k] = ncf_f_to_bits(v[8 * h + 2 * k]) | (ncf_f_to_bits(v[8 * h + 2 * k + 1]) << 16);
        *reinterpret_cast<uint4*>(p + 8 * h) = make_uint4(w[0], w[1], w[2], w[3]);
    }
#endif
}

// p[0..4) += v[0..4) atomically (one vector atomic on sm_90+, p 16-byte aligned).
__device__ __forceinline__ void ncf_atomic_add4(float* p, const float* v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
#else
    atomicAdd(p, v[0]);
    atomicAdd(p + 1, v[1]);
    atomicAdd(p + 2, v[2]);
    atomicAdd(p + 3, v[3]);
#endif
}


// ---- RNG test kernels (parity with ncf_core::rng) ------------------------------------------

// out[4*i .. 4*i+4] = block(stream, a0 + i, b, c).
extern "C" __global__ void ncf_philox_blocks(u32 k0, u32 k1, u32 stream, u32 a0, u32 b, u32 c, u32 n,
                                             u32* out) {
    NCF_FOR(i, n) {
        ncf_u32x4 v = ncf_block(k0, k1, stream, a0 + (u32)i, b, c);
        out[4 * i] = v.x; out[4 * i + 1] = v.y; out[4 * i + 2] = v.z; out[4 * i + 3] = v.w;
    }
}

// out[i] = perm.apply(p0 + i).
extern "C" __global__ void ncf_permute(u64 n, u32 half_bits, u32 pk0, u32 pk1, u32 pk2, u32 pk3,
                                       u64 p0, u32 count, u64* out) {
    ncf_perm p = {n, half_bits, pk0, pk1, pk2, pk3};
    NCF_FOR(i, count) out[i] = ncf_perm_apply(p, p0 + i);
}

// ---- per-step sample generation: no host round trip -------------------------------------------

// Samples at shuffled positions p0 .. p0+count of the epoch: (user, item, label) and the
// unshuffled sample index (dropout is keyed by it). *err = 1 + failing index when exact mode fails.
// With `step` (the fused step: NCF_STEP_* words in device memory, uploaded before each step so
// that a captured step replays with the next step's values) the epoch, the first position and
// the permutation come from it instead of the scalar arguments.
extern "C" __global__ void ncf_make_batch(u32 k0, u32 k1, u32 epoch, u32 n_items, int exact, u64 n_pos,
                                         const u32* users, const u32* items, const u64* offsets,
                                         const u32* pos_items, u64 n, u32 half_bits, u32 pk0, u32 pk1,
                                         u32 pk2, u32 pk3, u64 p0, u32 count, u32* out_users,
                                         u32* out_items, float* out_labels, u32* out_sample,
                                         unsigned long long* err, const u32* step) {
    if (step) {
        epoch = step[NCF_STEP_EPOCH];
        p0 = (u64)step[NCF_STEP_P0] | ((u64)step[NCF_STEP_P0 + 1] << 32);
        pk0 = step[NCF_STEP_KEYS];
        pk1 = step[NCF_STEP_KEYS + 1];
        pk2 = step[NCF_STEP_KEYS + 2];
        pk3 = step[NCF_STEP_KEYS + 3];
        half_bits = step[NCF_STEP_HALF_BITS];
    }
    ncf_perm p = {n, half_bits, pk0, pk1, pk2, pk3};
    NCF_FOR(b, count) {
        u64 s = ncf_perm_apply(p, p0 + b);
        u32 u, it;
        float y;
        if (!ncf_sample(k0, k1, epoch, n_items, exact, n_pos, users, items, offsets, pos_items, s, &u,
                        &it, &y)) {
            atomicCAS(err, 0ull, s + 1ull);
        }
        out_users[b] = u;
        out_items[b] = it;
        out_labels[b] = y;
        out_sample[b] = (u32)s;
    }
}

// ---- embeddings ------------------------------------------------------------------------------
// One warp per sample row (32 rows' ids per coalesced load); with e % 4 == 0 and aligned buffers each lane moves 4 floats at a time
// (float4 loads, 8/16-byte stores, float4 atomics on sm_90+), else one element at a time.

// x0[b] = [mlp_user[u_b] || mlp_item[i_b]] as act_t (the MLP input, a GEMM operand).
extern "C" __global__ void ncf_gather(const u32* __restrict__ users, const u32* __restrict__ items,
                                      u32 batch, u32 e, const float* __restrict__ emb_user,
                                      const float* __restrict__ emb_item, act_t* __restrict__ x0) {
    u32 lane = threadIdx.x & 31u;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    bool vec = (e & 3u) == 0 && ncf_aligned(emb_user, 16) && ncf_aligned(emb_item, 16) &&
               ncf_aligned(x0, NCF_ACT4_BYTES);
    // 32 rows per warp at a time: their ids are loaded coalesced and broadcast by shuffles.
    for (u64 b0 = warp * 32ull; b0 < batch; b0 += warps * 32ull) {
        u32 cnt = (u32)min((u64)32, (u64)batch - b0);
        u32 my_u = 0, my_i = 0;
        if (lane < cnt) {
            my_u = users[b0 + lane];
            my_i = items[b0 + lane];
        }
        for (u32 s = 0; s < cnt; ++s) {
            u64 b = b0 + s;
            const float* ru = emb_user + (u64)__shfl_sync(0xffffffffu, my_u, s) * e;
            const float* ri = emb_item + (u64)__shfl_sync(0xffffffffu, my_i, s) * e;
            act_t* xr = x0 + b * 2ull * e;
            if (vec) {
                u32 e4 = e >> 2;
                for (u32 c = lane; c < 2 * e4; c += 32) {
                    float v[4];
                    ncf_ld_f4(c < e4 ? ru + 4 * c : ri + 4 * (c - e4), v);
                    ncf_st_act4(xr + 4 * c, v);
                }
            } else {
                for (u32 j = lane; j < 2 * e; j += 32) xr[j] = f_to_act(j < e ? ru[j] : ri[j - e]);
            }
        }
    }
}

// Gradient of the MLP embeddings: g_user[u_b] += dx0[b, :e], g_item[i_b] += dx0[b, e:].
extern "C" __global__ void ncf_scatter(const u32* __restrict__ users, const u32* __restrict__ items,
                                       u32 batch, u32 e, const float* __restrict__ dx0,
                                       float* g_user, float* g_item) {
    u32 lane = threadIdx.x & 31u;
    u64 warp = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    bool vec = (e & 3u) == 0 && ncf_aligned(g_user, 16) && ncf_aligned(g_item, 16) &&
               ncf_aligned(dx0, 16);
    for (u64 b0 = warp * 32ull; b0 < batch; b0 += warps * 32ull) {
        u32 cnt = (u32)min((u64)32, (u64)batch - b0);
        u32 my_u = 0, my_i = 0;
        if (lane < cnt) {
            my_u = users[b0 + lane];
            my_i = items[b0 + lane];
        }
        for (u32 s = 0; s < cnt; ++s) {
            u64 b = b0 + s;
            float* ru = g_user + (u64)__shfl_sync(0xffffffffu, my_u, s) * e;
            float* ri = g_item + (u64)__shfl_sync(0xffffffffu, my_i, s) * e;
            const float* dr = dx0 + b * 2ull * e;
            if (vec) {
                u32 e4 = e >> 2;
                for (u32 c = lane; c < 2 * e4; c += 32) {
                    float v[4];
                    ncf_ld_f4(dr + 4 * c, v);
                    ncf_atomic_add4(c < e4 ? ru + 4 * c : ri + 4 * (c - e4), v);
                }
            } else {
                for (u32 j = lane; j < 2 * e; j += 32) {
                    if (j < e) atomicAdd(&ru[j], dr[j]);
                    else atomicAdd(&ri[j - e], dr[j]);
                }
            }
        }
    }
}

// ---- fused bias + ReLU + dropout ---------------------------------------------------------------
// A thread owns 16 consecutive units of one row (one Philox block of dropout bytes); the mask is
// recomputed in the backward pass, never stored. Rows per block = blockDim.x / groups; a thread's
// group g (units 16g .. 16g+16) is fixed, so its bias values stay in registers. Fast path (width
// % 16 == 0, 16-byte aligned rows): the row's 16 values are loaded at once (4 x 16 bytes) before
// the Philox block is computed, then stored with 16-byte stores. Else the scalar path with tails.

__device__ __forceinline__ float ncf_keep_scale(ncf_u32x4 blk, u32 t, u32 thr, float v, float scale) {
    return ncf_keep_byte(blk, t, thr) ? v * scale : 0.0f;
}

// a = dropout(relu(z + bias)): avoids materialising the pre-activation with bias and the mask.
extern "C" __global__ void ncf_bias_relu_dropout_fwd(const float* __restrict__ z,
                                                     const float* __restrict__ bias,
                                                     act_t* __restrict__ a,
                                                     const u32* __restrict__ sample, u32 batch,
                                                     u32 width, u32 layer, u32 epoch, u32 k0, u32 k1,
                                                     u32 thr, float scale, const u32* step) {
    if (step) epoch = step[NCF_STEP_EPOCH];
    u32 groups = (width + 15) / 16;
    u32 rows_per_block = blockDim.x / groups;
    u32 g = threadIdx.x % groups, r = threadIdx.x / groups;
    if (r >= rows_per_block) return;
    u64 stride = (u64)gridDim.x * rows_per_block;
    bool vec = (width & 15u) == 0 && ncf_aligned(z, 16) && ncf_aligned(a, 16);
    if (vec) {
        float bv[16];
#pragma unroll
        for (u32 t = 0; t < 16; ++t) bv[t] = bias[g * 16 + t];
        for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += stride) {
            const float* zr = z + b * width + g * 16;
            float v[16];
#pragma unroll
            for (u32 q = 0; q < 4; ++q) ncf_ld_f4(zr + 4 * q, v + 4 * q);
            ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
            if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
#pragma unroll
            for (u32 t = 0; t < 16; ++t) v[t] = ncf_keep_scale(blk, t, thr, fmaxf(v[t] + bv[t], 0.0f), scale);
            act_t* ar = a + b * width + g * 16;
            ncf_st_act16(ar, v);
        }
        return;
    }
    for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += stride) {
        ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
        if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
        const float* zr = z + b * width;
        act_t* ar = a + b * width;
#pragma unroll
        for (u32 t = 0; t < 16; ++t) {
            u32 j = g * 16 + t;
            if (j < width) ar[j] = f_to_act(ncf_keep_scale(blk, t, thr, fmaxf(zr[j] + bias[j], 0.0f), scale));
        }
    }
}

// dz = da * mask * scale * [a > 0]; dbias += sum over rows of dz (FP32, block-reduced).
// Deterministic (`partials` given): each thread's sums go to the block's scratch (dynamic shared
// memory, rows_per_block * groups * 16 floats), each unit is summed over the block's rows in row
// order into partials[blockIdx.x * width + j], and ncf_sum_blocks adds the blocks in block order;
// else (the previous path) shared-memory and global float atomics, whose order varies run to run.
// Launched with ROW_BLOCK = 256 threads (model.rs); the bound keeps 3 blocks per SM resident.
extern "C" __global__ void __launch_bounds__(256, 3)
ncf_bias_relu_dropout_bwd(const float* __restrict__ da,
                          const act_t* __restrict__ a,
                          act_t* __restrict__ dz, float* dbias,
                          const u32* __restrict__ sample, u32 batch,
                          u32 width, u32 layer, u32 epoch, u32 k0, u32 k1,
                          u32 thr, float scale, float* partials, const u32* step) {
    if (step) epoch = step[NCF_STEP_EPOCH];
    extern __shared__ float sbias[];
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) sbias[j] = 0.0f;
    __syncthreads();
    u32 groups = (width + 15) / 16;
    u32 rows_per_block = blockDim.x / groups;
    u32 g = threadIdx.x % groups, r = threadIdx.x / groups;
    u64 stride = (u64)gridDim.x * rows_per_block;
    bool vec = (width & 15u) == 0 && ncf_aligned(da, 16) && ncf_aligned(a, 16) &&
               ncf_aligned(dz, 16);
    if (r < rows_per_block) {
        float acc[16];
#pragma unroll
        for (u32 t = 0; t < 16; ++t) acc[t] = 0.0f;
        if (vec) {
            for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += stride) {
                u64 off = b * width + g * 16;
                float d[16], av[16];
#pragma unroll
                for (u32 q = 0; q < 4; ++q) ncf_ld_f4(da + off + 4 * q, d + 4 * q);
                ncf_ld_act16(a + off, av);
                ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
                if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
#pragma unroll
                for (u32 t = 0; t < 16; ++t) {
                    bool on = ncf_keep_byte(blk, t, thr) && av[t] > 0.0f;
                    d[t] = on ? d[t] * scale : 0.0f;
                    acc[t] += d[t];
                }
                ncf_st_act16(dz + off, d);
            }
        } else {
            for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += stride) {
                ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
                if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
                const float* dar = da + b * width;
                const act_t* ar = a + b * width;
                act_t* dzr = dz + b * width;
#pragma unroll
                for (u32 t = 0; t < 16; ++t) {
                    u32 j = g * 16 + t;
                    if (j < width) {
                        bool on = ncf_keep_byte(blk, t, thr) && act_to_f(ar[j]) > 0.0f;
                        float d = on ? dar[j] * scale : 0.0f;
                        dzr[j] = f_to_act(d);
                        acc[t] += d;
                    }
                }
            }
        }
        if (partials) {
#pragma unroll
            for (u32 t = 0; t < 16; ++t) sbias[(r * groups + g) * 16u + t] = acc[t];
        } else {
#pragma unroll
            for (u32 t = 0; t < 16; ++t) {
                u32 j = g * 16 + t;
                if (j < width) atomicAdd(&sbias[j], acc[t]);
            }
        }
    }
    __syncthreads();
    if (partials) {
        for (u32 j = threadIdx.x; j < width; j += blockDim.x) {
            u32 gg = j / 16u, tt = j % 16u;
            float sum = 0.0f;
            for (u32 rr = 0; rr < rows_per_block; ++rr) sum += sbias[(rr * groups + gg) * 16u + tt];
            partials[(u64)blockIdx.x * width + j] = sum;
        }
        return;
    }
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) atomicAdd(&dbias[j], sbias[j]);
}

// out[j] += sum over blocks b = 0, 1, ... of partials[b * width + j], in block order: the second
// half of a deterministic block reduction.
extern "C" __global__ void ncf_sum_blocks(const float* __restrict__ partials, u32 blocks,
                                          u32 width, float* out) {
    NCF_FOR(j, width) {
        float sum = 0.0f;
        for (u32 b = 0; b < blocks; ++b) sum += partials[(u64)b * width + j];
        out[j] += sum;
    }
}

// partials[blockIdx.x * width + j] = the sum of x[., j] over the block's rows (grid-stride), in
// row order: the fused step's bias gradient of the top MLP layer from the dz ncf_final wrote
// (ncf_sum_blocks adds the blocks in block order). A thread sums 16 units of its rows, as
// ncf_bias_relu_dropout_bwd; width <= 4096.
extern "C" __global__ void __launch_bounds__(256) ncf_col_sums(const act_t* __restrict__ x, u32 batch,
                                                               u32 width, float* __restrict__ partials) {
    __shared__ float s[256 * 16];
    u32 groups = (width + 15) / 16;
    u32 rows_per_block = blockDim.x / groups;
    u32 g = threadIdx.x % groups, r = threadIdx.x / groups;
    u64 stride = (u64)gridDim.x * rows_per_block;
    if (r < rows_per_block) {
        float acc[16];
#pragma unroll
        for (u32 t = 0; t < 16; ++t) acc[t] = 0.0f;
        for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += stride) {
#pragma unroll
            for (u32 t = 0; t < 16; ++t) {
                u32 j = g * 16 + t;
                if (j < width) acc[t] += act_to_f(x[b * width + j]);
            }
        }
#pragma unroll
        for (u32 t = 0; t < 16; ++t) s[(r * groups + g) * 16u + t] = acc[t];
    }
    __syncthreads();
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) {
        u32 gg = j / 16u, tt = j % 16u;
        float sum = 0.0f;
        for (u32 rr = 0; rr < rows_per_block; ++rr) sum += s[(rr * groups + gg) * 16u + tt];
        partials[(u64)blockIdx.x * width + j] = sum;
    }
}

// ---- final layer + sigmoid BCE + its gradients ------------------------------------------------
// One warp per sample: logit = w . [mf_user[u] * mf_item[i] || x_last] + b. Training: loss
// (block-reduced, FP64 accumulator), dlogit = (sigmoid - y) * gscale, and every gradient that
// needs dlogit: final.w/final.b (per-lane registers, block-reduced in shared memory, one global
// atomic per block and weight), GMF embeddings (atomic; float4 atomics on sm_90+), dx_last
// (written). Avoids materialising the GMF product and the logits. Scoring (train = 0): logits
// only. Fast path (f, lout multiples of 4, at most 128 inputs, aligned buffers): lane owns 4
// consecutive inputs; else one input per lane per 32 (any width up to NCF_FINAL_MAX).
#define NCF_FINAL_MAX 512
// Launched with 256 threads (trainer.rs). 3 blocks per SM: at 4 (64 registers) ptxas 13.0 spills
// 4 bytes to local memory in every variant; at 3 it has 72 and none (tests/cuda.rs checks this).
extern "C" __global__ void __launch_bounds__(256, 3) ncf_final(const u32* __restrict__ users, const u32* __restrict__ items,
                                     const float* labels, u32 batch, u32 f,
                                     const float* __restrict__ mf_user,
                                     const float* __restrict__ mf_item,
                                     const act_t* __restrict__ x_last, u32 lout,
                                     const float* __restrict__ fw, const float* __restrict__ fb,
                                     int train, float gscale, float* logits, double* loss_sum,
                                     float* g_mf_user, float* g_mf_item, float* g_fw, float* g_fb,
                                     float* dx_last, float* partials, float* gu_rows,
                                     float* gi_rows, act_t* dz_last, float mask_scale) {
    // The fused step (`dz_last` given, `dx_last` null): the top MLP layer's pre-activation
    // gradient dz = dx * mask_scale where its activation x > 0 (else 0) is written in the
    // activation type instead of the FP32 dx (its bias gradient: ncf_col_sums).
    // Deterministic (`partials` given): per-warp sums in dynamic shared memory (warps x (fin + 2)
    // floats), summed in warp order into partials[blockIdx.x * (fin + 2) + ...] (final.weight,
    // final.bias, loss), which ncf_final_reduce adds in block order; each sample's GMF gradients
    // go to its rows of gu_rows / gi_rows ([batch, f]) for the sorted segment sums. Else float
    // atomics (the previous path).
    extern __shared__ float s_warp[];
    __shared__ float s_gw[NCF_FINAL_MAX];
    __shared__ float s_misc[2];
    u32 fin = f + lout;
    for (u32 j = threadIdx.x; j < fin; j += blockDim.x) s_gw[j] = 0.0f;
    if (threadIdx.x < 2) s_misc[threadIdx.x] = 0.0f;
    __syncthreads();
    u32 lane = threadIdx.x & 31u, warps = blockDim.x >> 5;
    float loss_acc = 0.0f, gb_acc = 0.0f;
    float bias = fb[0];
    bool vec = fin <= 128u && (f & 3u) == 0 && (lout & 3u) == 0 &&
               ncf_aligned(mf_user, 16) &&
               ncf_aligned(mf_item, 16) && ncf_aligned(x_last, NCF_ACT4_BYTES) &&
               ncf_aligned(fw, 16) && ncf_aligned(g_mf_user, 16) && ncf_aligned(g_mf_item, 16) &&
               ncf_aligned(dx_last, 16) && ncf_aligned(dz_last, NCF_ACT4_BYTES);
    if (vec) {
        // Lane owns inputs 4 * lane .. + 4 (all GMF or all MLP as f % 4 == 0), final.weight in
        // registers. A warp takes 32 consecutive samples at once: their ids and labels are loaded
        // coalesced, one per lane, and broadcast by shuffles (no dependent load per sample).
        u32 j0 = 4u * lane;
        bool gmf = j0 < f, mlp = !gmf && j0 < fin;
        float w[4], gw[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            w[k] = j0 < fin ? fw[j0 + k] : 0.0f;
            gw[k] = 0.0f;
        }
        u64 wstride = (u64)gridDim.x * warps * 32ull;
        for (u64 b0 = ((u64)blockIdx.x * warps + (threadIdx.x >> 5)) * 32ull; b0 < batch;
             b0 += wstride) {
            u32 cnt = (u32)min((u64)32, (u64)batch - b0);
            u32 my_u = 0, my_i = 0;
            float my_y = 0.0f;
            if (lane < cnt) {
                my_u = users[b0 + lane];
                my_i = items[b0 + lane];
                if (train) my_y = labels[b0 + lane];
            }
#pragma unroll 2
            for (u32 s = 0; s < cnt; ++s) {
                u64 b = b0 + s;
                u64 u = __shfl_sync(0xffffffffu, my_u, s);
                u64 it = __shfl_sync(0xffffffffu, my_i, s);
                float y = __shfl_sync(0xffffffffu, my_y, s);
                float x[4] = {0.0f, 0.0f, 0.0f, 0.0f}, y2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                if (gmf) {
                    ncf_ld_f4(mf_user + u * f + j0, x);
                    ncf_ld_f4(mf_item + it * f + j0, y2);
                } else if (mlp) {
                    ncf_ld_act4(x_last + b * lout + (j0 - f), x);
                }
                float dot = 0.0f;
                if (gmf) {
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                        float v = x[k] * y2[k];
                        dot += v * w[k];
                    }
                } else {
#pragma unroll
                    for (int k = 0; k < 4; ++k) dot += x[k] * w[k];
                }
                float z = ncf_warp_sum(dot) + bias;
                if (!train) {
                    if (lane == 0) logits[b] = z;
                    continue;
                }
                if (lane == 0) loss_acc += fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
                float sig = 1.0f / (1.0f + expf(-z));
                float dl = (sig - y) * gscale;
                if (lane == 0) gb_acc += dl;
                float dw[4];
#pragma unroll
                for (int k = 0; k < 4; ++k) dw[k] = dl * w[k];
                if (gmf) {
                    float du[4], di[4];
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                        float v = x[k] * y2[k];
                        gw[k] += dl * v;
                        du[k] = dw[k] * y2[k];
                        di[k] = dw[k] * x[k];
                    }
                    if (partials) {
                        ncf_st_f4(gu_rows + b * f + j0, du);
                        ncf_st_f4(gi_rows + b * f + j0, di);
                    } else {
                        ncf_atomic_add4(g_mf_user + u * f + j0, du);
                        ncf_atomic_add4(g_mf_item + it * f + j0, di);
                    }
                } else if (mlp) {
#pragma unroll
                    for (int k = 0; k < 4; ++k) gw[k] += dl * x[k];
                    if (dz_last) {
#pragma unroll
                        for (int k = 0; k < 4; ++k) dw[k] = x[k] > 0.0f ? dw[k] * mask_scale : 0.0f;
                        ncf_st_act4(dz_last + b * lout + (j0 - f), dw);
                    } else {
                        ncf_st_f4(dx_last + b * lout + (j0 - f), dw);
                    }
                }
            }
        }
        if (train && j0 < fin) {
            if (partials) {
                float* sw = s_warp + (threadIdx.x >> 5) * (fin + 2u);
#pragma unroll
                for (int k = 0; k < 4; ++k) sw[j0 + k] = gw[k];
            } else {
#pragma unroll
                for (int k = 0; k < 4; ++k) atomicAdd(&s_gw[j0 + k], gw[k]);
            }
        }
    } else {
        float gw[NCF_FINAL_MAX / 32];
#pragma unroll
        for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) gw[t] = 0.0f;
        for (u64 b = (u64)blockIdx.x * warps + (threadIdx.x >> 5); b < batch;
             b += (u64)gridDim.x * warps) {
            u64 u = users[b], it = items[b];
            float vals[NCF_FINAL_MAX / 32];
            float dot = 0.0f;
#pragma unroll
            for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) {
                u32 j = lane + 32u * t;
                float v = 0.0f;
                if (j < f) v = mf_user[u * f + j] * mf_item[it * f + j];
                else if (j < fin) v = act_to_f(x_last[b * lout + (j - f)]);
                vals[t] = v;
                if (j < fin) dot += v * fw[j];
            }
            float z = ncf_warp_sum(dot) + bias;
            if (!train) {
                if (lane == 0) logits[b] = z;
                continue;
            }
            float y = labels[b];
            if (lane == 0) loss_acc += fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
            float sig = 1.0f / (1.0f + expf(-z));
            float dl = (sig - y) * gscale;
            if (lane == 0) gb_acc += dl;
#pragma unroll
            for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) {
                u32 j = lane + 32u * t;
                if (j < fin) {
                    gw[t] += dl * vals[t];
                    float dw = dl * fw[j];
                    if (j < f && partials) {
                        gu_rows[b * f + j] = dw * mf_item[it * f + j];
                        gi_rows[b * f + j] = dw * mf_user[u * f + j];
                    } else if (j < f) {
                        atomicAdd(&g_mf_user[u * f + j], dw * mf_item[it * f + j]);
                        atomicAdd(&g_mf_item[it * f + j], dw * mf_user[u * f + j]);
                    } else if (dz_last) {
                        dz_last[b * lout + (j - f)] = f_to_act(vals[t] > 0.0f ? dw * mask_scale : 0.0f);
                    } else {
                        dx_last[b * lout + (j - f)] = dw;
                    }
                }
            }
        }
        if (train) {
            float* sw = s_warp + (threadIdx.x >> 5) * (fin + 2u);
#pragma unroll
            for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) {
                u32 j = lane + 32u * t;
                if (j < fin && partials) sw[j] = gw[t];
                else if (j < fin) atomicAdd(&s_gw[j], gw[t]);
            }
        }
    }
    if (!train) return;
    if (partials) {
        if (lane == 0) {
            float* sw = s_warp + (threadIdx.x >> 5) * (fin + 2u);
            sw[fin] = gb_acc;
            sw[fin + 1] = loss_acc;
        }
        __syncthreads();
        for (u32 j = threadIdx.x; j < fin + 2u; j += blockDim.x) {
            float sum = 0.0f;
            for (u32 w = 0; w < warps; ++w) sum += s_warp[w * (fin + 2u) + j];
            partials[(u64)blockIdx.x * (fin + 2u) + j] = sum;
        }
        return;
    }
    if (lane == 0) {
        atomicAdd(&s_misc[0], loss_acc);
        atomicAdd(&s_misc[1], gb_acc);
    }
    __syncthreads();
    for (u32 j = threadIdx.x; j < fin; j += blockDim.x) atomicAdd(&g_fw[j], s_gw[j]);
    if (threadIdx.x == 0) {
        atomicAdd(loss_sum, (double)s_misc[0]);
        atomicAdd(g_fb, s_misc[1]);
    }
}

// The second half of ncf_final's deterministic reduction: over its blocks in block order,
// g_fw[j] += sum of partials[b][j] (j < fin), g_fb += sum of [b][fin], loss_sum += sum of
// [b][fin + 1] (in FP64).
extern "C" __global__ void ncf_final_reduce(const float* __restrict__ partials, u32 blocks,
                                            u32 fin, float* g_fw, float* g_fb, double* loss_sum) {
    NCF_FOR(j, fin + 2u) {
        if (j == fin + 1u) {
            double sum = 0.0;
            for (u32 b = 0; b < blocks; ++b) sum += (double)partials[(u64)b * (fin + 2u) + j];
            *loss_sum += sum;
        } else {
            float sum = 0.0f;
            for (u32 b = 0; b < blocks; ++b) sum += partials[(u64)b * (fin + 2u) + j];
            if (j < fin) g_fw[j] += sum;
            else *g_fb += sum;
        }
    }
}

// ---- precision helpers --------------------------------------------------------------------------

// dst = (act_t) src: the low-precision copy of the FP32 master weights made every step.
extern "C" __global__ void ncf_cast(const float* src, act_t* dst, u64 n) {
    NCF_FOR(i, n) dst[i] = f_to_act(src[i]);
}

// *found = 1 when any gradient is inf or NaN (FP16 loss-scale overflow).
// float4 over the aligned n / 4 prefix, then a scalar tail.
extern "C" __global__ void ncf_check_finite(const float* __restrict__ g, u64 n, int* found) {
    bool bad = false;
    u64 n4 = ncf_aligned(g, 16) ? n / 4 : 0;
    NCF_FOR(q, n4) {
        float v[4];
        ncf_ld_f4(g + 4 * q, v);
        bad |= !isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) || !isfinite(v[3]);
    }
    NCF_FOR(t, n - 4 * n4) bad |= !isfinite(g[4 * n4 + t]);
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31u) == 0) atomicExch(found, 1);
}

// ---- optimiser ------------------------------------------------------------------------------

// slots[step[NCF_STEP_SLOT]] = *loss: a queued step's loss into its slot, the slot read from
// device memory so that a captured step replays into the next slot (one thread).
extern "C" __global__ void ncf_stash_loss(const double* __restrict__ loss, double* __restrict__ slots,
                                          u32 n_slots, const u32* __restrict__ step) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    u32 i = step[NCF_STEP_SLOT];
    if (i < n_slots) slots[i] = *loss;
}

// One element of ncf_adam (the math is torch.optim.Adam's, unchanged by vectorisation).
__device__ __forceinline__ void ncf_adam1(float& pi, float& mi, float& vi, float gi, float lr,
                                          float beta1, float beta2, float eps, float l2,
                                          float step_size, float bc2_sqrt, float inv_scale, int sgd) {
    gi = gi * inv_scale + l2 * pi;
    if (sgd) {
        pi = pi - lr * gi;
        return;
    }
    mi = mi + (1.0f - beta1) * (gi - mi);
    vi = vi * beta2 + (1.0f - beta2) * gi * gi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    pi = pi - step_size * (mi / denom);
}

// One fused step over the whole flat vector, as torch.optim.Adam (or plain SGD), then g = 0.
// g is unscaled by inv_scale first; nothing moves when *found_inf (a skipped FP16 step).
// Fast path: float4 over the 16-byte-aligned prefix of n / 4 quads, then a scalar tail.
extern "C" __global__ void ncf_adam(float* __restrict__ p, float* __restrict__ g,
                                    float* __restrict__ m, float* __restrict__ v, u64 n, float lr,
                                    float beta1, float beta2, float eps, float l2, float step_size,
                                    float bc2_sqrt, float inv_scale, const int* found_inf, int sgd) {
    bool skip = found_inf != 0 && *found_inf != 0;
    bool vec = ncf_aligned(p, 16) && ncf_aligned(g, 16) && ncf_aligned(m, 16) && ncf_aligned(v, 16);
    u64 n4 = vec ? n / 4 : 0;
    NCF_FOR(q, n4) {
        float gq[4], pq[4], mq[4], vq[4];
        ncf_ld_f4(g + 4 * q, gq);
        float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        ncf_st_f4(g + 4 * q, zero);
        if (skip) continue;
        ncf_ld_f4(p + 4 * q, pq);
        if (!sgd) {
            ncf_ld_f4(m + 4 * q, mq);
            ncf_ld_f4(v + 4 * q, vq);
        }
#pragma unroll
        for (int k = 0; k < 4; ++k)
            ncf_adam1(pq[k], mq[k], vq[k], gq[k], lr, beta1, beta2, eps, l2, step_size, bc2_sqrt,
                      inv_scale, sgd);
        ncf_st_f4(p + 4 * q, pq);
        if (!sgd) {
            ncf_st_f4(m + 4 * q, mq);
            ncf_st_f4(v + 4 * q, vq);
        }
    }
    NCF_FOR(t, n - 4 * n4) {
        u64 i = 4 * n4 + t;
        float gi = g[i];
        g[i] = 0.0f;
        if (skip) continue;
        float pi = p[i], mi = 0.0f, vi = 0.0f;
        if (!sgd) {
            mi = m[i];
            vi = v[i];
        }
        ncf_adam1(pi, mi, vi, gi, lr, beta1, beta2, eps, l2, step_size, bc2_sqrt, inv_scale, sgd);
        p[i] = pi;
        if (!sgd) {
            m[i] = mi;
            v[i] = vi;
        }
    }
}

// Adam at its bandwidth floor (the fused step): the same element math as ncf_adam (ncf_adam1:
// the same bits), with each thread owning NCF_ADAM_QUADS float4 quads a block apart (a warp's
// accesses stay coalesced) and all four streams' loads of its quads issued before any math; the
// grid is one wave (SMs x 2 blocks of 256: the launch bound; ptxas gives it ~100 registers, so
// 16 float4 loads per thread, 128 KB per SM, are in flight; bounding it to 4 blocks spills)
// walking chunks of 256 x NCF_ADAM_QUADS quads. No scalar tail: n4 = n / 4 quads, n a multiple
// of 4 (the trainer checks; the flat layout's tensors are 16-float aligned) and p, g, m, v whole
// device allocations (16-byte aligned). The per-step scalars (step_size, bc2_sqrt, inv_scale) are
// read from `hyper` on the device, so that a captured step replays with the next step's values.
#define NCF_ADAM_QUADS 4
extern "C" __global__ void __launch_bounds__(256, 2)
ncf_adam_wide(float* __restrict__ p, float* __restrict__ g, float* __restrict__ m,
              float* __restrict__ v, u64 n4, float lr, float beta1, float beta2, float eps,
              float l2, const float* __restrict__ hyper, const int* found_inf, int sgd) {
    bool skip = found_inf != 0 && *found_inf != 0;
    float step_size = hyper[0], bc2_sqrt = hyper[1], inv_scale = hyper[2];
    u64 chunk = (u64)blockDim.x * NCF_ADAM_QUADS;
    float4* __restrict__ p4 = reinterpret_cast<float4*>(p);
    float4* __restrict__ g4 = reinterpret_cast<float4*>(g);
    float4* __restrict__ m4 = reinterpret_cast<float4*>(m);
    float4* __restrict__ v4 = reinterpret_cast<float4*>(v);
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (u64 base = (u64)blockIdx.x * chunk + threadIdx.x; base < n4; base += (u64)gridDim.x * chunk) {
        float4 gq[NCF_ADAM_QUADS], pq[NCF_ADAM_QUADS], mq[NCF_ADAM_QUADS], vq[NCF_ADAM_QUADS];
#pragma unroll
        for (u32 u = 0; u < NCF_ADAM_QUADS; ++u) {
            u64 q = base + (u64)u * blockDim.x;
            if (q >= n4) continue;
            gq[u] = g4[q];
            if (skip) continue;
            pq[u] = p4[q];
            if (!sgd) {
                mq[u] = m4[q];
                vq[u] = v4[q];
            }
        }
#pragma unroll
        for (u32 u = 0; u < NCF_ADAM_QUADS; ++u) {
            u64 q = base + (u64)u * blockDim.x;
            if (q >= n4) continue;
            g4[q] = zero;
            if (skip) continue;
            float pv[4] = {pq[u].x, pq[u].y, pq[u].z, pq[u].w};
            float gv[4] = {gq[u].x, gq[u].y, gq[u].z, gq[u].w};
            float mv[4] = {0.0f, 0.0f, 0.0f, 0.0f}, vv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (!sgd) {
                mv[0] = mq[u].x, mv[1] = mq[u].y, mv[2] = mq[u].z, mv[3] = mq[u].w;
                vv[0] = vq[u].x, vv[1] = vq[u].y, vv[2] = vq[u].z, vv[3] = vq[u].w;
            }
#pragma unroll
            for (int k = 0; k < 4; ++k)
                ncf_adam1(pv[k], mv[k], vv[k], gv[k], lr, beta1, beta2, eps, l2, step_size, bc2_sqrt,
                          inv_scale, sgd);
            p4[q] = make_float4(pv[0], pv[1], pv[2], pv[3]);
            if (!sgd) {
                m4[q] = make_float4(mv[0], mv[1], mv[2], mv[3]);
                v4[q] = make_float4(vv[0], vv[1], vv[2], vv[3]);
            }
        }
    }
}

// ---- the fused step's MLP layers (GEMM + epilogue in one kernel) -------------------------------
#include "fused.cuh"

// ---- the first layer factored over distinct users and items --------------------------------
#include "factored.cuh"
