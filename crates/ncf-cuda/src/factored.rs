//! CPU twins of the factored first-layer kernels (`kernels/factored.cuh`), written for clarity:
//! what each kernel must produce, bit for bit where the kernel is exact (slots, sort, segments,
//! sums in sample order). The host device's test (crates/ncf-cuda/tests/host_device.rs) and the
//! kernel checks on any device ([`crate::check::factored`]) compare the kernels with these.

/// The distinct ids of a batch: `slots[id]` = the number of distinct ids below `id` (for every
/// id of the table, as the kernel's scan leaves it), `list[slot]` = the id of a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    pub slots: Vec<u32>,
    pub list: Vec<u32>,
}

/// `ncf_mark` + `ncf_slots` over a table of `n_ids` rows.
pub fn slots(ids: &[u32], n_ids: u32) -> Slots {
    let mut marked = vec![false; n_ids as usize];
    for &i in ids {
        marked[i as usize] = true;
    }
    let (mut slots, mut list) = (Vec::with_capacity(marked.len()), vec![]);
    for (id, &m) in marked.iter().enumerate() {
        slots.push(list.len() as u32);
        if m {
            list.push(id as u32);
        }
    }
    Slots { slots, list }
}

/// `ncf_keys`: each sample's slot.
pub fn keys_of(ids: &[u32], s: &Slots) -> Vec<u32> {
    ids.iter().map(|&i| s.slots[i as usize]).collect()
}

/// The radix sort (`ncf_radix_hist`, `ncf_scan`, `ncf_radix_scatter` passes): sample indices
/// sorted by key, stably; returns (sorted keys, order).
pub fn sort_by_key(keys: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut order: Vec<u32> = (0..keys.len() as u32).collect();
    order.sort_by_key(|&b| keys[b as usize]);
    (order.iter().map(|&b| keys[b as usize]).collect(), order)
}

/// Radix passes of 8 bits that sort keys below `cap` (at least one).
pub fn radix_passes(cap: usize) -> u32 {
    let bits = usize::BITS - cap.saturating_sub(1).leading_zeros();
    bits.div_ceil(8).max(1)
}

/// `ncf_segments`: the first sorted position of each of the `count` slots, then `n`.
pub fn starts(sorted_keys: &[u32], count: usize) -> Vec<u32> {
    let mut s = vec![0u32; count + 1];
    for (b, &k) in sorted_keys.iter().enumerate() {
        if b == 0 || sorted_keys[b - 1] != k {
            s[k as usize] = b as u32;
        }
    }
    s[count] = sorted_keys.len() as u32;
    s
}

/// `ncf_gather_rows`: rows `list[k]` of `table` (`e` wide), then zero rows up to `cap`.
pub fn gather_rows(list: &[u32], cap: usize, e: usize, table: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; cap * e];
    for (k, &id) in list.iter().enumerate() {
        out[k * e..(k + 1) * e].copy_from_slice(&table[id as usize * e..(id as usize + 1) * e]);
    }
    out
}

/// `ncf_factored_z`: `z[b] = pu[ku[b]] + pi[ki[b]]` (rows `width` wide).
pub fn factored_z(ku: &[u32], ki: &[u32], width: usize, pu: &[f32], pi: &[f32]) -> Vec<f32> {
    let mut z = Vec::with_capacity(ku.len() * width);
    for (&u, &i) in ku.iter().zip(ki) {
        let (ru, ri) = (u as usize * width, i as usize * width);
        z.extend((0..width).map(|o| pu[ru + o] + pi[ri + o]));
    }
    z
}

/// `ncf_segment_sum`: per slot, the `dz` rows of its samples summed in sorted order (FP32, from
/// zero), then zero rows up to `cap`.
pub fn segment_sum(
    dz: &[f32],
    width: usize,
    order: &[u32],
    starts: &[u32],
    cap: usize,
) -> Vec<f32> {
    let count = starts.len() - 1;
    let mut s = vec![0f32; cap * width];
    for k in 0..count {
        for j in 0..width {
            let mut acc = 0f32;
            for &b in &order[starts[k] as usize..starts[k + 1] as usize] {
                acc += dz[b as usize * width + j];
            }
            s[k * width + j] = acc;
        }
    }
    s
}

