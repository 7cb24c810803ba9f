//! MLP layer 0 factored over the step's distinct users and items on the GPU
//! ([`FirstLayer::Factored`]): the kernels of `kernels/factored.cuh` (their CPU twins are
//! [`crate::factored`]) and four cuBLAS GEMMs per step side. Selected with
//! [`DeviceModel::set_first_layer`]; the per-sample path stays the default on CUDA until a
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

use crate::device::{ActElem, Buf, Device, DeviceExt, GemmCall, Ptr};
use crate::factored as twin;
use crate::kdef::{
    FactoredZ, GatherRows, Keys, Mark, RadixHist, RadixScatter, Scan, ScatterRows, SegmentSum,
    Segments, Slots,
};
use crate::model::DeviceModel;
use crate::trainer::CudaTrainer;
use crate::CudaError;
pub use ncf_core::neumf_cpu::FirstLayer;

/// Radix sort tile (`NCF_TILE` in factored.cuh).
const TILE: usize = 1024;

/// One side's buffers, sized for batches of `batch_cap` samples over a table of `n_ids` rows.
pub struct SideBuffers {
    pub(crate) n_ids: u32,
    /// Most distinct ids of a batch: min(n_ids, batch capacity).
    pub(crate) cap: usize,
    pub(crate) flags: Buf<u32>,
    pub(crate) slots: Buf<u32>,
    pub(crate) list: Buf<u32>,
    pub(crate) count: Buf<u32>,
    /// Each sample's slot and index (the sort's input), then the two ping-pong pairs.
    pub(crate) keys: Buf<u32>,
    pub(crate) vals: Buf<u32>,
    pub(crate) ka: Buf<u32>,
    pub(crate) va: Buf<u32>,
    pub(crate) kb: Buf<u32>,
    pub(crate) vb: Buf<u32>,
    pub(crate) hist: Buf<u32>,
    pub(crate) starts: Buf<u32>,
    /// The distinct embedding rows (activation type) and their projections (FP32).
    pub(crate) rows: Buf<ActElem>,
    pub(crate) proj: Buf<f32>,
    /// Per-slot sums of dz (activation type) and the rows' embedding gradients (FP32).
    pub(crate) sums: Buf<ActElem>,
    pub(crate) drows: Buf<f32>,
}

impl SideBuffers {
    pub(crate) fn new(
        dev: &dyn Device,
        what: &str,
        n_ids: u32,
        batch_cap: usize,
        e: usize,
        w0: usize,
    ) -> Result<Self, CudaError> {
        let cap = (n_ids as usize).min(batch_cap).max(1);
        let tiles = batch_cap.div_ceil(TILE).max(1);
        let u = |len: usize, name: &str| dev.alloc::<u32>(len, &format!("{what} {name}"));
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
            rows: dev.alloc_act(cap * e, &format!("{what} distinct rows"))?,
            proj: dev.alloc::<f32>(cap * w0, &format!("{what} projections"))?,
            sums: dev.alloc_act(cap * w0, &format!("{what} segment sums"))?,
            drows: dev.alloc::<f32>(cap * e, &format!("{what} row gradients"))?,
        })
    }
}

/// Both sides' buffers.
pub struct FactoredBuffers {
    pub(crate) user: SideBuffers,
    pub(crate) item: SideBuffers,
}

/// Which side: its buffers, its batch ids, its embedding table, its columns of W0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    User,
    Item,
}

impl DeviceModel {
    /// Compute MLP layer 0 this way (allocates the factored path's buffers). Models without an
    /// MLP ignore it.
    pub fn set_first_layer(&mut self, first: FirstLayer) -> Result<(), CudaError> {
        self.factored = match first {
            FirstLayer::Factored if self.cfg.kind.has_mlp() => Some(self.side_buffers()?),
            _ => None,
        };
        Ok(())
    }

