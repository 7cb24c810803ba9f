// fused.cuh: the fused step's kernels (`--cuda-step fused`, docs/CUDA.md "The fused step"):
// an MLP layer's GEMM with its epilogue in one kernel, so that the FP32 pre-activation and the
// FP32 activation gradient never go to memory.
//
// ncf_linear_fwd:  a  = dropout(relu(x . W^T + bias)), written once in the activation type;
// ncf_linear_bwd:  dz = ((dz_next . W_next) * scale) where a > 0, else 0, written once in the
//                  activation type, with the bias gradient's per-block partial sums (fixed order;
//                  ncf_sum_blocks adds them in block order).
// `a > 0` is the whole mask of the backward pass: a is stored after dropout and ReLU, so a unit
// dropped or cut by the ReLU has a = 0 (GPU-PLAN note), and no Philox block is needed there.
//
// Both are the same tiled GEMM: a block of 256 threads owns a tile of NCF_TM rows (samples) by
// NCF_TN units, the K dimension walked in chunks of NCF_TK staged in shared memory; the epilogue
// is a thread's 4 rows x 4 units. FP16/BF16 (NCF_MMA): tensor cores through wmma (16 x 16 x 16,
// FP32 accumulators; warp w owns rows 16 (w / 2) .. + 16 and units 32 (w % 2) .. + 32 of the
// tile), the accumulators stored to shared memory for the epilogue. FP32/TF32: plain loops on
// CUDA cores, each output one FP32 fma chain in ascending k (FP32 inputs: no TF32 rounding). Either
// way an output's sum does not depend on the grid, so runs repeat bit for bit. Grid: 1-D,
// (unit tiles) x R row blocks; block i takes unit tile i % UT and row tiles i / UT, i / UT + R,
// ... (grid-stride), R = gridDim.x / UT.

#define NCF_TM 64
#define NCF_TN 64
#define NCF_TK 16

#if NCF_ACT != 0
#include <mma.h>
#define NCF_MMA 1
#else
#define NCF_MMA 0
#endif

// The block's shared memory: the staged A and B chunks (act_t, tensor cores) or FP32 (loops),
// and the FP32 output tile (the accumulators for the epilogue, then the bias gradient's rows).
struct NcfTileSmem {
#if NCF_MMA
    alignas(32) act_t a[NCF_TM * NCF_TK];
    alignas(32) act_t b[NCF_TN * NCF_TK];
#else
    float a[NCF_TK][NCF_TM];
    float b[NCF_TK][NCF_TN];
#endif
    alignas(32) float c[NCF_TM * NCF_TN];
};

#if NCF_MMA
// acc = A[row0 .. + NCF_TM, 0 .. kdim) . B(0 .. kdim, unit0 .. + NCF_TN) on tensor cores; B(k, u)
// = B[u * ldb + k] when B_NT (a weight [out, in] used as W^T), else B[k * ldb + u]. A is
// row-major [rows, lda]; out-of-range elements are 0. acc[i][c] is row 4 ty + i, unit 4 tx + c.
template <bool B_NT>
__device__ __forceinline__ void ncf_tile_gemm(NcfTileSmem& sm, const act_t* __restrict__ A,
                                              u32 lda, u32 rows, u32 row0,
                                              const act_t* __restrict__ B, u32 ldb, u32 units,
                                              u32 unit0, u32 kdim, float acc[4][4]) {
    using namespace nvcuda;
    u32 tid = threadIdx.x, w = tid / 32u;
    u32 r0 = (w / 2u) * 16u, u0 = (w % 2u) * 32u;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc[2];
    wmma::fill_fragment(fc[0], 0.0f);
    wmma::fill_fragment(fc[1], 0.0f);
    act_t zero = f_to_act(0.0f);
    for (u32 k0 = 0; k0 < kdim; k0 += NCF_TK) {
#pragma unroll
        for (u32 s = 0; s < 4; ++s) {
            u32 e = tid + 256u * s;
            u32 r = e / NCF_TK, kk = e % NCF_TK, k = k0 + kk;
            sm.a[r * NCF_TK + kk] = (row0 + r < rows && k < kdim) ? A[(u64)(row0 + r) * lda + k] : zero;
            if (B_NT) {
                // [unit][k]: matrix_b column-major, ldm NCF_TK.
                u32 u = unit0 + r;
                sm.b[r * NCF_TK + kk] = (u < units && k < kdim) ? B[(u64)u * ldb + k] : zero;
            } else {
                // [k][unit]: matrix_b row-major, ldm NCF_TN (consecutive threads, consecutive units).
                u32 uu = e % NCF_TN, kb = e / NCF_TN, u = unit0 + uu, kq = k0 + kb;
                sm.b[kb * NCF_TN + uu] = (u < units && kq < kdim) ? B[(u64)kq * ldb + u] : zero;
            }
        }
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, act_t, wmma::row_major> fa;
        wmma::load_matrix_sync(fa, sm.a + r0 * NCF_TK, NCF_TK);
#pragma unroll
        for (u32 j = 0; j < 2; ++j) {
            if constexpr (B_NT) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, act_t, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, sm.b + (u0 + 16u * j) * NCF_TK, NCF_TK);
                wmma::mma_sync(fc[j], fa, fb, fc[j]);
            } else {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, act_t, wmma::row_major> fb;
                wmma::load_matrix_sync(fb, sm.b + u0 + 16u * j, NCF_TN);
                wmma::mma_sync(fc[j], fa, fb, fc[j]);
            }
        }
        __syncthreads();
    }
    wmma::store_matrix_sync(sm.c + r0 * NCF_TN + u0, fc[0], NCF_TN, wmma::mem_row_major);
    wmma::store_matrix_sync(sm.c + r0 * NCF_TN + u0 + 16u, fc[1], NCF_TN, wmma::mem_row_major);
    __syncthreads();
    u32 tx = tid % 16u, ty = tid / 16u;
