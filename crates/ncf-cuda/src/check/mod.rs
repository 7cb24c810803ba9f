//! Parity checks of every kernel against the one CPU reference of the NeuMF math
//! ([`ncf_core::neumf_cpu::reference`]), the golden CPU/GPU loss curve and the throughput
//! bench. `ncf-cuda-check` runs these on a GPU, `tests/cuda.rs` on the host device in CI. One file per kernel group:
//! [`rng`] (Philox, permutation, sampler), [`mlp`] (gather, GEMM + bias/ReLU/dropout forward,
//! final layer + BCE, backward and scatter; per sample and with the factored first layer),
//! [`factored`] (its distinct ids, sort and segments), [`optim`] (Adam, SGD, FP16 overflow), [`gemm`],
//! [`golden`], [`bench`].
//!
//! Tolerance: |gpu - cpu| <= atol + |cpu| * eps, eps by precision; the worst element is reported.

pub mod bench;
pub mod factored;
pub mod gemm;
pub mod golden;
pub mod mlp;
pub mod optim;
pub mod rng;

pub use bench::bench;
pub use golden::golden;

use crate::device::{self, ActElem, Buf, DeviceExt, Which};
use crate::first_layer::FirstLayer;
use crate::kernels::Act;
use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::model::{Model, ModelKind};
use ncf_core::neumf_cpu::reference::toy;
use ncf_core::sampling::sampler::UserItems;
use ncf_core::train::{Precision, TrainConfig};

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub precision: &'static str,
    pub pass: bool,
    pub worst_abs: f64,
    pub worst_rel: f64,
    pub at: usize,
    pub note: String,
}

impl Check {
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {:.3e} {:.3e} at={}{}",
            if self.pass { "PASS" } else { "FAIL" },
            self.name,
            self.precision,
            self.worst_abs,
            self.worst_rel,
            self.at,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            }
        )
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "precision": self.precision, "pass": self.pass,
            "worst_abs": self.worst_abs, "worst_rel": self.worst_rel, "at": self.at, "note": self.note})
    }
}

/// Relative tolerance of a precision (atol is 1e-5 throughout).
pub fn eps_of(p: Precision) -> f64 {
    match p {
        Precision::Fp32 => 1e-6,
        Precision::Tf32 | Precision::Fp16 => 1e-3,
        Precision::Bf16 => 8e-3,
    }
}
pub const ATOL: f64 = 1e-5;

/// Compare `gpu` with `cpu` element-wise.
pub fn compare(name: &str, p: Precision, gpu: &[f64], cpu: &[f64], atol: f64, eps: f64) -> Check {
    let mut c = Check {
        name: name.into(),
        precision: p.name(),
        pass: true,
        worst_abs: 0.0,
        worst_rel: 0.0,
        at: 0,
        note: String::new(),
    };
    if gpu.len() != cpu.len() {
        c.pass = false;
        c.note = format!("length {} vs {}", gpu.len(), cpu.len());
        return c;
    }
    let mut worst_excess = f64::NEG_INFINITY;
    for (k, (&g, &r)) in gpu.iter().zip(cpu).enumerate() {
        let d = (g - r).abs();
        let excess = if d.is_nan() {
            f64::INFINITY
        } else {
            d - (atol + r.abs() * eps)
        };
        if excess > worst_excess {
            worst_excess = excess;
            c.worst_abs = d;
            c.worst_rel = d / r.abs().max(1e-30);
            c.at = k;
        }
        if d.is_nan() || d > atol + r.abs() * eps {
            c.pass = false;
        }
    }
    if !c.pass {
        c.note = format!("gpu {} cpu {}", gpu[c.at], cpu[c.at]);
    }
    c
}

