//! Parity checks of every kernel against a straightforward CPU reference, the golden CPU/GPU loss
//! curve and the throughput bench. `ncf-cuda-check` and `tests/cuda.rs` run these on a GPU.
//! Tolerance: |gpu - cpu| <= atol + |cpu| * eps, eps by precision; the worst element is reported.

use crate::kernels::Act;
use crate::trainer::{act_of, dptr, dropout_threshold, CudaTrainer, KArg};
use crate::CudaError;
use ncf_core::model::{Model, ModelConfig, ModelKind};
use ncf_core::rng::{stream, Permutation, Rng};
use ncf_core::sampler::{EpochSamples, NegativeMode, UserItems};
use ncf_core::train::{Optimizer, Precision, StepStats, TrainConfig, Trainer};

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

pub fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Tf32 => "tf32",
        Precision::Fp16 => "fp16",
        Precision::Bf16 => "bf16",
    }
}

pub const PRECISIONS: [Precision; 4] = [
    Precision::Fp32,
    Precision::Tf32,
    Precision::Fp16,
    Precision::Bf16,
];

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
        precision: precision_name(p),
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

fn exact<T: PartialEq + std::fmt::Debug>(name: &str, p: Precision, gpu: &[T], cpu: &[T]) -> Check {
    let bad = gpu.iter().zip(cpu).position(|(a, b)| a != b);
    let mut c = Check {
        name: name.into(),
        precision: precision_name(p),
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

fn f(x: &[f32]) -> Vec<f64> {
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

fn bytes_to_f32(b: &[u8], act: Act) -> Vec<f32> {
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

fn f32_to_bytes(x: &[f32], act: Act) -> Vec<u8> {
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

/// The CPU definition of the dropout mask (ncf_core): keep unit j of layer l for sample s?
pub fn keep(rng: &Rng, s: u32, epoch: u32, layer: u32, j: u32, t: u32) -> bool {
    ncf_core::cpu::dropout_keep(rng, s, epoch, layer, j, t)
}

/// A small dataset: `n_users` users with a few positives each over `n_items` items.
pub fn toy_data(n_users: u32, n_items: u32, per_user: u32, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let rng = Rng::new(seed);
    let (mut us, mut is) = (vec![], vec![]);
    for u in 0..n_users {
        let k = 1 + per_user.min(n_items - 1) * (1 + u % 3) / 3;
        let mut items: Vec<u32> = (0..k)
            .map(|j| ncf_core::rng::below(rng.word(stream::SYNTH, u, j, 0), n_items))
            .collect();
        items.sort();
        items.dedup();
        for i in items {
            us.push(u);
            is.push(i);
        }
    }
    (us, is)
}

pub fn toy_model(kind: ModelKind, n_users: u32, n_items: u32, dropout: f32, seed: u64) -> Model {
    let cfg = ModelConfig {
        kind,
        n_users,
        n_items,
        factors: 8,
        layers: vec![32, 48, 16, 8],
        dropout,
    };
    Model::init(cfg, seed).expect("valid toy model")
}

pub fn toy_train_config(p: Precision, batch: u64) -> TrainConfig {
    TrainConfig {
        seed: 11,
        epochs: 1,
        batch_size: batch,
        negatives: 4,
        negative_mode: NegativeMode::Approximate,
        optimizer: Optimizer::Adam,
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        l2: 0.0,
        unobserved_weight: 0.0,
        precision: p,
        topk: 10,
        target_hr: None,
    }
}

// ---- the CPU reference network ------------------------------------------------------------------

/// Straightforward CPU NeuMF: forward with dropout, backward, Adam (torch form). Used as the
/// reference of the kernel checks and of the golden loss curve.
pub struct RefNet {
    pub model: Model,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub steps: u64,
}

/// Forward activations of one batch (row-major).
pub struct RefFwd {
    pub x0: Vec<f32>,
    pub acts: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

impl RefNet {
    pub fn new(model: Model) -> Self {
        let n = model.params.len();
        RefNet {
            model,
            m: vec![0.0; n],
            v: vec![0.0; n],
            steps: 0,
        }
    }

    /// Forward; `drop` = Some((rng, epoch, sample indices)) in training.
    pub fn forward(
        &self,
        users: &[u32],
        items: &[u32],
        drop: Option<(&Rng, u32, &[u32])>,
    ) -> RefFwd {
        let mc = &self.model.config;
        let n = users.len();
        let (e, f) = (mc.mlp_embed(), mc.gmf_factors());
        let mut x0 = vec![];
        let mut acts: Vec<Vec<f32>> = vec![];
        if mc.kind.has_mlp() {
            let (eu, ei) = (
                self.model.tensor("mlp_user_embed.weight"),
                self.model.tensor("mlp_item_embed.weight"),
            );
            for b in 0..n {
                x0.extend_from_slice(&eu[users[b] as usize * e..][..e]);
                x0.extend_from_slice(&ei[items[b] as usize * e..][..e]);
            }
            let (t, scale) = dropout_threshold(mc.dropout);
            for k in 0..mc.n_linear() {
                let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
                let x = if k == 0 { &x0 } else { &acts[k - 1] };
                let w = self.model.tensor(&format!("mlp.{k}.weight"));
                let bias = self.model.tensor(&format!("mlp.{k}.bias"));
                let mut a = vec![0f32; n * fout];
                for b in 0..n {
                    for o in 0..fout {
                        let mut z = 0f64;
                        for i in 0..fin {
                            z += w[o * fin + i] as f64 * x[b * fin + i] as f64;
                        }
                        let mut v = (z as f32 + bias[o]).max(0.0);
                        if let Some((rng, epoch, s)) = drop {
                            v = if keep(rng, s[b], epoch, k as u32, o as u32, t) {
                                v * scale
                            } else {
                                0.0
                            };
                        }
                        a[b * fout + o] = v;
                    }
                }
                acts.push(a);
            }
        }
        let fw = self.model.tensor("final.weight");
        let fb = self.model.tensor("final.bias")[0];
        let lout = mc.mlp_out();
        let mut logits = vec![0f32; n];
        for b in 0..n {
            let mut z = 0f64;
            if f > 0 {
                let (mu, mi) = (
                    self.model.tensor("mf_user_embed.weight"),
                    self.model.tensor("mf_item_embed.weight"),
                );
                for j in 0..f {
                    z += (mu[users[b] as usize * f + j] * mi[items[b] as usize * f + j]) as f64
                        * fw[j] as f64;
                }
            }
            if lout > 0 {
                let xl = acts.last().expect("layers");
                for j in 0..lout {
                    z += xl[b * lout + j] as f64 * fw[f + j] as f64;
                }
            }
            logits[b] = z as f32 + fb;
        }
        RefFwd { x0, acts, logits }
    }

    /// Mean BCE loss and the gradient (flat layout) of a batch.
    pub fn loss_and_grad(
        &self,
        users: &[u32],
        items: &[u32],
        labels: &[f32],
        fwd: &RefFwd,
        drop: Option<(&Rng, u32, &[u32])>,
    ) -> (f64, Vec<f64>) {
        let mc = &self.model.config;
        let l = &self.model.layout;
        let n = users.len();
        let (e, f, lout) = (mc.mlp_embed(), mc.gmf_factors(), mc.mlp_out());
        let mut g = vec![0f64; self.model.params.len()];
        let fw = self.model.tensor("final.weight");
        let mut loss = 0f64;
        let mut dx = vec![0f64; n * lout];
        for b in 0..n {
            let z = fwd.logits[b] as f64;
            let y = labels[b] as f64;
            loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
            let dl = (1.0 / (1.0 + (-z).exp()) - y) / n as f64;
            g[l.range("final.bias").start] += dl;
            let fwo = l.range("final.weight").start;
            if f > 0 {
                let (mu, mi) = (
                    self.model.tensor("mf_user_embed.weight"),
                    self.model.tensor("mf_item_embed.weight"),
                );
                let (gu, gi) = (
                    l.range("mf_user_embed.weight").start,
                    l.range("mf_item_embed.weight").start,
                );
                for j in 0..f {
                    let (a, c) = (
                        mu[users[b] as usize * f + j] as f64,
                        mi[items[b] as usize * f + j] as f64,
                    );
                    g[fwo + j] += dl * a * c;
                    g[gu + users[b] as usize * f + j] += dl * fw[j] as f64 * c;
                    g[gi + items[b] as usize * f + j] += dl * fw[j] as f64 * a;
                }
            }
            if lout > 0 {
                let xl = fwd.acts.last().expect("layers");
                for j in 0..lout {
                    g[fwo + f + j] += dl * xl[b * lout + j] as f64;
                    dx[b * lout + j] = dl * fw[f + j] as f64;
                }
            }
        }
        if mc.kind.has_mlp() {
            let (t, scale) = dropout_threshold(mc.dropout);
            for k in (0..mc.n_linear()).rev() {
                let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
                let a = &fwd.acts[k];
                let x = if k == 0 { &fwd.x0 } else { &fwd.acts[k - 1] };
                let w = self.model.tensor(&format!("mlp.{k}.weight"));
                let (wo, bo) = (
                    l.range(&format!("mlp.{k}.weight")).start,
                    l.range(&format!("mlp.{k}.bias")).start,
                );
                let mut dxin = vec![0f64; n * fin];
                for b in 0..n {
                    for o in 0..fout {
                        let kept = match drop {
                            Some((rng, epoch, s)) => keep(rng, s[b], epoch, k as u32, o as u32, t),
                            None => true,
                        };
                        let sc = if drop.is_some() { scale as f64 } else { 1.0 };
                        let dz = if kept && a[b * fout + o] > 0.0 {
                            dx[b * fout + o] * sc
                        } else {
                            0.0
                        };
                        if dz == 0.0 {
                            continue;
                        }
                        g[bo + o] += dz;
                        for i in 0..fin {
                            g[wo + o * fin + i] += dz * x[b * fin + i] as f64;
                            dxin[b * fin + i] += dz * w[o * fin + i] as f64;
                        }
                    }
                }
                dx = dxin;
            }
            let (gu, gi) = (
                l.range("mlp_user_embed.weight").start,
                l.range("mlp_item_embed.weight").start,
            );
            for b in 0..n {
                for j in 0..e {
                    g[gu + users[b] as usize * e + j] += dx[b * 2 * e + j];
                    g[gi + items[b] as usize * e + j] += dx[b * 2 * e + e + j];
                }
            }
        }
        (loss / n as f64, g)
    }

    /// torch.optim.Adam (or SGD) on the whole flat vector.
    pub fn adam(&mut self, g: &[f64], c: &TrainConfig) {
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t);
        let bc2s = (1.0 - (c.beta2 as f64).powi(t)).sqrt();
        for (k, &gk) in g.iter().enumerate() {
            let p = self.model.params[k] as f64;
            let gi = gk + c.l2 as f64 * p;
            if c.optimizer == Optimizer::Sgd {
                self.model.params[k] = (p - c.lr as f64 * gi) as f32;
                continue;
            }
            let m = self.m[k] as f64 + (1.0 - c.beta1 as f64) * (gi - self.m[k] as f64);
            let v = self.v[k] as f64 * c.beta2 as f64 + (1.0 - c.beta2 as f64) * gi * gi;
            self.m[k] = m as f32;
            self.v[k] = v as f32;
            self.model.params[k] =
                (p - c.lr as f64 / bc1 * m / (v.sqrt() / bc2s + c.eps as f64)) as f32;
        }
    }
}

/// The CPU reference as a [`Trainer`] (the golden run's CPU side).
pub struct RefTrainer<'a> {
    pub net: RefNet,
    pub cfg: TrainConfig,
    pub users: &'a [u32],
    pub items: &'a [u32],
    pub positives: Option<&'a UserItems>,
}

impl Trainer for RefTrainer<'_> {
    fn name(&self) -> String {
        "cpu reference".into()
    }
    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> ncf_core::Result<StepStats> {
        let rng = Rng::new(self.cfg.seed);
        let mc = &self.net.model.config;
        let es = EpochSamples::new(
            rng,
            epoch,
            self.cfg.negatives,
            mc.n_items,
            self.cfg.negative_mode,
            self.users,
            self.items,
            self.positives,
        );
        let (mut u, mut i, mut y) = (vec![], vec![], vec![]);
        es.fill(positions.clone(), &mut u, &mut i, &mut y)?;
        let s: Vec<u32> = positions.map(|p| es.order.apply(p) as u32).collect();
        let fwd = self.net.forward(&u, &i, Some((&rng, epoch, &s)));
        let (loss, g) = self
            .net
            .loss_and_grad(&u, &i, &y, &fwd, Some((&rng, epoch, &s)));
        self.net.adam(&g, &self.cfg);
        Ok(StepStats {
            loss: loss as f32,
            skipped: false,
        })
    }
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        out.copy_from_slice(&self.net.forward(users, items, None).logits);
        Ok(())
    }
    fn model(&mut self) -> ncf_core::Result<Model> {
        Ok(self.net.model.clone())
    }
    fn save_state(&mut self) -> ncf_core::Result<ncf_core::checkpoint::OptimizerState> {
        Ok(ncf_core::checkpoint::OptimizerState {
            params: self.net.model.params.clone(),
            m: self.net.m.clone(),
            v: self.net.v.clone(),
            steps: self.net.steps,
            loss_scale: 1.0,
            clean_steps: 0,
        })
    }
    fn load_state(&mut self, st: &ncf_core::checkpoint::OptimizerState) -> ncf_core::Result<()> {
        let n = self.net.model.params.len();
        if [&st.params, &st.m, &st.v].iter().any(|x| x.len() != n) {
            return Err(ncf_core::Error::invalid("optimiser state of another model"));
        }
        self.net.model.params.clone_from(&st.params);
        self.net.m.clone_from(&st.m);
        self.net.v.clone_from(&st.v);
        self.net.steps = st.steps;
        Ok(())
    }
}

// ---- the checks -----------------------------------------------------------------------------------

type Log<'a> = &'a mut dyn FnMut(&str);

fn dl_act(
    t: &CudaTrainer,
    s: &cudarc::driver::CudaSlice<u8>,
    n: usize,
    what: &str,
) -> Result<Vec<f32>, CudaError> {
    let act = t.gpu.act;
    let b = t.gpu.download(s, n * act.bytes(), what)?;
    Ok(bytes_to_f32(&b, act))
}

/// Every kernel check in one precision on device `ordinal`.
pub fn kernel_checks(ordinal: usize, p: Precision, log: Log) -> Result<Vec<Check>, CudaError> {
    let mut out = vec![];
    let (n_users, n_items) = (40u32, 300u32);
    let (us, is) = toy_data(n_users, n_items, 12, 3);
    let positives = UserItems::new(n_users, &us, &is);
    let model = toy_model(ModelKind::Neumf, n_users, n_items, 0.5, 5);
    let batch = 200u64;
    let cfg = toy_train_config(p, batch);
    log(&format!(
        "{}: building the trainer ({} positives)",
        precision_name(p),
        us.len()
    ));
    let mut t = CudaTrainer::new(ordinal, model.clone(), &cfg, &us, &is, Some(&positives))?;
    let act = t.gpu.act;
    let eps = eps_of(p);
    let rng = Rng::new(cfg.seed);
    let st = t.gpu.stream.clone();

    // Philox blocks.
    log("philox");
    let nb = 4096u32;
    let buf = t.gpu.alloc::<u32>(4 * nb as usize, "philox out")?;
    let seed = 0x1234_5678_9abc_def0u64;
    let args: Vec<KArg> = vec![
        (seed as u32).into(),
        ((seed >> 32) as u32).into(),
        7u32.into(),
        1000u32.into(),
        3u32.into(),
        9u32.into(),
        nb.into(),
        dptr(&buf, &st).into(),
    ];
    t.gpu.launch(
        "ncf_philox_blocks",
        t.gpu.grid_for(nb as u64),
        256,
        0,
        &args,
        "philox test",
    )?;
    let gpu = t.gpu.download(&buf, 4 * nb as usize, "philox out")?;
    let r = Rng::new(seed);
    let cpu: Vec<u32> = (0..nb).flat_map(|i| r.block(7, 1000 + i, 3, 9)).collect();
    out.push(exact("philox4x32_10", p, &gpu, &cpu));

    // Permutation.
    log("permutation");
    let mut perm_ok = true;
    let mut note = String::new();
    for n in [1u64, 5, 1000, 65_537, 3_000_001] {
        let pm = Permutation::new(&rng, stream::SHUFFLE, 2, 0, n);
        let count = n.min(100_000) as u32;
        let p0 = n - count as u64;
        let buf = t.gpu.alloc::<u64>(count as usize, "perm out")?;
        let k = pm.keys();
        let args: Vec<KArg> = vec![
            n.into(),
            pm.half_bits().into(),
            k[0].into(),
            k[1].into(),
            k[2].into(),
            k[3].into(),
            p0.into(),
            count.into(),
            dptr(&buf, &st).into(),
        ];
        t.gpu.launch(
            "ncf_permute",
            t.gpu.grid_for(count as u64),
            256,
            0,
            &args,
            &format!("n {n}"),
        )?;
        let gpu = t.gpu.download(&buf, count as usize, "perm out")?;
        let cpu: Vec<u64> = (p0..n).map(|q| pm.apply(q)).collect();
        let c = exact("permutation", p, &gpu, &cpu);
        if !c.pass {
            perm_ok = false;
            note = format!("n={n}: {}", c.note);
        }
    }
    out.push(Check {
        name: "permutation".into(),
        precision: precision_name(p),
        pass: perm_ok,
        worst_abs: if perm_ok { 0.0 } else { 1.0 },
        worst_rel: 0.0,
        at: 0,
        note,
    });

    // Sampler, both modes, a batch from the middle of an epoch.
    for mode in [NegativeMode::Approximate, NegativeMode::Exact] {
        log(&format!("sampler {mode:?}"));
        t.cfg.negative_mode = mode;
        let epoch = 3;
        let range = 333..333 + batch;
        let es = EpochSamples::new(
            rng,
            epoch,
            cfg.negatives,
            n_items,
            mode,
            &us,
            &is,
            Some(&positives),
        );
        t.gpu.zero(&mut t.sample_err, "sampler flag")?;
        let n = t.make_batch(epoch, range.clone())?;
        let gu = t.gpu.download(&t.batch.users, n, "users")?;
        let gi = t.gpu.download(&t.batch.items, n, "items")?;
        let gl = t.gpu.download(&t.batch.labels, n, "labels")?;
        let gs = t.gpu.download(&t.batch.sample, n, "sample ids")?;
        let (mut cu, mut ci, mut cl) = (vec![], vec![], vec![]);
        es.fill(range.clone(), &mut cu, &mut ci, &mut cl)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let cs: Vec<u32> = range.clone().map(|q| es.order.apply(q) as u32).collect();
        let g: Vec<(u32, u32, u32, u32)> = (0..n)
            .map(|k| (gs[k], gu[k], gi[k], gl[k].to_bits()))
            .collect();
        let c: Vec<(u32, u32, u32, u32)> = (0..n)
            .map(|k| (cs[k], cu[k], ci[k], cl[k].to_bits()))
            .collect();
        out.push(exact(
            &format!(
                "sampler_{}",
                if mode == NegativeMode::Exact {
                    "exact"
                } else {
                    "approximate"
                }
            ),
            p,
            &g,
            &c,
        ));
    }
    t.cfg.negative_mode = NegativeMode::Approximate;

    // One training-mode forward + backward, checked kernel by kernel against the CPU reference fed
    // with the device's own inputs of that kernel (so errors do not compound).
    log("forward");
    let epoch = 1;
    let range = 100..100 + batch;
    t.gpu.zero(&mut t.sample_err, "sampler flag")?;
    let n = t.make_batch(epoch, range)?;
    let bu = t.gpu.download(&t.batch.users, n, "users")?;
    let bi = t.gpu.download(&t.batch.items, n, "items")?;
    let bl = t.gpu.download(&t.batch.labels, n, "labels")?;
    let bs = t.gpu.download(&t.batch.sample, n, "sample ids")?;
    t.mlp_forward(n, Some(epoch))?;
    let mc = model.config.clone();
    let e = mc.mlp_embed();
    let x0 = dl_act(&t, &t.batch.x0, n * 2 * e, "x0")?;
    // The reference sees the weights rounded as the device's GEMM operands are.
    let mut rmodel = model.clone();
    for k in 0..mc.n_linear() {
        for w in rmodel.tensor_mut(&format!("mlp.{k}.weight")) {
            *w = round_act(*w, act);
        }
    }
    let rnet = RefNet::new(rmodel.clone());
    let rf = rnet.forward(&bu, &bi, Some((&rng, epoch, &bs)));
    let x0_cpu: Vec<f64> = rf.x0.iter().map(|&v| round_act(v, act) as f64).collect();
    out.push(compare("gather", p, &f(&x0), &x0_cpu, ATOL, eps));
    let (thr, scale) = dropout_threshold(mc.dropout);
    let mut acts: Vec<Vec<f32>> = vec![];
    let mut mask_bad = 0usize;
    for k in 0..mc.n_linear() {
        let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
        let a_gpu = dl_act(&t, &t.batch.acts[k], n * fout, &format!("acts {k}"))?;
        let x: &[f32] = if k == 0 { &x0 } else { &acts[k - 1] };
        let w = rmodel.tensor(&format!("mlp.{k}.weight"));
        let bias = rmodel.tensor(&format!("mlp.{k}.bias"));
        let mut a_cpu = vec![0f64; n * fout];
        for b in 0..n {
            for o in 0..fout {
                let z: f64 = (0..fin)
                    .map(|i| w[o * fin + i] as f64 * x[b * fin + i] as f64)
                    .sum::<f64>()
                    + bias[o] as f64;
                let kept = keep(&rng, bs[b], epoch, k as u32, o as u32, thr);
                let v = if kept { z.max(0.0) * scale as f64 } else { 0.0 };
                a_cpu[b * fout + o] = v;
                let g = a_gpu[b * fout + o];
                if (!kept && g != 0.0) || (kept && z > 1e-2 && g == 0.0) {
                    mask_bad += 1;
                }
            }
        }
        // GEMM (TF32/half operands) error dominates: scale eps by the dot length for non-FP32.
        let eps_k = if p == Precision::Fp32 {
            1e-5
        } else {
            eps * 4.0
        };
        out.push(compare_scaled(
            &format!("gemm+bias_relu_dropout_fwd.{k}"),
            p,
            &f(&a_gpu),
            &a_cpu,
            eps_k,
        ));
        acts.push(a_gpu);
    }
    out.push(Check {
        name: "dropout_mask".into(),
        precision: precision_name(p),
        pass: mask_bad == 0,
        worst_abs: mask_bad as f64,
        worst_rel: 0.0,
        at: 0,
        note: format!("{mask_bad} units disagree"),
    });

    log("final + BCE");
    t.gpu.zero(&mut t.loss_sum, "loss")?;
    t.gpu.zero(&mut t.grads, "grads")?;
    t.final_layer(n, true, 1.0 / n as f32)?;
    let loss_gpu = t.gpu.download(&t.loss_sum, 1, "loss")?[0] / n as f64;
    let dx_last = t
        .gpu
        .download(&t.batch.scratch, n * mc.mlp_out(), "dx_last")?;
    let g_final = t.grads_host()?;
    // CPU reference of the final layer on the device's x_last.
    let mut fwd_dev = RefFwd {
        x0: x0.clone(),
        acts: acts.clone(),
        logits: vec![],
    };
    let lout = mc.mlp_out();
    let ff = mc.gmf_factors();
    {
        let fw = rmodel.tensor("final.weight");
        let fb = rmodel.tensor("final.bias")[0] as f64;
        let (mu, mi) = (
            rmodel.tensor("mf_user_embed.weight"),
            rmodel.tensor("mf_item_embed.weight"),
        );
        fwd_dev.logits = (0..n)
            .map(|b| {
                let mut z = fb;
                for j in 0..ff {
                    z += (mu[bu[b] as usize * ff + j] * mi[bi[b] as usize * ff + j]) as f64
                        * fw[j] as f64;
                }
                for j in 0..lout {
                    z += acts[mc.n_linear() - 1][b * lout + j] as f64 * fw[ff + j] as f64;
                }
                z as f32
            })
            .collect();
    }
    let (loss_cpu, g_cpu) = rnet.loss_and_grad(&bu, &bi, &bl, &fwd_dev, Some((&rng, epoch, &bs)));
    out.push(compare(
        "final_bce_loss",
        p,
        &[loss_gpu],
        &[loss_cpu],
        ATOL,
        1e-5,
    ));
    let l = &model.layout;
    for name in [
        "final.weight",
        "final.bias",
        "mf_user_embed.weight",
        "mf_item_embed.weight",
    ] {
        let r = l.range(name);
        out.push(compare(
            &format!("final_grad:{name}"),
            p,
            &f(&g_final[r.clone()]),
            &g_cpu[r],
            ATOL,
            1e-5,
        ));
    }
    let fwv = rmodel.tensor("final.weight");
    let dx_cpu: Vec<f64> = (0..n * lout)
        .map(|k| {
            let b = k / lout;
            let z = fwd_dev.logits[b] as f64;
            (1.0 / (1.0 + (-z).exp()) - bl[b] as f64) / n as f64 * fwv[ff + k % lout] as f64
        })
        .collect();
    out.push(compare(
        "final_dx_last",
        p,
        &f(&dx_last),
        &dx_cpu,
        ATOL,
        1e-5,
    ));

    log("backward");
    t.mlp_backward(n, epoch)?;
    let g_all = t.grads_host()?;
    // Backward grads depend on dz rounded to the activation type and on GEMM precision.
    let eps_b = if p == Precision::Fp32 {
        1e-5
    } else {
        eps * 4.0
    };
    for k in 0..mc.n_linear() {
        let r = l.range(&format!("mlp.{k}.bias"));
        out.push(compare_scaled(
            &format!("bias_relu_dropout_bwd:dbias.{k}"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
        let r = l.range(&format!("mlp.{k}.weight"));
        out.push(compare_scaled(
            &format!("gemm_dW:mlp.{k}.weight"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
    }
    for name in ["mlp_user_embed.weight", "mlp_item_embed.weight"] {
        let r = l.range(name);
        out.push(compare_scaled(
            &format!("gemm_dX+scatter:{name}"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
    }

    log("adam");
    for opt in [Optimizer::Adam, Optimizer::Sgd] {
        let total = l.total;
        let r = Rng::new(77);
        let rnd = |k: usize, c: u32, s: f64| (r.normal(stream::SYNTH, k as u32, c, 0) * s) as f32;
        let p0: Vec<f32> = (0..total).map(|k| rnd(k, 0, 0.1)).collect();
        let g0: Vec<f32> = (0..total).map(|k| rnd(k, 1, 0.01)).collect();
        let m0: Vec<f32> = (0..total).map(|k| rnd(k, 2, 0.01)).collect();
        let v0: Vec<f32> = (0..total).map(|k| rnd(k, 3, 1e-4).abs()).collect();
        t.gpu.upload_into(&p0, &mut t.params, "params")?;
        t.gpu.upload_into(&g0, &mut t.grads, "grads")?;
        t.gpu.upload_into(&m0, &mut t.m, "m")?;
        t.gpu.upload_into(&v0, &mut t.v, "v")?;
        let mut c2 = cfg.clone();
        c2.optimizer = opt;
        c2.l2 = 1e-3;
        t.cfg = c2.clone();
        t.optimizer_step(5, 1.0, false)?;
        let pg = t.params_host()?;
        let gg = t.grads_host()?;
        let mut rn = RefNet {
            model: Model {
                params: p0,
                ..model.clone()
            },
            m: m0,
            v: v0,
            steps: 4,
        };
        rn.adam(&f(&g0), &c2);
        let name = if opt == Optimizer::Adam {
            "adam"
        } else {
            "sgd"
        };
        out.push(compare(name, p, &f(&pg), &f(&rn.model.params), ATOL, 1e-6));
        let zeroed = gg.iter().all(|&x| x == 0.0);
        out.push(Check {
            name: format!("{name}_zeroes_grads"),
            precision: precision_name(p),
            pass: zeroed,
            worst_abs: 0.0,
            worst_rel: 0.0,
            at: 0,
            note: String::new(),
        });
    }
    t.cfg = cfg.clone();

    if p == Precision::Fp16 {
        log("inf check + skipped step");
        let total = l.total;
        let mut g0 = vec![0.001f32; total];
        g0[total / 2] = f32::INFINITY;
        let p0 = t.params_host()?;
        t.gpu.upload_into(&g0, &mut t.grads, "grads")?;
        t.gpu.zero(&mut t.found_inf, "inf flag")?;
        let args: Vec<KArg> = vec![
            dptr(&t.grads, &st).into(),
            (total as u64).into(),
            dptr(&t.found_inf, &st).into(),
        ];
        t.gpu.launch(
            "ncf_check_finite",
            t.gpu.grid_for(total as u64),
            256,
            0,
            &args,
            "inf check",
        )?;
        t.optimizer_step(1, 1.0, true)?;
        let flag = t.gpu.download(&t.found_inf, 1, "flag")?[0];
        let p1 = t.params_host()?;
        out.push(Check {
            name: "fp16_overflow_skips_step".into(),
            precision: "fp16",
            pass: flag == 1 && p0 == p1,
            worst_abs: 0.0,
            worst_rel: 0.0,
            at: 0,
            note: format!("flag {flag}, params unchanged {}", p0 == p1),
        });
    }

    log("gemm");
    out.extend(gemm_checks(&t, p)?);
    Ok(out)
}

/// The three GEMM forms of the MLP vs a naive CPU matmul on operands rounded to the device type.
fn gemm_checks(t: &CudaTrainer, p: Precision) -> Result<Vec<Check>, CudaError> {
    let act = t.gpu.act;
    let st = &t.gpu.stream;
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
    let dw = t.gpu.upload(&f32_to_bytes(&w, act), "gemm W")?;
    let dx = t.gpu.upload(&f32_to_bytes(&x, act), "gemm X")?;
    let ddz = t.gpu.upload(&f32_to_bytes(&dz, act), "gemm dZ")?;
    let c = t.gpu.alloc::<f32>(n * fin.max(fout) * 2, "gemm C")?;
    let (pw, px, pdz, pc) = (dptr(&dw, st), dptr(&dx, st), dptr(&ddz, st), dptr(&c, st));
    let eps = if p == Precision::Fp32 {
        1e-6
    } else {
        eps_of(p)
    };
    let mut out = vec![];
    // forward Z[n, out] = X W^T
    t.gpu.gemm(
        "check forward",
        true,
        false,
        (fout, n, fin),
        pw,
        fin,
        px,
        fin,
        pc,
        fout,
        0.0,
    )?;
    let z = t.gpu.download(&c, n * fout, "Z")?;
    let zc: Vec<f64> = (0..n * fout)
        .map(|k| {
            (0..fin)
                .map(|i| x[(k / fout) * fin + i] as f64 * w[(k % fout) * fin + i] as f64)
                .sum()
        })
        .collect();
    out.push(compare_scaled("gemm_forward", p, &f(&z), &zc, eps * 4.0));
    // dX[n, in] = dZ W
    t.gpu.gemm(
        "check dX",
        false,
        false,
        (fin, n, fout),
        pw,
        fin,
        pdz,
        fout,
        pc,
        fin,
        0.0,
    )?;
    let g = t.gpu.download(&c, n * fin, "dX")?;
    let gc: Vec<f64> = (0..n * fin)
        .map(|k| {
            (0..fout)
                .map(|o| dz[(k / fin) * fout + o] as f64 * w[o * fin + k % fin] as f64)
                .sum()
        })
        .collect();
    out.push(compare_scaled("gemm_dX", p, &f(&g), &gc, eps * 4.0));
    // dW[out, in] = dZ^T X
    t.gpu.gemm(
        "check dW",
        false,
        true,
        (fin, fout, n),
        px,
        fin,
        pdz,
        fout,
        pc,
        fin,
        0.0,
    )?;
    let g = t.gpu.download(&c, fout * fin, "dW")?;
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

/// Golden run: CPU reference and GPU from the same model, data and seed for `steps` steps; the
/// loss curves must agree (fp32 1e-4 relative, others 2e-2), and so must scores afterwards.
pub fn golden(
    ordinal: usize,
    p: Precision,
    kind: ModelKind,
    steps: u32,
    log: Log,
) -> Result<Vec<Check>, CudaError> {
    let (n_users, n_items) = (30u32, 200u32);
    let (us, is) = toy_data(n_users, n_items, 10, 8);
    let positives = UserItems::new(n_users, &us, &is);
    let model = toy_model(kind, n_users, n_items, 0.25, 9);
    let batch = 128u64;
    let mut cfg = toy_train_config(p, batch);
    cfg.negative_mode = NegativeMode::Exact;
    log(&format!(
        "golden {kind:?} {}: {} positives, {steps} steps of {batch}",
        precision_name(p),
        us.len()
    ));
    let mut gpu = CudaTrainer::new(ordinal, model.clone(), &cfg, &us, &is, Some(&positives))?;
    let mut cpu = ncf_core::cpu::CpuTrainer::new(
        model,
        &cfg,
        us.clone(),
        is.clone(),
        Some(positives.clone()),
        1,
    )
    .map_err(|e| CudaError::Invalid(format!("CPU trainer: {e}")))?;
    let per_epoch = us.len() as u64 * (1 + cfg.negatives as u64);
    let (mut lg, mut lc) = (vec![], vec![]);
    let mut skipped = 0;
    let mut pos = 0u64;
    let mut epoch = 0u32;
    for _ in 0..steps {
        if pos >= per_epoch {
            pos = 0;
            epoch += 1;
        }
        let end = (pos + batch).min(per_epoch);
        let sg = gpu
            .step(epoch, pos..end)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let sc = cpu
            .step(epoch, pos..end)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        skipped += sg.skipped as u32;
        lg.push(sg.loss as f64);
        lc.push(sc.loss as f64);
        pos = end;
    }
    let tol = if matches!(p, Precision::Fp32) {
        1e-4
    } else {
        2e-2
    };
    let tag = format!("{kind:?}").to_lowercase();
    let mut c = compare(&format!("golden_loss_{tag}"), p, &lg, &lc, 0.0, tol);
    c.note = format!(
        "{}gpu {:?} cpu {:?}",
        if skipped > 0 {
            format!("{skipped} skipped, ")
        } else {
            String::new()
        },
        lg.iter().map(|x| *x as f32).collect::<Vec<_>>(),
        lc.iter().map(|x| *x as f32).collect::<Vec<_>>()
    );
    let mut out = vec![c];
    // Scores after training (dropout off), all pairs of a few users.
    let su: Vec<u32> = (0..5u32)
        .flat_map(|u| std::iter::repeat_n(u, n_items as usize))
        .collect();
    let si: Vec<u32> = (0..5).flat_map(|_| 0..n_items).collect();
    let (mut og, mut oc) = (vec![0f32; su.len()], vec![0f32; su.len()]);
    gpu.score(&su, &si, &mut og)
        .map_err(|e| CudaError::Invalid(e.to_string()))?;
    cpu.score(&su, &si, &mut oc)
        .map_err(|e| CudaError::Invalid(e.to_string()))?;
    let stol = if matches!(p, Precision::Fp32) {
        1e-4
    } else {
        3e-2
    };
    out.push(compare_scaled(
        &format!("golden_score_{tag}"),
        p,
        &f(&og),
        &f(&oc),
        stol,
    ));
    // GPU top-K (all items of 5 users, train positives excluded) vs selecting from its scores.
    let tk = gpu.topk(&[0, 1, 2, 3, 4], 10, Some(&positives))?;
    let got: Vec<Vec<u32>> = tk.iter().map(|r| r.iter().map(|x| x.0).collect()).collect();
    let want: Vec<Vec<u32>> = (0..5u32)
        .map(|u| {
            let row = &og[u as usize * n_items as usize..][..n_items as usize];
            crate::trainer::top_k_of(row, 10, positives.of(u))
                .iter()
                .map(|x| x.0)
                .collect()
        })
        .collect();
    out.push(exact(&format!("topk_{tag}"), p, &got, &want));
    Ok(out)
}

/// Every check in every precision (and the golden run of each model kind in FP32).
pub fn run_all(ordinal: usize, log: Log) -> Result<Vec<Check>, CudaError> {
    let mut out = vec![];
    for p in PRECISIONS {
        let _ = act_of(p);
        match kernel_checks(ordinal, p, log) {
            Ok(c) => out.extend(c),
            Err(e) => out.push(Check {
                name: "kernel_checks".into(),
                precision: precision_name(p),
                pass: false,
                worst_abs: 0.0,
                worst_rel: 0.0,
                at: 0,
                note: e.to_string(),
            }),
        }
        let kinds: &[ModelKind] = if p == Precision::Fp32 {
            &[ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp]
        } else {
            &[ModelKind::Neumf]
        };
        for &kind in kinds {
            match golden(ordinal, p, kind, 10, log) {
                Ok(c) => out.extend(c),
                Err(e) => out.push(Check {
                    name: format!("golden_{kind:?}").to_lowercase(),
                    precision: precision_name(p),
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

/// Training throughput on a synthetic ml-20m-shaped problem: samples/s per precision (median of
/// `steps` timed steps after `warmup`), as JSON.
pub fn bench(
    ordinal: usize,
    precisions: &[Precision],
    steps: usize,
    warmup: usize,
    batch: u64,
    log: Log,
) -> Result<serde_json::Value, CudaError> {
    let (n_users, n_items, n_pos) = (138_493u32, 26_744u32, 20_000_263usize);
    if steps == 0 || batch == 0 || batch >= n_pos as u64 {
        return Err(CudaError::Invalid(format!(
            "bench: need at least one step and a batch in 1..{n_pos} (got {steps} steps of {batch})"
        )));
    }
    log(&format!("bench: generating {n_pos} positives"));
    let rng = Rng::new(20);
    let users: Vec<u32> = (0..n_pos)
        .map(|k| ncf_core::rng::below(rng.word(stream::SYNTH, k as u32, 0, 0), n_users))
        .collect();
    let items: Vec<u32> = (0..n_pos)
        .map(|k| ncf_core::rng::below(rng.word(stream::SYNTH, k as u32, 1, 0), n_items))
        .collect();
    let cfgm = ModelConfig {
        kind: ModelKind::Neumf,
        n_users,
        n_items,
        factors: 64,
        layers: vec![256, 256, 128, 64],
        dropout: 0.5,
    };
    let model = Model::init(cfgm.clone(), 1).map_err(|e| CudaError::Invalid(e.to_string()))?;
    let mut results = vec![];
    for &p in precisions {
        let mut cfg = toy_train_config(p, batch);
        cfg.lr = 0.0045;
        cfg.beta1 = 0.25;
        cfg.beta2 = 0.5;
        cfg.negatives = 4;
        log(&format!("bench {}: uploading", precision_name(p)));
        let mut t = CudaTrainer::new(ordinal, model.clone(), &cfg, &users, &items, None)?;
        t.gpu.sync_each = false; // timings without the --verbose per-kernel synchronisation
        let per_epoch = t.samples_per_epoch();
        let mut times = vec![];
        let mut losses = vec![];
        for s in 0..warmup + steps {
            let start = (s as u64 * batch) % (per_epoch - batch);
            t.gpu.sync("bench")?;
            let t0 = std::time::Instant::now();
            let st = t
                .step(0, start..start + batch)
                .map_err(|e| CudaError::Invalid(e.to_string()))?;
            t.gpu.sync("bench")?;
            if s >= warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
            losses.push(st.loss);
        }
        // One more step with every kernel synchronised and timed: where the time goes.
        t.gpu.profile = Some(Default::default());
        t.step(0, 0..batch)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let stages: Vec<serde_json::Value> = t
            .gpu
            .profile
            .take()
            .map(|p| p.into_inner())
            .unwrap_or_default()
            .into_iter()
            .map(|(name, s)| serde_json::json!({"stage": name, "ms": s * 1e3}))
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        let flops = 6.0 * cfgm.macs_per_sample() as f64 * batch as f64;
        log(&format!(
            "bench {}: median step {:.3} ms",
            precision_name(p),
            med * 1e3
        ));
        results.push(serde_json::json!({
            "precision": precision_name(p), "batch": batch, "median_step_ms": med * 1e3,
            "min_step_ms": times[0] * 1e3, "samples_per_s": batch as f64 / med,
            "tflops": flops / med / 1e12, "first_loss": losses[0], "last_loss": losses[losses.len() - 1], "stages": stages,
        }));
    }
    let info = crate::probe(ordinal)?;
    Ok(
        serde_json::json!({"device": info.name, "arch": info.arch(), "users": n_users, "items": n_items,
        "positives": n_pos, "steps": steps, "warmup": warmup, "results": results}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU reference's gradient is the derivative of its loss (central differences, fixed
    /// dropout mask), for every model kind: the kernels are checked against it, so it must be right.
    #[test]
    fn reference_gradient_matches_finite_differences() {
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let mut model = toy_model(kind, 6, 9, 0.25, 4);
            for x in model.params.iter_mut() {
                *x *= 3.0; // larger values: finite differences above f32 noise
            }
            let users = [0u32, 1, 2, 3, 4, 5, 0, 3];
            let items = [1u32, 2, 3, 4, 5, 6, 7, 8];
            let labels = [1f32, 0., 1., 0., 0., 1., 0., 1.];
            let sample: Vec<u32> = (0..8).collect();
            let rng = Rng::new(3);
            let drop = Some((&rng, 0u32, &sample[..]));
            let net = RefNet::new(model.clone());
            let fwd = net.forward(&users, &items, drop);
            let (_, g) = net.loss_and_grad(&users, &items, &labels, &fwd, drop);
            let loss_at = |params: &[f32]| {
                let n = RefNet::new(Model {
                    params: params.to_vec(),
                    ..model.clone()
                });
                let fw = n.forward(&users, &items, drop);
                n.loss_and_grad(&users, &items, &labels, &fw, drop).0
            };
            let (mut tested, mut bad) = (0, vec![]);
            for k in (0..model.params.len()).filter(|&k| g[k].abs() > 1e-3) {
                let h = 1e-3f32;
                let mut p = model.params.clone();
                p[k] += h;
                let up = loss_at(&p);
                p[k] -= 2.0 * h;
                let down = loss_at(&p);
                let fd = (up - down) / (2.0 * h as f64);
                tested += 1;
                if (fd - g[k]).abs() > 1e-3 + 3e-2 * g[k].abs() {
                    bad.push((k, fd, g[k]));
                }
            }
            assert!(
                tested > 20,
                "{kind:?}: only {tested} coordinates with a gradient"
            );
            // A few coordinates may sit on a ReLU kink.
            assert!(
                bad.len() * 50 <= tested,
                "{kind:?}: {} of {tested} differ: {:?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            );
        }
    }

    /// The kernel checks' CPU reference agrees with ncf_core's CPU trainer (the golden run's CPU
    /// side) on a 10-step loss curve with dropout and exact negatives, for every model kind.
    #[test]
    fn reference_trainer_matches_the_cpu_trainer() {
        let (us, is) = toy_data(30, 200, 10, 8);
        let pos = UserItems::new(30, &us, &is);
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let model = toy_model(kind, 30, 200, 0.25, 9);
            let mut cfg = toy_train_config(Precision::Fp32, 128);
            cfg.negative_mode = NegativeMode::Exact;
            let mut cpu = ncf_core::cpu::CpuTrainer::new(
                model.clone(),
                &cfg,
                us.clone(),
                is.clone(),
                Some(pos.clone()),
                1,
            )
            .unwrap();
            let mut r = RefTrainer {
                net: RefNet::new(model),
                cfg,
                users: &us,
                items: &is,
                positives: Some(&pos),
            };
            let (mut a, mut b) = (vec![], vec![]);
            for s in 0..8u64 {
                a.push(cpu.step(0, s * 128..(s + 1) * 128).unwrap().loss as f64);
                b.push(r.step(0, s * 128..(s + 1) * 128).unwrap().loss as f64);
            }
            let c = compare("ref_vs_cpu", Precision::Fp32, &b, &a, 0.0, 1e-5);
            assert!(c.pass, "{kind:?}: {}\nref {b:?}\ncpu {a:?}", c.line());
            let pc = cpu.model().unwrap().params;
            let pr = r.model().unwrap().params;
            let c = compare_scaled("ref_vs_cpu_params", Precision::Fp32, &f(&pr), &f(&pc), 1e-4);
            assert!(c.pass, "{kind:?}: {}", c.line());
        }
    }

    #[test]
    fn reference_trainer_learns_the_toy_data() {
        let (us, is) = toy_data(30, 200, 10, 8);
        let pos = UserItems::new(30, &us, &is);
        let mut cfg = toy_train_config(Precision::Fp32, 128);
        cfg.negative_mode = NegativeMode::Exact;
        let mut t = RefTrainer {
            net: RefNet::new(toy_model(ModelKind::Neumf, 30, 200, 0.0, 9)),
            cfg,
            users: &us,
            items: &is,
            positives: Some(&pos),
        };
        let per_epoch = us.len() as u64 * 5;
        let mut first = None;
        let mut last = 0.0;
        for epoch in 0..6 {
            let mut p = 0;
            while p < per_epoch {
                let end = (p + 128).min(per_epoch);
                let s = t.step(epoch, p..end).unwrap();
                first.get_or_insert(s.loss);
                last = s.loss;
                p = end;
            }
        }
        let first = first.unwrap();
        assert!(
            (first - std::f32::consts::LN_2).abs() < 0.05,
            "initial loss {first}"
        );
        assert!(last < first * 0.8, "loss {first} -> {last}");
    }

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
            .filter(|&s| keep(&rng, s, 0, 1, s % 64, 128))
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
