//! Checks of the three GEMM forms of the MLP (forward, input gradient, weight gradient) against a
//! naive CPU matmul on operands rounded to the device's activation type.

use super::{compare_scaled, eps_of, f, f32_to_bytes, round_act, Check};
use crate::device::{Device, DeviceExt, GemmCall};
use crate::CudaError;
use ncf_core::sampling::rng::{stream, Rng};
use ncf_core::train::Precision;

/// The three GEMM forms of the MLP vs a naive CPU matmul on operands rounded to the device type.
pub fn checks(d: &dyn Device, p: Precision) -> Result<Vec<Check>, CudaError> {
    let act = d.act();
    let (fin, fout, n) = (96usize, 40usize, 300usize);
    let r = Rng::new(5);
    let mk = |len: usize, c: u32| -> Vec<f32> {
        (0..len)
            .map(|k| round_act(r.normal(stream::SYNTH, k as u32, c, 1) as f32, act))
            .collect()
    };
    let w = mk(fout * fin, 0); // row-major [out, in]
    let x = mk(n * fin, 1); // [n, in]
    let dz = mk(n * fout, 2); // [n, out]
    let dw = d.upload(&f32_to_bytes(&w, act), "gemm W")?;
    let dx = d.upload(&f32_to_bytes(&x, act), "gemm X")?;
    let ddz = d.upload(&f32_to_bytes(&dz, act), "gemm dZ")?;
    let c = d.alloc::<f32>(n * fin.max(fout) * 2, "gemm C")?;
    let (pw, px, pdz, pc) = (dw.addr(), dx.addr(), ddz.addr(), c.addr());
    let gemm = |what, ta, tb, (m, nn, k), a, lda, b, ldb, ldc| {
        d.gemm(&GemmCall {
            what,
            ta,
            tb,
            m,
            n: nn,
            k,
            a,
            lda,
            b,
            ldb,
            c: pc,
            ldc,
            beta: 0.0,
        })
    };
    let eps = if p == Precision::Fp32 {
        1e-6
    } else {
        eps_of(p)
    };
    let mut out = vec![];
    // forward Z[n, out] = X W^T
    gemm(
        "check forward",
        true,
        false,
        (fout, n, fin),
        pw,
        fin,
        px,
        fin,
        fout,
    )?;
    let z = d.download(&c, n * fout, "Z")?;
    let zc: Vec<f64> = (0..n * fout)
        .map(|k| {
            (0..fin)
                .map(|i| x[(k / fout) * fin + i] as f64 * w[(k % fout) * fin + i] as f64)
                .sum()
        })
        .collect();
    out.push(compare_scaled("gemm_forward", p, &f(&z), &zc, eps * 4.0));
    // dX[n, in] = dZ W
    gemm(
        "check dX",
        false,
        false,
        (fin, n, fout),
        pw,
        fin,
        pdz,
        fout,
        fin,
    )?;
    let g = d.download(&c, n * fin, "dX")?;
    let gc: Vec<f64> = (0..n * fin)
        .map(|k| {
            (0..fout)
                .map(|o| dz[(k / fin) * fout + o] as f64 * w[o * fin + k % fin] as f64)
                .sum()
        })
        .collect();
    out.push(compare_scaled("gemm_dX", p, &f(&g), &gc, eps * 4.0));
    // dW[out, in] = dZ^T X
    gemm(
        "check dW",
        false,
        true,
        (fin, fout, n),
        px,
        fin,
        pdz,
        fout,
        fin,
    )?;
    let g = d.download(&c, fout * fin, "dW")?;
    let gc: Vec<f64> = (0..fout * fin)
        .map(|k| {
            (0..n)
                .map(|b| dz[b * fout + k / fin] as f64 * x[b * fin + k % fin] as f64)
                .sum()
        })
        .collect();
    out.push(compare_scaled("gemm_dW", p, &f(&g), &gc, eps * 4.0));
    Ok(out)
}
