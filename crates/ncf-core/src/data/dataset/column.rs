//! A column of fixed-width ids that is either owned (built in memory, read from an Arrow IPC
//! stream or decoded from Parquet) or a zero-copy slice of a memory-mapped column file
//! ([`super::cols`]); both deref to `&[T]`, so readers need not know which.

use memmap2::Mmap;
use std::sync::Arc;

/// The little-endian words a column file holds.
pub trait Word: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    const WIDTH: usize;
}
impl Word for u32 {
    const WIDTH: usize = 4;
}
impl Word for u64 {
    const WIDTH: usize = 8;
}

#[cfg(target_endian = "big")]
compile_error!("column files are little-endian and mapped as they are: a big-endian build would read them wrong");

/// The little-endian bytes of `s` (what a column file holds).
pub fn as_bytes<T: Word>(s: &[T]) -> &[u8] {
    // SAFETY: u32/u64 have no padding and any alignment is valid for u8; little-endian target
    // (checked at compile time above), so these are the file's bytes.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) }
}

/// Owned values, or `len` values at byte `start` of a shared read-only map.
#[derive(Clone)]
pub enum Col<T: Word> {
    Owned(Vec<T>),
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
}

/// Elements per block when a whole column is walked ([`Col::scan`]): 4 MiB of `u32`.
pub const SCAN_BLOCK: usize = 1 << 20;

impl<T: Word> Col<T> {
    /// `len` values at byte `start` of `map`; `start` must be aligned to `T` and the values lie
    /// inside the map (checked).
    pub(super) fn mapped(map: Arc<Mmap>, start: usize, len: usize) -> Self {
        assert!(
            start.is_multiple_of(T::WIDTH),
            "column start is not aligned"
        );
        assert!(
            start + len * T::WIDTH <= map.len(),
            "column lies outside its map"
        );
        Col::Mapped { map, start, len }
    }

    /// True when the values are the pages of a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Col::Mapped { .. })
    }

    /// The values as an owned vector to change (a mapped column is copied first).
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Col::Mapped { .. } = self {
            *self = Col::Owned(self.to_vec());
        }
        match self {
            Col::Owned(v) => v,
            Col::Mapped { .. } => unreachable!("made owned above"),
        }
    }

    pub fn push(&mut self, v: T) {
        self.to_mut().push(v);
    }

    /// Drop the mapped pages of values `range` from this process's resident set (they stay in
    /// the page cache, shared): a column walked once (checked, hashed, scored in blocks) does
    /// not stay in the RSS. No-op for owned values.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Col::Mapped { map, start, .. } = self else {
            return;
        };
        let page = 4096;
        let from = (start + range.start * T::WIDTH).div_ceil(page) * page;
        let to = (start + range.end * T::WIDTH) / page * page;
        if to > from {
            // SAFETY: a read-only shared file mapping: DONTNEED only drops this process's page
            // table entries; the next access faults the same file pages back in.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
            };
        }
    }

    /// Call `f(first index, block)` for consecutive blocks of at most [`SCAN_BLOCK`] values,
    /// releasing each mapped block after it ([`Col::release`]).
    pub fn scan<E>(&self, mut f: impl FnMut(usize, &[T]) -> Result<(), E>) -> Result<(), E> {
        let mut at = 0;
        for b in self.chunks(SCAN_BLOCK) {
            f(at, b)?;
            self.release(at..at + b.len());
            at += b.len();
        }
        Ok(())
    }
}

impl<T: Word> std::ops::Deref for Col<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Col::Owned(v) => v,
            // SAFETY: `mapped` checked alignment and bounds; the map is read-only and lives as
            // long as `self` (Arc); every bit pattern is a valid u32/u64.
            Col::Mapped { map, start, len } => unsafe {
                std::slice::from_raw_parts(map.as_ptr().add(*start) as *const T, *len)
            },
        }
    }
}

impl<T: Word> Default for Col<T> {
    fn default() -> Self {
        Col::Owned(Vec::new())
    }
}

