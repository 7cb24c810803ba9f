// The host emulator's globals and launch(): one std::thread per CUDA thread, blocks one after
// another (so static "shared" arrays are per block), warps synchronised by barriers (shim.h).
#pragma once
#include "shim.h"
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
thread_local WarpCtx* tl_warp;
std::barrier<>* tl_block_bar;
float g_dyn_smem[8192];

template <class F> void launch(unsigned grid, unsigned block, F fn) {
  gridDim = {grid, 1, 1}; blockDim = {block, 1, 1};
  for (unsigned bx = 0; bx < grid; ++bx) {
    std::barrier<> bb(block); tl_block_bar = &bb;
    std::vector<WarpCtx> warps(block / 32);
    std::vector<std::barrier<>*> wb;
    for (auto& w : warps) w.bar = new std::barrier<>(32);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < block; ++t) ts.emplace_back([&, t] { threadIdx = {t, 0, 0}; blockIdx = {bx, 0, 0}; tl_warp = &warps[t / 32]; fn(); });
    for (auto& t : ts) t.join();
    for (auto& w : warps) delete w.bar;
  }
}
