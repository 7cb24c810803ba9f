//! MLP layer 0 factored over the step's distinct users and items on the GPU
//! ([`FirstLayer::Factored`]): the kernels of `kernels/factored.cuh` (their CPU twins are
//! [`crate::factored`]) and four cuBLAS GEMMs per step side. Selected with
//! [`CudaTrainer::with_first_layer`]; the per-sample path stays the default on CUDA until a
//! device run has confirmed this one (docs/CUDA.md).
//!
//! Forward, per side (users, items): mark the batch's ids, give the distinct ones slots in id
//! order, gather their embedding rows once (`rows`, the activation type), `proj = rows · W_sideᵀ`
//! (FP32), then `z[b] = proj_u[slot_u(b)] + proj_i[slot_i(b)]` into the batch's scratch (the
//! bias, ReLU and dropout follow as on the per-sample path). Backward, after layer 0's
//! `dz`: sort the samples by slot (stable radix), `sums[slot] = Σ dz` in sample order,
//! `dW_side = sumsᵀ · rows` (layer 0's weight-gradient columns of the side),
//! `drows = sums · W_side`, added once to each distinct row's embedding gradient. No float
//! atomics: the embedding gradients of a fixed-seed step are the same bits run to run.

use crate::device::{dptr, Gpu, KArg};
use crate::factored as twin;
use crate::trainer::CudaTrainer;
use crate::CudaError;
use cudarc::driver::CudaSlice;
pub use ncf_core::neumf_cpu::FirstLayer;

/// Radix sort tile (`NCF_TILE` in factored.cuh).
const TILE: usize = 1024;
/// Threads of the one-block scans (`ncf_slots`, `ncf_scan`).
const SCAN_BLOCK: u32 = 1024;

/// One side's buffers, sized for batches of `batch_cap` samples over a table of `n_ids` rows.
pub struct SideBuffers {
    pub n_ids: u32,
    /// Most distinct ids of a batch: min(n_ids, batch capacity).
    pub cap: usize,
    pub flags: CudaSlice<u32>,
    pub slots: CudaSlice<u32>,
    pub list: CudaSlice<u32>,
    pub count: CudaSlice<u32>,
    /// Each sample's slot and index (the sort's input), then the two ping-pong pairs.
    pub keys: CudaSlice<u32>,
    pub vals: CudaSlice<u32>,
    pub ka: CudaSlice<u32>,
    pub va: CudaSlice<u32>,
    pub kb: CudaSlice<u32>,
    pub vb: CudaSlice<u32>,
    pub hist: CudaSlice<u32>,
    pub starts: CudaSlice<u32>,
    /// The distinct embedding rows (activation type) and their projections (FP32).
    pub rows: CudaSlice<u8>,
    pub proj: CudaSlice<f32>,
    /// Per-slot sums of dz (activation type) and the rows' embedding gradients (FP32).
    pub sums: CudaSlice<u8>,
    pub drows: CudaSlice<f32>,
}

impl SideBuffers {
    fn new(
        gpu: &Gpu,
        what: &str,
        n_ids: u32,
        batch_cap: usize,
        e: usize,
        w0: usize,
    ) -> Result<Self, CudaError> {
        let cap = (n_ids as usize).min(batch_cap).max(1);
        let ab = gpu.act.bytes();
        let tiles = batch_cap.div_ceil(TILE).max(1);
        let u = |len: usize, name: &str| gpu.alloc::<u32>(len, &format!("{what} {name}"));
        Ok(SideBuffers {
            n_ids,
            cap,
            flags: u(n_ids as usize, "flags")?,
            slots: u(n_ids as usize, "slots")?,
            list: u(cap, "distinct ids")?,
            count: u(1, "distinct count")?,
            keys: u(batch_cap, "sample slots")?,
            vals: u(batch_cap, "sample indices")?,
            ka: u(batch_cap, "sort keys a")?,
            va: u(batch_cap, "sort values a")?,
            kb: u(batch_cap, "sort keys b")?,
            vb: u(batch_cap, "sort values b")?,
            hist: u(256 * tiles, "radix histograms")?,
            starts: u(cap + 1, "segment starts")?,
            rows: gpu.alloc::<u8>(cap * e * ab, &format!("{what} distinct rows"))?,
            proj: gpu.alloc::<f32>(cap * w0, &format!("{what} projections"))?,
            sums: gpu.alloc::<u8>(cap * w0 * ab, &format!("{what} segment sums"))?,
            drows: gpu.alloc::<f32>(cap * e, &format!("{what} row gradients"))?,
        })
    }
}

