//! Forward and backward of a tile of samples (a few hundred rows) with GEMMs: the fast path of
//! the CPU backend. Activations of a tile stay in cache; the whole batch is never materialised.
//!
//! Rows are samples, activations are row-major `[rows, width]`, weights `[out, in]` as PyTorch.
//! Per layer k: forward `Z = X_k · W_kᵀ`, then `X_(k+1) = dropout(relu(Z + b_k))` in place;
//! backward `dZ = dX_(k+1) ⊙ [X_(k+1) > 0] · scale`, `dW_k += dZᵀ · X_k`, `db_k += Σ_rows dZ`,
//! `dX_k = dZ · W_k`. The same math as [`super::reference`], one row at a time there.

use crate::model::dropout::{dropout_block, DropoutKey};
use crate::model::Model;

/// `C = beta·C + A·B` for `A: [m, k]`, `B: [k, n]`, `C: [m, n]`, each given by (row stride,
/// column stride) in elements, on `matrixmultiply` (it beat `gemm` 0.19 on the trainer's tiles,
/// BENCHMARKS.md). Bounds are checked here so the unsafe call cannot leave the slices.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn sgemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, n, rsc, csc) < c.len(), "sgemm: C too small");
    if k == 0 {
        c.iter_mut().for_each(|x| *x *= beta);
        return;
    }
    assert!(last(m, k, rsa, csa) < a.len(), "sgemm: A too small");
    assert!(last(k, n, rsb, csb) < b.len(), "sgemm: B too small");
    let s = |x: usize| x as isize;
    // SAFETY: every element addressed lies within the slices (checked above), C does not alias
    // A or B (it is a distinct &mut).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            s(rsa),
            s(csa),
            b.as_ptr(),
            s(rsb),
            s(csb),
            beta,
            c.as_mut_ptr(),
            s(rsc),
            s(csc),
        );
    }
}

/// Offsets of the model's tensors in the flat parameter vector (0 for absent ones).
#[derive(Clone, Debug)]
pub struct Net {
    /// GMF factors (0 without GMF).
    pub f: usize,
    /// MLP embedding width per side (0 without MLP).
    pub e: usize,
    /// MLP widths, input first (empty without MLP).
    pub layers: Vec<usize>,
    pub mf_user: usize,
    pub mf_item: usize,
    pub mlp_user: usize,
    pub mlp_item: usize,
    pub w: Vec<usize>,
    pub b: Vec<usize>,
    pub fw: usize,
    pub fb: usize,
}

impl Net {
    pub fn new(model: &Model) -> Net {
        let c = &model.config;
        let l = &model.layout;
        let off = |name: &str| l.get(name).map_or(0, |t| t.offset);
        let nl = c.n_linear();
        Net {
            f: c.gmf_factors(),
            e: c.mlp_embed(),
            layers: if c.kind.has_mlp() {
                c.layers.clone()
            } else {
                vec![]
            },
            mf_user: off("mf_user_embed.weight"),
            mf_item: off("mf_item_embed.weight"),
            mlp_user: off("mlp_user_embed.weight"),
            mlp_item: off("mlp_item_embed.weight"),
            w: (0..nl).map(|k| off(&format!("mlp.{k}.weight"))).collect(),
            b: (0..nl).map(|k| off(&format!("mlp.{k}.bias"))).collect(),
            fw: off("final.weight"),
            fb: off("final.bias"),
        }
    }

    pub fn n_linear(&self) -> usize {
        self.layers.len().saturating_sub(1)
    }
}

/// Buffers of one thread for tiles of up to `rows` samples.
#[derive(Clone, Debug, Default)]
pub struct Work {
    pub rows: usize,
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub label: Vec<f32>,
    /// Unshuffled epoch index of each sample (addresses its dropout mask).
    pub index: Vec<u64>,
    /// Factored first layer only: each row's slot in the user / item projection tables.
    pub su: Vec<u32>,
    pub si: Vec<u32>,
    /// `xs[0]`: MLP input; `xs[k + 1]`: output of layer k after ReLU and dropout.
    pub xs: Vec<Vec<f32>>,
    pub logit: Vec<f32>,
    /// GMF product of one row.
    pub gmf: Vec<f32>,
    pub dlogit: Vec<f32>,
    /// Two gradient buffers of `rows × max width`, swapped layer by layer.
    pub da: Vec<f32>,
    pub db: Vec<f32>,
}

