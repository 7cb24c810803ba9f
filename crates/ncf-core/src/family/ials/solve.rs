//! iALS's half-epoch: the Gramian of the fixed side (one symmetric rank-k product), then every
//! row of the other side solved exactly (Cholesky, f64) or by a few conjugate-gradient steps
//! (f32) warm-started from the row's previous value; and the objective's sum over the observed
//! pairs.
//!
//! Same bits whatever the thread count: rows are handed to threads in blocks, but each row's
//! arithmetic reads only the fixed side, the Gramian and the row itself, in the order
//! [`super::kernels`] writes out, and each Gramian element is one sum over the rows in order.
//! Where the CPU has AVX2 and FMA the kernels' intrinsics run, computing the same bits as the
//! portable reference.

#[cfg(target_arch = "x86_64")]
use super::kernels::Fma;
use super::kernels::{has_fma, Kernels, Portable, TJ, TK};
use crate::data::csr::Csr;

/// Rows a Gramian pass converts to f64 at a time (kept in L1 while every tile reads them).
const GRAM_CHUNK: usize = 16;
/// Rows a solver thread takes at a time.
const BLOCK_ROWS: usize = 32;
/// Observed rows ahead that the conjugate-gradient loops prefetch.
const AHEAD: usize = 4;

/// How a half-epoch solves its rows (`--ials-solver`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Each row's normal equations by Cholesky in f64: the exact minimiser. The solver of every
    /// model file and checkpoint written before the flag (they name none).
    #[default]
    Exact,
    /// [`CG_STEPS`] conjugate-gradient steps per row in f32, warm-started from the row's current
    /// value (Takács, Pilászy & Tikk 2011; the default of the `implicit` library).
    Cg,
}

impl Solver {
    /// `--ials-solver`'s spelling.
    pub fn name(self) -> &'static str {
        match self {
            Solver::Exact => "exact",
            Solver::Cg => "cg",
        }
    }

    /// Whether it is the exact solver (model files name only the others).
    pub fn is_exact(&self) -> bool {
        *self == Solver::Exact
    }
}

/// Conjugate-gradient steps per row and half-epoch (implicit's default too): on the paper's ml-1m
/// validation split at 192 factors, 2 steps still climb at epoch 16, 3 peak at epoch 8 and 5 at
/// epoch 7 for 1.5× the work (docs/RESULTS.md); with 3, cg matches exact's accuracy.
pub const CG_STEPS: usize = 3;

/// `Σ_r x_r x_rᵀ` of the `d`-wide rows of `table` (`d × d`, row-major, both triangles), each
/// element summed over the rows in order in f64 (the products of two f32 are exact in f64), on
/// `threads` threads that split the output rows: the same bits for any thread count.
pub fn gramian(table: &[f32], d: usize, threads: usize) -> Vec<f64> {
    let mut g = vec![0f64; d * d];
    if d == 0 {
        return g;
    }
    let bands = d.div_ceil(TJ);
    let threads = threads.clamp(1, bands);
    // Band b (output rows b·TJ ..) goes to thread b mod threads.
    let mut shares: Vec<Vec<(usize, &mut [f64])>> = (0..threads).map(|_| Vec::new()).collect();
    for (b, band) in g.chunks_mut(TJ * d).enumerate() {
        shares[b % threads].push((b * TJ, band));
    }
    std::thread::scope(|sc| {
        for mut share in shares {
            sc.spawn(move || {
                #[cfg(target_arch = "x86_64")]
                if has_fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { gramian_bands_fma(table, d, &mut share) };
                }
                // SAFETY: Portable runs anywhere.
                unsafe { gramian_bands::<Portable>(table, d, &mut share) }
            });
        }
    });
    // The upper triangle from the lower (the same sums: products commute exactly).
    for j in 0..d {
        for k in j + 1..d {
            g[j * d + k] = g[k * d + j];
        }
    }
    g
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gramian_bands_fma(table: &[f32], d: usize, bands: &mut [(usize, &mut [f64])]) {
    gramian_bands::<Fma>(table, d, bands)
}

