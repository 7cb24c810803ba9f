//! `ncf-negsample`'s flags and run: test negatives into a dataset, or the training samples of
//! one epoch exactly as ncf-train draws them.

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Parser, ValueEnum};
use ncf_core::data::dataset::{self, write_test_negatives_in_blocks, Dataset};
use ncf_core::io::{claim_output, is_stdio, write_atomic};
use ncf_core::sampling::negatives::{
    self, check_test_negatives, sample_test_negatives, sample_test_negatives_rows,
    write_epoch_samples, SampleFormat,
};
use ncf_core::sampling::rng::Rng;
use ncf_core::sampling::sampler::{EpochSamples, NegativeMode, UserItems, MAX_EPOCH_SAMPLES};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Uniform over all items; a positive may be drawn (NVIDIA's mode).
    Approximate,
    /// Never a training positive of the user.
    Exact,
}

/// Draw negatives: the test negatives of a dataset, or the shuffled training samples of an epoch.
///
/// With --test-negatives N: writes N distinct items per test user that the user has neither in
/// train nor in test (100 like NVIDIA, 99 for the NCF paper, 999 for MLPerf) into the dataset
/// directory (test_negatives.parquet and meta.json, atomically). Existing negatives (sampled or
/// "given" by the source) are kept unless --force. The dataset's fingerprint changes; models
/// trained before still fit it by their split fingerprint (same train and test pairs), so
/// `ncf-negsample paper --test-negatives 100 --force -o nvidia` evaluates a model trained on the
/// paper's 1 + 99 with NVIDIA's 1 + 100.
///
/// With --epoch E: writes the training samples of epoch E (0-based) exactly as ncf-train draws
/// them, in shuffled order, as columns (user: u32, item: u32, label: f32) with dense ids, to -o:
/// an Arrow IPC stream (`-` = stdout), Parquet for a .parquet path, TSV for a .tsv path.
///
/// DATASET is a directory written by ncf-prep, or `-` for its Arrow IPC stream on stdin. With -o,
/// --test-negatives writes a new dataset with the negatives there (a directory, or `-` for a
/// stream on stdout) instead of updating DATASET in place; a stream on stdin needs -o.
///
/// Schemas: test_negatives.parquet (user u32, item u32), N rows per test user in test-table
/// order; --epoch output (user u32, item u32, label f32: 1 positive, 0 negative).
///
/// Exit codes: 0 success (also when stdout is a closed pipe), 1 error (bad or inconsistent input
/// data, impossible request, output exists), 2 usage error (the command line cannot be parsed).
///
/// Example:
///   ncf-prep ratings.csv -o - | ncf-negsample - --test-negatives 100 -o ml-small
///   ncf-negsample ml-small --epoch 0 -o epoch0.parquet
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(ArgGroup::new("what").required(true).args(["test_negatives", "epoch"])))]
pub struct Args {
    /// Dataset directory (from ncf-prep), or `-` for an Arrow IPC stream on stdin.
    dataset: PathBuf,
    /// Write this many test negatives per test user into the dataset.
    #[arg(long, value_name = "N")]
    test_negatives: Option<usize>,
    /// Write the training samples of this epoch (0-based).
    #[arg(long, value_name = "E")]
    epoch: Option<u32>,
    /// Negatives per positive in a training epoch.
    #[arg(long, default_value_t = 4)]
    negatives: u32,
    /// How training negatives are drawn.
    #[arg(long, value_enum, default_value = "approximate")]
    mode: Mode,
    /// Seed (the training seed for --epoch, so it matches ncf-train --seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output: samples file (`-` = stdout) for --epoch; for --test-negatives a new dataset
    /// directory (or `-` for a stream) instead of updating DATASET in place.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace existing test negatives or an existing output.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(n) = a.test_negatives {
        return test_negatives(&a, n);
    }
    let epoch = a.epoch.expect("clap requires one of the two");
    let out = a
        .output
        .as_ref()
        .context("--epoch needs -o FILE (or -o - for stdout)")?;
    let format = SampleFormat::for_path(out);
    if is_stdio(out) && format == SampleFormat::Parquet {
        bail!("Parquet cannot be written to stdout: give a .parquet file, or use an IPC stream");
    }
    // Claimed for the run: locked, and --force replaces only a samples file ncf wrote.
    let _claim = match is_stdio(out) {
        false => Some(claim_output(out, &negatives::OUTPUT, a.force)?),
        true => None,
    };
    let data = Dataset::load_any(&a.dataset)?;
    let mode = match a.mode {
        Mode::Approximate => NegativeMode::Approximate,
        Mode::Exact => NegativeMode::Exact,
    };
    check_epoch_size(data.train_users.len() as u64, a.negatives)?;
    let positives = (mode == NegativeMode::Exact)
        .then(|| UserItems::of_train(data.n_users, &data.train_users, &data.train_items));
    let samples = EpochSamples::over(
        Rng::new(a.seed),
        epoch,
        a.negatives,
        data.n_items,
        mode,
        data.train_users.view(),
        &data.train_items,
        positives.as_ref(),
    );
    if is_stdio(out) {
        // Stdout (not its lock) because the Parquet writer needs `Send`; buffered all the same.
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
        write_epoch_samples(&samples, format, &mut w, "<stdout>")?;
    } else {
        let what = out.display().to_string();
        write_atomic(out, |w| write_epoch_samples(&samples, format, w, &what))?;
    }
    Ok(())
}

