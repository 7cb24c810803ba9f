//! `ncf-topk`'s flags and run: the K best items of users by a trained model, as TSV with raw
//! ids (users given by raw id, looked up by `ncf_core::data::ids`).

use crate::args::DeviceArgs;
use crate::backend;
use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_core::data::dataset::Dataset;
use ncf_core::data::ids::{self, IdIndex};
use ncf_core::eval::nan::{self, NanScores};
use ncf_core::eval::topk::TopK;
use ncf_core::model::file as modelfile;
use ncf_core::sampling::sampler::UserItems;
use std::io::Write;
use std::path::PathBuf;

/// Recommend: the K highest-scoring items of each user, by a model from ncf-train.
///
/// Users are given by RAW id (as in the data ncf-prep read): as arguments, one per line on stdin
/// when none are given (no line at all is an error), or every user with --all. Integer ids may
/// have spaces around them; text ids (ncf-prep --text-ids) are matched exactly, spaces included.
/// Items the user has in training are left out
/// unless --include-seen. Output on stdout, one line per recommendation, raw ids:
///   user<TAB>rank<TAB>item<TAB>score[<TAB>title]
/// rank is 1-based, score is the model's logit, title appears when the dataset has titles.
/// Highest score first, equal scores by item id; an item the model scores NaN is never listed
/// (a note on stderr says how many). Unknown user ids are an error naming them, unless
/// --skip-unknown (then a note on stderr). --device cuda scores on a GPU.
///
/// Exit codes: 0 success (also when stdout is a closed pipe), 1 error (bad or inconsistent input
/// data, impossible request, output exists), 2 usage error (the command line cannot be parsed).
///
/// Example:
///   ncf-topk ml-small model.safetensors -k 5 1 42 | column -t
///   ncf-topk ml-small model.safetensors --all -k 10 | ncf-eval ml-small --ranked -
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    /// Dataset directory (from ncf-prep), or `-` for an Arrow IPC stream on stdin.
    dataset: PathBuf,
    /// Model file (from ncf-train).
    model: PathBuf,
    /// Raw user ids (default: one per line on stdin).
    users: Vec<String>,
    /// Items per user.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Every user of the dataset.
    #[arg(long, conflicts_with = "users")]
    all: bool,
    /// Also recommend items the user has in training.
    #[arg(long)]
    include_seen: bool,
    /// Skip unknown user ids (with a note on stderr) instead of failing.
    #[arg(long)]
    skip_unknown: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> Result<()> {
    if a.k == 0 {
        bail!("-k must be at least 1");
    }
    let users_from_stdin = !a.all && a.users.is_empty();
    if users_from_stdin && ncf_core::io::is_stdio(&a.dataset) {
        bail!("the dataset and the user ids cannot both come from stdin: give users as arguments");
    }
    let data = Dataset::load_any(&a.dataset)?;
    let (model, meta) = modelfile::load(&a.model)?;
    modelfile::check_dataset(&meta, &data).with_context(|| {
        format!(
            "{}: does not fit {}",
            a.model.display(),
            a.dataset.display()
        )
    })?;

    if let Some(note) = nan::non_finite_note(&model, &a.model.display().to_string()) {
        eprintln!("ncf-topk: note: {note}");
    }

    let index = IdIndex::users(&data);
    let users: Vec<u32> = if a.all {
        (0..data.n_users).collect()
    } else {
        let raw: Vec<String> = if users_from_stdin {
            let lines = ids::read_lines(std::io::stdin().lock(), "<stdin>")?;
            let given: Vec<String> = lines.into_iter().filter(|l| !index.is_blank(l)).collect();
            if given.is_empty() {
                return Err(ids::empty_input(
                    "<stdin>",
                    "user ids (one per line; or give them as arguments, or --all)",
                )
                .into());
            }
            given
        } else {
            a.users.clone()
        };
        let (dense, unknown) = index.find_all(&raw);
        if !unknown.is_empty() {
            let msg = ids::unknown_ids(&unknown, "user");
            if !a.skip_unknown {
                bail!("{msg} (--skip-unknown to leave them out)");
            }
            eprintln!("ncf-topk: note: skipping {msg}");
        }
        dense
    };

    let seen = UserItems::of_train(data.n_users, &data.train_users, &data.train_items);
    let n = data.n_items as usize;
    // K larger than what some user can get is an error, checked before any output.
    for &u in &users {
        let candidates = if a.include_seen {
            n
        } else {
            n - seen.of(u).len()
        };
        if a.k > candidates {
            bail!(
                "-k {} is larger than the {candidates} candidate items of user {}{}",
                a.k,
                index.show_dense(u),
                match a.include_seen {
                    true => "",
                    false => " (the items it has in training are left out unless --include-seen)",
                }
            );
        }
    }

    // Users are scored a block at a time (every item of ~2^20 / n_items users per call, so the
    // scorer's threads share the work), then ranked and written in input order.
    let d = &a.device;
    let chosen = backend::choose("ncf-topk", "scoring", d.device, d.gpu, 0, None)?;
    let mut scorer = backend::scorer(&model, chosen)?;
    let per_block = users_per_block(n, users.len());
    let mut uu = Vec::with_capacity(per_block * n);
    let mut items = Vec::with_capacity(per_block * n);
    let mut scores = Vec::new();
    let mut top = TopK::new();
    let none: &[u32] = &[];
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for block in users.chunks(per_block) {
        uu.clear();
        items.clear();
        for &u in block {
            uu.extend(std::iter::repeat_n(u, n));
            items.extend(0..data.n_items);
        }
        scores.clear();
        scores.resize(uu.len(), 0.0);
        scorer.score(&uu, &items, &mut scores)?;
        for (&u, scores) in block.iter().zip(scores.chunks(n)) {
            let exclude = if a.include_seen { none } else { seen.of(u) };
            let order = top.select(scores, a.k, exclude);
            let user_raw = &data.user_raw[u as usize];
            for (rank, &i) in order.iter().enumerate() {
                let title = (data.item_titles.as_ref()).and_then(|t| t[i as usize].as_deref());
                let item_raw = &data.item_raw[i as usize];
                write_row(
                    &mut out,
                    user_raw,
                    rank + 1,
                    item_raw,
                    scores[i as usize],
                    title,
                )?;
            }
        }
    }
    out.flush()?;
    if let Some(note) = NanScores(top.nan_scores).note("the model", nan::NAN_NOT_LISTED) {
        eprintln!("ncf-topk: note: {note}");
    }
    Ok(())
}

