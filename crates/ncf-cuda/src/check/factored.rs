//! Exact checks of the factored first layer's bookkeeping after one training step on the
//! device (forward and backward done): each side's distinct ids, every sample's slot, the stable
//! sort by slot and the segment starts, against the CPU twins of [`crate::factored`]. The
//! numbers (projections, sums, gradients) are checked by [`super::mlp`] against the reference.

use super::{exact, Check};
use crate::device::DeviceExt;
use crate::factored as twin;
use crate::trainer::CudaTrainer;
use crate::CudaError;

/// The checks on `t`'s last step of `n` samples with users `bu` and items `bi`.
pub fn structure(
    t: &CudaTrainer,
    n: usize,
    bu: &[u32],
    bi: &[u32],
) -> Result<Vec<Check>, CudaError> {
    let p = t.cfg.precision;
    let Some(f) = &t.model.factored else {
        return Ok(vec![]);
    };
    let g = t.device();
    let mut out = vec![];
    for (sb, ids, side) in [(&f.user, bu, "users"), (&f.item, bi, "items")] {
        let s = twin::slots(ids, sb.n_ids);
        let d = s.list.len();
        let count = g.download(&sb.count, 1, "distinct count")?[0] as usize;
        out.push(exact(&format!("slots_count:{side}"), p, &[count], &[d]));
        let list = g.download(&sb.list, d.min(sb.cap), "distinct ids")?;
        out.push(exact(&format!("slots_list:{side}"), p, &list, &s.list));
        let keys = twin::keys_of(ids, &s);
        let got = g.download(&sb.keys, n, "sample slots")?;
        out.push(exact(&format!("sample_slots:{side}"), p, &got, &keys));
        let (sorted, order) = twin::sort_by_key(&keys);
        let passes = twin::radix_passes(sb.cap.min(n));
        let (k, v) = if passes % 2 == 1 {
            (&sb.ka, &sb.va)
        } else {
            (&sb.kb, &sb.vb)
        };
        let gk = g.download(k, n, "sorted slots")?;
        let gv = g.download(v, n, "sorted samples")?;
        out.push(exact(&format!("radix_sort_keys:{side}"), p, &gk, &sorted));
        out.push(exact(&format!("radix_sort_order:{side}"), p, &gv, &order));
        let starts = twin::starts(&sorted, d);
        let gs = g.download(&sb.starts, d + 1, "segment starts")?;
        out.push(exact(&format!("segment_starts:{side}"), p, &gs, &starts));
    }
    Ok(out)
}