#pragma unroll
    for (u32 i = 0; i < 4; ++i)
#pragma unroll
        for (u32 c = 0; c < 4; ++c) acc[i][c] = sm.c[(4u * ty + i) * NCF_TN + 4u * tx + c];
    __syncthreads();
}
#endif

#if !NCF_MMA
// acc[i][c] += sum over k in [k0, k0 + NCF_TK) of A[row0 + 4ty + i, k] * B(k, unit0 + 4tx + c).
// A is row-major [rows, lda] (act_t); B(k, u) = B[u * ldb + k] when b_nt (a weight [out, in] used
// as W^T), else B[k * ldb + u]. Out-of-range elements are read as 0. Two barriers per chunk.
__device__ __forceinline__ void ncf_tile_chunk(float (*as)[NCF_TM], float (*bs)[NCF_TN],
                                               const act_t* __restrict__ A, u32 lda, u32 rows,
                                               u32 row0, const act_t* __restrict__ B, u32 ldb,
                                               u32 units, u32 unit0, bool b_nt, u32 kdim, u32 k0,
                                               float acc[4][4]) {
    u32 tid = threadIdx.x, tx = tid % 16u, ty = tid / 16u;
#pragma unroll
    for (u32 s = 0; s < 4; ++s) {
        u32 e = tid + 256u * s;
        u32 r = e / NCF_TK, kk = e % NCF_TK;
        u32 k = k0 + kk;
        u32 row = row0 + r;
        as[kk][r] = (row < rows && k < kdim) ? act_to_f(A[(u64)row * lda + k]) : 0.0f;
        u32 u = unit0 + r;
        float bv = 0.0f;
        if (u < units && k < kdim) bv = act_to_f(b_nt ? B[(u64)u * ldb + k] : B[(u64)k * ldb + u]);
        bs[kk][r] = bv;
    }
    __syncthreads();
#pragma unroll
    for (u32 kk = 0; kk < NCF_TK; ++kk) {
        float av[4], bv[4];
#pragma unroll
        for (u32 i = 0; i < 4; ++i) av[i] = as[kk][4u * ty + i];
#pragma unroll
        for (u32 c = 0; c < 4; ++c) bv[c] = bs[kk][4u * tx + c];
#pragma unroll
        for (u32 i = 0; i < 4; ++i)
#pragma unroll
            for (u32 c = 0; c < 4; ++c) acc[i][c] = fmaf(av[i], bv[c], acc[i][c]);
    }
    __syncthreads();
}

template <bool B_NT>
__device__ __forceinline__ void ncf_tile_gemm(NcfTileSmem& sm, const act_t* __restrict__ A,
                                              u32 lda, u32 rows, u32 row0,
                                              const act_t* __restrict__ B, u32 ldb, u32 units,
                                              u32 unit0, u32 kdim, float acc[4][4]) {
#pragma unroll
    for (u32 i = 0; i < 4; ++i)
#pragma unroll
        for (u32 c = 0; c < 4; ++c) acc[i][c] = 0.0f;
    for (u32 kc = 0; kc < kdim; kc += NCF_TK)
        ncf_tile_chunk(sm.a, sm.b, A, lda, rows, row0, B, ldb, units, unit0, B_NT, kdim, kc, acc);
}
#endif

