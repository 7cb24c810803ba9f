// The host device's CUDA runtime: the kernels of kernels/ compiled by g++ for the CPU
// (crates/ncf-cuda/src/device/host_kernels.rs builds one library per activation type).
//
// A block runs on one OS thread as cooperative fibers, one per CUDA thread, in thread order;
// __syncthreads and the warp operations (shuffles, votes, __syncwarp) switch fibers at their
// barriers, so block-level and warp-level synchronisation mean what they mean on a GPU, and
// `__shared__` arrays (thread_local statics) are the block's. Blocks run on several OS threads at
// once, so a float atomicAdd from two blocks lands in an order that varies run to run, as on a
// GPU. A deadlock (lanes of one warp waiting at different barriers) or a fiber stack overflow is
// reported, not hung on. Dynamic shared memory is `ncfhost::dyn_smem()` (the sources'
// `extern __shared__` arrays are rewritten to it before compiling).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

using std::isfinite;
using std::min;
using std::max;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct dim3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }

namespace ncfhost {

enum State { RUN = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };

#if defined(__x86_64__)
// A fiber switch saves the callee-saved registers on the current stack and moves to the other
// stack (no signal mask: ucontext's swapcontext makes two system calls per switch).
extern "C" void ncfhost_switch(void** save_sp, void* to_sp);
asm(R"(
.text
.p2align 4
.type ncfhost_switch,@function
ncfhost_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size ncfhost_switch, .-ncfhost_switch
)");
struct Ctx {
    void* sp = nullptr;
};
inline void switch_to(Ctx& save, Ctx& to) { ncfhost_switch(&save.sp, to.sp); }
// A new context on the stack [lo, lo + size) that starts in `entry` (which never returns).
inline void make_ctx(Ctx& c, char* lo, size_t size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(lo + size)) & ~(uintptr_t)15;
    void** sp = (void**)(top - 16);
    sp[0] = (void*)entry;  // the `ret` lands here with the stack as after a call
    sp -= 6;               // r15 r14 r13 r12 rbx rbp, popped by the switch
    for (int i = 0; i < 6; ++i) sp[i] = nullptr;
    c.sp = sp;
}
#else
struct Ctx {
    ucontext_t uc;
};
inline void switch_to(Ctx& save, Ctx& to) { swapcontext(&save.uc, &to.uc); }
inline void make_ctx(Ctx& c, char* lo, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = lo;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
    Ctx ctx;
    int state;
};

// One OS thread's block: its fibers, their stacks (reused block after block) and the warp
// exchange slots of the shuffles.
struct Block {
    unsigned n = 0;
    std::vector<Fiber> fibers;
    char* stacks = nullptr;
    size_t stack_bytes = 0, slot_bytes = 0, mapped = 0;
    Ctx sched;
    unsigned cur = 0;
    const std::function<void()>* body = nullptr;
    std::vector<float> wf;
    std::vector<unsigned> wu;
    std::vector<int> wi;
    std::vector<char> smem;
    ~Block() {
        if (stacks) munmap(stacks, mapped);
    }
};

inline thread_local Block* tl_block = nullptr;

}  // namespace ncfhost

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace ncfhost {

// A fiber's whole life: the kernel body, then back to the scheduler for good.
inline void fiber_main() {
    Block* b = tl_block;
    (*b->body)();
    Fiber& f = b->fibers[b->cur];
    f.state = DONE;
    switch_to(f.ctx, b->sched);
    __builtin_unreachable();
}

// Yield to the scheduler at a barrier of kind `s`.
inline void wait_at(int s) {
    Block* b = tl_block;
    Fiber& f = b->fibers[b->cur];
    f.state = s;
    switch_to(f.ctx, b->sched);
}

inline void* dyn_smem() { return tl_block->smem.data(); }

// Per-warp exchange slots.
inline unsigned lane() { return threadIdx.x & 31u; }
inline unsigned warp() { return threadIdx.x >> 5; }

}  // namespace ncfhost

inline void __syncthreads() { ncfhost::wait_at(ncfhost::AT_BLOCK); }
inline void __syncwarp(unsigned = 0xffffffffu) { ncfhost::wait_at(ncfhost::AT_WARP); }

