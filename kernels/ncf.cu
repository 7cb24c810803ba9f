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

// Grid-stride loop over [0, n).
#define NCF_FOR(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)gridDim.x * blockDim.x)

__device__ __forceinline__ float ncf_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
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
extern "C" __global__ void ncf_make_batch(u32 k0, u32 k1, u32 epoch, u32 n_items, int exact, u64 n_pos,
                                         const u32* users, const u32* items, const u64* offsets,
                                         const u32* pos_items, u64 n, u32 half_bits, u32 pk0, u32 pk1,
                                         u32 pk2, u32 pk3, u64 p0, u32 count, u32* out_users,
                                         u32* out_items, float* out_labels, u32* out_sample,
                                         unsigned long long* err) {
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

// x0[b] = [mlp_user[u_b] || mlp_item[i_b]] as act_t (the MLP input, a GEMM operand).
extern "C" __global__ void ncf_gather(const u32* users, const u32* items, u32 batch, u32 e,
                                      const float* emb_user, const float* emb_item, act_t* x0) {
    u64 w = 2ull * e;
    NCF_FOR(k, (u64)batch * w) {
        u64 b = k / w;
        u32 j = (u32)(k - b * w);
        float v = j < e ? emb_user[(u64)users[b] * e + j] : emb_item[(u64)items[b] * e + (j - e)];
        x0[k] = f_to_act(v);
    }
}

// Gradient of the MLP embeddings: g_user[u_b] += dx0[b, :e], g_item[i_b] += dx0[b, e:].
extern "C" __global__ void ncf_scatter(const u32* users, const u32* items, u32 batch, u32 e,
                                       const float* dx0, float* g_user, float* g_item) {
    u64 w = 2ull * e;
    NCF_FOR(k, (u64)batch * w) {
        u64 b = k / w;
        u32 j = (u32)(k - b * w);
        float g = dx0[k];
        if (j < e) atomicAdd(&g_user[(u64)users[b] * e + j], g);
        else atomicAdd(&g_item[(u64)items[b] * e + (j - e)], g);
    }
}

// ---- fused bias + ReLU + dropout ---------------------------------------------------------------
// A thread owns 16 consecutive units of one row (one Philox block of dropout bytes); the mask is
// recomputed in the backward pass, never stored. Rows per block = blockDim.x / groups.

// a = dropout(relu(z + bias)): avoids materialising the pre-activation with bias and the mask.
extern "C" __global__ void ncf_bias_relu_dropout_fwd(const float* z, const float* bias, act_t* a,
                                                     const u32* sample, u32 batch, u32 width,
                                                     u32 layer, u32 epoch, u32 k0, u32 k1, u32 thr,
                                                     float scale) {
    u32 groups = (width + 15) / 16;
    u32 rows_per_block = blockDim.x / groups;
    u32 g = threadIdx.x % groups, r = threadIdx.x / groups;
    if (r >= rows_per_block) return;
    for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch; b += (u64)gridDim.x * rows_per_block) {
        ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
        if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
        const float* zr = z + b * width;
        act_t* ar = a + b * width;
#pragma unroll
        for (u32 t = 0; t < 16; ++t) {
            u32 j = g * 16 + t;
            if (j < width) {
                float v = fmaxf(zr[j] + bias[j], 0.0f);
                v = ncf_keep_byte(blk, j, thr) ? v * scale : 0.0f;
                ar[j] = f_to_act(v);
            }
        }
    }
}

// dz = da * mask * scale * [a > 0]; dbias += sum over rows of dz (FP32, block-reduced).
extern "C" __global__ void ncf_bias_relu_dropout_bwd(const float* da, const act_t* a, act_t* dz,
                                                     float* dbias, const u32* sample, u32 batch,
                                                     u32 width, u32 layer, u32 epoch, u32 k0, u32 k1,
                                                     u32 thr, float scale) {
    extern __shared__ float sbias[];
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) sbias[j] = 0.0f;
    __syncthreads();
    u32 groups = (width + 15) / 16;
    u32 rows_per_block = blockDim.x / groups;
    u32 g = threadIdx.x % groups, r = threadIdx.x / groups;
    if (r < rows_per_block) {
        float acc[16];
#pragma unroll
        for (u32 t = 0; t < 16; ++t) acc[t] = 0.0f;
        for (u64 b = (u64)blockIdx.x * rows_per_block + r; b < batch;
             b += (u64)gridDim.x * rows_per_block) {
            ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
            if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | g);
            const float* dar = da + b * width;
            const act_t* ar = a + b * width;
            act_t* dzr = dz + b * width;
#pragma unroll
            for (u32 t = 0; t < 16; ++t) {
                u32 j = g * 16 + t;
                if (j < width) {
                    bool on = ncf_keep_byte(blk, j, thr) && act_to_f(ar[j]) > 0.0f;
                    float d = on ? dar[j] * scale : 0.0f;
                    dzr[j] = f_to_act(d);
                    acc[t] += d;
                }
            }
        }
