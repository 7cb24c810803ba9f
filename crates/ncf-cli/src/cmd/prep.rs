//! `ncf-prep`'s output rules and its summary on stderr.

use ncf_core::data::dataset::Dataset;
use ncf_core::data::prep::PrepStats;
use ncf_core::io::{is_stdio, Output};
use std::path::Path;

/// --synthetic-csv FILE: a synthetic CSV cannot be told from a real ratings file of the same
/// layout (ml-20m's), so an existing FILE is never replaced, --force or not.
pub const SYNTHETIC_CSV: Output = Output {
    what: "synthetic ratings file",
    example: "ratings.csv",
    dir: false,
    reused: false,
    ours: |_| {
        Err(
            "not replaced: ncf cannot tell a synthetic CSV it wrote from a real ratings file \
             (remove the file first if it is one ncf wrote)"
                .into(),
        )
    },
};

/// `1234567` as `1,234,567`.
pub fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The two summary lines: what was read and dropped (`stats`, absent for a pre-split input),
/// then the dataset's counts and where it went.
pub fn summary(ds: &Dataset, stats: Option<&PrepStats>, out: &Path) {
    if let Some(s) = stats {
        eprintln!(
            "ncf-prep: read {} rows ({} users, {} items); {} below --min-rating; {} duplicates \
             dropped; {} users dropped (< min interactions, {} rows)",
            commas(s.rows_read),
            commas(s.users_in_input),
            commas(s.items_in_input),
            commas(s.rows_below_min_rating),
            commas(s.duplicates_dropped),
            commas(s.users_dropped),
            commas(s.rows_of_dropped_users),
        );
    }
    let dest = if is_stdio(out) {
        "stdout".to_string()
    } else {
        out.display().to_string()
    };
    eprintln!(
        "ncf-prep: {} users, {} items, {} train, {} test{} -> {dest}",
        commas(ds.n_users as u64),
        commas(ds.n_items as u64),
        commas(ds.train_users.len() as u64),
        commas(ds.test_users.len() as u64),
        if ds.test_negatives_per_user > 0 {
            format!(
                ", {} given test negatives per user",
                ds.test_negatives_per_user
            )
        } else {
            String::new()
        },
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn commas_group_thousands() {
        assert_eq!(super::commas(0), "0");
        assert_eq!(super::commas(999), "999");
        assert_eq!(super::commas(1_234_567), "1,234,567");
    }
}