template <class T>
inline T ncfhost_exchange(std::vector<T>& slots, T v, unsigned from) {
    using namespace ncfhost;
    __syncwarp();
    slots[warp() * 32 + lane()] = v;
    __syncwarp();
    return slots[warp() * 32 + (from & 31u)];
}

inline float __shfl_xor_sync(unsigned, float v, int o) {
    return ncfhost_exchange(ncfhost::tl_block->wf, v, ncfhost::lane() ^ (unsigned)o);
}
inline float __shfl_sync(unsigned, float v, int src) {
    return ncfhost_exchange(ncfhost::tl_block->wf, v, (unsigned)src);
}
inline unsigned __shfl_sync(unsigned, unsigned v, int src) {
    return ncfhost_exchange(ncfhost::tl_block->wu, v, (unsigned)src);
}
inline int __any_sync(unsigned, int pred) {
    using namespace ncfhost;
    std::vector<int>& s = tl_block->wi;
    __syncwarp();
    s[warp() * 32 + lane()] = pred != 0;
    __syncwarp();
    int r = 0;
    for (unsigned l = 0; l < 32; ++l) r |= s[warp() * 32 + l];
    return r;
}
inline unsigned __match_any_sync(unsigned, unsigned v) {
    using namespace ncfhost;
    std::vector<unsigned>& s = tl_block->wu;
    __syncwarp();
    s[warp() * 32 + lane()] = v;
    __syncwarp();
    unsigned m = 0;
    for (unsigned l = 0; l < 32; ++l) {
        unsigned t = warp() * 32 + l;
        if (t < blockDim.x && tl_block->fibers[t].state != DONE && s[t] == v) m |= 1u << l;
    }
    __syncwarp();
    return m;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c, unsigned long long v) {
    std::atomic_ref<unsigned long long>(*p).compare_exchange_strong(c, v);
    return c;
}
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }

namespace ncfhost {

constexpr size_t STACK = 128 * 1024;
constexpr size_t GUARD = 4096;

// Run block `bx` of a launch on this thread; false with `err` filled on a deadlock.
inline bool run_block(Block& b, unsigned bx, unsigned grid, unsigned block, std::string& err) {
    b.n = block;
    if (b.fibers.size() < block) {
        if (b.stacks) munmap(b.stacks, b.mapped);
        b.slot_bytes = STACK + GUARD;
        b.mapped = b.slot_bytes * block;
        void* m = mmap(nullptr, b.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            err = "cannot map the fiber stacks";
            b.stacks = nullptr;
            return false;
        }
        b.stacks = (char*)m;
        // A guard page below each stack: an overflow faults instead of corrupting a neighbour.
        for (unsigned t = 0; t < block; ++t) mprotect(b.stacks + t * b.slot_bytes, GUARD, PROT_NONE);
        b.fibers.resize(block);
        b.wf.assign(((block + 31) / 32) * 32, 0.0f);
        b.wu.assign(((block + 31) / 32) * 32, 0u);
        b.wi.assign(((block + 31) / 32) * 32, 0);
    }
    blockIdx = {bx, 0, 0};
    blockDim = {block, 1, 1};
    gridDim = {grid, 1, 1};
    for (unsigned t = 0; t < block; ++t) {
        Fiber& f = b.fibers[t];
        make_ctx(f.ctx, b.stacks + t * b.slot_bytes + GUARD, STACK, fiber_main);
        f.state = RUN;
    }
    tl_block = &b;
    for (;;) {
        for (unsigned t = 0; t < block; ++t) {
            if (b.fibers[t].state != RUN) continue;
            b.cur = t;
            threadIdx = {t, 0, 0};
            switch_to(b.sched, b.fibers[t].ctx);
        }
        // Every fiber is done or at a barrier: release what can go on.
        bool alive = false, released = false;
        for (unsigned w = 0; w * 32 < block; ++w) {
            bool any = false, all = true;
            for (unsigned t = w * 32; t < std::min(block, w * 32 + 32); ++t) {
                int s = b.fibers[t].state;
                if (s == DONE) continue;
                alive = true;
                if (s == AT_WARP) any = true; else all = false;
            }
            if (any && all) {
                for (unsigned t = w * 32; t < std::min(block, w * 32 + 32); ++t)
                    if (b.fibers[t].state == AT_WARP) b.fibers[t].state = RUN;
                released = true;
            }
        }
        if (!alive) return true;
        if (released) continue;
        bool all_block = true;
        for (unsigned t = 0; t < block; ++t) {
            int s = b.fibers[t].state;
            if (s != DONE && s != AT_BLOCK) all_block = false;
        }
        if (all_block) {
            for (unsigned t = 0; t < block; ++t)
                if (b.fibers[t].state == AT_BLOCK) b.fibers[t].state = RUN;
            continue;
        }
        err = "deadlock in block " + std::to_string(bx) +
              ": threads wait at different barriers (__syncthreads and a warp operation)";
        return false;
    }
}

// The blocks of one launch, taken by the calling thread and the pool's workers in turn.
struct Launch {
    unsigned grid, block, smem;
    const std::function<void()>* body;
    std::atomic<unsigned> next{0};
    std::atomic<bool> failed{false};
    std::mutex m;
    std::string why;

