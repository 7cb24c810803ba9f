//! Deterministic reductions ([`Reductions::Deterministic`], the default): every sum of a step
//! over many samples is made in a fixed order, so a fixed-seed run gives the same bits every
//! time on a given device and launch geometry. The embedding and GMF gradients are per-sample
//! rows summed per user and per item in sample order (the batch sorted by slot, as the factored
//! first layer sorts it) and added once per distinct row; the bias gradients, the final layer's
//! weights and the loss are per-block partials (each block summing its rows or warps in order)
//! added in block order. [`Reductions::Atomic`] keeps the previous float atomics.

use crate::device::{Buf, DeviceExt, Ptr};
use crate::first_layer::{sort_sides, sorted_order, FactoredBuffers, SideBuffers};
use crate::kdef::{FinalReduce, ScatterRows, SegmentSumRows, SumBlocks};
use crate::model::FinalGrads;
use crate::trainer::CudaTrainer;
use crate::CudaError;
pub use ncf_core::train::Reductions;

/// The buffers the deterministic reductions write into.
pub(crate) struct DetBuffers {
    /// Per-block partial sums of a bias gradient: [row blocks, widest layer].
    bias: Buf<f32>,
    /// Per-block partial sums of the final layer: [final blocks, f + lout + 2].
    final_: Buf<f32>,
    /// Per-sample GMF gradient rows [batch, f] of users and items, and their per-slot sums
    /// [distinct, f] (absent without GMF).
    gmf: Option<[Buf<f32>; 4]>,
    /// Each side's slots and sort when the first layer is not factored (which has its own).
    sides: Option<FactoredBuffers>,
}

impl CudaTrainer {
    /// Sum this way (allocates the deterministic path's buffers, or frees them).
    pub fn with_reductions(mut self, r: Reductions) -> Result<Self, CudaError> {
        self.det = match r {
            Reductions::Atomic => None,
            Reductions::Deterministic => Some(self.det_buffers()?),
        };
        Ok(self)
    }

    /// How this trainer sums.
    pub fn reductions(&self) -> Reductions {
        match self.det {
            Some(_) => Reductions::Deterministic,
            None => Reductions::Atomic,
        }
    }

    fn det_buffers(&self) -> Result<DetBuffers, CudaError> {
        let md = &self.model;
        let (d, mc, cap) = (md.dev.as_ref(), &md.cfg, md.batch.cap);
        let widest = mc.layers.iter().skip(1).copied().max().unwrap_or(1);
        let fin = mc.final_in() + 2;
        let f = mc.gmf_factors();
        let sides = md.side_buffers()?;
        let gmf = match f {
            0 => None,
            _ => Some([
                d.alloc::<f32>(cap * f, "per-sample user GMF gradients")?,
                d.alloc::<f32>(cap * f, "per-sample item GMF gradients")?,
                d.alloc::<f32>(sides.user.cap * f, "users' GMF gradient sums")?,
                d.alloc::<f32>(sides.item.cap * f, "items' GMF gradient sums")?,
            ]),
        };
        Ok(DetBuffers {
            bias: d.alloc(
                md.max_row_grid() as usize * widest,
                "bias gradient partials",
            )?,
            final_: d.alloc(md.max_final_grid() as usize * fin, "final layer partials")?,
            gmf,
            sides: md.factored.is_none().then_some(sides),
        })
    }

    /// The sides' slots and sort (the factored first layer's, else the deterministic path's).
    fn sides(&self) -> Option<&FactoredBuffers> {
        self.model
            .factored
            .as_ref()
            .or_else(|| self.det.as_ref().and_then(|d| d.sides.as_ref()))
    }

    /// Sort this batch's samples by user and by item, once per batch (after the forward pass:
    /// the factored forward has made the slots; else they are made here). Nothing to do when
    /// neither the first layer nor the reductions need it.
    pub(crate) fn sort_batch(&self, n: usize) -> Result<(), CudaError> {
        if self.sorted.get() {
            return Ok(());
        }
        let md = &self.model;
        if let Some(f) = &md.factored {
            sort_sides(md.dev.as_ref(), f, n)?;
        } else if let Some(f) = self.det.as_ref().and_then(|d| d.sides.as_ref()) {
            md.side_slots(f, n)?;
            sort_sides(md.dev.as_ref(), f, n)?;
        }
        self.sorted.set(true);
        Ok(())
    }

    /// Where the deterministic final layer writes (null pointers with atomics).
    pub(crate) fn final_targets(&self, g: FinalGrads) -> FinalGrads {
        match &self.det {
            None => g,
            Some(det) => FinalGrads {
                partials: det.final_.ptr(),
                gu_rows: det.gmf.as_ref().map_or(Ptr::null(), |b| b[0].ptr()),
                gi_rows: det.gmf.as_ref().map_or(Ptr::null(), |b| b[1].ptr()),
                ..g
            },
        }
    }

