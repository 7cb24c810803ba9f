//! The CPU backend of NeuMF (and GMF, MLP): training and scoring in FP32 on all cores.
//!
//! [`reference`] is the per-sample definition of the math, the one every fast path (these tiles,
//! the CUDA kernels) is checked against; [`CpuTrainer`] computes the same thing on tiles of
//! samples with GEMMs ([`tile`]), the first MLP layer factored over users and items
//! ([`factored`]), and a sparse-aware optimiser pass ([`optim`]). [`CpuScorer`] scores.

pub mod factored;
pub mod optim;
pub mod reference;
pub mod scorer;
pub mod tile;

use crate::data::dataset::{Col, TrainUsers};
use crate::dist::Group;
use crate::model::dropout::{dropout_scale, dropout_threshold, DropoutKey};
use crate::model::{Model, Side};
use crate::sampling::rng::Rng;
use crate::sampling::sampler::{EpochSamples, NegativeMode, UserItems};
use crate::train::backend::{check_train_ids, default_threads, Scorer, StepStats, Trainer};
use crate::train::checkpoint::OptimizerState;
use crate::train::config::{Moments, TrainConfig};
use crate::{Error, Result};
use factored::Factored;
use optim::{Segment, Touched};
use reference::AdamScalars;
pub use scorer::{score, score_checked, score_with, CpuScorer};
use tile::{Net, Work};

/// How a training step computes the first MLP layer (both backends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FirstLayer {
    /// Once per distinct user and item of the step ([`factored`]); the default.
    Factored,
    /// A GEMM per tile over the gathered embeddings, like every other layer.
    PerSample,
}

/// Bytes of a mapped item column above which a step drops the pages it read
/// ([`CpuTrainer`]'s sampling loop).
const RELEASE_ABOVE: usize = 1 << 30;

/// Samples per tile (rows of the per-thread GEMMs); chosen by `examples/cpu_train_bench.rs`.
pub const DEFAULT_TILE: usize = 128;

/// The CPU trainer: FP32, `threads` threads, deterministic for a given seed and thread count.
///
/// A step splits the batch positions into `threads` contiguous chunks; each thread builds its
/// samples from [`EpochSamples`] in tiles of `tile` rows, runs [`tile::forward`] and
/// [`tile::backward`] and adds gradients into its own gradient vector (same layout as the
/// parameters). The first MLP layer is factored over the distinct users and items of each
/// thread's share ([`factored`], [`FirstLayer`]). On one rank the embedding gradients stay by
/// slot of the share's distinct rows ("sparse gradients", slots handed out by [`Factored`]
/// with either first layer) and the vector's embedding tables are never written, so their
/// pages cost no memory: a thread's gradients take memory by the step's distinct rows, not by
/// the model's (at MLPerf's ml-20mx16x32, 2.3 GB per thread less). Across ranks (the
/// all-reduce sums dense vectors) embedding rows are scattered into the vector. One parallel
/// pass then sums the per-thread gradients in thread order, zeroes them and applies the
/// optimiser to every parameter: the same bits either way.
pub struct CpuTrainer {
    model: Model,
    cfg: TrainConfig,
    net: Net,
    users: TrainUsers,
    items: Col<u32>,
    positives: Option<UserItems>,
    threads: usize,
    tile: usize,
    grads: Vec<Vec<f32>>,
    /// Adam's moments (SGD leaves them at zero).
    moments: MomentBufs,
    /// Optimiser steps taken.
    step: u64,
    work: Vec<Work>,
    first_layer: FirstLayer,
    factored: Vec<Factored>,
    /// The flat vector's embedding tables and the rest ([`optim::segments`]).
    segments: Vec<Segment>,
    /// Per thread: the users and items its share of the step touched (repeats allowed).
    touched_by: Vec<(Vec<u32>, Vec<u32>)>,
    /// Their union, for the optimiser pass.
    touched: Touched,
    /// Scatter embedding gradients into the dense vectors on one rank too (tests: the same bits).
    dense_only: bool,
    /// The other ranks of a data-parallel run ([`crate::dist`]); a group of one by default.
    group: Group,
}