    void work(Block& b) {
        b.body = body;
        if (b.smem.size() < std::max(smem, 16u)) b.smem.resize(std::max(smem, 16u));
        std::string e;
        for (;;) {
            unsigned bx = next.fetch_add(1);
            if (bx >= grid || failed.load()) break;
            std::fill(b.smem.begin(), b.smem.end(), 0);
            if (!run_block(b, bx, grid, block, e)) {
                std::lock_guard<std::mutex> g(m);
                if (!failed.exchange(true)) why = e;
                break;
            }
        }
        tl_block = nullptr;
    }
};

// Worker threads of one calling thread (each test thread of a process gets its own), kept
// between launches with their fiber stacks.
struct Pool {
    std::mutex m;
    std::condition_variable go, done;
    std::vector<std::thread> workers;
    Launch* job = nullptr;
    unsigned gen = 0, want = 0, busy = 0;
    bool quit = false;

    void grow(unsigned n) {
        while (workers.size() < n) {
            unsigned idx = (unsigned)workers.size();
            workers.emplace_back([this, idx] {
                Block b;
                unsigned seen = 0;
                for (;;) {
                    Launch* l;
                    {
                        std::unique_lock<std::mutex> g(m);
                        go.wait(g, [&] { return quit || gen != seen; });
                        if (quit) return;
                        seen = gen;
                        if (idx >= want) continue;
                        l = job;
                    }
                    l->work(b);
                    std::lock_guard<std::mutex> g(m);
                    if (--busy == 0) done.notify_all();
                }
            });
        }
    }

    // Run `l` on `extra` workers and the calling thread (whose blocks use `mine`).
    void run(Launch& l, unsigned extra, Block& mine) {
        if (extra > 0) {
            grow(extra);
            std::lock_guard<std::mutex> g(m);
            job = &l;
            want = extra;
            busy = extra;
            ++gen;
            go.notify_all();
        }
        l.work(mine);
        if (extra > 0) {
            std::unique_lock<std::mutex> g(m);
            done.wait(g, [&] { return busy == 0; });
        }
    }

    ~Pool() {
        {
            std::lock_guard<std::mutex> g(m);
            quit = true;
            go.notify_all();
        }
        for (auto& t : workers) t.join();
    }
};

// Run `grid` blocks of `block` threads on up to `threads` OS threads.
inline int launch(unsigned grid, unsigned block, unsigned smem, unsigned threads,
                  const std::function<void()>& body, char* err, unsigned errlen) {
    static thread_local Pool pool;
    static thread_local Block mine;
    Launch l;
    l.grid = grid;
    l.block = block;
    l.smem = smem;
    l.body = &body;
    unsigned n = std::max(1u, std::min(threads, grid));
    pool.run(l, n - 1, mine);
    if (l.failed.load()) {
        snprintf(err, errlen, "%s", l.why.c_str());
        return 1;
    }
    return 0;
}

inline float f32(unsigned long long bits) {
    unsigned u = (unsigned)bits;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

}  // namespace ncfhost