/// [`compare`] with atol = max(1e-5, eps * max|cpu|): rounding errors scale with the terms of a
/// sum, not with its (possibly cancelled) value.
pub fn compare_scaled(name: &str, p: Precision, gpu: &[f64], cpu: &[f64], eps: f64) -> Check {
    let max = cpu.iter().fold(0f64, |m, x| m.max(x.abs()));
    compare(name, p, gpu, cpu, ATOL.max(eps * max), eps)
}

pub(crate) fn exact<T: PartialEq + std::fmt::Debug>(
    name: &str,
    p: Precision,
    gpu: &[T],
    cpu: &[T],
) -> Check {
    let bad = gpu.iter().zip(cpu).position(|(a, b)| a != b);
    let mut c = Check {
        name: name.into(),
        precision: p.name(),
        pass: bad.is_none() && gpu.len() == cpu.len(),
        worst_abs: 0.0,
        worst_rel: 0.0,
        at: bad.unwrap_or(0),
        note: String::new(),
    };
    if let Some(k) = bad {
        c.worst_abs = 1.0;
        c.note = format!("gpu {:?} cpu {:?}", gpu[k], cpu[k]);
    } else if gpu.len() != cpu.len() {
        c.note = format!("length {} vs {}", gpu.len(), cpu.len());
    }
    c
}

pub(crate) fn f(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Round to the activation type, as the device stores it.
pub fn round_act(x: f32, act: Act) -> f32 {
    match act {
        Act::F32 => x,
        Act::F16 => half::f16::from_f32(x).to_f32(),
        Act::Bf16 => half::bf16::from_f32(x).to_f32(),
    }
}

/// Activation-type bytes as f32.
pub fn bytes_to_f32(b: &[u8], act: Act) -> Vec<f32> {
    match act {
        Act::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Act::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Act::Bf16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
    }
}

/// f32 values as activation-type bytes.
pub fn f32_to_bytes(x: &[f32], act: Act) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() * act.bytes());
    for &v in x {
        match act {
            Act::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Act::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes()),
            Act::Bf16 => out.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes()),
        }
    }
    out
}

/// Progress lines (to stderr, or nowhere).
pub type Log<'a> = &'a mut dyn FnMut(&str);

pub(crate) fn dl_act(
    t: &CudaTrainer,
    s: &Buf<ActElem>,
    n: usize,
    what: &str,
) -> Result<Vec<f32>, CudaError> {
    let d = t.device();
    let b = d.download_act(s, n, what)?;
    Ok(bytes_to_f32(&b, d.act()))
}

/// The problem every kernel group is checked on: a toy NeuMF with dropout 0.5 (40 users, 300
/// items), its training rows, a configuration with batches of 200, on one trainer.
pub struct Setup {
    pub t: CudaTrainer,
    pub p: Precision,
    pub model: Model,
    pub cfg: TrainConfig,
    pub us: Vec<u32>,
    pub is: Vec<u32>,
    pub positives: UserItems,
    pub n_items: u32,
    pub batch: u64,
}

impl Setup {
    pub fn new(which: Which, p: Precision, log: Log) -> Result<Setup, CudaError> {
        let (n_users, n_items) = (40u32, 300u32);
        let (us, is) = toy::data(n_users, n_items, 12, 3);
        let positives = UserItems::new(n_users, &us, &is);
        let model = toy::model(ModelKind::Neumf, n_users, n_items, 0.5, 5);
        let batch = 200u64;
        let cfg = toy::train_config(p, batch);
        log(&format!(
            "{}: building the trainer ({} positives)",
            p.name(),
            us.len()
        ));
        let dev = device::open(which, p)?;
        let t = CudaTrainer::new(dev, &model, &cfg, &us, &is, Some(&positives))?;
        Ok(Setup {
            t,
            p,
            model,
            cfg,
            us,
            is,
            positives,
            n_items,
            batch,
        })
    }
}

