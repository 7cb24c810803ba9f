//! The one top-K selection, used by `ncf-topk` on every device and by the CUDA checks: the `k`
//! highest-scoring items of one row of scores, best first.
//!
//! Rule: higher score first; equal scores go to the smaller item id; a NaN score is never
//! selected (it is no recommendation: a row with NaNs yields fewer than `k` items, and the caller
//! says so); items in `exclude` (sorted ids, e.g. the user's training items) are skipped.
//! Scores compare by `f32::total_cmp`, so `+0.0` ranks above `-0.0`.

/// Reusable buffers of [`TopK::select`] (one per thread; a row of every item is scored per user).
#[derive(Debug, Default)]
pub struct TopK {
    cand: Vec<u32>,
    /// NaN scores met by the selections so far.
    pub nan_scores: u64,
}

impl TopK {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids of the `k` best items of `scores` (indexed by item id), best first.
    pub fn select(&mut self, scores: &[f32], k: usize, exclude: &[u32]) -> &[u32] {
        self.cand.clear();
        let mut nan = 0u64;
        for (i, &s) in scores.iter().enumerate() {
            let i = i as u32;
            if s.is_nan() {
                nan += 1;
            } else if exclude.binary_search(&i).is_err() {
                self.cand.push(i);
            }
        }
        self.nan_scores += nan;
        let better = |a: &u32, b: &u32| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then(a.cmp(b))
        };
        if k == 0 {
            self.cand.clear();
        } else if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, better);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(better);
        &self.cand
    }
}

/// The `k` best (item, score) of one row of scores, best first ([`TopK::select`]).
pub fn top_k_of(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    TopK::new()
        .select(scores, k, exclude)
        .iter()
        .map(|&i| (i, scores[i as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_breaks_ties_and_excludes() {
        let s = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        assert_eq!(top_k_of(&s, 3, &[]), vec![(5, 3.0), (1, 2.0), (3, 2.0)]);
        assert_eq!(top_k_of(&s, 2, &[5]), vec![(1, 2.0), (3, 2.0)]);
        assert_eq!(top_k_of(&s, 10, &[1, 3, 5]).len(), 2);
        assert!(top_k_of(&s, 0, &[]).is_empty());
    }

    #[test]
    fn nan_scores_are_counted_and_never_selected() {
        let mut t = TopK::new();
        let s = [f32::NAN, 1.0, f32::NAN, 0.0];
        assert_eq!(t.select(&s, 4, &[]), &[1, 3]);
        assert_eq!(t.nan_scores, 2);
        assert_eq!(t.select(&[-0.0, 0.0], 2, &[]), &[1, 0]);
    }
}