// MLP layer `layer` forward: x [batch, fin] (act_t), w [fout, fin] (act_t: the FP32 master or its
// low-precision copy), bias [fout] FP32, a [batch, fout] act_t. Dropout of unit j of sample b:
// byte j % 16 of Philox(sample[b], epoch, (layer << 16) | j / 16), as ncf_bias_relu_dropout_fwd
// (the epoch from `step` when given).
extern "C" __global__ void __launch_bounds__(256)
ncf_linear_fwd(const act_t* __restrict__ x, const act_t* __restrict__ w,
               const float* __restrict__ bias, act_t* __restrict__ a,
               const u32* __restrict__ sample, u32 batch, u32 fin, u32 fout, u32 layer,
               u32 epoch, u32 k0, u32 k1, u32 thr, float scale, const u32* step) {
    if (step) epoch = step[NCF_STEP_EPOCH];
    __shared__ NcfTileSmem sm;
    u32 ut = (fout + NCF_TN - 1) / NCF_TN;
    u32 rblocks = gridDim.x / ut;
    if (blockIdx.x >= rblocks * ut) return;
    u32 unit0 = (blockIdx.x % ut) * NCF_TN;
    u32 tx = threadIdx.x % 16u, ty = threadIdx.x / 16u;
    u32 j0 = unit0 + 4u * tx;
    float bv[4];
#pragma unroll
    for (u32 c = 0; c < 4; ++c) bv[c] = j0 + c < fout ? bias[j0 + c] : 0.0f;
    u32 tiles = (batch + NCF_TM - 1) / NCF_TM;
    for (u32 rt = blockIdx.x / ut; rt < tiles; rt += rblocks) {
        u32 row0 = rt * NCF_TM;
        float acc[4][4];
        ncf_tile_gemm<true>(sm, x, fin, batch, row0, w, fin, fout, unit0, fin, acc);
#pragma unroll
        for (u32 i = 0; i < 4; ++i) {
            u32 b = row0 + 4u * ty + i;
            if (b >= batch) continue;
            ncf_u32x4 blk = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
            if (thr > 0) blk = ncf_block(k0, k1, NCF_STREAM_DROPOUT, sample[b], epoch, (layer << 16) | (j0 / 16u));
#pragma unroll
            for (u32 c = 0; c < 4; ++c) {
                u32 j = j0 + c;
                if (j < fout) {
                    float v = fmaxf(acc[i][c] + bv[c], 0.0f);
                    v = ncf_keep_byte(blk, j & 15u, thr) ? v * scale : 0.0f;
                    a[(u64)b * fout + j] = f_to_act(v);
                }
            }
        }
    }
}

// MLP layer `layer`'s pre-activation gradient from the layer above: dz [batch, width] =
// (dzn [batch, fnext] . wn [fnext, width]) * scale where a [batch, width] > 0, else 0 (act_t), and
// partials[rb * width + j] = the sum of dz[., j] (FP32, before rounding) over the rows of row
// block rb, tile after tile, each tile's rows in order.
extern "C" __global__ void __launch_bounds__(256)
ncf_linear_bwd(const act_t* __restrict__ dzn, const act_t* __restrict__ wn,
               const act_t* __restrict__ a, act_t* __restrict__ dz, u32 batch, u32 width,
               u32 fnext, float scale, float* __restrict__ partials) {
    __shared__ NcfTileSmem sm;
    u32 ut = (width + NCF_TN - 1) / NCF_TN;
    u32 rblocks = gridDim.x / ut;
    if (blockIdx.x >= rblocks * ut) return;
    u32 unit0 = (blockIdx.x % ut) * NCF_TN;
    u32 rb = blockIdx.x / ut;
    u32 tx = threadIdx.x % 16u, ty = threadIdx.x / 16u;
    u32 j0 = unit0 + 4u * tx;
    float bsum = 0.0f;
    u32 tiles = (batch + NCF_TM - 1) / NCF_TM;
    for (u32 rt = rb; rt < tiles; rt += rblocks) {
        u32 row0 = rt * NCF_TM;
        float acc[4][4];
        ncf_tile_gemm<false>(sm, dzn, fnext, batch, row0, wn, width, width, unit0, fnext, acc);
#pragma unroll
        for (u32 i = 0; i < 4; ++i) {
            u32 b = row0 + 4u * ty + i;
#pragma unroll
            for (u32 c = 0; c < 4; ++c) {
                u32 j = j0 + c;
                float d = 0.0f;
                if (b < batch && j < width) {
                    u64 o = (u64)b * width + j;
                    d = act_to_f(a[o]) > 0.0f ? acc[i][c] * scale : 0.0f;
                    dz[o] = f_to_act(d);
                }
                sm.c[(4u * ty + i) * NCF_TN + 4u * tx + c] = d;
            }
        }
        __syncthreads();
        if (threadIdx.x < NCF_TN)
            for (u32 r = 0; r < NCF_TM; ++r) bsum += sm.c[r * NCF_TN + threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.x < NCF_TN && unit0 + threadIdx.x < width)
        partials[(u64)rb * width + unit0 + threadIdx.x] = bsum;
}