/// Both sides' buffers.
pub struct FactoredBuffers {
    pub user: SideBuffers,
    pub item: SideBuffers,
}

/// Which side: its buffers, its batch ids, its embedding table, its columns of W0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    User,
    Item,
}

impl CudaTrainer {
    /// Compute MLP layer 0 this way (allocates the factored path's buffers). Models without an
    /// MLP ignore it.
    pub fn with_first_layer(mut self, first: FirstLayer) -> Result<Self, CudaError> {
        let mc = self.model_cfg.clone();
        self.factored = match first {
            FirstLayer::Factored if mc.kind.has_mlp() => {
                let (e, w0, cap) = (mc.mlp_embed(), mc.layers[1], self.batch.cap);
                Some(FactoredBuffers {
                    user: SideBuffers::new(&self.gpu, "users", mc.n_users, cap, e, w0)?,
                    item: SideBuffers::new(&self.gpu, "items", mc.n_items, cap, e, w0)?,
                })
            }
            _ => None,
        };
        Ok(self)
    }

    /// The first-layer path in use.
    pub fn first_layer(&self) -> FirstLayer {
        if self.factored.is_some() {
            FirstLayer::Factored
        } else {
            FirstLayer::PerSample
        }
    }

    /// Pointer to side `w`'s columns of mlp.0's weight as a GEMM operand.
    fn w0_side(&self, w: Which) -> u64 {
        let e = self.model_cfg.mlp_embed() as u64;
        let off = if w == Which::Item { e } else { 0 };
        self.wp(0) + off * self.gpu.act.bytes() as u64
    }

    fn side(&self, w: Which) -> &SideBuffers {
        let f = self.factored.as_ref().expect("factored path");
        match w {
            Which::User => &f.user,
            Which::Item => &f.item,
        }
    }