impl CpuTrainer {
    /// A trainer for `model` on the training positives (`train_users[k]`, `train_items[k]`);
    /// `positives` (each user's training items) is needed for exact negatives. `threads` 0 means
    /// [`default_threads`].
    pub fn new(
        model: Model,
        cfg: &TrainConfig,
        train_users: Vec<u32>,
        train_items: Vec<u32>,
        positives: Option<UserItems>,
        threads: usize,
    ) -> Result<Self> {
        let (users, items) = (train_users.into(), train_items.into());
        Self::on_columns(model, cfg, users, items, positives, threads)
    }

    /// [`CpuTrainer::new`] on a dataset's columns as they are (mapped or owned; train users as
    /// per-user offsets or one per row), shared rather than copied.
    pub fn on_columns(
        model: Model,
        cfg: &TrainConfig,
        train_users: TrainUsers,
        train_items: Col<u32>,
        positives: Option<UserItems>,
        threads: usize,
    ) -> Result<Self> {
        model.config.validate()?;
        if model.params.len() != model.layout.total {
            return Err(Error::invalid(format!(
                "model has {} parameters, its layout needs {}",
                model.params.len(),
                model.layout.total
            )));
        }
        if cfg.negative_mode == NegativeMode::Exact && positives.is_none() {
            return Err(Error::invalid("exact negatives need the users' positives"));
        }
        check_train_ids(&model.config, &train_users, &train_items)
            .map_err(|e| Error::invalid(format!("training data: {e}")))?;
        let threads = if threads == 0 {
            default_threads()
        } else {
            threads
        };
        let net = Net::new(&model);
        let n = model.params.len();
        let segments = optim::segments(&model.layout);
        optim::check_rows(&segments, model.config.n_users, model.config.n_items)
            .map_err(|e| Error::invalid(format!("model layout: {e}")))?;
        Ok(CpuTrainer {
            net,
            cfg: cfg.clone(),
            users: train_users,
            items: train_items,
            positives,
            threads,
            tile: DEFAULT_TILE,
            grads: zeroed(threads, n),
            moments: MomentBufs::new(cfg.adam_moments, n),
            step: 0,
            work: vec![],
            first_layer: FirstLayer::Factored,
            factored: vec![],
            segments,
            touched_by: vec![],
            touched: Touched::new(model.config.n_users, model.config.n_items),
            dense_only: false,
            group: Group::single(),
            model,
        })
    }

    /// Use tiles of `rows` samples (for benchmarks; results change in the last bits).
    pub fn with_tile(mut self, rows: usize) -> Self {
        self.tile = rows.max(1);
        self.work.clear();
        self
    }

    /// Compute the first MLP layer this way (`ncf-train --first-layer`; results change in the
    /// last bits). Factored is faster while a step's distinct users and items are fewer than
    /// its samples (ml-20m: ~165 k rows for 2^20 samples); per sample holds no per-row tables
    /// (at ml-20mx16x32 factoring keeps ~2 GB per thread of them).
    pub fn with_first_layer(mut self, first: FirstLayer) -> Self {
        self.first_layer = first;
        self
    }

    /// Whether steps keep their embedding gradients by slot in `factored` (sparse gradients:
    /// one rank) rather than in `grads`.
    fn sparse_grads(&self) -> bool {
        self.group.world() == 1 && !self.dense_only
    }

    /// Keep embedding gradients in dense vectors even on one rank (for tests).
    #[cfg(test)]
    pub(crate) fn with_dense_grads(mut self) -> Self {
        self.dense_only = true;
        self
    }