impl<T: Word> std::fmt::Debug for Col<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Col::Owned(v) if v.len() <= 16 => write!(f, "{v:?}"),
            Col::Owned(v) => write!(f, "Col::Owned(len {})", v.len()),
            Col::Mapped { len, .. } => write!(f, "Col::Mapped(len {len})"),
        }
    }
}

impl<T: Word> PartialEq for Col<T> {
    fn eq(&self, o: &Self) -> bool {
        **self == **o
    }
}

impl<T: Word> PartialEq<Vec<T>> for Col<T> {
    fn eq(&self, o: &Vec<T>) -> bool {
        **self == **o
    }
}

impl<T: Word, const N: usize> PartialEq<[T; N]> for Col<T> {
    fn eq(&self, o: &[T; N]) -> bool {
        **self == o[..]
    }
}

impl<T: Word> From<Vec<T>> for Col<T> {
    fn from(v: Vec<T>) -> Self {
        Col::Owned(v)
    }
}

impl<T: Word> FromIterator<T> for Col<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Col::Owned(it.into_iter().collect())
    }
}

impl<T: Word> Extend<T> for Col<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        self.to_mut().extend(it)
    }
}

impl<'a, T: Word> IntoIterator for &'a Col<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The user of each train row. Train rows are sorted by user, so a loaded dataset keeps only
/// where each user's rows start ([`TrainUsers::Offsets`], `n_users + 1` values, mapped) instead
/// of one user per row; a dataset built in memory pushes one user per row
/// ([`TrainUsers::Rows`]).
#[derive(Clone, Debug)]
pub enum TrainUsers {
    Rows(Vec<u32>),
    Offsets(UserOffsets),
}

/// User `u`'s train rows are `offsets[u]..offsets[u + 1]`; `index[b]` is the user of row
/// `b * 4096`, so finding a row's user searches a few offsets only.
#[derive(Clone, Debug)]
pub struct UserOffsets {
    pub offsets: Col<u64>,
    index: Arc<Vec<u32>>,
}

const INDEX_SHIFT: u32 = 12;

impl UserOffsets {
    /// From checked offsets (non-decreasing, from 0).
    pub fn new(offsets: Col<u64>) -> Self {
        let rows = offsets.last().copied().unwrap_or(0);
        let mut index = Vec::with_capacity((rows >> INDEX_SHIFT) as usize + 2);
        let mut u = 0usize;
        let mut r = 0u64;
        while r < rows {
            while offsets[u + 1] <= r {
                u += 1;
            }
            index.push(u as u32);
            r += 1 << INDEX_SHIFT;
        }
        index.push(offsets.len().saturating_sub(2) as u32);
        UserOffsets {
            offsets,
            index: Arc::new(index),
        }
    }

    /// The user of train row `r` (< the number of rows).
    #[inline]
    pub fn user_of(&self, r: u64) -> u32 {
        let b = (r >> INDEX_SHIFT) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        // The last user in lo..=hi whose first row is <= r.
        let span = &self.offsets[lo + 1..=hi + 1];
        (lo + span.partition_point(|&o| o <= r)) as u32
    }
}

