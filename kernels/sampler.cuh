// sampler.cuh: CUDA twin of ncf_core::sampler::EpochSamples (NVIDIA's epoch layout: positives,
// then the positives' users repeated `negatives` times with drawn items). Bit-identical to the CPU.
#pragma once
#include "rng.cuh"

#define NCF_MAX_ATTEMPTS 4096u

// Is `item` among the sorted positives items[lo..hi)?
__device__ __forceinline__ bool ncf_contains(const u32* items, u64 lo, u64 hi, u32 item) {
    while (lo < hi) {
        u64 mid = lo + ((hi - lo) >> 1);
        u32 v = items[mid];
        if (v == item) return true;
        if (v < item) lo = mid + 1; else hi = mid;
    }
    return false;
}

// (user, item, label) of unshuffled sample i; returns false when exact mode found no negative.
__device__ __forceinline__ bool ncf_sample(u32 k0, u32 k1, u32 epoch, u32 n_items, int exact,
                                           u64 n_pos, const u32* users, const u32* items,
                                           const u64* offsets, const u32* pos_items, u64 i,
                                           u32* user, u32* item, float* label) {
    if (i < n_pos) {
        *user = users[i];
        *item = items[i];
        *label = 1.0f;
        return true;
    }
    u32 u = users[(i - n_pos) % n_pos];
    *user = u;
    *label = 0.0f;
    if (!exact) {
        *item = ncf_below(ncf_word(k0, k1, NCF_STREAM_TRAIN_NEGATIVE, (u32)i, epoch, 0), n_items);
        return true;
    }
    u64 lo = offsets[u], hi = offsets[u + 1];
    for (u32 k = 0; k < NCF_MAX_ATTEMPTS; ++k) {
        u32 it = ncf_below(ncf_word(k0, k1, NCF_STREAM_TRAIN_NEGATIVE, (u32)i, epoch, k), n_items);
        if (!ncf_contains(pos_items, lo, hi, it)) {
            *item = it;
            return true;
        }
    }
    *item = 0;
    return false;
}