/// Users per scoring call: every item of ~2^20 / `n_items` users (so the scorer's threads share
/// the work), at least one, at most all `users`.
fn users_per_block(n_items: usize, users: usize) -> usize {
    ((1usize << 20) / n_items).clamp(1, users.max(1))
}

/// One line of output: `user<TAB>rank<TAB>item<TAB>score[<TAB>title]`, the title's tabs and line
/// ends turned into spaces (a title cannot break the TSV).
fn write_row(
    out: &mut impl Write,
    user_raw: &str,
    rank: usize,
    item_raw: &str,
    score: f32,
    title: Option<&str>,
) -> std::io::Result<()> {
    write!(out, "{user_raw}\t{rank}\t{item_raw}\t{score}")?;
    if let Some(t) = title {
        write!(out, "\t{}", t.replace(['\t', '\n', '\r'], " "))?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn rows_are_tsv_with_raw_ids_and_titles_on_one_line() {
        let mut out = Vec::new();
        write_row(&mut out, "7", 1, "42", 1.5, None).unwrap();
        write_row(
            &mut out,
            " a",
            2,
            "x",
            -0.25,
            Some("Tab\there,\r\nnew line"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7\t1\t42\t1.5\n a\t2\tx\t-0.25\tTab here,  new line\n"
        );
    }

    #[test]
    fn a_block_scores_about_a_million_pairs() {
        assert_eq!(users_per_block(9724, 610), 107);
        assert_eq!(users_per_block(9724, 3), 3);
        assert_eq!(users_per_block(1 << 21, 610), 1);
        assert_eq!(users_per_block(10, 0), 1);
    }
}
