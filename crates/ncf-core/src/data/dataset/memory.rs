//! Refusing a dataset that would not fit in memory, before reading it.

use super::Meta;
use crate::Result;

/// Refuse a dataset whose tables would not fit in memory, before reading them: `meta` gives the
/// row counts, `file_bytes` the size of its files (read whole).
pub(super) fn check_memory(meta: &Meta, file_bytes: u64, what: &str) -> Result<()> {
    let need = memory_needed(meta).saturating_add(file_bytes);
    crate::memory::require(
        need,
        &format!(
            "{what}: loading this dataset ({} train rows, {} test rows, {} users, {} items)",
            meta.n_train, meta.n_test, meta.n_users, meta.n_items
        ),
        "",
    )
}

/// Bytes the in-memory tables of a dataset take (columns, raw ids, negatives), with room for the
/// decoder's copy of the largest column.
pub fn memory_needed(meta: &Meta) -> u64 {
    let rows = |n: u64| n.saturating_mul(4 + 4 + 8);
    let ids = |n: u32| n as u64 * 48;
    let neg = meta
        .n_test
        .saturating_mul(meta.test_negatives_per_user as u64)
        .saturating_mul(4 * 2);
    rows(meta.n_train)
        .saturating_mul(2)
        .saturating_add(rows(meta.n_test))
        .saturating_add(ids(meta.n_users))
        .saturating_add(ids(meta.n_items))
        .saturating_add(neg)
}

/// Refuse a dataset read through its column files whose in-memory part (raw ids and titles,
/// `raw_bytes` of Parquet read whole) would not fit: its id columns are mapped file pages.
pub(super) fn check_memory_mapped(meta: &Meta, raw_bytes: u64, what: &str) -> Result<()> {
    let ids = |n: u32| n as u64 * 48;
    let need = ids(meta.n_users)
        .saturating_add(ids(meta.n_items))
        .saturating_add(raw_bytes);
    crate::memory::require(
        need,
        &format!(
            "{what}: loading this dataset's raw ids ({} users, {} items)",
            meta.n_users, meta.n_items
        ),
        "",
    )
}
