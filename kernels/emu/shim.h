#pragma once
#include <cstring>
#include <cmath>
#include <cstdint>
#include <atomic>
#include <barrier>
#include <thread>
#include <vector>
#include <functional>
#include <algorithm>
using std::min; using std::isfinite;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static thread_local
struct dim3 { unsigned x, y, z; };
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
struct float4 { float x, y, z, w; };
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c, unsigned long long v) { std::atomic_ref<unsigned long long>(*p).compare_exchange_strong(c, v); return c; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }
// warp emulation
struct WarpCtx { std::barrier<>* bar; float fs[32]; unsigned us[32]; int is[32]; };
extern thread_local WarpCtx* tl_warp;
extern std::barrier<>* tl_block_bar;
inline void __syncthreads() { tl_block_bar->arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) { unsigned l = threadIdx.x & 31; tl_warp->bar->arrive_and_wait(); tl_warp->fs[l] = v; tl_warp->bar->arrive_and_wait(); float r = tl_warp->fs[l ^ o]; return r; }
inline float __shfl_sync(unsigned, float v, unsigned s) { unsigned l = threadIdx.x & 31; tl_warp->bar->arrive_and_wait(); tl_warp->fs[l] = v; tl_warp->bar->arrive_and_wait(); return tl_warp->fs[s]; }
inline unsigned __shfl_sync(unsigned, unsigned v, unsigned s) { unsigned l = threadIdx.x & 31; tl_warp->bar->arrive_and_wait(); tl_warp->us[l] = v; tl_warp->bar->arrive_and_wait(); return tl_warp->us[s]; }
inline void __syncwarp() { tl_warp->bar->arrive_and_wait(); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __match_any_sync(unsigned, unsigned v) { unsigned l = threadIdx.x & 31; tl_warp->bar->arrive_and_wait(); tl_warp->us[l] = v; tl_warp->bar->arrive_and_wait(); unsigned m = 0; for (unsigned i = 0; i < 32; ++i) if (tl_warp->us[i] == v) m |= 1u << i; tl_warp->bar->arrive_and_wait(); return m; }
inline int __any_sync(unsigned, int v) { unsigned l = threadIdx.x & 31; tl_warp->bar->arrive_and_wait(); tl_warp->is[l] = v; tl_warp->bar->arrive_and_wait(); int r = 0; for (int i = 0; i < 32; ++i) r |= tl_warp->is[i]; return r; }