impl Work {
    pub fn new(net: &Net, rows: usize) -> Work {
        let wmax = net.layers.iter().copied().max().unwrap_or(0);
        Work {
            rows,
            user: Vec::with_capacity(rows),
            item: Vec::with_capacity(rows),
            label: Vec::with_capacity(rows),
            index: Vec::with_capacity(rows),
            su: Vec::with_capacity(rows),
            si: Vec::with_capacity(rows),
            xs: net.layers.iter().map(|w| vec![0f32; rows * w]).collect(),
            logit: vec![0f32; rows],
            gmf: vec![],
            dlogit: vec![0f32; rows],
            da: vec![0f32; rows * wmax],
            db: vec![0f32; rows * wmax],
        }
    }

    pub fn clear(&mut self) {
        self.user.clear();
        self.item.clear();
        self.label.clear();
        self.index.clear();
        self.su.clear();
        self.si.clear();
    }
}

/// `⟨a, b⟩` with eight partial sums (vectorises; the order is fixed, so results are too): GMF's
/// score here, and MF's in its per-example update ([`crate::family::mf::update`]), which must
/// score exactly as the GMF file it is saved as.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// ReLU that lets NaN through (as PyTorch), so a diverged model shows in the loss.
#[inline(always)]
fn relu(z: f32) -> f32 {
    if z < 0.0 {
        0.0
    } else {
        z
    }
}

/// Multiply a row of layer `layer` by its dropout factors (0 or scale).
#[inline(always)]
fn apply_dropout(row: &mut [f32], key: &DropoutKey, s: u64, layer: u32, scale: f32) {
    for (b, chunk) in row.chunks_mut(16).enumerate() {
        let w = dropout_block(&key.rng, s, key.epoch, layer, b as u32);
        // Unit j of the block is byte j of the little-endian words.
        let mut bytes = [0u8; 16];
        for (q, word) in w.iter().enumerate() {
            bytes[4 * q..4 * q + 4].copy_from_slice(&word.to_le_bytes());
        }
        let mut factor = [0f32; 16];
        for (f, byte) in factor.iter_mut().zip(bytes) {
            *f = if byte as u32 >= key.threshold {
                scale
            } else {
                0.0
            };
        }
        for (x, f) in chunk.iter_mut().zip(factor) {
            *x *= f;
        }
    }
}

/// Ask for the cache lines of `row` ahead of use (embedding rows are random accesses).
#[inline(always)]
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for k in (0..row.len()).step_by(16) {
        // SAFETY: prefetch is a hint, the address is inside `row`.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(k) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// How many rows ahead embedding rows are prefetched.
const AHEAD: usize = 4;

/// The first MLP layer factored over users and items (training fast path, see
/// [`super::factored`]): `Z_0 = E_u · W_uᵀ + E_i · W_iᵀ` where `W_0 = [W_u | W_i]`, so the
/// products are computed once per distinct user and item of a step instead of once per sample.
/// Row `r` of a tile reads `user[su[r]]` and `item[si[r]]` (`width` = first layer's output).
#[derive(Clone, Copy, Debug)]
pub struct Projections<'a> {
    pub user: &'a [f32],
    pub item: &'a [f32],
}

/// Where the factored first layer's backward leaves `dZ_0`: summed per user slot and per item
/// slot (`[slots, width]`), to be turned into weight and embedding gradients once per step.
#[derive(Debug)]
pub struct Aggregates<'a> {
    pub user: &'a mut [f32],
    pub item: &'a mut [f32],
}

/// Sparse gradients: a thread's embedding gradients by user and item slot (`work.su`,
/// `work.si`) instead of in the dense vector's rows (the same additions in the same order).
/// GMF rows are `[slots, factors]`; MLP rows `[slots, e]` (unused with [`Aggregates`]: the
/// factored first layer makes them once per slot, [`super::factored::Factored::finish`]).
#[derive(Debug)]
pub struct SlotGrads<'a> {
    pub gmf_user: &'a mut [f32],
    pub gmf_item: &'a mut [f32],
    pub mlp_user: &'a mut [f32],
    pub mlp_item: &'a mut [f32],
}

/// Forward pass of the `n = work.user.len()` samples in `work`: fills `work.xs` and `work.logit`.
pub fn forward(net: &Net, p: &[f32], work: &mut Work, dropout: Option<&DropoutKey>) {
    forward_with(net, p, work, dropout, None)
}