#pragma unroll
        for (u32 t = 0; t < 16; ++t) {
            u32 j = g * 16 + t;
            if (j < width) atomicAdd(&sbias[j], acc[t]);
        }
    }
    __syncthreads();
    for (u32 j = threadIdx.x; j < width; j += blockDim.x) atomicAdd(&dbias[j], sbias[j]);
}

// ---- final layer + sigmoid BCE + its gradients ------------------------------------------------
// One warp per sample: logit = w . [mf_user[u] * mf_item[i] || x_last] + b. Training: loss
// (block-reduced, FP64 accumulator), dlogit = (sigmoid - y) * gscale, and every gradient that
// needs dlogit: final.w/final.b (block-reduced), GMF embeddings (atomic), dx_last (written).
// Avoids materialising the GMF product and the logits. Scoring (train = 0): logits only.
#define NCF_FINAL_MAX 512
extern "C" __global__ void ncf_final(const u32* users, const u32* items, const float* labels, u32 batch,
                                     u32 f, const float* mf_user, const float* mf_item,
                                     const act_t* x_last, u32 lout, const float* fw, const float* fb,
                                     int train, float gscale, float* logits, double* loss_sum,
                                     float* g_mf_user, float* g_mf_item, float* g_fw, float* g_fb,
                                     float* dx_last) {
    __shared__ float s_gw[NCF_FINAL_MAX];
    __shared__ float s_misc[2];
    u32 fin = f + lout;
    for (u32 j = threadIdx.x; j < fin; j += blockDim.x) s_gw[j] = 0.0f;
    if (threadIdx.x < 2) s_misc[threadIdx.x] = 0.0f;
    __syncthreads();
    u32 lane = threadIdx.x & 31u, warps = blockDim.x >> 5;
    float gw[NCF_FINAL_MAX / 32];
#pragma unroll
    for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) gw[t] = 0.0f;
    float loss_acc = 0.0f, gb_acc = 0.0f;
    float bias = fb[0];
    for (u64 b = (u64)blockIdx.x * warps + (threadIdx.x >> 5); b < batch; b += (u64)gridDim.x * warps) {
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
                if (j < f) {
                    atomicAdd(&g_mf_user[u * f + j], dw * mf_item[it * f + j]);
                    atomicAdd(&g_mf_item[it * f + j], dw * mf_user[u * f + j]);
                } else {
                    dx_last[b * lout + (j - f)] = dw;
                }
            }
        }
    }
    if (!train) return;
#pragma unroll
    for (int t = 0; t < NCF_FINAL_MAX / 32; ++t) {
        u32 j = lane + 32u * t;
        if (j < fin) atomicAdd(&s_gw[j], gw[t]);
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

// ---- precision helpers --------------------------------------------------------------------------

// dst = (act_t) src: the low-precision copy of the FP32 master weights made every step.
extern "C" __global__ void ncf_cast(const float* src, act_t* dst, u64 n) {
    NCF_FOR(i, n) dst[i] = f_to_act(src[i]);
}

// *found = 1 when any gradient is inf or NaN (FP16 loss-scale overflow).
extern "C" __global__ void ncf_check_finite(const float* g, u64 n, int* found) {
    bool bad = false;
    NCF_FOR(i, n) bad |= !isfinite(g[i]);
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31u) == 0) atomicExch(found, 1);
}

// ---- optimiser ------------------------------------------------------------------------------

// One fused step over the whole flat vector, as torch.optim.Adam (or plain SGD), then g = 0.
// g is unscaled by inv_scale first; nothing moves when *found_inf (a skipped FP16 step).
extern "C" __global__ void ncf_adam(float* p, float* g, float* m, float* v, u64 n, float lr, float beta1,
                                    float beta2, float eps, float l2, float step_size, float bc2_sqrt,
                                    float inv_scale, const int* found_inf, int sgd) {
    bool skip = found_inf != 0 && *found_inf != 0;
    NCF_FOR(i, n) {
        float gi = g[i];
        g[i] = 0.0f;
        if (skip) continue;
        float pi = p[i];
        gi = gi * inv_scale + l2 * pi;
        if (sgd) {
            p[i] = pi - lr * gi;
            continue;
        }
        float mi = m[i], vi = v[i];
        mi = mi + (1.0f - beta1) * (gi - mi);
        vi = vi * beta2 + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
    }
}
