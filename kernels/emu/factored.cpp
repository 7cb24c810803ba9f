// Host-emulator run of the factored first-layer kernels (kernels/factored.cuh) for one side and
// the shared z kernel, on inputs written by tests/cuda.rs; the outputs are compared there with
// the CPU twins of crates/ncf-cuda/src/factored.rs. Launch shapes are the trainer's (trainer.rs
// factored_*): 256-thread blocks, one block of 1024 for the scans, one block per radix tile.
//
// Input (little-endian u32 words; floats as bits): n n_ids cap e w0, then ids[n], table[n_ids*e],
// pu[cap*w0], pi[cap*w0], dz[n*w0], drows[cap*e], g[n_ids*e].
// Output: slots[n_ids] list[cap] count keys[n] sorted_keys[n] order[n] starts[cap+1]
// rows[cap*e] z[n*w0] sums[cap*w0] g[n_ids*e] (act_t values written as floats).
#include <cstdio>
#include "launch.h"
#include KFILE

static std::vector<unsigned> words;
static size_t at = 0;
static std::vector<unsigned> take(size_t k) {
  std::vector<unsigned> v(words.begin() + at, words.begin() + at + k);
  at += k;
  return v;
}
static std::vector<float> takef(size_t k) {
  auto v = take(k);
  std::vector<float> f(k);
  memcpy(f.data(), v.data(), 4 * k);
  return f;
}
static FILE* out;
static void put(const std::vector<unsigned>& v) { fwrite(v.data(), 4, v.size(), out); }
static void putf(const std::vector<float>& v) { fwrite(v.data(), 4, v.size(), out); }
static std::vector<float> of_act(const std::vector<act_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = act_to_f(v[i]);
  return f;
}

int main(int argc, char** argv) {
  FILE* in = fopen(argv[1], "rb");
  unsigned w;
  while (fread(&w, 4, 1, in) == 1) words.push_back(w);
  fclose(in);
  auto h = take(5);
  unsigned n = h[0], n_ids = h[1], cap = h[2], e = h[3], w0 = h[4];
  auto ids = take(n);
  auto table = takef((size_t)n_ids * e);
  auto pu = takef((size_t)cap * w0), pi = takef((size_t)cap * w0);
  auto dzf = takef((size_t)n * w0);
  auto drows = takef((size_t)cap * e);
  auto g = takef((size_t)n_ids * e);
  std::vector<act_t> dz(dzf.size());
  for (size_t i = 0; i < dz.size(); ++i) dz[i] = f_to_act(dzf[i]);

  std::vector<unsigned> flags(n_ids, 0), slots(n_ids), list(cap, 0), count(1, 0);
  launch(2, 256, [&] { ncf_mark(ids.data(), n, flags.data()); });
  launch(1, 1024, [&] { ncf_slots(flags.data(), n_ids, slots.data(), list.data(), count.data()); });
  for (unsigned f : flags)
    if (f) { fprintf(stderr, "ncf_slots left a flag set\n"); return 1; }
  std::vector<unsigned> keys(n), vals(n);
  launch(2, 256, [&] { ncf_keys(ids.data(), n, slots.data(), keys.data(), vals.data()); });
  // The radix sort: passes of 8 bits, ping-pong between two buffer pairs.
  unsigned tiles = (n + NCF_TILE - 1) / NCF_TILE, bits = 0;
  while ((1ull << bits) < cap) ++bits;
  unsigned passes = bits == 0 ? 1 : (bits + 7) / 8;
  std::vector<unsigned> ka = keys, va = vals, kb(n), vb(n), hist((size_t)NCF_RADIX * tiles);
  for (unsigned p = 0; p < passes; ++p) {
    unsigned shift = 8 * p;
    launch(tiles, 256, [&] { ncf_radix_hist(ka.data(), n, shift, hist.data()); });
    launch(1, 1024, [&] { ncf_scan(hist.data(), (unsigned)hist.size()); });
    launch(tiles, 256, [&] { ncf_radix_scatter(ka.data(), va.data(), n, shift, hist.data(), kb.data(), vb.data()); });
    std::swap(ka, kb);
    std::swap(va, vb);
  }
  std::vector<unsigned> starts(cap + 1, 0);
  launch(2, 256, [&] { ncf_segments(ka.data(), n, count.data(), starts.data()); });
  std::vector<act_t> rows((size_t)cap * e);
  launch(2, 256, [&] { ncf_gather_rows(list.data(), count.data(), cap, e, table.data(), rows.data()); });
  std::vector<float> z((size_t)n * w0);
  // Both sides' keys are this side's here: z[b] = pu[k[b]] + pi[k[b]].
  launch(2, 256, [&] { ncf_factored_z(keys.data(), keys.data(), n, w0, pu.data(), pi.data(), z.data()); });
  std::vector<act_t> sums((size_t)cap * w0);
  launch(2, 256, [&] { ncf_segment_sum(dz.data(), w0, va.data(), starts.data(), count.data(), cap, sums.data()); });
  launch(2, 256, [&] { ncf_scatter_rows(list.data(), count.data(), e, drows.data(), g.data()); });

  out = fopen(argv[2], "wb");
  put(slots); put(list); put(count); put(keys); put(ka); put(va); put(starts);
  putf(of_act(rows)); putf(z); putf(of_act(sums)); putf(g);
  fclose(out);
  return 0;
}