/// [`forward`], with the first layer's products read from `first` (slots in `work.su`,
/// `work.si`) instead of a GEMM over gathered embeddings; `work.xs[0]` is then not filled.
pub fn forward_with(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    dropout: Option<&DropoutKey>,
    first: Option<Projections>,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { forward_avx2(net, p, work, dropout, first) };
    }
    forward_body(net, p, work, dropout, first)
}

/// Whether the AVX2 + FMA builds of the tile loops can run (same results: Rust never contracts
/// `a * b + c` into an FMA, so only vector width changes, not rounding).
#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    dropout: Option<&DropoutKey>,
    first: Option<Projections>,
) {
    forward_body(net, p, work, dropout, first)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_avx2(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    g: &mut [f32],
    scale: f32,
    first: Option<Aggregates>,
    slots: Option<SlotGrads>,
) {
    backward_body(net, p, work, g, scale, first, slots)
}

#[inline(always)]
fn forward_body(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    dropout: Option<&DropoutKey>,
    first: Option<Projections>,
) {
    let n = work.user.len();
    debug_assert!(n <= work.rows);
    let (f, e) = (net.f, net.e);
    let nl = net.n_linear();
    let scale = dropout.map_or(1.0, |d| super::dropout_scale(d.threshold));
    let mut start = 0;
    if let (Some(pr), true) = (first, nl > 0) {
        // Layer 0 from the per-user and per-item products.
        let no = net.layers[1];
        let bias = &p[net.b[0]..net.b[0] + no];
        let xout = &mut work.xs[1];
        debug_assert!(work.su.len() == n && work.si.len() == n);
        for r in 0..n {
            if r + AHEAD < n {
                let (a, b) = (work.su[r + AHEAD] as usize, work.si[r + AHEAD] as usize);
                prefetch(&pr.user[a * no..(a + 1) * no]);
                prefetch(&pr.item[b * no..(b + 1) * no]);
            }
            let (a, b) = (work.su[r] as usize, work.si[r] as usize);
            let (zu, zi) = (
                &pr.user[a * no..(a + 1) * no],
                &pr.item[b * no..(b + 1) * no],
            );
            let row = &mut xout[r * no..(r + 1) * no];
            for (((z, x), y), b) in row.iter_mut().zip(zu).zip(zi).zip(bias) {
                *z = relu((x + y) + b);
            }
            if let Some(key) = dropout {
                apply_dropout(row, key, work.index[r], 0, scale);
            }
        }
        start = 1;
    } else if nl > 0 {
        let l0 = net.layers[0];
        let x0 = &mut work.xs[0];
        for r in 0..n {
            if r + AHEAD < n {
                let (u, i) = (work.user[r + AHEAD] as usize, work.item[r + AHEAD] as usize);
                prefetch(&p[net.mlp_user + u * e..net.mlp_user + (u + 1) * e]);
                prefetch(&p[net.mlp_item + i * e..net.mlp_item + (i + 1) * e]);
                if f > 0 {
                    prefetch(&p[net.mf_user + u * f..net.mf_user + (u + 1) * f]);
                    prefetch(&p[net.mf_item + i * f..net.mf_item + (i + 1) * f]);
                }
            }
            let (u, i) = (work.user[r] as usize, work.item[r] as usize);
            let row = &mut x0[r * l0..(r + 1) * l0];
            row[..e].copy_from_slice(&p[net.mlp_user + u * e..net.mlp_user + (u + 1) * e]);
            row[e..].copy_from_slice(&p[net.mlp_item + i * e..net.mlp_item + (i + 1) * e]);
        }
    }
    for k in start..nl {
        let (ni, no) = (net.layers[k], net.layers[k + 1]);
        let (before, after) = work.xs.split_at_mut(k + 1);
        let (xin, xout) = (&before[k], &mut after[0]);
        let w = &p[net.w[k]..net.w[k] + no * ni];
        // Z = X · Wᵀ: Wᵀ is W read with swapped strides.
        sgemm((n, ni, no), xin, (ni, 1), w, (1, ni), 0.0, xout, (no, 1));
        let bias = &p[net.b[k]..net.b[k] + no];
        for r in 0..n {
            let row = &mut xout[r * no..(r + 1) * no];
            for (z, b) in row.iter_mut().zip(bias) {
                *z = relu(*z + b);
            }
            if let Some(key) = dropout {
                apply_dropout(row, key, work.index[r], k as u32, scale);
            }
        }
    }
    let lo = if nl > 0 { net.layers[nl] } else { 0 };
    let fw = &p[net.fw..net.fw + f + lo];
    let fb = p[net.fb];
    work.gmf.resize(f, 0.0);
    for r in 0..n {
        let mut s = 0f32;
        if f > 0 && (start > 0 || nl == 0) && r + AHEAD < n {
            // No embedding gather above asked for the GMF rows: ask for them here.
            let (u, i) = (work.user[r + AHEAD] as usize, work.item[r + AHEAD] as usize);
            prefetch(&p[net.mf_user + u * f..net.mf_user + (u + 1) * f]);
            prefetch(&p[net.mf_item + i * f..net.mf_item + (i + 1) * f]);
        }
        if f > 0 {
            let (u, i) = (work.user[r] as usize, work.item[r] as usize);
            let mu = &p[net.mf_user + u * f..net.mf_user + (u + 1) * f];
            let mi = &p[net.mf_item + i * f..net.mf_item + (i + 1) * f];
            for ((gj, a), b) in work.gmf.iter_mut().zip(mu).zip(mi) {
                *gj = a * b;
            }
            s += dot(&fw[..f], &work.gmf);
        }
        if nl > 0 {
            s += dot(&fw[f..], &work.xs[nl][r * lo..(r + 1) * lo]);
        }
        work.logit[r] = s + fb;
    }
}

/// Backward pass of the tile after [`forward`]: adds the gradients of `Σ dlogit · logit` to `g`
/// (the flat layout), given `work.dlogit`.
pub fn backward(net: &Net, p: &[f32], work: &mut Work, g: &mut [f32], scale: f32) {
    backward_with(net, p, work, g, scale, None, None)
}

/// [`backward`] after [`forward_with`] with projections: the first layer's `dZ_0` rows are
/// added into `first` (by slot) instead of becoming `dW_0` and embedding gradients here; its
/// bias gradient is still added to `g`. With `slots`, embedding gradients go there by slot
/// instead of into `g`.
pub fn backward_with(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    g: &mut [f32],
    scale: f32,
    first: Option<Aggregates>,
    slots: Option<SlotGrads>,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { backward_avx2(net, p, work, g, scale, first, slots) };
    }
    backward_body(net, p, work, g, scale, first, slots)
}