/// A borrowed [`TrainUsers`], `Copy` for the sampler.
#[derive(Clone, Copy, Debug)]
pub enum UsersView<'a> {
    Rows(&'a [u32]),
    Offsets(&'a UserOffsets),
}

impl UsersView<'_> {
    #[inline]
    pub fn get(&self, r: u64) -> u32 {
        match self {
            UsersView::Rows(u) => u[r as usize],
            UsersView::Offsets(o) => o.user_of(r),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            UsersView::Rows(u) => u.len(),
            UsersView::Offsets(o) => o.offsets.last().copied().unwrap_or(0) as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for TrainUsers {
    fn default() -> Self {
        TrainUsers::Rows(Vec::new())
    }
}

impl TrainUsers {
    /// From per-user offsets (`n_users + 1`, checked non-decreasing from 0).
    pub fn from_offsets(offsets: Col<u64>) -> Self {
        TrainUsers::Offsets(UserOffsets::new(offsets))
    }

    pub fn view(&self) -> UsersView<'_> {
        match self {
            TrainUsers::Rows(u) => UsersView::Rows(u),
            TrainUsers::Offsets(o) => UsersView::Offsets(o),
        }
    }

    /// Number of train rows.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user of row `r`.
    #[inline]
    pub fn get(&self, r: usize) -> u32 {
        self.view().get(r as u64)
    }

    /// One user per row, in row order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            TrainUsers::Rows(u) => Box::new(u.iter().copied()),
            TrainUsers::Offsets(o) => Box::new(
                o.offsets
                    .windows(2)
                    .enumerate()
                    .flat_map(|(u, w)| std::iter::repeat_n(u as u32, (w[1] - w[0]) as usize)),
            ),
        }
    }

    /// One user per row as a slice: borrowed when stored so, else expanded (4 bytes a row: for
    /// code that builds per-row structures anyway, never for the trainers' hot path).
    pub fn rows(&self) -> std::borrow::Cow<'_, [u32]> {
        match self {
            TrainUsers::Rows(u) => std::borrow::Cow::Borrowed(u),
            TrainUsers::Offsets(_) => std::borrow::Cow::Owned(self.iter().collect()),
        }
    }

    /// Where each of `n_users` users' rows start (`n_users + 1` values); `None` when the rows
    /// are not sorted by user.
    pub fn offsets(&self, n_users: u32) -> Option<std::borrow::Cow<'_, [u64]>> {
        match self {
            TrainUsers::Offsets(o) => Some(std::borrow::Cow::Borrowed(&o.offsets)),
            TrainUsers::Rows(u) => {
                let mut off = vec![0u64; n_users as usize + 1];
                let mut last = 0;
                for &x in u {
                    if x < last || x >= n_users {
                        return None;
                    }
                    last = x;
                    off[x as usize + 1] += 1;
                }
                for k in 0..n_users as usize {
                    off[k + 1] += off[k];
                }
                Some(std::borrow::Cow::Owned(off))
            }
        }
    }

    /// Append one row's user (a dataset being built; expands offsets first).
    pub fn push(&mut self, u: u32) {
        if let TrainUsers::Offsets(_) = self {
            *self = TrainUsers::Rows(self.iter().collect());
        }
        match self {
            TrainUsers::Rows(v) => v.push(u),
            TrainUsers::Offsets(_) => unreachable!("expanded above"),
        }
    }
}

impl PartialEq for TrainUsers {
    fn eq(&self, o: &Self) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter())
    }
}

impl PartialEq<Vec<u32>> for TrainUsers {
    fn eq(&self, o: &Vec<u32>) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter().copied())
    }
}

impl From<Vec<u32>> for TrainUsers {
    fn from(v: Vec<u32>) -> Self {
        TrainUsers::Rows(v)
    }
}

impl FromIterator<u32> for TrainUsers {
    fn from_iter<I: IntoIterator<Item = u32>>(it: I) -> Self {
        TrainUsers::Rows(it.into_iter().collect())
    }
}

impl Extend<u32> for TrainUsers {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, it: I) {
        for u in it {
            self.push(u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_find_the_user_of_every_row() {
        // Users with 0, 1, 5000, 3, 0, 9000 rows: blocks of 4096 rows span several users.
        let counts = [0u64, 1, 5000, 3, 0, 9000, 0];
        let mut off = vec![0u64];
        for c in counts {
            off.push(off.last().unwrap() + c);
        }
        let rows: Vec<u32> = (0..counts.len())
            .flat_map(|u| std::iter::repeat_n(u as u32, counts[u] as usize))
            .collect();
        let t = TrainUsers::from_offsets(Col::from(off.clone()));
        assert_eq!(t.len(), rows.len());
        for (r, &u) in rows.iter().enumerate() {
            assert_eq!(t.get(r), u, "row {r}");
        }
        assert_eq!(t, rows);
        assert_eq!(&*TrainUsers::from(rows).offsets(7).unwrap(), &off[..]);
        assert!(TrainUsers::from(vec![1, 0]).offsets(2).is_none());
    }
}
