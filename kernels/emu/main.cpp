// Cases for kernels/emu/run.sh: each kernel on small odd and vector-friendly shapes; dumps outputs.
#include <cstdio>
#include <random>
#include "launch.h"
#include KFILE

FILE* out;
template <class T> void dump(const char* name, const std::vector<T>& v) { fprintf(out, "%s %zu\n", name, v.size() * sizeof(T)); fwrite(v.data(), sizeof(T), v.size(), out); fprintf(out, "\n"); }
template <class T> std::vector<T> aligned_vec(size_t n) { return std::vector<T>(n); }
std::mt19937 rng(42);
float rnd(float s) { return std::uniform_real_distribution<float>(-s, s)(rng); }

int main(int argc, char** argv) {
  out = fopen(argv[1], "wb");
  unsigned k0 = 0x12345678u, k1 = 0x9abcdef0u;
  // fwd/bwd
  for (unsigned width : {48u, 16u, 8u, 256u, 12u, 64u}) for (unsigned thr : {0u, 128u, 77u}) {
    rng.seed(width * 1000 + thr);
    unsigned batch = 37;
    std::vector<float> z(batch * width), bias(width), da(batch * width);
    for (auto& x : z) x = rnd(1); for (auto& x : bias) x = rnd(0.5); for (auto& x : da) x = rnd(1);
    std::vector<unsigned> sample(batch); for (auto& s : sample) s = rng() % 100000;
    std::vector<act_t> a(batch * width), dz(batch * width);
    std::vector<float> dbias(width, 0.0f);
    float scale = thr ? 256.0f / (256 - thr) : 1.0f;
    unsigned groups = (width + 15) / 16, rpb = 256 / groups, grid = std::min<unsigned>((batch + rpb - 1) / rpb, 2);
    launch(grid, 256, [&] { ncf_bias_relu_dropout_fwd(z.data(), bias.data(), a.data(), sample.data(), batch, width, 2, 5, k0, k1, thr, scale); });
    launch(grid, 256, [&] { ncf_bias_relu_dropout_bwd(da.data(), a.data(), dz.data(), dbias.data(), sample.data(), batch, width, 2, 5, k0, k1, thr, scale); });
    dump("fwd_a", a); dump("bwd_dz", dz); dump("~bwd_dbias", dbias);
  }
  // final
  for (auto [f, lout] : std::vector<std::pair<unsigned, unsigned>>{{8, 8}, {64, 64}, {6, 5}, {0, 8}, {8, 0}, {0, 16}, {200, 56}}) for (int train : {1, 0}) for (unsigned batch : {45u, 600u}) {
    rng.seed(f * 100 + lout + train + batch);
    unsigned nu = 7, ni = 9;
    std::vector<unsigned> users(batch), items(batch); for (auto& u : users) u = rng() % nu; for (auto& i : items) i = rng() % ni;
    std::vector<float> labels(batch); for (auto& l : labels) l = rng() % 2;
    std::vector<float> mfu(nu * f + 4), mfi(ni * f + 4), fw(f + lout + 4), fb(1, 0.1f);
    for (auto& x : mfu) x = rnd(1); for (auto& x : mfi) x = rnd(1); for (auto& x : fw) x = rnd(1);
    std::vector<act_t> xl(batch * lout + 4); for (auto& x : xl) x = f_to_act(rnd(1));
    std::vector<float> gmu(nu * f + 4), gmi(ni * f + 4), gfw(f + lout + 4), gfb(1), dx(batch * lout + 4);
    std::vector<double> loss(1);
    std::vector<float> logits = labels;
    float* lp = train ? labels.data() : logits.data();
    launch(batch > 100 ? 1 : 2, 256, [&] { ncf_final(users.data(), items.data(), lp, batch, f, f ? mfu.data() : nullptr, f ? mfi.data() : nullptr, lout ? xl.data() : nullptr, lout, fw.data(), fb.data(), train, 1.0f / batch, lp, loss.data(), gmu.data(), gmi.data(), gfw.data(), gfb.data(), dx.data()); });
    dump("~fin_logits", logits); dump("~fin_loss", loss); dump("~fin_gmu", gmu); dump("~fin_gmi", gmi); dump("~fin_gfw", gfw); dump("~fin_gfb", gfb); dump("~fin_dx", dx);
  }
  // gather / scatter
  for (unsigned e : {16u, 6u, 128u, 4u}) for (unsigned batch : {29u, 900u}) {
    unsigned nu = 5, ni = 8;
    std::vector<unsigned> users(batch), items(batch); for (auto& u : users) u = rng() % nu; for (auto& i : items) i = rng() % ni;
    std::vector<float> eu(nu * e), ei(ni * e), dx0(batch * 2 * e), gu(nu * e), gi(ni * e);
    for (auto& x : eu) x = rnd(1); for (auto& x : ei) x = rnd(1); for (auto& x : dx0) x = rnd(1);
    std::vector<act_t> x0(batch * 2 * e);
    unsigned tot = batch * 2 * e, grid = batch > 100 ? 1 : std::min(3u, (tot + 255) / 256);
    launch(grid, 256, [&] { ncf_gather(users.data(), items.data(), batch, e, eu.data(), ei.data(), x0.data()); });
    launch(grid, 256, [&] { ncf_scatter(users.data(), items.data(), batch, e, dx0.data(), gu.data(), gi.data()); });
    dump("gather", x0); dump("~scatter_u", gu); dump("~scatter_i", gi);
  }
  // adam
  for (unsigned n : {1003u, 16u, 3u}) for (int sgd : {0, 1}) for (int skip : {0, 1}) {
    std::vector<float> p(n), g(n), m(n), v(n);
    for (auto& x : p) x = rnd(0.1); for (auto& x : g) x = rnd(0.01); for (auto& x : m) x = rnd(0.01); for (auto& x : v) x = std::fabs(rnd(1e-4));
    int fi = skip;
    launch(2, 256, [&] { ncf_adam(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 1e-3f, 0.0021f, 0.07f, 0.5f, &fi, sgd); });
    dump("adam_p", p); dump("adam_g", g); dump("adam_m", m); dump("adam_v", v);
  }
  for (unsigned n : {1003u, 16u, 3u}) for (int pos : {-1, 0, 500, 1001, 2}) {
    if (pos >= (int)n) continue;
    std::vector<float> g(n, 0.5f); if (pos >= 0) g[pos] = (pos & 1) ? INFINITY : NAN;
    int found = 0;
    launch(2, 256, [&] { ncf_check_finite(g.data(), n, &found); });
    dump("finite", std::vector<int>{found});
  }
  fclose(out);
}
