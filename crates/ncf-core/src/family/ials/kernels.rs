//! The arithmetic of iALS's solvers, written twice: [`Portable`], the reference, and [`Fma`],
//! AVX2 + FMA intrinsics that compute the same bits. Both use the same lanes, the same order and
//! fused multiply-adds (`mul_add` is correctly rounded on every CPU), so the result never depends
//! on which one ran, nor on the thread count. The f64 kernels sum products of two f32, which are
//! exact in f64: a fused and an unfused multiply-add round alike there.

/// Lanes of the f32 dot product (four AVX2 registers: four independent add chains).
pub const LANES: usize = 32;
/// Lanes of the f64 dot product of f32 rows (four AVX2 registers).
pub const WIDE_LANES: usize = 16;
/// Gramian tile: `TJ` output rows × `TK` output columns (32 f64 accumulators).
pub const TJ: usize = 4;
pub const TK: usize = 8;

/// One implementation of the solvers' arithmetic. Every method is `unsafe`: the caller
/// guarantees the CPU has what the implementation uses ([`Fma`]: AVX2 and FMA, [`has_fma`]).
pub trait Kernels {
    /// `⟨a, b⟩` over [`LANES`] lanes (lane `k` sums elements `k mod LANES` in order, fused), the
    /// lanes added as a tree (`k + k+16`, `+8`, `+4`, then `(0 + 2) + (1 + 3)`), then the tail in
    /// order, fused.
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `y += t·x`, fused.
    unsafe fn axpy(y: &mut [f32], t: f32, x: &[f32]);
    /// `(⟨a1, b⟩, ⟨a2, b⟩)`: two [`Kernels::dot`]s (the same bits), interleaved for the CPU.
    unsafe fn dot2(a1: &[f32], a2: &[f32], b: &[f32]) -> (f32, f32);
    /// `y += t1·x1` then `y += t2·x2` ([`Kernels::axpy`] twice: the same bits), in one pass.
    unsafe fn axpy2(y: &mut [f32], a: (f32, &[f32]), b: (f32, &[f32]));
    /// `p = r + β·p`, fused.
    unsafe fn xpby(p: &mut [f32], r: &[f32], beta: f32);
    /// `y = (G + shift·1) v` for a symmetric `d × d` `G` (both triangles): `y_j = shift·v_j`,
    /// then `y_j += v_k·G_kj` for `k = 0 … d−1` in order, fused.
    unsafe fn sym_matvec(g: &[f32], shift: f32, v: &[f32], y: &mut [f32]);
    /// `⟨a, b⟩` of two f32 rows in f64 over [`WIDE_LANES`] lanes (tree `k + k+8`, `+4`, then
    /// `(0 + 2) + (1 + 3)`), then the tail in order.
    unsafe fn dot_wide(a: &[f32], b: &[f32]) -> f64;
    /// Adds `Σ_r x_rj x_rk` over the rows of `chunk` (f64, `dp` wide, `dp` a multiple of [`TK`],
    /// zero-padded past `d`) in order to the lower-triangle tiles of `band`: rows `j0 ..` of a
    /// `d × d` row-major matrix, columns up to the band's last row (a tile crossing the diagonal
    /// is summed whole).
    unsafe fn band_add(chunk: &[f64], dp: usize, d: usize, j0: usize, band: &mut [f64]);
    /// A hint that `row` is read soon (no effect on results).
    unsafe fn prefetch(row: &[f32]);
}

/// Whether [`Fma`] can run here.
#[inline]
pub fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The reference: plain Rust, any CPU.
pub struct Portable;