/// Every kernel check in one precision on device `which`, group by group on one [`Setup`].
pub fn kernel_checks(which: Which, p: Precision, log: Log) -> Result<Vec<Check>, CudaError> {
    let mut s = Setup::new(which, p, log)?;
    let mut out = rng::checks(&mut s, log)?;
    out.extend(mlp::checks(&mut s, log)?);
    out.extend(optim::checks(&mut s, log)?);
    log("gemm");
    out.extend(gemm::checks(s.t.device(), p)?);
    // The same step with the first layer factored, on a fresh trainer.
    log("factored first layer");
    let mut s = Setup::new(which, p, log)?;
    s.t = s.t.with_first_layer(FirstLayer::Factored)?;
    out.extend(mlp::checks(&mut s, log)?);
    // The fused step's kernels (its forward and backward layers, Adam at its floor), per sample,
    // on a fresh trainer: names prefixed `fused:`.
    log("fused step");
    let mut s = Setup::new(which, p, log)?;
    s.t = s.t.with_step(crate::fused::StepKernels::Fused)?;
    let mut fused = mlp::checks(&mut s, log)?;
    fused.extend(optim::checks(&mut s, log)?);
    for c in &mut fused {
        c.name = format!("fused:{}", c.name);
    }
    out.extend(fused);
    Ok(out)
}

/// Every check in every precision (and the golden run of each model kind in FP32).
pub fn run_all(which: Which, log: Log) -> Result<Vec<Check>, CudaError> {
    let mut out = vec![];
    for p in Precision::ALL {
        match kernel_checks(which, p, log) {
            Ok(c) => out.extend(c),
            Err(e) => out.push(Check {
                name: "kernel_checks".into(),
                precision: p.name(),
                pass: false,
                worst_abs: 0.0,
                worst_rel: 0.0,
                at: 0,
                note: e.to_string(),
            }),
        }
        for run in golden::runs(p) {
            match golden::golden(which, p, run, 10, log) {
                Ok(c) => out.extend(c),
                Err(e) => out.push(Check {
                    name: format!("golden_{}", golden::run_name(run)),
                    precision: p.name(),
                    pass: false,
                    worst_abs: 0.0,
                    worst_rel: 0.0,
                    at: 0,
                    note: e.to_string(),
                }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::dropout_threshold;
    use ncf_core::model::dropout::dropout_keep;
    use ncf_core::sampling::rng::Rng;

    #[test]
    fn compare_reports_the_worst_element() {
        let c = compare(
            "x",
            Precision::Fp32,
            &[1.0, 2.0, 3.5],
            &[1.0, 2.0, 3.0],
            ATOL,
            1e-6,
        );
        assert!(!c.pass);
        assert_eq!(c.at, 2);
        assert!((c.worst_abs - 0.5).abs() < 1e-12);
        assert!(
            compare(
                "x",
                Precision::Fp32,
                &[1.0, 2.0 + 1e-7],
                &[1.0, 2.0],
                ATOL,
                1e-6
            )
            .pass
        );
        assert!(!compare("x", Precision::Fp32, &[f64::NAN], &[0.0], ATOL, 1e-6).pass);
    }

    #[test]
    fn dropout_threshold_and_mask_rate() {
        assert_eq!(dropout_threshold(0.0), (0, 1.0));
        assert_eq!(dropout_threshold(0.5), (128, 2.0));
        assert_eq!(dropout_threshold(0.999).0, 255);
        let rng = Rng::new(1);
        let kept = (0..20_000u32)
            .filter(|&s| dropout_keep(&rng, s.into(), 0, 1, s % 64, 128))
            .count();
        assert!((9_500..10_500).contains(&kept), "{kept}");
    }

    #[test]
    fn activation_bytes_round_trip() {
        for act in Act::ALL {
            let x = [0.5f32, -1.25, 3.0];
            assert_eq!(bytes_to_f32(&f32_to_bytes(&x, act), act), x.to_vec());
        }
        assert_eq!(round_act(1.0 + 1e-4, Act::F16), 1.0);
        assert_eq!(round_act(1.0 + 1e-4, Act::F32), 1.0 + 1e-4);
    }
}
