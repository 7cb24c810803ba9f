//! The one sparse-matrix type of ncf: lists of `u32` ids by row (compressed sparse rows), built
//! by one stable counting sort. The sampler's items of each user, iALS's and EASE's rows and
//! columns and ncf-prep's input rows of each user are all a [`Csr`].

use std::ops::Range;

/// Row `r` holds `items[offsets[r]..offsets[r + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Csr {
    /// `rows + 1` offsets into `items`, from 0 to `items.len()` (u64: ncf-cuda uploads the
    /// sampler's as they are).
    pub offsets: Vec<u64>,
    /// The ids of every row, row after row. Named for the commonest rows, a user's items (the
    /// name ncf-cuda uploads); in other matrices they are whatever the columns are: an item's
    /// users, a user's input rows.
    pub items: Vec<u32>,
}

impl Csr {
    /// The `(row, id)` pairs grouped by row (rows below `n_rows`): a counting sort, so within a
    /// row the ids keep the pairs' order. `pairs` is walked twice (counted, then placed).
    pub fn grouped<I>(n_rows: usize, pairs: I) -> Csr
    where
        I: Iterator<Item = (u32, u32)> + Clone,
    {
        let mut offsets = vec![0u64; n_rows + 1];
        for (r, _) in pairs.clone() {
            offsets[r as usize + 1] += 1;
        }
        for r in 0..n_rows {
            offsets[r + 1] += offsets[r];
        }
        let mut next = offsets.clone();
        let mut items = vec![0u32; offsets[n_rows] as usize];
        for (r, id) in pairs {
            let at = &mut next[r as usize];
            items[*at as usize] = id;
            *at += 1;
        }
        Csr { offsets, items }
    }

    /// Row `rows[k]` holds `cols[k]`, in input order within a row ([`Csr::grouped`]).
    pub fn by_row(n_rows: usize, rows: &[u32], cols: &[u32]) -> Csr {
        Csr::grouped(n_rows, rows.iter().copied().zip(cols.iter().copied()))
    }

    /// The 0/1 matrix with ones at `(rows[k], cols[k])`: each row's columns sorted and each
    /// once, so [`Csr::contains`] can search them.
    pub fn sets(n_rows: usize, rows: &[u32], cols: &[u32]) -> Csr {
        let mut m = Csr::by_row(n_rows, rows, cols);
        for r in 0..n_rows {
            let span = m.span(r);
            m.items[span].sort_unstable();
        }
        let mut last = None;
        m.retain(|r, id| {
            let new = last != Some((r, id));
            last = Some((r, id));
            new
        });
        m
    }

    pub fn n_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The number of ids in all rows.
    pub fn nnz(&self) -> usize {
        self.items.len()
    }

    /// Where row `r` lies in `items`.
    #[inline]
    pub fn span(&self, r: usize) -> Range<usize> {
        self.offsets[r] as usize..self.offsets[r + 1] as usize
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[u32] {
        &self.items[self.span(r)]
    }

    /// Whether row `r` holds `id` (rows sorted, as [`Csr::sets`] makes them).
    #[inline]
    pub fn contains(&self, r: usize, id: u32) -> bool {
        self.row(r).binary_search(&id).is_ok()
    }

    /// Keep the ids for which `keep(row, id)` holds, in order (rows first to last), compacting
    /// in place.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, u32) -> bool) {
        let (mut w, mut start) = (0usize, 0usize);
        for r in 0..self.n_rows() {
            let end = self.offsets[r + 1] as usize;
            for k in start..end {
                let id = self.items[k];
                if keep(r, id) {
                    self.items[w] = id;
                    w += 1;
                }
            }
            self.offsets[r + 1] = w as u64;
            start = end;
        }
        self.items.truncate(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_input_order_or_become_sorted_sets() {
        let (rows, cols) = ([2, 0, 2, 2, 0, 2], [7, 3, 1, 7, 3, 4]);
        let m = Csr::by_row(4, &rows, &cols);
        assert_eq!(m.offsets, [0, 2, 2, 6, 6]);
        assert_eq!(
            (m.row(0), m.row(1), m.row(2)),
            (&[3, 3][..], &[][..], &[7, 1, 7, 4][..])
        );
        assert_eq!((m.n_rows(), m.nnz()), (4, 6));
        let s = Csr::sets(4, &rows, &cols);
        assert_eq!(s.offsets, [0, 1, 1, 4, 4]);
        assert_eq!(s.items, [3, 1, 4, 7]);
        assert!(s.contains(2, 4) && !s.contains(2, 3) && !s.contains(3, 0));
        let mut odd = Csr::by_row(4, &rows, &cols);
        odd.retain(|r, id| r == 2 && id % 2 == 1);
        assert_eq!(
            (odd.offsets, odd.items),
            (vec![0, 0, 0, 3, 3], vec![7, 1, 7])
        );
        assert_eq!(Csr::by_row(0, &[], &[]).n_rows(), 0);
    }
}