    /// Forward of layer 0 on the first `n` batch rows: z (without the bias) into the scratch.
    pub(crate) fn factored_forward(&self, n: usize) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        let (e, w0) = (mc.mlp_embed(), mc.layers[1]);
        let s = self.gpu.stream.clone();
        let g = &self.gpu;
        for w in [Which::User, Which::Item] {
            let sb = self.side(w);
            let (ids, table, name) = match w {
                Which::User => (
                    dptr(&self.batch.users, &s),
                    self.pp("mlp_user_embed.weight"),
                    "users",
                ),
                Which::Item => (
                    dptr(&self.batch.items, &s),
                    self.pp("mlp_item_embed.weight"),
                    "items",
                ),
            };
            let m = sb.cap.min(n);
            let sizes = format!("batch {n}, {name}: {} ids, up to {m} distinct", sb.n_ids);
            let (flags, slots, list, count) = (
                dptr(&sb.flags, &s),
                dptr(&sb.slots, &s),
                dptr(&sb.list, &s),
                dptr(&sb.count, &s),
            );
            let a: [KArg; 3] = [ids.into(), (n as u32).into(), flags.into()];
            g.launch("ncf_mark", g.grid_for(n as u64), 256, 0, &a, &sizes)?;
            let a: [KArg; 5] = [
                flags.into(),
                sb.n_ids.into(),
                slots.into(),
                list.into(),
                count.into(),
            ];
            g.launch("ncf_slots", 1, SCAN_BLOCK, 0, &a, &sizes)?;
            let a: [KArg; 5] = [
                ids.into(),
                (n as u32).into(),
                slots.into(),
                dptr(&sb.keys, &s).into(),
                dptr(&sb.vals, &s).into(),
            ];
            g.launch("ncf_keys", g.grid_for(n as u64), 256, 0, &a, &sizes)?;
            let rows = dptr(&sb.rows, &s);
            let a: [KArg; 6] = [
                list.into(),
                count.into(),
                (m as u32).into(),
                (e as u32).into(),
                table.into(),
                rows.into(),
            ];
            g.launch(
                "ncf_gather_rows",
                g.grid_for(m as u64 * 32),
                256,
                0,
                &a,
                &sizes,
            )?;
            g.gemm_shape(
                &format!("forward mlp.0 {name}"),
                &twin::proj_gemm(e, w0, m),
                (self.w0_side(w), rows, dptr(&sb.proj, &s)),
                0.0,
            )?;
        }
        let (u, i) = (self.side(Which::User), self.side(Which::Item));
        let a: [KArg; 7] = [
            dptr(&u.keys, &s).into(),
            dptr(&i.keys, &s).into(),
            (n as u32).into(),
            (w0 as u32).into(),
            dptr(&u.proj, &s).into(),
            dptr(&i.proj, &s).into(),
            dptr(&self.batch.scratch, &s).into(),
        ];
        g.launch(
            "ncf_factored_z",
            g.grid_for((n * w0) as u64),
            256,
            0,
            &a,
            &format!("batch {n}, width {w0}"),
        )
    }

    /// Backward of layer 0 from its `dz` (in the batch's dz buffer, the activation type):
    /// mlp.0's weight gradient and the MLP embedding gradients.
    pub(crate) fn factored_backward(&self, n: usize) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        let (e, w0) = (mc.mlp_embed(), mc.layers[1]);
        let s = self.gpu.stream.clone();
        let g = &self.gpu;
        let dz = dptr(&self.batch.dz, &s);
        let gw0 = self.gp("mlp.0.weight");
        for w in [Which::User, Which::Item] {
            let sb = self.side(w);
            let (gtable, name, col) = match w {
                Which::User => (self.gp("mlp_user_embed.weight"), "users", 0u64),
                Which::Item => (self.gp("mlp_item_embed.weight"), "items", e as u64),
            };
            let m = sb.cap.min(n);
            let sizes = format!("batch {n}, {name}: up to {m} distinct");
            // Stable radix sort of (slot, sample) by slot: 8-bit digits, ping-pong a/b.
            let tiles = n.div_ceil(TILE) as u32;
            let hist = dptr(&sb.hist, &s);
            let pairs = [
                (dptr(&sb.ka, &s), dptr(&sb.va, &s)),
                (dptr(&sb.kb, &s), dptr(&sb.vb, &s)),
            ];
            // The unsorted (keys, vals) stay as they are: pass 0 reads them, later passes
            // alternate between the two pairs.
            let mut from = (dptr(&sb.keys, &s), dptr(&sb.vals, &s));
            for p in 0..twin::radix_passes(m) {
                let (shift, to) = (8 * p, pairs[p as usize % 2]);
                let a: [KArg; 4] = [from.0.into(), (n as u32).into(), shift.into(), hist.into()];
                g.launch("ncf_radix_hist", tiles, 256, 0, &a, &sizes)?;
                let a: [KArg; 2] = [hist.into(), (256 * tiles).into()];
                g.launch("ncf_scan", 1, SCAN_BLOCK, 0, &a, &sizes)?;
                let a: [KArg; 7] = [
                    from.0.into(),
                    from.1.into(),
                    (n as u32).into(),
                    shift.into(),
                    hist.into(),
                    to.0.into(),
                    to.1.into(),
                ];
                g.launch("ncf_radix_scatter", tiles, 256, 0, &a, &sizes)?;
                from = to;
            }
            let (count, starts) = (dptr(&sb.count, &s), dptr(&sb.starts, &s));
            let a: [KArg; 4] = [
                from.0.into(),
                (n as u32).into(),
                count.into(),
                starts.into(),
            ];
            g.launch("ncf_segments", g.grid_for(n as u64), 256, 0, &a, &sizes)?;
            let sums = dptr(&sb.sums, &s);
            let a: [KArg; 7] = [
                dz.into(),
                (w0 as u32).into(),
                from.1.into(),
                starts.into(),
                count.into(),
                (m as u32).into(),
                sums.into(),
            ];
            g.launch(
                "ncf_segment_sum",
                g.grid_for(m as u64 * 32),
                256,
                0,
                &a,
                &sizes,
            )?;
            g.gemm_shape(
                &format!("weight gradient mlp.0 {name}"),
                &twin::weight_grad_gemm(e, w0, m),
                (dptr(&sb.rows, &s), sums, gw0 + 4 * col),
                0.0,
            )?;
            let drows = dptr(&sb.drows, &s);
            g.gemm_shape(
                &format!("input gradient mlp.0 {name}"),
                &twin::row_grad_gemm(e, w0, m),
                (self.w0_side(w), sums, drows),
                0.0,
            )?;
            let a: [KArg; 5] = [
                dptr(&sb.list, &s).into(),
                count.into(),
                (e as u32).into(),
                drows.into(),
                gtable.into(),
            ];
            g.launch(
                "ncf_scatter_rows",
                g.grid_for((m * e) as u64),
                256,
                0,
                &a,
                &sizes,
            )?;
        }
        Ok(())
    }
}