/// `ncf_scatter_rows`: `g[list[k]] += rows[k]`.
pub fn scatter_rows(list: &[u32], e: usize, rows: &[f32], g: &mut [f32]) {
    for (k, &id) in list.iter().enumerate() {
        for j in 0..e {
            g[id as usize * e + j] += rows[k * e + j];
        }
    }
}

/// The arguments of one cuBLAS GEMM (column-major): `C[m, n] = op(A)[m, k] · op(B)[k, n]`, `op`
/// transposing when `ta` / `tb`, leading dimensions `lda`, `ldb`, `ldc`. The factored path's
/// three GEMM shapes are built here, used by the trainer and run on the host by
/// [`gemm_host`] in the tests, so their leading dimensions are checked without a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

/// `proj[m, w0] = rows[m, e] · W_sideᵀ`: A = mlp.0.weight from the side's first column
/// (`[w0, 2e]` row-major), B = the distinct rows, C = the projections.
pub fn proj_gemm(e: usize, w0: usize, m: usize) -> GemmShape {
    GemmShape {
        ta: true,
        tb: false,
        m: w0,
        n: m,
        k: e,
        lda: 2 * e,
        ldb: e,
        ldc: w0,
    }
}

/// `dW_side[w0, e] = sumsᵀ · rows`: A = the rows, B = the per-slot sums, C = mlp.0.weight's
/// gradient from the side's first column (`[w0, 2e]` row-major).
pub fn weight_grad_gemm(e: usize, w0: usize, m: usize) -> GemmShape {
    GemmShape {
        ta: false,
        tb: true,
        m: e,
        n: w0,
        k: m,
        lda: e,
        ldb: w0,
        ldc: 2 * e,
    }
}

/// `drows[m, e] = sums · W_side`: A = mlp.0.weight from the side's first column, B = the
/// sums, C = the rows' embedding gradients.
pub fn row_grad_gemm(e: usize, w0: usize, m: usize) -> GemmShape {
    GemmShape {
        ta: false,
        tb: false,
        m: e,
        n: m,
        k: w0,
        lda: 2 * e,
        ldb: w0,
        ldc: e,
    }
}