    /// After the deterministic final layer on `n` samples: its partials added in block order
    /// (final.weight, final.bias, the loss), and the per-sample GMF rows summed per user and per
    /// item in sample order and added once per distinct row.
    pub(crate) fn reduce_final(&self, n: usize) -> Result<(), CudaError> {
        let Some(det) = &self.det else {
            return Ok(());
        };
        let md = &self.model;
        let d = md.dev.as_ref();
        let fin = md.cfg.final_in() as u32;
        let k = FinalReduce {
            partials: det.final_.ptr(),
            blocks: md.final_grid(n),
            fin,
            g_fw: self.gp("final.weight"),
            g_fb: self.gp("final.bias"),
            loss_sum: self.loss_sum.ptr(),
        };
        d.launch(
            &k,
            d.grid_for(fin as u64 + 2),
            0,
            &format!("final layer, batch {n}"),
        )?;
        let (Some(gmf), Some(sides)) = (&det.gmf, self.sides()) else {
            return Ok(());
        };
        self.sort_batch(n)?;
        let f = md.cfg.gmf_factors();
        let per_side = [
            (&sides.user, &gmf[0], &gmf[2], "mf_user_embed.weight"),
            (&sides.item, &gmf[1], &gmf[3], "mf_item_embed.weight"),
        ];
        for (sb, rows, sums, table) in per_side {
            self.rows_into_table(sb, n, rows.ptr(), f, f, sums, self.gp(table))?;
        }
        Ok(())
    }

    /// `rows` (one FP32 row of `width` per sample, `stride` apart) summed per slot of side `sb`
    /// in sample order into `sums`, then added to `table` once per distinct id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rows_into_table(
        &self,
        sb: &SideBuffers,
        n: usize,
        rows: Ptr<f32>,
        stride: usize,
        width: usize,
        sums: &Buf<f32>,
        table: Ptr<f32>,
    ) -> Result<(), CudaError> {
        let d = self.model.dev.as_ref();
        let m = sb.cap.min(n);
        let sizes = format!(
            "batch {n}, up to {m} distinct of {} ids, width {width}",
            sb.n_ids
        );
        let k = SegmentSumRows {
            src: rows,
            stride: stride as u32,
            width: width as u32,
            order: sorted_order(sb, n),
            starts: sb.starts.ptr(),
            count: sb.count.ptr(),
            cap: m as u32,
            out: sums.ptr(),
        };
        d.launch(&k, d.grid_for(m as u64 * 32), 0, &sizes)?;
        let k = ScatterRows {
            list: sb.list.ptr(),
            count: sb.count.ptr(),
            e: width as u32,
            rows: sums.ptr(),
            g: table,
        };
        d.launch(&k, d.grid_for((m * width) as u64), 0, &sizes)
    }

    /// The partials buffer a deterministic bias backward writes (null with atomics).
    pub(crate) fn bias_partials(&self) -> Ptr<f32> {
        self.det.as_ref().map_or(Ptr::null(), |d| d.bias.ptr())
    }

    /// After a deterministic bias backward of layer `k` (`n` rows of `width`): the blocks'
    /// partial sums added to its bias gradient in block order.
    pub(crate) fn reduce_bias(&self, k: usize, n: usize, width: usize) -> Result<(), CudaError> {
        let Some(det) = &self.det else {
            return Ok(());
        };
        let d = self.model.dev.as_ref();
        let kern = SumBlocks {
            partials: det.bias.ptr(),
            blocks: self.model.row_grid(n, width),
            width: width as u32,
            out: self.gp(&format!("mlp.{k}.bias")),
        };
        d.launch(
            &kern,
            d.grid_for(width as u64),
            0,
            &format!("mlp.{k}: bias, width {width}"),
        )
    }

    /// The per-sample path's MLP embedding gradients, deterministic: the MLP input gradient
    /// [n, 2e] (in the scratch) summed per user (first half) and per item (second half).
    pub(crate) fn reduce_mlp_embeddings(&self, n: usize) -> Result<(), CudaError> {
        let Some(sides) = self.sides() else {
            return Ok(());
        };
        self.sort_batch(n)?;
        let e = self.model.cfg.mlp_embed();
        let scratch = self.model.batch.scratch.ptr();
        let per_side = [
            (&sides.user, scratch, "mlp_user_embed.weight"),
            (
                &sides.item,
                scratch.byte_add(4 * e),
                "mlp_item_embed.weight",
            ),
        ];
        for (sb, rows, table) in per_side {
            self.rows_into_table(sb, n, rows, 2 * e, e, &sb.drows, self.gp(table))?;
        }
        Ok(())
    }
}