impl Kernels for Portable {
    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let whole = n / LANES * LANES;
        let mut acc = [0f32; LANES];
        for (x, y) in a[..whole]
            .chunks_exact(LANES)
            .zip(b[..whole].chunks_exact(LANES))
        {
            for k in 0..LANES {
                acc[k] = x[k].mul_add(y[k], acc[k]);
            }
        }
        let mut h = [0f32; 16];
        for k in 0..16 {
            h[k] = acc[k] + acc[k + 16];
        }
        let mut q = [0f32; 8];
        for k in 0..8 {
            q[k] = h[k] + h[k + 8];
        }
        let mut o = [0f32; 4];
        for k in 0..4 {
            o[k] = q[k] + q[k + 4];
        }
        let mut s = (o[0] + o[2]) + (o[1] + o[3]);
        for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
            s = x.mul_add(*y, s);
        }
        s
    }

    #[inline(always)]
    unsafe fn axpy(y: &mut [f32], t: f32, x: &[f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = t.mul_add(v, *o);
        }
    }

    #[inline(always)]
    unsafe fn dot2(a1: &[f32], a2: &[f32], b: &[f32]) -> (f32, f32) {
        (Self::dot(a1, b), Self::dot(a2, b))
    }

    #[inline(always)]
    unsafe fn axpy2(y: &mut [f32], (t1, x1): (f32, &[f32]), (t2, x2): (f32, &[f32])) {
        Self::axpy(y, t1, x1);
        Self::axpy(y, t2, x2);
    }

    #[inline(always)]
    unsafe fn xpby(p: &mut [f32], r: &[f32], beta: f32) {
        for (o, &v) in p.iter_mut().zip(r) {
            *o = beta.mul_add(*o, v);
        }
    }

    #[inline(always)]
    unsafe fn sym_matvec(g: &[f32], shift: f32, v: &[f32], y: &mut [f32]) {
        let d = v.len();
        for (o, &a) in y.iter_mut().zip(v) {
            *o = shift * a;
        }
        for (k, &c) in v.iter().enumerate() {
            for (o, &gv) in y.iter_mut().zip(&g[k * d..k * d + d]) {
                *o = c.mul_add(gv, *o);
            }
        }
    }

    #[inline(always)]
    unsafe fn dot_wide(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len());
        let whole = n / WIDE_LANES * WIDE_LANES;
        let mut acc = [0f64; WIDE_LANES];
        for (x, y) in a[..whole]
            .chunks_exact(WIDE_LANES)
            .zip(b[..whole].chunks_exact(WIDE_LANES))
        {
            for k in 0..WIDE_LANES {
                acc[k] += x[k] as f64 * y[k] as f64;
            }
        }
        let mut h = [0f64; 8];
        for k in 0..8 {
            h[k] = acc[k] + acc[k + 8];
        }
        let mut q = [0f64; 4];
        for k in 0..4 {
            q[k] = h[k] + h[k + 4];
        }
        let mut s = (q[0] + q[2]) + (q[1] + q[3]);
        for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
            s += *x as f64 * *y as f64;
        }
        s
    }

    #[inline(always)]
    unsafe fn band_add(chunk: &[f64], dp: usize, d: usize, j0: usize, band: &mut [f64]) {
        band_add_portable(chunk, dp, d, j0, band, 0)
    }

    #[inline(always)]
    unsafe fn prefetch(_row: &[f32]) {}
}

/// [`Kernels::band_add`] for the tiles from column `k_from` on.
#[inline(always)]
fn band_add_portable(
    chunk: &[f64],
    dp: usize,
    d: usize,
    j0: usize,
    band: &mut [f64],
    k_from: usize,
) {
    let jn = TJ.min(d - j0);
    for k0 in (k_from..j0 + jn).step_by(TK) {
        let kn = TK.min(d - k0);
        for a in 0..jn {
            let out = &mut band[a * d + k0..a * d + k0 + kn];
            for x in chunk.chunks_exact(dp) {
                let xj = x[j0 + a];
                for (s, &y) in out.iter_mut().zip(&x[k0..k0 + kn]) {
                    *s += xj * y;
                }
            }
        }
    }
}

/// AVX2 + FMA intrinsics; the same bits as [`Portable`]. Only used inside functions compiled for
/// those features, on CPUs that have them ([`has_fma`]).
#[cfg(target_arch = "x86_64")]
pub struct Fma;