    /// Both sides' buffers for batches of the model's capacity.
    pub(crate) fn side_buffers(&self) -> Result<FactoredBuffers, CudaError> {
        let mc = &self.cfg;
        let (e, w0) = match mc.kind.has_mlp() {
            true => (mc.mlp_embed(), mc.layers[1]),
            false => (1, 1),
        };
        let (d, cap) = (self.dev.as_ref(), self.batch.cap);
        Ok(FactoredBuffers {
            user: SideBuffers::new(d, "users", mc.n_users, cap, e, w0)?,
            item: SideBuffers::new(d, "items", mc.n_items, cap, e, w0)?,
        })
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
    fn w0_side(&self, w: Which) -> Ptr<ActElem> {
        let e = self.cfg.mlp_embed();
        let off = if w == Which::Item { e } else { 0 };
        self.wp(0).byte_add(off * self.dev.act().bytes())
    }

    pub(crate) fn side(&self, w: Which) -> &SideBuffers {
        let f = self.factored.as_ref().expect("factored path");
        match w {
            Which::User => &f.user,
            Which::Item => &f.item,
        }
    }

    /// Each side's distinct ids of the first `n` batch rows into `f`: flags, slots in id order,
    /// the list of them, their count, and every sample's slot and index (the sort's input).
    pub(crate) fn side_slots(&self, f: &FactoredBuffers, n: usize) -> Result<(), CudaError> {
        let d = self.dev.as_ref();
        let n32 = n as u32;
        for (sb, ids, name) in [
            (&f.user, self.batch.users.ptr(), "users"),
            (&f.item, self.batch.items.ptr(), "items"),
        ] {
            let sizes = format!("batch {n}, {name}: {} ids", sb.n_ids);
            let k = Mark {
                ids,
                n: n32,
                flags: sb.flags.ptr(),
            };
            d.launch(&k, d.grid_for(n as u64), 0, &sizes)?;
            let k = Slots {
                flags: sb.flags.ptr(),
                len: sb.n_ids,
                slots: sb.slots.ptr(),
                list: sb.list.ptr(),
                count: sb.count.ptr(),
            };
            d.launch(&k, 1, 0, &sizes)?;
            let k = Keys {
                ids,
                n: n32,
                slots: sb.slots.ptr(),
                keys: sb.keys.ptr(),
                vals: sb.vals.ptr(),
            };
            d.launch(&k, d.grid_for(n as u64), 0, &sizes)?;
        }
        Ok(())
    }

    /// Forward of layer 0 on the first `n` batch rows: z (without the bias) into the scratch.
    pub(crate) fn factored_forward(&self, n: usize) -> Result<(), CudaError> {
        let (e, w0) = (self.cfg.mlp_embed(), self.cfg.layers[1]);
        let d = self.dev.as_ref();
        self.side_slots(self.factored.as_ref().expect("factored path"), n)?;
        for w in [Which::User, Which::Item] {
            let sb = self.side(w);
            let (table, name) = match w {
                Which::User => (self.pp("mlp_user_embed.weight"), "users"),
                Which::Item => (self.pp("mlp_item_embed.weight"), "items"),
            };
            let m = sb.cap.min(n);
            let sizes = format!("batch {n}, {name}: {} ids, up to {m} distinct", sb.n_ids);
            let k = GatherRows {
                list: sb.list.ptr(),
                count: sb.count.ptr(),
                cap: m as u32,
                e: e as u32,
                table,
                out: sb.rows.ptr(),
            };
            d.launch(&k, d.grid_for(m as u64 * 32), 0, &sizes)?;
            let what = format!("forward mlp.0 {name}");
            let abc = (self.w0_side(w).addr(), sb.rows.addr(), sb.proj.addr());
            let shape = twin::proj_gemm(e, w0, m);
            d.gemm(&GemmCall::of_shape(&what, &shape, abc, 0.0))?;
        }
        let (u, i) = (self.side(Which::User), self.side(Which::Item));
        let k = FactoredZ {
            ku: u.keys.ptr(),
            ki: i.keys.ptr(),
            n: n as u32,
            width: w0 as u32,
            pu: u.proj.ptr(),
            pi: i.proj.ptr(),
            z: self.batch.scratch.ptr(),
        };
        d.launch(
            &k,
            d.grid_for((n * w0) as u64),
            0,
            &format!("batch {n}, width {w0}"),
        )
    }
}

impl CudaTrainer {
    /// Backward of layer 0 from its `dz` (in the batch's dz buffer, the activation type):
    /// mlp.0's weight gradient and the MLP embedding gradients; the sides sorted first
    /// ([`sort_sides`]).
    pub(crate) fn factored_backward(&self, n: usize) -> Result<(), CudaError> {
        let md = &self.model;
        let (e, w0) = (md.cfg.mlp_embed(), md.cfg.layers[1]);
        let d = md.dev.as_ref();
        let dz = md.batch.dz.ptr();
        let gw0 = self.gp("mlp.0.weight");
        for w in [Which::User, Which::Item] {
            let sb = md.side(w);
            let (gtable, name, col) = match w {
                Which::User => (self.gp("mlp_user_embed.weight"), "users", 0usize),
                Which::Item => (self.gp("mlp_item_embed.weight"), "items", e),
            };
            let m = sb.cap.min(n);
            let sizes = format!("batch {n}, {name}: up to {m} distinct");
            let k = SegmentSum {
                dz,
                width: w0 as u32,
                order: sorted_order(sb, n),
                starts: sb.starts.ptr(),
                count: sb.count.ptr(),
                cap: m as u32,
                s: sb.sums.ptr(),
            };
            d.launch(&k, d.grid_for(m as u64 * 32), 0, &sizes)?;
            let what = format!("weight gradient mlp.0 {name}");
            let abc = (sb.rows.addr(), sb.sums.addr(), gw0.addr() + 4 * col as u64);
            let shape = twin::weight_grad_gemm(e, w0, m);
            d.gemm(&GemmCall::of_shape(&what, &shape, abc, 0.0))?;
            let what = format!("input gradient mlp.0 {name}");
            let abc = (md.w0_side(w).addr(), sb.sums.addr(), sb.drows.addr());
            let shape = twin::row_grad_gemm(e, w0, m);
            d.gemm(&GemmCall::of_shape(&what, &shape, abc, 0.0))?;
            let k = ScatterRows {
                list: sb.list.ptr(),
                count: sb.count.ptr(),
                e: e as u32,
                rows: sb.drows.ptr(),
                g: gtable,
            };
            d.launch(&k, d.grid_for((m * e) as u64), 0, &sizes)?;
        }
        Ok(())
    }
}

/// The samples' order after [`sort_sides`]: the values of the last radix pass's pair.
pub(crate) fn sorted_order(sb: &SideBuffers, n: usize) -> Ptr<u32> {
    match twin::radix_passes(sb.cap.min(n)) % 2 {
        1 => sb.va.ptr(),
        _ => sb.vb.ptr(),
    }
}

/// Sort each side's first `n` samples by slot (a stable LSD radix sort of (slot, sample), 8-bit
/// digits, ping-pong a/b; the unsorted keys and values stay as they are) and find each slot's
/// segment; after [`DeviceModel::side_slots`].
pub(crate) fn sort_sides(d: &dyn Device, f: &FactoredBuffers, n: usize) -> Result<(), CudaError> {
    let n32 = n as u32;
    for (sb, name) in [(&f.user, "users"), (&f.item, "items")] {
        let m = sb.cap.min(n);
        let sizes = format!("batch {n}, {name}: up to {m} distinct");
        let tiles = n.div_ceil(TILE) as u32;
        let pairs = [(sb.ka.ptr(), sb.va.ptr()), (sb.kb.ptr(), sb.vb.ptr())];
        let mut from = (sb.keys.ptr(), sb.vals.ptr());
        for p in 0..twin::radix_passes(m) {
            let (shift, to) = (8 * p, pairs[p as usize % 2]);
            let k = RadixHist {
                keys: from.0,
                n: n32,
                shift,
                hist: sb.hist.ptr(),
            };
            d.launch(&k, tiles, 0, &sizes)?;
            let k = Scan {
                x: sb.hist.ptr(),
                len: 256 * tiles,
            };
            d.launch(&k, 1, 0, &sizes)?;
            let k = RadixScatter {
                keys: from.0,
                vals: from.1,
                n: n32,
                shift,
                hist: sb.hist.ptr(),
                keys_out: to.0,
                vals_out: to.1,
            };
            d.launch(&k, tiles, 0, &sizes)?;
            from = to;
        }
        let k = Segments {
            sorted_keys: from.0,
            n: n32,
            count: sb.count.ptr(),
            starts: sb.starts.ptr(),
        };
        d.launch(&k, d.grid_for(n as u64), 0, &sizes)?;
    }
    Ok(())
}
