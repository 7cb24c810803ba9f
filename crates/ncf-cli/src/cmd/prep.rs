//! `ncf-prep`'s flags and run: a ratings file (or synthetic data) read by `ncf_core::data::ingest`,
//! prepared by `ncf_core::data::prep` and written as a dataset; its output rules and its summary
//! on stderr.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_core::data::dataset::{self, Dataset};
use ncf_core::data::ingest::{self, Format, Input, ReadOptions};
use ncf_core::data::prep::{prepare, PrepOptions, PrepStats};
use ncf_core::data::synth;
use ncf_core::io::{claim_output, is_stdio, Output};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Turn a ratings file into an ncf dataset with a leave-one-out split.
///
/// Every rating is a positive (or those >= --min-rating). Repeated (user, item) pairs keep the
/// earliest; users with fewer than --min-interactions distinct items are dropped; raw ids become
/// dense u32 ids (numeric order for integer ids, else byte order). Each user's latest
/// interaction is the test row (ties: the one last in the input); without timestamps a seeded
/// random one. Formats (--format, else detected): ml-dat (ml-1m/ml-10m `::`, with or without
/// timestamps), ml-csv (ratings.csv), ml-100k (u.data), csv, tsv, parquet, zip (a GroupLens
/// zip: ratings and movies found inside), ncf (the NCF authors' PREFIX.train.rating,
/// .test.rating, .test.negative: their split, ids and negatives kept). INPUT `-` is stdin; a
/// directory means the ratings file (and movies file) in it. Text may be gzip-compressed and
/// may have Windows line ends or a UTF-8 byte-order mark; binary input is refused by its kind.
///
/// Output (-o): a directory of Parquet tables + meta.json (docs/FORMATS.md), written atomically,
/// or `-` for the same tables as an Arrow IPC stream on stdout. A summary goes to stderr.
///
/// Schemas (docs/FORMATS.md): train, test (user u32, item u32[, timestamp i64]), users (user u32,
/// raw_id utf8), items (item u32, raw_id utf8, title utf8 nullable), test_negatives (user u32,
/// item u32, only for the NCF authors' split); meta.json holds counts and the fingerprint.
///
/// Exit codes: 0 success (also when stdout is a closed pipe), 1 error (bad or inconsistent input
/// data, impossible request, output exists), 2 usage error (the command line cannot be parsed).
///
/// Examples:
///   ncf-prep data/ml-latest-small/ratings.csv --movies data/ml-latest-small/movies.csv -o ml-small
///   ncf-prep ml-1m.zip -o - | ncf-negsample - --test-negatives 99 -o ml-1m
///   ncf-prep --synthetic 1000,500,40000 -o synth
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    /// Ratings file, directory, zip, authors' split prefix, or `-` for stdin.
    #[arg(
        required_unless_present_any = ["synthetic", "synthetic_csv"],
        conflicts_with_all = ["synthetic", "synthetic_csv"]
    )]
    input: Option<PathBuf>,
    /// Output dataset directory, or `-` for an Arrow IPC stream on stdout.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Input format: ml-dat, ml-csv, ml-100k, csv, tsv, parquet, zip, ncf (default: detected).
    #[arg(long, value_name = "FORMAT", conflicts_with_all = SYNTHETIC)]
    format: Option<String>,
    /// Movies file for item titles: movies.csv, movies.dat (latin-1) or u.item (latin-1).
    #[arg(long, value_name = "FILE", conflicts_with_all = SYNTHETIC)]
    movies: Option<PathBuf>,
    /// Only ratings >= this are positives.
    #[arg(long, value_name = "R", conflicts_with_all = SYNTHETIC)]
    min_rating: Option<f32>,
    /// Drop users with fewer distinct interactions than this (default 20).
    #[arg(long, value_name = "N")]
    min_interactions: Option<usize>,
    /// Seed of the random leave-one-out (inputs without timestamps) and of --synthetic
    /// (default 42).
    #[arg(long)]
    seed: Option<u64>,
    /// User column: a header name or a 1-based number.
    #[arg(long, value_name = "COL", conflicts_with_all = SYNTHETIC)]
    user_col: Option<String>,
    /// Item column: a header name or a 1-based number.
    #[arg(long, value_name = "COL", conflicts_with_all = SYNTHETIC)]
    item_col: Option<String>,
    /// Timestamp column (integer seconds): a header name or a 1-based number.
    #[arg(long, value_name = "COL", conflicts_with_all = SYNTHETIC)]
    time_col: Option<String>,
    /// Rating column: a header name or a 1-based number.
    #[arg(long, value_name = "COL", conflicts_with_all = SYNTHETIC)]
    rating_col: Option<String>,
    /// Field separator (`tab` or `\t` for a tab; default by format).
    #[arg(long, value_name = "SEP", conflicts_with_all = SYNTHETIC)]
    sep: Option<String>,
    /// The first line is a header.
    #[arg(long, conflicts_with = "no_header", conflicts_with_all = SYNTHETIC)]
    header: bool,
    /// The first line is data.
    #[arg(long, conflicts_with_all = SYNTHETIC)]
    no_header: bool,
    /// Ids may be any text (default: non-negative integers, anything else is an error).
    #[arg(long, conflicts_with_all = SYNTHETIC)]
    text_ids: bool,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Generate synthetic data of shape USERS,ITEMS,INTERACTIONS instead of reading INPUT
    /// (default: ml-20m's 138493,26744,20000263).
    #[arg(long, value_name = "U,I,N", num_args = 0..=1, default_missing_value = "138493,26744,20000263")]
    synthetic: Option<String>,
    /// Also write the synthetic data as an ml-20m style ratings.csv to FILE (implies
    /// --synthetic; -o is then optional).
    #[arg(long, value_name = "FILE")]
    synthetic_csv: Option<PathBuf>,
}

