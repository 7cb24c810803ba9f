// rng.cuh: CUDA twin of ncf_core::rng (Philox4x32-10, `below`, fmix32, Feistel permutation).
// Every function here must stay bit-identical to crates/ncf-core/src/rng.rs (checked by ncf-cuda-check).
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;

#define NCF_STREAM_TRAIN_NEGATIVE 1u
#define NCF_STREAM_SHUFFLE 2u
#define NCF_STREAM_DROPOUT 3u

struct ncf_u32x4 {
    u32 x, y, z, w;
};

// Philox4x32 with 10 rounds: ctr = (c0, c1, c2, c3), key = (k0, k1).
__device__ __forceinline__ ncf_u32x4 ncf_philox(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        u32 n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    ncf_u32x4 r = {c0, c1, c2, c3};
    return r;
}

// Rng::block(stream, a, b, c) = Philox(ctr = [a, b, c, stream], key = seed).
__device__ __forceinline__ ncf_u32x4 ncf_block(u32 k0, u32 k1, u32 stream, u32 a, u32 b, u32 c) {
    return ncf_philox(a, b, c, stream, k0, k1);
}

__device__ __forceinline__ u32 ncf_pick(ncf_u32x4 v, u32 i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Rng::word(stream, a, b, k): word k % 4 of block c = k / 4.
__device__ __forceinline__ u32 ncf_word(u32 k0, u32 k1, u32 stream, u32 a, u32 b, u32 k) {
    return ncf_pick(ncf_block(k0, k1, stream, a, b, k >> 2), k & 3u);
}

// Lemire's multiply-shift: uniform word -> [0, n).
__device__ __forceinline__ u32 ncf_below(u32 word, u32 n) { return __umulhi(word, n); }

__device__ __forceinline__ u32 ncf_fmix32(u32 h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
}

// Permutation: 4-round Feistel on 2*half_bits bits with cycle walking (domain n < 2^62).
struct ncf_perm {
    u64 n;
    u32 half_bits;
    u32 k0, k1, k2, k3;
};

__device__ __forceinline__ u64 ncf_feistel(const ncf_perm& p, u64 x) {
    u64 mask = (1ull << p.half_bits) - 1ull;
    u64 l = x >> p.half_bits, r = x & mask;
    u32 keys[4] = {p.k0, p.k1, p.k2, p.k3};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        u64 f = (u64)ncf_fmix32(((u32)r) * 0x9E3779B1u ^ keys[i]) & mask;
        u64 nl = r, nr = l ^ f;
        l = nl;
        r = nr;
    }
    return (l << p.half_bits) | r;
}

__device__ __forceinline__ u64 ncf_perm_apply(const ncf_perm& p, u64 pos) {
    u64 v = ncf_feistel(p, pos);
    while (v >= p.n) v = ncf_feistel(p, v);
    return v;
}

// Dropout: unit j of MLP layer l for (unshuffled) sample s in epoch e is kept iff its byte of
// block(DROPOUT, s, e, (l << 16) | (j / 16)) is >= t (t = round(p * 256)).
__device__ __forceinline__ bool ncf_keep_byte(ncf_u32x4 blk, u32 j, u32 t) {
    u32 w = ncf_pick(blk, (j & 15u) >> 2);
    return ((w >> (8u * (j & 3u))) & 0xffu) >= t;
}