/// [`GemmShape`] on the host with cuBLAS's column-major semantics (`beta` = 0: C is written).
pub fn gemm_host(g: &GemmShape, a: &[f32], b: &[f32], c: &mut [f32]) {
    let at = |i: usize, p: usize| {
        if g.ta {
            a[p + i * g.lda]
        } else {
            a[i + p * g.lda]
        }
    };
    let bt = |p: usize, j: usize| {
        if g.tb {
            b[j + p * g.ldb]
        } else {
            b[p + j * g.ldb]
        }
    };
    for j in 0..g.n {
        for i in 0..g.m {
            let mut acc = 0f64;
            for p in 0..g.k {
                acc += at(i, p) as f64 * bt(p, j) as f64;
            }
            c[i + j * g.ldc] = acc as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The factored layer 0 as the trainer runs it (the kernels' twins and the three GEMM shapes
    /// on the host, with cuBLAS's layout) equals layer 0 computed per sample: z = x0 · W0ᵀ,
    /// dW0 = Σ dzᵀ x0, and each embedding row's gradient = Σ over its samples of (dz · W0).
    #[test]
    fn the_trainers_factored_step_equals_the_per_sample_layer() {
        let (n_users, n_items, e, w0, n) = (7u32, 11u32, 3usize, 5usize, 40usize);
        let val =
            |k: usize, salt: usize| (((k * 7919 + salt * 104_729) % 1000) as f32 / 500.0) - 1.0;
        let eu: Vec<f32> = (0..n_users as usize * e).map(|k| val(k, 1)).collect();
        let ei: Vec<f32> = (0..n_items as usize * e).map(|k| val(k, 2)).collect();
        // mlp.0.weight, [w0, 2e] row-major.
        let w: Vec<f32> = (0..w0 * 2 * e).map(|k| val(k, 3)).collect();
        let users: Vec<u32> = (0..n).map(|b| ((b * 5 + b / 3) % 6) as u32).collect();
        let items: Vec<u32> = (0..n).map(|b| ((b * 3) % 10) as u32).collect();
        let dz: Vec<f32> = (0..n * w0).map(|k| val(k, 4)).collect();
        // Per sample.
        let x0 = |b: usize| -> Vec<f32> {
            let (u, i) = (users[b] as usize, items[b] as usize);
            [&eu[u * e..(u + 1) * e], &ei[i * e..(i + 1) * e]].concat()
        };
        let mut z_want = vec![0f64; n * w0];
        let mut dw_want = vec![0f64; w0 * 2 * e];
        let mut gu_want = vec![0f64; eu.len()];
        let mut gi_want = vec![0f64; ei.len()];
        for b in 0..n {
            let x = x0(b);
            for o in 0..w0 {
                let d = dz[b * w0 + o] as f64;
                for j in 0..2 * e {
                    z_want[b * w0 + o] += w[o * 2 * e + j] as f64 * x[j] as f64;
                    dw_want[o * 2 * e + j] += d * x[j] as f64;
                    let g = d * w[o * 2 * e + j] as f64;
                    if j < e {
                        gu_want[users[b] as usize * e + j] += g;
                    } else {
                        gi_want[items[b] as usize * e + j - e] += g;
                    }
                }
            }
        }
        // Factored, side by side, as first_layer.rs does.
        let mut proj = vec![];
        let mut keys = vec![];
        let mut dw = vec![0f32; w0 * 2 * e];
        let (mut gu, mut gi) = (vec![0f32; eu.len()], vec![0f32; ei.len()]);
        for (ids, n_ids, table, col, g) in [
            (&users, n_users, &eu, 0, &mut gu),
            (&items, n_items, &ei, e, &mut gi),
        ] {
            let s = slots(ids, n_ids);
            let m = (n_ids as usize).min(n);
            let rows = gather_rows(&s.list, m, e, table);
            let mut p = vec![0f32; m * w0];
            gemm_host(&proj_gemm(e, w0, m), &w[col..], &rows, &mut p);
            proj.push(p);
            let k = keys_of(ids, &s);
            let (sorted, order) = sort_by_key(&k);
            let st = starts(&sorted, s.list.len());
            let sums = segment_sum(&dz, w0, &order, &st, m);
            // The weight gradient GEMM writes the side's columns of [w0, 2e].
            let mut cols = dw[col..].to_vec();
            gemm_host(&weight_grad_gemm(e, w0, m), &rows, &sums, &mut cols);
            for o in 0..w0 {
                for j in 0..e {
                    dw[col + o * 2 * e + j] = cols[o * 2 * e + j];
                }
            }
            let mut drows = vec![0f32; m * e];
            gemm_host(&row_grad_gemm(e, w0, m), &w[col..], &sums, &mut drows);
            scatter_rows(&s.list, e, &drows, g);
            keys.push(k);
        }
        let z = factored_z(&keys[0], &keys[1], w0, &proj[0], &proj[1]);
        let close = |what: &str, got: &[f32], want: &[f64]| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (k, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{what}[{k}]: {g} vs {w}"
                );
            }
        };
        close("z", &z, &z_want);
        close("dW0", &dw, &dw_want);
        close("embedding gradient (users)", &gu, &gu_want);
        close("embedding gradient (items)", &gi, &gi_want);
    }

    #[test]
    fn twins_group_a_batch_by_its_distinct_ids() {
        let ids = [5u32, 2, 5, 7, 2, 2];
        let s = slots(&ids, 9);
        assert_eq!(s.list, [2, 5, 7]);
        assert_eq!(s.slots, [0, 0, 0, 1, 1, 1, 2, 2, 3]);
        let k = keys_of(&ids, &s);
        assert_eq!(k, [1, 0, 1, 2, 0, 0]);
        let (sk, order) = sort_by_key(&k);
        assert_eq!(sk, [0, 0, 0, 1, 1, 2]);
        assert_eq!(
            order,
            [1, 4, 5, 0, 2, 3],
            "stable: equal keys keep sample order"
        );
        let st = starts(&sk, 3);
        assert_eq!(st, [0, 3, 5, 6]);
        let dz: Vec<f32> = (0..6).map(|b| b as f32).collect();
        assert_eq!(segment_sum(&dz, 1, &order, &st, 4), [10.0, 2.0, 3.0, 0.0]);
        assert_eq!(
            (radix_passes(1), radix_passes(256), radix_passes(257)),
            (1, 1, 2)
        );
        assert_eq!(radix_passes(1 << 17), 3);
    }
}