/// An epoch of `positives` with `negatives` each must have fewer than
/// [`MAX_EPOCH_SAMPLES`] (2^48) samples (a sample's index addresses its random numbers).
fn check_epoch_size(positives: u64, negatives: u32) -> Result<()> {
    let per_positive = 1 + negatives as u64;
    let n = positives.saturating_mul(per_positive);
    if n >= MAX_EPOCH_SAMPLES {
        bail!(
            "--negatives {negatives}: an epoch would have {n} samples ({positives} positives × \
             {per_positive}): at most 2^48 − 1 are supported"
        );
    }
    Ok(())
}

fn test_negatives(a: &Args, n: usize) -> Result<()> {
    if n == 0 {
        bail!("--test-negatives must be at least 1");
    }
    // The directory written (claimed for the run): -o, or the dataset itself when in place.
    let in_place = match (&a.output, is_stdio(&a.dataset)) {
        (Some(_), _) => None,
        (None, true) => bail!("a dataset read from stdin needs -o DIR (or -o - for a stream)"),
        // A stream file is an input only: in place means a dataset directory.
        (None, false) if a.dataset.metadata().is_ok_and(|m| !m.is_dir()) => bail!(
            "{}: not a dataset directory (a file, such as a dataset stream): --test-negatives \
             without -o updates a dataset directory in place; write a dataset with the negatives \
             with -o DIR (or -o - for a stream)",
            a.dataset.display()
        ),
        // `.` is renamed by its full name.
        (None, false) if a.dataset.file_name().is_none() => Some(
            std::fs::canonicalize(&a.dataset).with_context(|| a.dataset.display().to_string())?,
        ),
        (None, false) => Some(a.dataset.clone()),
    };
    let _claim = match (&in_place, &a.output) {
        (Some(dir), _) => Some(claim_output(dir, &dataset::OUTPUT, true)?),
        (None, Some(out)) if !is_stdio(out) => Some(claim_output(out, &dataset::OUTPUT, a.force)?),
        _ => None,
    };
    let mut data = Dataset::load_any(&a.dataset)?;
    if data.test_negatives_per_user > 0 && !a.force {
        let source = data
            .meta
            .as_ref()
            .and_then(|m| m.test_negatives_source.clone());
        bail!(
            "{}: already has {} test negatives per user ({}): use --force to replace them",
            a.dataset.display(),
            data.test_negatives_per_user,
            source.unwrap_or_else(|| "sampled".into())
        );
    }
    let Some(out) = &a.output else {
        // In place: only the test negatives (Parquet and column file) and meta.json are
        // rewritten, drawn and written block by block (never all in memory).
        let dir = in_place.as_deref().expect("no -o: in place");
        check_test_negatives(&data, n)?;
        let fill =
            |rows, out: &mut Vec<u32>| sample_test_negatives_rows(&data, n, a.seed, rows, out);
        write_test_negatives_in_blocks(dir, &data, n, "sampled", Some(a.seed), a.force, fill)?;
        return Ok(());
    };
    let negatives = sample_test_negatives(&data, n, a.seed)?;
    data.set_test_negatives(n, negatives, "sampled", Some(a.seed))?;
    if is_stdio(out) {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        data.write_ipc(&mut w)?;
        w.flush().context("<stdout>")?;
    } else {
        data.write(out, a.force)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent_and_ask_for_one_thing() {
        Args::command().debug_assert();
        let parse = |args: &[&str]| Args::try_parse_from([&["ncf-negsample"], args].concat());
        assert!(
            parse(&["ds"]).is_err(),
            "neither --test-negatives nor --epoch"
        );
        assert!(parse(&["ds", "--test-negatives", "5", "--epoch", "0"]).is_err());
        let a = parse(&["ds", "--epoch", "3", "-o", "e.tsv"]).unwrap();
        assert_eq!((a.epoch, a.negatives, a.seed), (Some(3), 4, 1));
    }

    #[test]
    fn an_epoch_has_fewer_than_2_to_the_48_samples() {
        check_epoch_size(100_226, 4).unwrap();
        // ml-20mx16x32 with NVIDIA's 4 negatives: 6.1 billion samples, past 2^32.
        check_epoch_size(1_223_962_043, 4).unwrap();
        check_epoch_size((1 << 48) / 5 - 1, 4).unwrap();
        let err = check_epoch_size(100_226, u32::MAX).unwrap_err().to_string();
        assert_eq!(
            err,
            "--negatives 4294967295: an epoch would have 430467392208896 samples (100226 \
             positives × 4294967296): at most 2^48 − 1 are supported"
        );
    }
}