#[cfg(target_arch = "x86_64")]
impl Kernels for Fma {
    #[inline(always)]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let whole = n / LANES * LANES;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < whole {
            // In bounds: i + LANES <= whole <= both lengths.
            for (q, s) in acc.iter_mut().enumerate() {
                let (x, y) = (
                    _mm256_loadu_ps(pa.add(i + 8 * q)),
                    _mm256_loadu_ps(pb.add(i + 8 * q)),
                );
                *s = _mm256_fmadd_ps(x, y, *s);
            }
            i += LANES;
        }
        // h = lanes k + k+16 (acc0 + acc2, acc1 + acc3), q = h_k + h_{k+8}, o = q_k + q_{k+4}.
        let q = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let o = _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps::<1>(q));
        let t = _mm_add_ps(o, _mm_movehl_ps(o, o));
        let mut s = _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps::<1>(t, t)));
        for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
            s = x.mul_add(*y, s);
        }
        s
    }

    #[inline(always)]
    unsafe fn axpy(y: &mut [f32], t: f32, x: &[f32]) {
        use std::arch::x86_64::*;
        let n = y.len().min(x.len());
        let whole = n / 8 * 8;
        let tv = _mm256_set1_ps(t);
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let mut i = 0;
        while i < whole {
            let v = _mm256_fmadd_ps(tv, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), v);
            i += 8;
        }
        for (o, &v) in y[whole..n].iter_mut().zip(&x[whole..n]) {
            *o = t.mul_add(v, *o);
        }
    }

    #[inline(always)]
    unsafe fn dot2(a1: &[f32], a2: &[f32], b: &[f32]) -> (f32, f32) {
        use std::arch::x86_64::*;
        let n = a1.len().min(a2.len()).min(b.len());
        let whole = n / LANES * LANES;
        let (p1, p2, pb) = (a1.as_ptr(), a2.as_ptr(), b.as_ptr());
        let (mut s1, mut s2) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
        let mut i = 0;
        while i < whole {
            // In bounds: i + LANES <= whole <= every length.
            for q in 0..4 {
                let y = _mm256_loadu_ps(pb.add(i + 8 * q));
                s1[q] = _mm256_fmadd_ps(_mm256_loadu_ps(p1.add(i + 8 * q)), y, s1[q]);
                s2[q] = _mm256_fmadd_ps(_mm256_loadu_ps(p2.add(i + 8 * q)), y, s2[q]);
            }
            i += LANES;
        }
        // Each reduced as in dot.
        let reduce = |acc: [__m256; 4], a: &[f32]| {
            let q = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
            let o = _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps::<1>(q));
            let t = _mm_add_ps(o, _mm_movehl_ps(o, o));
            let mut s = _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps::<1>(t, t)));
            for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
                s = x.mul_add(*y, s);
            }
            s
        };
        (reduce(s1, a1), reduce(s2, a2))
    }

    #[inline(always)]
    unsafe fn axpy2(y: &mut [f32], (t1, x1): (f32, &[f32]), (t2, x2): (f32, &[f32])) {
        use std::arch::x86_64::*;
        let n = y.len().min(x1.len()).min(x2.len());
        let whole = n / 8 * 8;
        let (v1, v2) = (_mm256_set1_ps(t1), _mm256_set1_ps(t2));
        let (py, p1, p2) = (y.as_mut_ptr(), x1.as_ptr(), x2.as_ptr());
        let mut i = 0;
        while i < whole {
            let v = _mm256_fmadd_ps(v1, _mm256_loadu_ps(p1.add(i)), _mm256_loadu_ps(py.add(i)));
            let v = _mm256_fmadd_ps(v2, _mm256_loadu_ps(p2.add(i)), v);
            _mm256_storeu_ps(py.add(i), v);
            i += 8;
        }
        for ((o, &a), &b) in y[whole..n].iter_mut().zip(&x1[whole..n]).zip(&x2[whole..n]) {
            *o = t2.mul_add(b, t1.mul_add(a, *o));
        }
    }

    #[inline(always)]
    unsafe fn xpby(p: &mut [f32], r: &[f32], beta: f32) {
        use std::arch::x86_64::*;
        let n = p.len().min(r.len());
        let whole = n / 8 * 8;
        let bv = _mm256_set1_ps(beta);
        let (pp, pr) = (p.as_mut_ptr(), r.as_ptr());
        let mut i = 0;
        while i < whole {
            let v = _mm256_fmadd_ps(bv, _mm256_loadu_ps(pp.add(i)), _mm256_loadu_ps(pr.add(i)));
            _mm256_storeu_ps(pp.add(i), v);
            i += 8;
        }
        for (o, &v) in p[whole..n].iter_mut().zip(&r[whole..n]) {
            *o = beta.mul_add(*o, v);
        }
    }

    #[inline(always)]
    unsafe fn sym_matvec(g: &[f32], shift: f32, v: &[f32], y: &mut [f32]) {
        use std::arch::x86_64::*;
        let d = v.len();
        assert!(g.len() >= d * d && y.len() >= d);
        let (pg, py) = (g.as_ptr(), y.as_mut_ptr());
        let sv = _mm256_set1_ps(shift);
        let mut j = 0;
        // 64 columns at a time in eight registers, then 8, then one by one.
        while j + 64 <= d {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (q, s) in acc.iter_mut().enumerate() {
                *s = _mm256_mul_ps(sv, _mm256_loadu_ps(v.as_ptr().add(j + 8 * q)));
            }
            for (k, &c) in v.iter().enumerate() {
                let cv = _mm256_set1_ps(c);
                let row = pg.add(k * d + j);
                for (q, s) in acc.iter_mut().enumerate() {
                    *s = _mm256_fmadd_ps(cv, _mm256_loadu_ps(row.add(8 * q)), *s);
                }
            }
            for (q, s) in acc.iter().enumerate() {
                _mm256_storeu_ps(py.add(j + 8 * q), *s);
            }
            j += 64;
        }
        while j + 8 <= d {
            let mut s = _mm256_mul_ps(sv, _mm256_loadu_ps(v.as_ptr().add(j)));
            for (k, &c) in v.iter().enumerate() {
                s = _mm256_fmadd_ps(_mm256_set1_ps(c), _mm256_loadu_ps(pg.add(k * d + j)), s);
            }
            _mm256_storeu_ps(py.add(j), s);
            j += 8;
        }
        while j < d {
            let mut s = shift * v[j];
            for (k, &c) in v.iter().enumerate() {
                s = c.mul_add(g[k * d + j], s);
            }
            y[j] = s;
            j += 1;
        }
    }

    #[inline(always)]
    unsafe fn dot_wide(a: &[f32], b: &[f32]) -> f64 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let whole = n / WIDE_LANES * WIDE_LANES;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_pd(); 4];
        let mut i = 0;
        while i < whole {
            for (q, s) in acc.iter_mut().enumerate() {
                let x = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(i + 4 * q)));
                let y = _mm256_cvtps_pd(_mm_loadu_ps(pb.add(i + 4 * q)));
                // The product is exact: fused or not, the same sum.
                *s = _mm256_fmadd_pd(x, y, *s);
            }
            i += WIDE_LANES;
        }
        // h = lanes k + k+8 (acc0 + acc2, acc1 + acc3), q = h_k + h_{k+4}.
        let q = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
        let t = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd::<1>(q));
        let mut s = _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
        for (x, y) in a[whole..n].iter().zip(&b[whole..n]) {
            s += *x as f64 * *y as f64;
        }
        s
    }

    #[inline(always)]
    unsafe fn band_add(chunk: &[f64], dp: usize, d: usize, j0: usize, band: &mut [f64]) {
        use std::arch::x86_64::*;
        let jn = TJ.min(d - j0);
        assert!(band.len() >= jn * d && chunk.len().is_multiple_of(dp) && j0 + jn <= dp);
        let mut k0 = 0;
        // Whole tiles (four rows, eight columns inside d) in registers; the rest as Portable.
        while jn == TJ && k0 < j0 + jn && k0 + TK <= d {
            let pb = band.as_mut_ptr();
            let mut acc = [[_mm256_setzero_pd(); 2]; TJ];
            for (a, row) in acc.iter_mut().enumerate() {
                row[0] = _mm256_loadu_pd(pb.add(a * d + k0));
                row[1] = _mm256_loadu_pd(pb.add(a * d + k0 + 4));
            }
            for x in chunk.chunks_exact(dp) {
                let px = x.as_ptr();
                let (y0, y1) = (_mm256_loadu_pd(px.add(k0)), _mm256_loadu_pd(px.add(k0 + 4)));
                for (a, row) in acc.iter_mut().enumerate() {
                    let xj = _mm256_set1_pd(*px.add(j0 + a));
                    // Exact products: the same sums as Portable's unfused ones.
                    row[0] = _mm256_fmadd_pd(xj, y0, row[0]);
                    row[1] = _mm256_fmadd_pd(xj, y1, row[1]);
                }
            }
            for (a, row) in acc.iter().enumerate() {
                _mm256_storeu_pd(pb.add(a * d + k0), row[0]);
                _mm256_storeu_pd(pb.add(a * d + k0 + 4), row[1]);
            }
            k0 += TK;
        }
        band_add_portable(chunk, dp, d, j0, band, k0)
    }

    #[inline(always)]
    unsafe fn prefetch(row: &[f32]) {
        use std::arch::x86_64::*;
        // Every 64-byte line of the row.
        let mut i = 0;
        while i < row.len() {
            _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().add(i) as *const i8);
            i += 16;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Deterministic values in about [−1, 1), with some exact zeros and repeats.
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    const LENGTHS: [usize; 10] = [1, 5, 8, 31, 32, 33, 64, 70, 192, 200];

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// The reference against a plain sum: the lanes are a reordering, not another quantity.
    #[test]
    fn portable_kernels_compute_what_they_say() {
        for &n in &LENGTHS {
            let (a, b) = (values(n, 1), values(n, 2));
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            // SAFETY: Portable runs anywhere.
            let (d, w) = unsafe { (Portable::dot(&a, &b), Portable::dot_wide(&a, &b)) };
            assert!(
                (d as f64 - plain).abs() <= 1e-5 * (1.0 + plain.abs()),
                "{n}"
            );
            assert!((w - plain).abs() <= 1e-12 * (1.0 + plain.abs()), "{n}");
            let g: Vec<f32> = {
                let m = values(n * n, 3);
                (0..n * n).map(|k| m[(k % n) * n + k / n] + m[k]).collect()
            };
            let mut y = vec![0f32; n];
            // SAFETY: as above.
            unsafe { Portable::sym_matvec(&g, 0.5, &a, &mut y) };
            for j in 0..n {
                let want: f64 = 0.5 * a[j] as f64
                    + (0..n)
                        .map(|k| a[k] as f64 * g[k * n + j] as f64)
                        .sum::<f64>();
                assert!(
                    (y[j] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{n} {j}"
                );
            }
        }
    }

    /// Same bits from the intrinsics as from the reference, for every kernel and length.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_kernels_give_the_reference_bits() {
        if !has_fma() {
            eprintln!("no AVX2 + FMA on this CPU: only the reference runs here");
            return;
        }
        for &n in &LENGTHS {
            let (a, b) = (values(n, 4), values(n, 5));
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe {
                assert_eq!(
                    Portable::dot(&a, &b).to_bits(),
                    Fma::dot(&a, &b).to_bits(),
                    "{n}"
                );
                assert_eq!(
                    Portable::dot_wide(&a, &b).to_bits(),
                    Fma::dot_wide(&a, &b).to_bits(),
                    "{n}"
                );
                let (mut y1, mut y2) = (b.clone(), b.clone());
                Portable::axpy(&mut y1, -0.37, &a);
                Fma::axpy(&mut y2, -0.37, &a);
                assert_eq!(bits(&y1), bits(&y2), "axpy {n}");
                // The paired forms: the single kernels' bits, in either implementation.
                let c = values(n, 7);
                let one = (Portable::dot(&a, &b), Portable::dot(&c, &b));
                for (x, y) in [Portable::dot2(&a, &c, &b), Fma::dot2(&a, &c, &b)] {
                    assert_eq!(
                        (x.to_bits(), y.to_bits()),
                        (one.0.to_bits(), one.1.to_bits())
                    );
                }
                let mut y3 = y1.clone();
                Portable::axpy(&mut y1, 0.6, &c);
                Portable::axpy(&mut y1, -1.3, &a);
                Fma::axpy2(&mut y2, (0.6, &c), (-1.3, &a));
                Portable::axpy2(&mut y3, (0.6, &c), (-1.3, &a));
                assert_eq!(bits(&y1), bits(&y2), "axpy2 {n}");
                assert_eq!(bits(&y1), bits(&y3), "axpy2 {n}");
                Portable::xpby(&mut y1, &a, 1.7);
                Fma::xpby(&mut y2, &a, 1.7);
                assert_eq!(bits(&y1), bits(&y2), "xpby {n}");
                let g = values(n * n, 6);
                Portable::sym_matvec(&g, 0.25, &a, &mut y1);
                Fma::sym_matvec(&g, 0.25, &a, &mut y2);
                assert_eq!(bits(&y1), bits(&y2), "sym_matvec {n}");
                // The Gramian tiles: 5 rows of a chunk, every band.
                let dp = n.div_ceil(TK) * TK;
                let mut chunk = vec![0f64; 5 * dp];
                for (r, row) in chunk.chunks_exact_mut(dp).enumerate() {
                    for (x, v) in row.iter_mut().zip(values(n, 10 + r as u64)) {
                        *x = v as f64;
                    }
                }
                let start: Vec<f64> = values(n * n, 7).iter().map(|&v| v as f64).collect();
                let (mut g1, mut g2) = (start.clone(), start);
                for (j0, (b1, b2)) in (0..n)
                    .step_by(TJ)
                    .zip(g1.chunks_mut(TJ * n).zip(g2.chunks_mut(TJ * n)))
                {
                    Portable::band_add(&chunk, dp, n, j0, b1);
                    Fma::band_add(&chunk, dp, n, j0, b2);
                }
                let bits64 = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits64(&g1), bits64(&g2), "band_add {n}");
            }
        }
    }
}