    /// Train data-parallel with the ranks of `group`: each rank computes its share of every
    /// batch and the gradients are summed over ranks before the optimiser step. Rank 0's
    /// parameters are broadcast first, so every rank starts from the same model.
    pub fn with_group(mut self, mut group: Group) -> Result<Self> {
        group.broadcast(&mut self.model.params)?;
        self.group = group;
        Ok(self)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    pub fn params(&self) -> &[f32] {
        &self.model.params
    }

    /// Forward and backward of the batch at `positions`: per-thread gradients of the mean loss
    /// are added into `self.grads`; returns the summed (not averaged) loss.
    fn accumulate(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<f64> {
        let rng = Rng::new(self.cfg.seed);
        let samples = EpochSamples::over(
            rng,
            epoch,
            self.cfg.negatives,
            self.model.config.n_items,
            self.cfg.negative_mode,
            self.users.view(),
            &self.items,
            self.positives.as_ref(),
        );
        samples.check_positions(&positions)?;
        let batch = positions.end - positions.start;
        let batch_f = batch as f32;
        let t = dropout_threshold(self.model.config.dropout);
        let key = DropoutKey {
            rng,
            epoch,
            threshold: t,
        };
        let dropout = (t > 0).then_some(&key);
        let scale = dropout_scale(t);
        let threads = self.threads;
        if self.work.len() != threads {
            self.work = (0..threads)
                .map(|_| Work::new(&self.net, self.tile))
                .collect();
        }
        let factor = self.first_layer == FirstLayer::Factored && self.net.n_linear() > 0;
        // One rank: embedding gradients stay by slot of the step's distinct rows (the ranks
        // all-reduce dense vectors).
        let sparse = self.sparse_grads();
        if (factor || sparse) && self.factored.len() != threads {
            let (nu, ni) = (self.model.config.n_users, self.model.config.n_items);
            self.factored = (0..threads).map(|_| Factored::new(nu, ni)).collect();
        }
        if self.touched_by.len() != threads {
            self.touched_by = (0..threads).map(|_| Default::default()).collect();
        }
        let (net, p, tile) = (&self.net, &self.model.params[..], self.tile);
        // A large mapped item column is read at random positives: each page fault maps its
        // neighbours too (the kernel's fault-around, not turned off by MADV_RANDOM), so one
        // step of 2^20 samples would map nearly every page of a 4.9 GB column (ml-20mx16x32)
        // into the resident set. Drop them every few thousand samples: they stay in the page
        // cache, and the resident set holds a few hundred MB of it at most.
        let items = &self.items;
        let release_every =
            (items.is_mapped() && items.len() * 4 > RELEASE_ABOVE).then_some(8192u64);
        // The batch is split into world × threads chunks; this rank's threads take theirs, so
        // chunk boundaries (and results) of R ranks × T threads equal 1 rank × R·T threads.
        let (rank, world) = (self.group.rank(), self.group.world());
        let parts = (world * threads) as u64;
        let chunk = |k: usize| positions.start + batch * (rank * threads + k) as u64 / parts;
        let dlogits = |work: &mut Work, loss: &mut f64| {
            for r in 0..work.user.len() {
                let (x, y) = (work.logit[r], work.label[r]);
                *loss += reference::bce_with_logits(x, y) as f64;
                work.dlogit[r] = (reference::sigmoid(x) - y) / batch_f;
            }
        };
        let run = |k: usize,
                   work: &mut Work,
                   g: &mut [f32],
                   fac: Option<&mut Factored>,
                   touched: &mut (Vec<u32>, Vec<u32>)| {
            let mut loss = 0f64;
            let (start, end) = (chunk(k), chunk(k + 1));
            touched.0.clear();
            touched.1.clear();
            if let Some(fac) = fac {
                fac.clear();
                for q in start..end {
                    let s = samples.order.apply(q);
                    let (u, i, l) = samples.sample(s)?;
                    fac.push(u, i, l, s);
                    if release_every.is_some_and(|r| (q - start) % r == r - 1) {
                        items.release(0..items.len());
                    }
                }
                if release_every.is_some() {
                    items.release(0..items.len());
                }
                let n = (end - start) as usize;
                if factor {
                    fac.begin(net, p, sparse);
                    for from in (0..n).step_by(tile) {
                        fac.load_tile(work, from..(from + tile).min(n));
                        tile::forward_with(net, p, work, dropout, Some(fac.projections()));
                        dlogits(work, &mut loss);
                        let (agg, slots) = fac.targets();
                        tile::backward_with(net, p, work, g, scale, Some(agg), slots);
                    }
                    fac.finish(net, p, g);
                } else {
                    // Sparse gradients of the per-sample first layer: the samples in their
                    // order, tiles as below, embedding gradients by slot.
                    fac.begin_rows(net);
                    for from in (0..n).step_by(tile) {
                        fac.load_tile(work, from..(from + tile).min(n));
                        tile::forward(net, p, work, dropout);
                        dlogits(work, &mut loss);
                        tile::backward_with(net, p, work, g, scale, None, fac.slot_grads());
                    }
                }
                let (users, items) = fac.distinct();
                touched.0.extend_from_slice(users);
                touched.1.extend_from_slice(items);
                return Ok(loss);
            }
            let mut pos = start;
            while pos < end {
                let n = (end - pos).min(tile as u64);
                work.clear();
                for q in pos..pos + n {
                    let s = samples.order.apply(q);
                    let (u, i, l) = samples.sample(s)?;
                    work.user.push(u);
                    work.item.push(i);
                    work.label.push(l);
                    work.index.push(s);
                }
                touched.0.extend_from_slice(&work.user);
                touched.1.extend_from_slice(&work.item);
                tile::forward(net, p, work, dropout);
                dlogits(work, &mut loss);
                tile::backward(net, p, work, g, scale);
                pos += n;
            }
            Ok(loss)
        };
        let mut facs: Vec<Option<&mut Factored>> = if factor || sparse {
            self.factored.iter_mut().map(Some).collect()
        } else {
            (0..threads).map(|_| None).collect()
        };
        let losses: Vec<Result<f64>> = if threads == 1 {
            vec![run(
                0,
                &mut self.work[0],
                &mut self.grads[0],
                facs.pop().flatten(),
                &mut self.touched_by[0],
            )]
        } else {
            std::thread::scope(|sc| {
                let handles: Vec<_> = self
                    .work
                    .iter_mut()
                    .zip(self.grads.iter_mut())
                    .zip(facs)
                    .zip(self.touched_by.iter_mut())
                    .enumerate()
                    .map(|(k, (((w, g), f), t))| sc.spawn(move || run(k, w, g, f, t)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        let mut total = 0f64;
        for l in losses {
            total += l?;
        }
        Ok(total)
    }

    /// Sum the per-thread gradients (in thread order), zero them, and apply the optimiser
    /// ([`optim`]: rows no thread touched are updated without reading their zero gradients).
    /// Returns false when some gradient was not finite (the step is then partly applied and
    /// training must stop).
    fn apply(&mut self) -> bool {
        self.step += 1;
        let kernel = optim::Kernel {
            opt: self.cfg.optimizer,
            adam: AdamScalars::new(&self.cfg, self.step),
            lr: self.cfg.lr,
            l2: self.cfg.l2,
        };
        // One rank: the rows no thread touched have zero gradients and are updated without
        // reading them. Several ranks: the all-reduced gradients may be non-zero anywhere.
        let touched = if self.group.world() == 1 {
            for (users, items) in &self.touched_by {
                self.touched.mark(Side::User, users);
                self.touched.mark(Side::Item, items);
            }
            Some(&self.touched)
        } else {
            None
        };
        let by_slot = self.sparse_grads();
        let n = self.model.params.len();
        let per = n.div_ceil(self.threads).next_multiple_of(16).max(16);
        // Transpose the per-thread gradient vectors into per-chunk lists of slices.
        let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(per)).map(|_| vec![]).collect();
        for g in self.grads.iter_mut() {
            for (c, s) in g.chunks_mut(per).enumerate() {
                parts[c].push(s);
            }
        }
        let segments = &self.segments[..];
        let sparse: Vec<_> = match by_slot {
            true => self
                .factored
                .iter()
                .map(|f| f.sparse_rows(&self.net))
                .collect(),
            false => vec![],
        };
        let sparse = &sparse[..];
        let p = &mut self.model.params[..];
        let ok = match &mut self.moments {
            MomentBufs::F32(m, v) => {
                update_all(&kernel, segments, touched, sparse, per, p, m, v, parts)
            }
            MomentBufs::Bf16(m, v) => {
                update_all(&kernel, segments, touched, sparse, per, p, m, v, parts)
            }
        };
        self.touched.clear();
        ok
    }

    /// Zero every gradient (after a failed step): fresh zeroed vectors, so that the pages of
    /// tables kept sparse are never written.
    fn zero_grads(&mut self) {
        self.grads = zeroed(self.threads, self.model.params.len());
        self.touched.clear();
    }
}

/// The optimiser pass over every chunk of `per` parameters, one thread per chunk (`parts`: the
/// threads' gradient slices of each chunk). False when a gradient is not finite.
#[allow(clippy::too_many_arguments)]
fn update_all<M: optim::Moment>(
    kernel: &optim::Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    sparse: &[optim::SparseRows],
    per: usize,
    p: &mut [f32],
    m: &mut [M],
    v: &mut [M],
    mut parts: Vec<Vec<&mut [f32]>>,
) -> bool {
    let update = |c: usize, p: &mut [f32], m: &mut [M], v: &mut [M], gs: &mut [&mut [f32]]| {
        optim::pass(kernel, segments, touched, c * per, p, m, v, gs, sparse)
    };
    let chunks = p
        .chunks_mut(per)
        .zip(m.chunks_mut(per))
        .zip(v.chunks_mut(per))
        .zip(parts.iter_mut())
        .enumerate();
    if chunks.len() <= 1 {
        return chunks.fold(true, |ok, (c, (((p, m), v), gs))| {
            update(c, p, m, v, gs) & ok
        });
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .map(|(c, (((p, m), v), gs))| sc.spawn(move || update(c, p, m, v, gs)))
            .collect();
        handles.into_iter().fold(true, |ok, h| {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) & ok
        })
    })
}

/// Adam's two moments as stored ([`crate::train::config::Moments`]).
enum MomentBufs {
    F32(Vec<f32>, Vec<f32>),
    Bf16(Vec<half::bf16>, Vec<half::bf16>),
}

impl MomentBufs {
    fn new(how: Moments, n: usize) -> MomentBufs {
        match how {
            Moments::F32 => MomentBufs::F32(vec![0f32; n], vec![0f32; n]),
            Moments::Bf16 => MomentBufs::Bf16(vec![half::bf16::ZERO; n], vec![half::bf16::ZERO; n]),
        }
    }

    /// Both moments in FP32 (exact for BF16), for a checkpoint.
    fn to_f32(&self) -> (Vec<f32>, Vec<f32>) {
        match self {
            MomentBufs::F32(m, v) => (m.clone(), v.clone()),
            MomentBufs::Bf16(m, v) => (
                m.iter().map(|x| x.to_f32()).collect(),
                v.iter().map(|x| x.to_f32()).collect(),
            ),
        }
    }

    /// Set from FP32 values (a checkpoint's); BF16 rounds them to nearest even (exact for
    /// values a BF16 run saved).
    fn set(&mut self, m: &[f32], v: &[f32]) {
        match self {
            MomentBufs::F32(a, b) => {
                a.copy_from_slice(m);
                b.copy_from_slice(v);
            }
            MomentBufs::Bf16(a, b) => {
                for (x, y) in a.iter_mut().zip(m) {
                    *x = half::bf16::from_f32(*y);
                }
                for (x, y) in b.iter_mut().zip(v) {
                    *x = half::bf16::from_f32(*y);
                }
            }
        }
    }
}

/// `threads` zeroed vectors of `n` floats, each allocated zeroed (not cloned): pages no one
/// writes (the embedding tables of sparse steps) cost no memory.
fn zeroed(threads: usize, n: usize) -> Vec<Vec<f32>> {
    (0..threads).map(|_| vec![0f32; n]).collect()
}

impl Scorer for CpuTrainer {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
        score_checked(&self.model, users, items, out, self.threads)
    }
}

impl Trainer for CpuTrainer {
    fn name(&self) -> String {
        let ranks = match self.group.world() {
            1 => String::new(),
            w => format!(" × {w} ranks over {}", self.group.engine_name()),
        };
        format!(
            "cpu ({} thread{}{ranks})",
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        )
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        let batch = positions.end.saturating_sub(positions.start);
        let range = format!("{}..{}", positions.start, positions.end);
        let mut total = match self.accumulate(epoch, positions) {
            Ok(t) => t,
            Err(e) => {
                self.zero_grads();
                return Err(e);
            }
        };
        if self.group.world() > 1 {
            // Sum this rank's threads into grads[0], then over ranks (in rank order).
            let (first, rest) = self.grads.split_at_mut(1);
            for g in rest {
                for (a, b) in first[0].iter_mut().zip(g.iter_mut()) {
                    *a += *b;
                    *b = 0.0;
                }
            }
            let mut sums = [total];
            let reduced = self
                .group
                .allreduce_f64(&mut sums)
                .and_then(|_| self.group.allreduce_sum(&mut self.grads[0]));
            if let Err(e) = reduced {
                self.zero_grads();
                return Err(e);
            }
            total = sums[0];
        }
        let loss = (total / batch as f64) as f32;
        if !loss.is_finite() {
            self.zero_grads();
            return Err(Error::invalid(format!(
                "training diverged: loss is {loss} at epoch {epoch}, samples {range} \
                 (step {} not applied; try a lower --lr)",
                self.step + 1
            )));
        }
        if !self.apply() {
            return Err(Error::invalid(format!(
                "training diverged: a gradient is not finite at epoch {epoch}, samples {range} \
                 (step {}; training stops, the last checkpoint and best model are kept; try a \
                 lower --lr)",
                self.step
            )));
        }
        Ok(StepStats {
            loss,
            skipped: false,
        })
    }

    fn model(&mut self) -> Result<Model> {
        Ok(self.model.clone())
    }

    fn with_model(&mut self, f: &mut dyn FnMut(&Model) -> Result<()>) -> Result<()> {
        f(&self.model)
    }

    fn save_state(&mut self) -> Result<OptimizerState> {
        let (m, v) = self.moments.to_f32();
        Ok(OptimizerState {
            params: self.model.params.clone(),
            m,
            v,
            steps: self.step,
            loss_scale: 1.0,
            clean_steps: 0,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let n = self.model.params.len();
        if [&state.params, &state.m, &state.v]
            .iter()
            .any(|x| x.len() != n)
        {
            return Err(Error::invalid(format!(
                "optimiser state has {} parameters, the model {n}",
                state.params.len()
            )));
        }
        self.model.params.copy_from_slice(&state.params);
        self.moments.set(&state.m, &state.v);
        self.step = state.steps;
        self.zero_grads();
        Ok(())
    }

    fn rank_world(&self) -> (usize, usize) {
        (self.group.rank(), self.group.world())
    }

    fn allreduce_f64(&mut self, x: &mut [f64]) -> Result<()> {
        self.group.allreduce_f64(x)
    }
}

#[cfg(test)]
mod tests;