/// The lower-triangle tiles of `bands` (`(j0, rows j0 .. of the output)`), over
/// [`GRAM_CHUNK`] rows of `table` at a time, converted to f64 and zero-padded to whole tiles.
#[inline(always)]
unsafe fn gramian_bands<K: Kernels>(table: &[f32], d: usize, bands: &mut [(usize, &mut [f64])]) {
    let dp = d.div_ceil(TK) * TK;
    let mut chunk = vec![0f64; GRAM_CHUNK * dp];
    for rows in table.chunks(GRAM_CHUNK * d) {
        let n = rows.len() / d;
        for (src, dst) in rows.chunks_exact(d).zip(chunk.chunks_exact_mut(dp)) {
            for (y, &x) in dst.iter_mut().zip(src) {
                *y = x as f64;
            }
        }
        for (j0, band) in bands.iter_mut() {
            K::band_add(&chunk[..n * dp], dp, d, *j0, band);
        }
    }
}

/// Solves the rows of `out` (`d` wide, one per row of `rows`) in blocks of [`BLOCK_ROWS`]:
/// `work(state, first_row, block)`, on `threads` threads that take the blocks in turn, each
/// with its own `state` from `init` (nothing is allocated per row). `Err` with the lowest row
/// whose `work` failed (`work` returns the first failing row of its block).
pub fn for_each_block<S>(
    rows: usize,
    out: &mut [f32],
    d: usize,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize, &mut [f32]) -> Result<(), usize> + Sync,
) -> Result<(), usize> {
    debug_assert_eq!(out.len(), rows * d);
    if d == 0 || out.is_empty() {
        return Ok(());
    }
    let blocks = std::sync::Mutex::new(out.chunks_mut(BLOCK_ROWS * d).enumerate());
    let failed = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let threads = threads.clamp(1, rows.div_ceil(BLOCK_ROWS));
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                let mut state = init();
                loop {
                    // After a failure no block is claimed: every lower one is claimed already.
                    if failed.load(std::sync::atomic::Ordering::Relaxed) != usize::MAX {
                        return;
                    }
                    let next = blocks.lock().expect("a solver thread panicked").next();
                    let Some((b, block)) = next else {
                        return;
                    };
                    if let Err(r) = work(&mut state, b * BLOCK_ROWS, block) {
                        failed.fetch_min(r, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match failed.into_inner() {
        usize::MAX => Ok(()),
        r => Err(r),
    }
}

/// The exact row solver's buffers: the `d × d` system, the right-hand side and a chunk of
/// observed rows in f64.
pub struct ExactState {
    a: Vec<f64>,
    b: Vec<f64>,
    chunk: Vec<f64>,
}

impl ExactState {
    pub fn new(d: usize) -> Self {
        ExactState {
            a: vec![0.0; d * d],
            b: vec![0.0; d],
            chunk: vec![0.0; GRAM_CHUNK * d.div_ceil(TK) * TK],
        }
    }
}

/// Rows `first ..` of `rows`' matrix into `block` by [`exact_row`]. `Err` with the first row
/// whose system is not positive definite.
pub fn exact_block(
    base: &[f64],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f64,
    s: &mut ExactState,
) -> Result<(), usize> {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { exact_block_fma(base, other, rows, (first, block), shift, s) };
    }
    // SAFETY: Portable runs anywhere.
    unsafe { exact_block_with::<Portable>(base, other, rows, (first, block), shift, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exact_block_fma(
    base: &[f64],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f64,
    s: &mut ExactState,
) -> Result<(), usize> {
    exact_block_with::<Fma>(base, other, rows, (first, block), shift, s)
}

#[inline(always)]
unsafe fn exact_block_with<K: Kernels>(
    base: &[f64],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f64,
    s: &mut ExactState,
) -> Result<(), usize> {
    let d = base.len().isqrt();
    for (k, dst) in block.chunks_exact_mut(d).enumerate() {
        let cols = rows.row(first + k);
        exact_row::<K>(base, other, cols, shift(cols.len()), dst, s).map_err(|_| first + k)?;
    }
    Ok(())
}

/// Row `dst` = the exact minimiser: `A x = b` with `A = base + shift·1 + Σ_{c∈cols} h_c h_cᵀ`,
/// `b = Σ_{c∈cols} h_c` (`base`: α₀ times the fixed side's Gramian, f64; `h_c`: row `c` of
/// `other`), by Cholesky in f64; zero when `cols` is empty. `A`'s lower triangle is summed
/// element by element over `cols` in order (as the Gramian), `b` likewise. `Err` when `A` is
/// not positive definite.
#[inline(always)]
unsafe fn exact_row<K: Kernels>(
    base: &[f64],
    other: &[f32],
    cols: &[u32],
    shift: f64,
    dst: &mut [f32],
    s: &mut ExactState,
) -> Result<(), ()> {
    let d = dst.len();
    if cols.is_empty() {
        // No observations: the minimiser is zero.
        dst.fill(0.0);
        return Ok(());
    }
    let dp = d.div_ceil(TK) * TK;
    let ExactState { a, b, chunk } = s;
    a.copy_from_slice(base);
    b.fill(0.0);
    for part in cols.chunks(GRAM_CHUNK) {
        for (&c, x) in part.iter().zip(chunk.chunks_exact_mut(dp)) {
            let src = &other[c as usize * d..c as usize * d + d];
            for ((xv, bv), &v) in x.iter_mut().zip(b.iter_mut()).zip(src) {
                *xv = v as f64;
                *bv += v as f64;
            }
        }
        let rows = &chunk[..part.len() * dp];
        for (j0, band) in (0..d).step_by(TJ).zip(a.chunks_mut(TJ * d)) {
            K::band_add(rows, dp, d, j0, band);
        }
    }
    for j in 0..d {
        a[j * d + j] += shift;
    }
    cholesky_solve(a, b, d).map_err(|_| ())?;
    for (y, &v) in dst.iter_mut().zip(b.iter()) {
        *y = v as f32;
    }
    Ok(())
}

/// `⟨a, b⟩` in f64 with four partial sums (vectorises; fixed order, so fixed results).
#[inline(always)]
pub fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Solve `A x = b` for a symmetric positive-definite `A` (`n × n`, row-major; only the lower
/// triangle is read and it is overwritten by the Cholesky factor). `x` replaces `b`. `Err` with
/// the failing pivot when `A` is not positive definite.
#[inline(always)]
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> std::result::Result<(), usize> {
    debug_assert!(a.len() == n * n && b.len() == n);
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * n);
        let rj = &mut rest[..n];
        // Row j of L left of the diagonal: L[j][k] = (A[j][k] − Σ_{m<k} L[j][m]·L[k][m]) / L[k][k].
        for k in 0..j {
            let rk = &done[k * n..k * n + n];
            rj[k] = (rj[k] - dot64(&rj[..k], &rk[..k])) / rk[k];
        }
        let d = rj[j] - dot64(&rj[..j], &rj[..j]);
        // Relative to the pivot's diagonal: rounding leaves a singular matrix a tiny pivot.
        if !(d.is_finite() && d > 0.0 && d > 1e-12 * rj[j]) {
            return Err(j);
        }
        rj[j] = d.sqrt();
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..n {
        let ri = &a[i * n..i * n + n];
        b[i] = (b[i] - dot64(&ri[..i], &b[..i])) / ri[i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Ok(())
}

/// The conjugate-gradient row solver's buffers (`d` floats each).
pub struct CgState {
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
}

impl CgState {
    pub fn new(d: usize) -> Self {
        CgState {
            r: vec![0.0; d],
            p: vec![0.0; d],
            ap: vec![0.0; d],
        }
    }
}

/// Rows `first ..` of `rows`' matrix in `block` (their current values, replaced) by
/// [`cg_row`]'s `steps` steps; an empty row becomes zero (its minimiser).
#[allow(clippy::too_many_arguments)]
pub fn cg_block(
    g: &[f32],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f32,
    steps: usize,
    s: &mut CgState,
) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { cg_block_fma(g, other, rows, (first, block), shift, steps, s) };
    }
    // SAFETY: Portable runs anywhere.
    unsafe { cg_block_with::<Portable>(g, other, rows, (first, block), shift, steps, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn cg_block_fma(
    g: &[f32],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f32,
    steps: usize,
    s: &mut CgState,
) {
    cg_block_with::<Fma>(g, other, rows, (first, block), shift, steps, s)
}

#[inline(always)]
unsafe fn cg_block_with<K: Kernels>(
    g: &[f32],
    other: &[f32],
    rows: &Csr,
    (first, block): (usize, &mut [f32]),
    shift: &impl Fn(usize) -> f32,
    steps: usize,
    s: &mut CgState,
) {
    let d = s.r.len();
    for (k, x) in block.chunks_exact_mut(d).enumerate() {
        let cols = rows.row(first + k);
        if cols.is_empty() {
            x.fill(0.0);
        } else {
            cg_row::<K>(g, other, cols, shift(cols.len()), steps, x, s);
        }
    }
}

/// `steps` conjugate-gradient steps on `A x = b` from `x` (the row's current value, replaced by
/// the result), where `A = G + shift·1 + Σ_{c∈cols} h_c h_cᵀ` and `b = Σ_{c∈cols} h_c`
/// (`g`: the fixed side's Gramian times α₀, `d × d` both triangles, f32; `h_c`: row `c` of
/// `other`). Stops early when the residual vanishes.
#[inline(always)]
unsafe fn cg_row<K: Kernels>(
    g: &[f32],
    other: &[f32],
    cols: &[u32],
    shift: f32,
    steps: usize,
    x: &mut [f32],
    s: &mut CgState,
) {
    let CgState { r, p, ap } = s;
    // r = b − A x = Σ_c h_c (1 − ⟨h_c, x⟩) − (G + shift) x.
    K::sym_matvec(g, shift, x, r);
    for v in r.iter_mut() {
        *v = -*v;
    }
    add_observed::<K>(other, cols, x, r, |y| 1.0 - y);
    p.copy_from_slice(r);
    let mut rs = K::dot(r, r);
    for _ in 0..steps {
        if rs.is_nan() || rs <= 0.0 {
            break;
        }
        // ap = A p.
        K::sym_matvec(g, shift, p, ap);
        add_observed::<K>(other, cols, p, ap, |y| y);
        let pap = K::dot(p, ap);
        if !(pap > 0.0 && pap.is_finite()) {
            break;
        }
        let alpha = rs / pap;
        K::axpy(x, alpha, p);
        K::axpy(r, -alpha, ap);
        let rs_new = K::dot(r, r);
        K::xpby(p, r, rs_new / rs);
        rs = rs_new;
    }
}

/// `out += f(⟨h_c, v⟩)·h_c` for `c` in `cols` in order (`h_c`: row `c` of `other`, `v.len()`
/// wide), two rows at a time ([`Kernels::dot2`], [`Kernels::axpy2`]: the bits of one at a time).
#[inline(always)]
unsafe fn add_observed<K: Kernels>(
    other: &[f32],
    cols: &[u32],
    v: &[f32],
    out: &mut [f32],
    f: impl Fn(f32) -> f32,
) {
    let d = v.len();
    let row = |c: u32| &other[c as usize * d..c as usize * d + d];
    let pairs = cols.chunks_exact(2);
    let last = pairs.remainder();
    for (k, pair) in pairs.enumerate() {
        for &next in cols.iter().skip(2 * k + AHEAD).take(2) {
            K::prefetch(row(next));
        }
        let (h1, h2) = (row(pair[0]), row(pair[1]));
        let (y1, y2) = K::dot2(h1, h2, v);
        K::axpy2(out, (f(y1), h1), (f(y2), h2));
    }
    if let [c] = *last {
        let h = row(c);
        K::axpy(out, f(K::dot(h, v)), h);
    }
}

/// `Σ_{c∈cols} (1 − ⟨x, h_c⟩)²` in f64 (`h_c`: row `c` of `other`), for each row `x` of
/// `block` (the rows of `rows` from `first` on), into `out`.
pub fn squared_errors(block: &[f32], other: &[f32], rows: &Csr, first: usize, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { squared_errors_fma(block, other, rows, first, out) };
    }
    // SAFETY: Portable runs anywhere.
    unsafe { squared_errors_with::<Portable>(block, other, rows, first, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn squared_errors_fma(
    block: &[f32],
    other: &[f32],
    rows: &Csr,
    first: usize,
    out: &mut [f64],
) {
    squared_errors_with::<Fma>(block, other, rows, first, out)
}

#[inline(always)]
unsafe fn squared_errors_with<K: Kernels>(
    block: &[f32],
    other: &[f32],
    rows: &Csr,
    first: usize,
    out: &mut [f64],
) {
    let d = block.len() / out.len().max(1);
    for (k, (x, e)) in block.chunks_exact(d).zip(out.iter_mut()).enumerate() {
        let mut sum = 0f64;
        for &c in rows.row(first + k) {
            let y = K::dot_wide(x, &other[c as usize * d..c as usize * d + d]);
            sum += (1.0 - y) * (1.0 - y);
        }
        *e = sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        super::super::kernels::tests::values(n, seed)
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// A random sparse matrix of `n_rows` rows over `n_cols` columns (row `r` has `r % 7` ids).
    fn sparse(n_rows: usize, n_cols: usize) -> Csr {
        let (mut rows, mut cols) = (Vec::new(), Vec::new());
        for r in 0..n_rows {
            for k in 0..r % 7 {
                rows.push(r as u32);
                cols.push(((r * 31 + k * 17) % n_cols) as u32);
            }
        }
        Csr::sets(n_rows, &rows, &cols)
    }

    /// Each element the plain sum over rows in order: the definition the tiles must keep.
    #[test]
    fn gramian_is_the_ordered_sum_for_any_thread_count() {
        for d in [1, 5, 8, 13, 64, 70] {
            let table = values(37 * d, d as u64);
            let mut want = vec![0f64; d * d];
            for row in table.chunks_exact(d) {
                for j in 0..d {
                    for k in 0..d {
                        want[j * d + k] += row[j] as f64 * row[k] as f64;
                    }
                }
            }
            for threads in [1, 2, 3] {
                let g = gramian(&table, d, threads);
                assert!(
                    g.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{d}"
                );
            }
        }
    }

    /// The conjugate gradient run to `d` steps reaches the exact solver's row; 3 steps from
    /// zero already most of the way; the AVX2 + FMA build gives the reference's bits.
    #[test]
    fn cg_rows_approach_the_exact_rows() {
        for d in [3, 8, 40, 70] {
            let (n_rows, n_other) = (9, 23);
            let rows = sparse(n_rows, n_other);
            let other = values(n_other * d, 11);
            let gram = gramian(&other, d, 1);
            let alpha = 0.3;
            let shift = |n: usize| 0.05 * (n as f64 + alpha * n_other as f64);
            let base: Vec<f64> = gram.iter().map(|g| g * alpha).collect();
            let g32: Vec<f32> = base.iter().map(|&g| g as f32).collect();
            let mut exact = vec![0f32; n_rows * d];
            let mut s = ExactState::new(d);
            exact_block(&base, &other, &rows, (0, &mut exact), &shift, &mut s).unwrap();
            let shift32 = |n: usize| shift(n) as f32;
            let mut c = CgState::new(d);
            let cg = |steps: usize, c: &mut CgState| {
                let mut x = vec![0f32; n_rows * d];
                cg_block(&g32, &other, &rows, (0, &mut x), &shift32, steps, c);
                x
            };
            let dist = |x: &[f32]| -> f64 {
                x.iter()
                    .zip(&exact)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            let norm = dist(&vec![0f32; n_rows * d]);
            let full = cg(d, &mut c);
            assert!(
                dist(&full) <= 1e-4 * norm,
                "d {d}: {} of {norm}",
                dist(&full)
            );
            let three = cg(3, &mut c);
            assert!(
                dist(&three) <= 0.5 * norm,
                "d {d}: {} of {norm}",
                dist(&three)
            );
            // Row 0 is empty: zero, whatever the start.
            assert!(full[..d].iter().all(|&v| v == 0.0));
            #[cfg(target_arch = "x86_64")]
            if has_fma() {
                let mut x = vec![0.1f32; n_rows * d];
                let mut y = x.clone();
                // SAFETY: the CPU has AVX2 and FMA; Portable runs anywhere.
                unsafe {
                    cg_block_with::<Portable>(
                        &g32,
                        &other,
                        &rows,
                        (0, &mut x),
                        &shift32,
                        3,
                        &mut c,
                    );
                    cg_block_fma(&g32, &other, &rows, (0, &mut y), &shift32, 3, &mut c);
                }
                assert_eq!(bits(&x), bits(&y), "d {d}");
                let (mut e1, mut e2) = (vec![0f32; n_rows * d], vec![0f32; n_rows * d]);
                // SAFETY: as above.
                unsafe {
                    exact_block_with::<Portable>(
                        &base,
                        &other,
                        &rows,
                        (0, &mut e1),
                        &shift,
                        &mut s,
                    )
                    .unwrap();
                    exact_block_fma(&base, &other, &rows, (0, &mut e2), &shift, &mut s).unwrap();
                }
                assert_eq!(bits(&e1), bits(&e2), "d {d}");
                assert_eq!(bits(&e1), bits(&exact), "d {d}");
            }
        }
    }

    /// Blocks go to whichever thread is free; the rows' bits do not change, and the lowest
    /// failing row is reported.
    #[test]
    fn blocks_give_the_same_bits_on_any_thread_count() {
        let (n_rows, d) = (150, 9);
        let rows = sparse(n_rows, 40);
        let other = values(40 * d, 3);
        let g: Vec<f32> = gramian(&other, d, 2)
            .iter()
            .map(|&v| (v * 0.2) as f32)
            .collect();
        let shift = |n: usize| 0.01 * (n as f32 + 8.0);
        let solve = |threads: usize| {
            let mut out = values(n_rows * d, 5);
            for_each_block(
                n_rows,
                &mut out,
                d,
                threads,
                || CgState::new(d),
                |s, first, block| {
                    cg_block(&g, &other, &rows, (first, block), &shift, 3, s);
                    Ok(())
                },
            )
            .unwrap();
            bits(&out)
        };
        let one = solve(1);
        assert_eq!(one, solve(2));
        assert_eq!(one, solve(5));
        let mut out = vec![0f32; n_rows * d];
        let fail = for_each_block(
            n_rows,
            &mut out,
            d,
            3,
            || (),
            |_, first, block| {
                let last = first + block.len() / d;
                match [37usize, 120].iter().find(|&&r| (first..last).contains(&r)) {
                    Some(&r) => Err(r),
                    None => Ok(()),
                }
            },
        );
        assert_eq!(fail, Err(37));
    }
}