#[inline(always)]
fn backward_body(
    net: &Net,
    p: &[f32],
    work: &mut Work,
    g: &mut [f32],
    scale: f32,
    first: Option<Aggregates>,
    mut slots: Option<SlotGrads>,
) {
    let n = work.user.len();
    let f = net.f;
    let nl = net.n_linear();
    let lo = if nl > 0 { net.layers[nl] } else { 0 };
    // Final layer.
    for r in 0..n {
        if f > 0 && r + AHEAD < n && slots.is_none() {
            let (u, i) = (work.user[r + AHEAD] as usize, work.item[r + AHEAD] as usize);
            prefetch(&g[net.mf_user + u * f..net.mf_user + (u + 1) * f]);
            prefetch(&g[net.mf_item + i * f..net.mf_item + (i + 1) * f]);
        }
        let d = work.dlogit[r];
        g[net.fb] += d;
        if f > 0 {
            let (u, i) = (work.user[r] as usize, work.item[r] as usize);
            let (ou, oi) = (net.mf_user + u * f, net.mf_item + i * f);
            // The embedding gradients go to the dense rows or to the rows' slots.
            let (gu, gi) = match slots.as_mut() {
                Some(sg) => {
                    let (a, b) = (work.su[r] as usize * f, work.si[r] as usize * f);
                    (&mut sg.gmf_user[a..a + f], &mut sg.gmf_item[b..b + f])
                }
                None if ou < oi => {
                    let (lo_part, hi_part) = g.split_at_mut(oi);
                    (&mut lo_part[ou..ou + f], &mut hi_part[..f])
                }
                None => {
                    let (lo_part, hi_part) = g.split_at_mut(ou);
                    (&mut hi_part[..f], &mut lo_part[oi..oi + f])
                }
            };
            for j in 0..f {
                let (mu, mi) = (p[ou + j], p[oi + j]);
                let dg = d * p[net.fw + j];
                gu[j] += dg * mi;
                gi[j] += dg * mu;
            }
            for j in 0..f {
                g[net.fw + j] += d * (p[ou + j] * p[oi + j]);
            }
        }
        if nl > 0 {
            let x = &work.xs[nl][r * lo..(r + 1) * lo];
            let gw = &mut g[net.fw + f..net.fw + f + lo];
            for (gj, xj) in gw.iter_mut().zip(x) {
                *gj += d * xj;
            }
        }
    }
    if nl == 0 {
        return;
    }
    // dZ of the last layer: d · final.weight, through dropout and ReLU.
    {
        let fw = &p[net.fw + f..net.fw + f + lo];
        let x = &work.xs[nl];
        for r in 0..n {
            let d = work.dlogit[r];
            let row = &mut work.da[r * lo..(r + 1) * lo];
            for j in 0..lo {
                row[j] = if x[r * lo + j] > 0.0 {
                    d * fw[j] * scale
                } else {
                    0.0
                };
            }
        }
    }
    let last = usize::from(first.is_some());
    for k in (last..nl).rev() {
        let (ni, no) = (net.layers[k], net.layers[k + 1]);
        let dz = &work.da[..n * no];
        let xin = &work.xs[k][..n * ni];
        // dW += dZᵀ · X
        let gw = &mut g[net.w[k]..net.w[k] + no * ni];
        sgemm((no, n, ni), dz, (1, no), xin, (ni, 1), 1.0, gw, (ni, 1));
        let gb = &mut g[net.b[k]..net.b[k] + no];
        for r in 0..n {
            for (b, d) in gb.iter_mut().zip(&dz[r * no..(r + 1) * no]) {
                *b += d;
            }
        }
        // dX = dZ · W
        let w = &p[net.w[k]..net.w[k] + no * ni];
        let dx = &mut work.db[..n * ni];
        sgemm((n, no, ni), dz, (no, 1), w, (ni, 1), 0.0, dx, (ni, 1));
        if k > 0 {
            for (d, x) in dx.iter_mut().zip(xin) {
                *d = if *x > 0.0 { *d * scale } else { 0.0 };
            }
        }
        std::mem::swap(&mut work.da, &mut work.db);
    }
    if let Some(agg) = first {
        // da holds dZ_0: bias gradient here, the rest summed per user and per item slot.
        let no = net.layers[1];
        let gb = &mut g[net.b[0]..net.b[0] + no];
        for r in 0..n {
            let d = &work.da[r * no..(r + 1) * no];
            for (b, x) in gb.iter_mut().zip(d) {
                *b += x;
            }
            let (a, b) = (work.su[r] as usize, work.si[r] as usize);
            for (s, x) in agg.user[a * no..(a + 1) * no].iter_mut().zip(d) {
                *s += x;
            }
            for (s, x) in agg.item[b * no..(b + 1) * no].iter_mut().zip(d) {
                *s += x;
            }
        }
        return;
    }
    // da holds dX_0: scatter into the embedding rows (or add by slot).
    let e = net.e;
    let l0 = net.layers[0];
    if let Some(sg) = slots {
        for r in 0..n {
            let (a, b) = (work.su[r] as usize * e, work.si[r] as usize * e);
            let d = &work.da[r * l0..(r + 1) * l0];
            for (gj, dj) in sg.mlp_user[a..a + e].iter_mut().zip(&d[..e]) {
                *gj += dj;
            }
            for (gj, dj) in sg.mlp_item[b..b + e].iter_mut().zip(&d[e..]) {
                *gj += dj;
            }
        }
        return;
    }
    for r in 0..n {
        if r + AHEAD < n {
            let (u, i) = (work.user[r + AHEAD] as usize, work.item[r + AHEAD] as usize);
            prefetch(&g[net.mlp_user + u * e..net.mlp_user + (u + 1) * e]);
            prefetch(&g[net.mlp_item + i * e..net.mlp_item + (i + 1) * e]);
        }
        let (u, i) = (work.user[r] as usize, work.item[r] as usize);
        let d = &work.da[r * l0..(r + 1) * l0];
        for (gj, dj) in g[net.mlp_user + u * e..net.mlp_user + (u + 1) * e]
            .iter_mut()
            .zip(&d[..e])
        {
            *gj += dj;
        }
        for (gj, dj) in g[net.mlp_item + i * e..net.mlp_item + (i + 1) * e]
            .iter_mut()
            .zip(&d[e..])
        {
            *gj += dj;
        }
    }
}
