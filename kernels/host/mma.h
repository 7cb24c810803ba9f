// The host device's mma.h: the part of nvcuda::wmma that kernels/fused.cuh uses (16 x 16 x 16
// tiles of half/bfloat16 with FP32 accumulators). A fragment's layout across a warp's lanes is
// opaque in CUDA, so here lane 0 holds the whole tile and does the warp's work, and the other
// lanes' calls do nothing: loads, the product (each element an FP32 fma chain in ascending k)
// and the store all happen on lane 0, between the same barriers as on a GPU. Included only from
// fused.cuh, after ncf.cu has defined act_to_f.
#pragma once
#include <type_traits>

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the host wmma has 16 x 16 x 16 tiles only");
    float x[16 * 16];
};

inline bool ncfhost_leads() { return ncfhost::lane() == 0; }

// Element (r, c) of the fragment's matrix (A: m x k, B: k x n) from p with leading dimension ldm.
template <typename Use, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const P* p, unsigned ldm) {
    if (!ncfhost_leads()) return;
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned c = 0; c < 16; ++c)
            f.x[r * 16 + c] = act_to_f(std::is_same<Layout, col_major>::value ? p[c * ldm + r] : p[r * ldm + c]);
}

template <typename T>
inline void fill_fragment(fragment<accumulator, 16, 16, 16, T>& f, float v) {
    for (float& e : f.x) e = v;
}

template <typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, T, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
    if (!ncfhost_leads()) return;
    float out[16 * 16];
    for (unsigned m = 0; m < 16; ++m)
        for (unsigned n = 0; n < 16; ++n) {
            float s = c.x[m * 16 + n];
            for (unsigned k = 0; k < 16; ++k) s = std::fma(a.x[m * 16 + k], b.x[k * 16 + n], s);
            out[m * 16 + n] = s;
        }
    for (unsigned e = 0; e < 16 * 16; ++e) d.x[e] = out[e];
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
    if (!ncfhost_leads()) return;
    for (unsigned r = 0; r < 16; ++r)
        for (unsigned c = 0; c < 16; ++c)
            (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
}
}  // namespace wmma
}  // namespace nvcuda