/// The flags that generate data instead of reading it: the reading flags conflict with them.
const SYNTHETIC: [&str; 2] = ["synthetic", "synthetic_csv"];
/// --min-interactions and --seed when not given.
const MIN_INTERACTIONS: usize = 20;
const SEED: u64 = 42;

pub fn run(a: Args) -> Result<()> {
    let output = a.output.clone();
    if output.is_none() && a.synthetic_csv.is_none() {
        bail!("-o DIR (or -o - for an Arrow IPC stream) is required");
    }
    // Outputs are claimed for the whole run (locked, and --force replaces only ncf's own).
    let mut _claims = Vec::new();
    if let Some(out) = &output {
        if is_stdio(out) && std::io::stdout().is_terminal() {
            bail!("-o -: stdout is a terminal; pipe the Arrow IPC stream into a tool or a file");
        }
        if !is_stdio(out) {
            _claims.push(claim_output(out, &dataset::OUTPUT, a.force)?);
        }
    }
    if let Some(csv) = &a.synthetic_csv {
        _claims.push(claim_output(csv, &SYNTHETIC_CSV, a.force)?);
    }
    let opts = PrepOptions {
        min_interactions: a.min_interactions.unwrap_or(MIN_INTERACTIONS),
        min_rating: a.min_rating,
        seed: a.seed.unwrap_or(SEED),
    };
    let mut options = json!({
        "min_interactions": opts.min_interactions,
        "min_rating": a.min_rating,
        "seed": opts.seed,
    });
    let (mut ds, stats, source) = if a.synthetic.is_some() || a.synthetic_csv.is_some() {
        let spec = a
            .synthetic
            .clone()
            .unwrap_or_else(|| "138493,26744,20000263".into());
        let (u, i, n) = synth::parse_shape(&spec)?;
        let rows = synth::generate(u, i, n, opts.seed)?;
        if let Some(csv) = &a.synthetic_csv {
            ncf_core::io::write_atomic(csv, |w| {
                synth::write_csv(&rows, w).map_err(|e| ncf_core::Error::io(csv, e))
            })?;
            if !a.quiet {
                eprintln!(
                    "ncf-prep: wrote {} synthetic rows to {}",
                    commas(n),
                    csv.display()
                );
            }
        }
        if output.is_none() {
            return Ok(());
        }
        options["synthetic"] = json!(spec);
        let (ds, stats) = prepare(&rows, None, &opts)?;
        let source = json!({"format": "synthetic", "synthetic": {"users": u, "items": i,
            "interactions": n, "seed": opts.seed}});
        (ds, Some(stats), source)
    } else {
        let input = a.input.clone().expect("clap requires INPUT");
        let ro = ReadOptions {
            format: a.format.as_deref().map(Format::parse).transpose()?,
            user_col: a.user_col.clone(),
            item_col: a.item_col.clone(),
            time_col: a.time_col.clone(),
            rating_col: a.rating_col.clone(),
            sep: a.sep.clone(),
            header: if a.header {
                Some(true)
            } else if a.no_header {
                Some(false)
            } else {
                None
            },
            text_ids: a.text_ids,
            need_rating: a.min_rating.is_some(),
            movies: a.movies.clone(),
        };
        if ingest::authors_split(&input, ro.format)?.is_some() {
            refuse_for_given_split(&a, &input)?;
            // Nothing but the split is applied: the options say so, and nothing else.
            options = json!({"split": "given"});
            if let Some(f) = &a.format {
                options["format"] = json!(f);
            }
        }
        for (k, v) in [
            ("format", &a.format),
            ("user_col", &a.user_col),
            ("item_col", &a.item_col),
            ("time_col", &a.time_col),
            ("rating_col", &a.rating_col),
            ("sep", &a.sep),
        ] {
            if let Some(v) = v {
                options[k] = json!(v);
            }
        }
        if a.text_ids {
            options["text_ids"] = json!(true);
        }
        let loaded = ingest::load(&input, &ro)?;
        match loaded.input {
            Input::Rows { rows, titles } => {
                let (ds, stats) = prepare(&rows, titles.as_ref(), &opts)
                    .with_context(|| ingest::display_name(&input))?;
                if let (Some(m), Some(t)) = (&a.movies, &ds.item_titles) {
                    if ds.n_items > 0 && t.iter().all(Option::is_none) {
                        bail!(
                            "{}: none of the {} items has a title in it (ids are matched as the \
                             ratings file writes them, e.g. `{}`): give the movies file of these \
                             ratings",
                            m.display(),
                            ds.n_items,
                            ds.item_raw[0]
                        );
                    }
                }
                (ds, Some(stats), loaded.source)
            }
            Input::Split(ds) => (*ds, None, loaded.source),
        }
    };
    let stats_json = match &stats {
        Some(s) => serde_json::to_value(s)?,
        None => json!({"users": ds.n_users, "items": ds.n_items, "train": ds.train_users.len(),
            "test": ds.test_users.len(), "split": "given"}),
    };
    ds.meta = Some(ncf_core::data::dataset::Meta {
        format_version: ncf_core::data::dataset::FORMAT_VERSION,
        n_users: 0,
        n_items: 0,
        n_train: 0,
        n_test: 0,
        test_negatives_per_user: 0,
        test_negatives_source: (ds.test_negatives_per_user > 0).then(|| "given".to_string()),
        test_negatives_seed: None,
        options,
        source,
        stats: stats_json,
        fingerprint: String::new(),
    });
    let out = output.expect("checked above");
    if is_stdio(&out) {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        ds.write_ipc(&mut w)?;
        w.flush().map_err(|e| ncf_core::Error::io("<stdout>", e))?;
    } else {
        ds.write(&out, a.force)?;
    }
    if !a.quiet {
        summary(&ds, stats.as_ref(), &out);
    }
    Ok(())
}

/// The NCF authors' split is kept as given (their ids, rows and negatives): refuse every flag
/// that would filter, split or read it otherwise, rather than ignore it (and record it in
/// meta.json as if it had been applied).
fn refuse_for_given_split(a: &Args, input: &std::path::Path) -> Result<()> {
    let given: Vec<&str> = [
        ("--movies", a.movies.is_some()),
        ("--min-rating", a.min_rating.is_some()),
        ("--min-interactions", a.min_interactions.is_some()),
        ("--seed", a.seed.is_some()),
        ("--user-col", a.user_col.is_some()),
        ("--item-col", a.item_col.is_some()),
        ("--time-col", a.time_col.is_some()),
        ("--rating-col", a.rating_col.is_some()),
        ("--sep", a.sep.is_some()),
        ("--header", a.header),
        ("--no-header", a.no_header),
        ("--text-ids", a.text_ids),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    bail!(
        "{}: the NCF authors' split is kept as given (their dense ids, train and test rows and \
         negatives), so {} cannot apply to it: drop {}, or prepare the original ratings file \
         (such as ml-1m's ratings.dat) to filter or split it yourself",
        input.display(),
        given.join(", "),
        if given.len() == 1 { "it" } else { "them" }
    )
}

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
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> std::result::Result<Args, clap::Error> {
        Args::try_parse_from([&["ncf-prep"], args].concat())
    }

    #[test]
    fn the_flags_are_consistent_and_synthetic_data_reads_nothing() {
        Args::command().debug_assert();
        parse(&["r.csv", "-o", "ds"]).unwrap();
        parse(&["--synthetic", "-o", "ds"]).unwrap();
        assert!(
            parse(&["-o", "ds"]).is_err(),
            "neither INPUT nor --synthetic"
        );
        assert!(parse(&["r.csv", "--synthetic", "1,2,3", "-o", "ds"]).is_err());
        assert!(parse(&["--synthetic", "--min-rating", "3", "-o", "ds"]).is_err());
        let a = parse(&["--synthetic-csv", "r.csv"]).unwrap();
        assert!(a.output.is_none() && a.synthetic.is_none());
    }

    #[test]
    fn the_authors_split_refuses_every_flag_it_cannot_apply_by_name() {
        let input = Path::new("ncf-ml-1m/ml-1m");
        refuse_for_given_split(&parse(&["x", "-o", "ds", "--force", "-q"]).unwrap(), input)
            .unwrap();
        let a = parse(&["x", "-o", "ds", "--seed", "7"]).unwrap();
        let err = refuse_for_given_split(&a, input).unwrap_err().to_string();
        assert!(
            err.starts_with("ncf-ml-1m/ml-1m: the NCF authors' split"),
            "{err}"
        );
        assert!(
            err.contains("so --seed cannot apply to it: drop it,"),
            "{err}"
        );
        let a = parse(&["x", "-o", "ds", "--no-header", "--movies", "m.csv"]).unwrap();
        let err = refuse_for_given_split(&a, input).unwrap_err().to_string();
        assert!(
            err.contains("so --movies, --no-header cannot apply to it: drop them,"),
            "{err}"
        );
    }

    #[test]
    fn commas_group_thousands() {
        assert_eq!(super::commas(0), "0");
        assert_eq!(super::commas(999), "999");
        assert_eq!(super::commas(1_234_567), "1,234,567");
    }
}
