//! `ncf-eval`'s flags and run: HR@K and NDCG@K of a model, an ensemble of models or any
//! recommender's ranked lists, on a dataset, by the protocol the flags ask for.

use crate::args::{DeviceArgs, ValidationArgs};
use crate::backend;
use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_core::data::dataset::Dataset;
use ncf_core::eval::metrics::{self, EvalSet};
use ncf_core::eval::nan;
use ncf_core::eval::Ensemble;
use ncf_core::model::file as modelfile;
use ncf_core::sampling::sampler::UserItems;
use ncf_core::train::Scorer;
use std::io::Write;
use std::path::PathBuf;

/// Evaluate a model (or a ranked list) on a dataset's held-out items; prints one JSON line
/// {hr, ndcg, k, users, candidates, protocol} on stdout.
///
/// Protocols: "sampled" (default) ranks each user's held-out item among its test negatives
/// (written by ncf-negsample); --full ranks it among every item the user has not seen in
/// training; --ranked FILE reads a recommender's lists instead of a model, as TSV lines
/// `user<TAB>rank<TAB>item[<TAB>...]` with 1-based ranks (the output of ncf-topk) and raw ids
/// (--dense for dense ids), each rank and each item at most once per user (a tie or a repeat is
/// refused, naming the line). Rank = number of candidates not scoring strictly below the held-out
/// item (ties count against it; NVIDIA's ncf.py counts them for it); hit iff rank < K;
/// NDCG = 1/log2(rank + 2).
///
/// Several models score each pair by the weighted sum of their logits (--weights, default equal
/// weights summing to 1): an ensemble. --validation ranks the held-out items of the validation
/// split `ncf-train --validation` carves from the training data (same --validation-seed and
/// holdout), to choose models, ensembles and weights without the test file.
///
/// A model trained on another dataset (different fingerprint) is refused.
///
/// Input schemas: the dataset directory (docs/FORMATS.md) with test negatives for the sampled
/// protocol; the model file from ncf-train. Output: one JSON object per run, e.g.
///   {"hr":0.70,"ndcg":0.42,"k":10,"users":6040,"candidates":100,"protocol":"sampled"}
/// (candidates per user: the held-out item + its negatives, or every unseen item with --full)
///
/// Exit codes: 0 success (also when stdout is a closed pipe), 1 error (bad or inconsistent input
/// data, impossible request, output exists), 2 usage error (the command line cannot be parsed).
///
/// Example:
///   ncf-eval ml-small model.safetensors --k 10
///   ncf-eval ml-small mf.safetensors neumf.safetensors --weights 0.6,0.4 --validation
///   ncf-topk ml-small model.safetensors --all -k 10 | ncf-eval ml-small --ranked -
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    /// Dataset directory (from ncf-prep), or `-` for an Arrow IPC stream on stdin.
    dataset: PathBuf,
    /// Model file(s) from ncf-train; several are an ensemble (weighted sum of logits).
    #[arg(required_unless_present = "ranked", conflicts_with = "ranked")]
    models: Vec<PathBuf>,
    /// One weight per model for the ensemble's logit sum (default: 1/number of models each).
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        action = clap::ArgAction::Set
    )]
    weights: Option<Vec<f32>>,
    #[command(flatten)]
    validation: ValidationArgs,
    /// Cut-off K of HR@K and NDCG@K.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Rank among every item the user has not seen in training instead of the test negatives.
    #[arg(long, conflicts_with = "validation")]
    full: bool,
    /// Evaluate a ranked list (TSV user, rank, item) from FILE or `-` (stdin) instead of a model.
    #[arg(long, value_name = "FILE", conflicts_with = "validation")]
    ranked: Option<PathBuf>,
    /// Evaluate N test users only (of the validation split with --validation): N rows spread
    /// evenly over the test set (row ⌊k·rows/N⌋ for k < N), the same N every run; the JSON's
    /// `users` says how many were ranked. For a quick look at a large dataset.
    #[arg(long, value_name = "N", conflicts_with = "ranked")]
    users: Option<usize>,
    /// Ids in the ranked list are dense (0-based) rather than raw.
    #[arg(long, requires = "ranked")]
    dense: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: Args) -> Result<()> {
    if a.ranked.as_deref().is_some_and(ncf_core::io::is_stdio) && ncf_core::io::is_stdio(&a.dataset)
    {
        bail!("the dataset and the ranked list cannot both come from stdin");
    }
    if a.users == Some(0) {
        bail!("--users must be at least 1");
    }
    let data = Dataset::load_any(&a.dataset)?;
    let m = if let Some(path) = &a.ranked {
        let what = path.display().to_string();
        let r = if ncf_core::io::is_stdio(path) {
            metrics::parse_ranked(std::io::stdin().lock(), "<stdin>", &data, a.dense)?
        } else {
            let f = std::fs::File::open(path).with_context(|| what.clone())?;
            metrics::parse_ranked(std::io::BufReader::new(f), &what, &data, a.dense)?
        };
        let (listed, tested) = (r.test_users_listed, data.test_users.len());
        if listed < tested {
            let src = if ncf_core::io::is_stdio(path) {
                "<stdin>"
            } else {
                &what
            };
            eprintln!(
                "ncf-eval: note: {src} lists {listed} of the {tested} test users; the other {} \
                 count as misses",
                tested - listed
            );
        }
        metrics::evaluate_ranked(&r.ranks, a.k, r.longest)?
    } else {
        let weights = weights(a.weights.as_deref(), a.models.len())?;
        // Scores come from the CPU, or from the GPU through the CUDA backend's scorer.
        let mut models = Vec::with_capacity(a.models.len());
        for path in &a.models {
            let (model, meta) = modelfile::load(path)?;
            modelfile::check_dataset(&meta, &data).with_context(|| {
                format!("{}: does not fit {}", path.display(), a.dataset.display())
            })?;
            if let Some(note) = nan::non_finite_note(&model, &path.display().to_string()) {
                eprintln!("ncf-eval: note: {note}");
            }
            models.push(model);
        }
        let d = &a.device;
        let chosen = backend::choose("ncf-eval", "scoring", d.device, d.gpu, 0, None)?;
        let mut scorers = Vec::with_capacity(models.len());
        for model in &models {
            scorers.push(backend::scorer(model, chosen)?);
        }
        // One model scores alone; several by the weighted sum of their logits.
        let mut ensemble = Ensemble::new(scorers, weights)?;
        let m = evaluate_models(&a, &data, |u, i, o| ensemble.score(u, i, o))?;
        for (path, n) in a.models.iter().zip(ensemble.nan_scores()) {
            let who = match a.models.len() {
                1 => "the model".to_string(),
                _ => path.display().to_string(),
            };
            if let Some(note) = n.note(&who, nan::NAN_COUNTS_AGAINST) {
                eprintln!("ncf-eval: note: {note}");
            }
        }
        m
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&m)?)?;
    out.flush()?;
    Ok(())
}

/// The metrics of the models behind `score` by the protocol the flags ask for.
fn evaluate_models<F>(a: &Args, data: &Dataset, score: F) -> Result<metrics::Metrics>
where
    F: FnMut(&[u32], &[u32], &mut [f32]) -> ncf_core::Result<()>,
{
    let sample = |set: EvalSet| match a.users {
        Some(n) => set.spread_sample(n),
        None => set,
    };
    if let Some((_, set)) = a.validation.split(data)? {
        let mut m = metrics::evaluate(&sample(set), a.k, score)?;
        // labelled as ncf-train labels its validation lines
        m.protocol = format!("{} (validation)", m.protocol);
        Ok(m)
    } else if a.full {
        let train = UserItems::of_train(data.n_users, &data.train_users, &data.train_items);
        let n = a.users.unwrap_or(usize::MAX);
        let rows: Vec<usize> = metrics::spread_rows(data.test_users.len(), n).collect();
        let users: Vec<u32> = rows.iter().map(|&r| data.test_users[r]).collect();
        let held_out: Vec<u32> = rows.iter().map(|&r| data.test_items[r]).collect();
        Ok(metrics::evaluate_full(
            &users,
            &held_out,
            data.n_items,
            &train,
            a.k,
            score,
        )?)
    } else {
        let set = sample(EvalSet::from_test(data)?);
        Ok(metrics::evaluate(&set, a.k, score)?)
    }
}

/// The ensemble's weights: `--weights` as given, one per model, finite, none negative and not
/// all zero; by default equal weights summing to 1.
fn weights(given: Option<&[f32]>, models: usize) -> Result<Vec<f32>> {
    Ok(match given {
        None => vec![1.0 / models as f32; models],
        Some(w) if w.len() != models => {
            bail!("--weights: {} weights for {} models", w.len(), models)
        }
        Some(w) if w.iter().any(|x| !x.is_finite()) => bail!("--weights must be finite"),
        Some(w) if w.iter().any(|&x| x < 0.0) => bail!(
            "--weights {}: a negative weight turns its model's ranking upside down; an \
             ensemble's weights are ≥ 0 (e.g. --weights 0.6,0.4)",
            join(w)
        ),
        Some(w) if w.iter().all(|&x| x == 0.0) => bail!(
            "--weights {}: all zero, so every pair would score 0; give at least one weight > 0",
            join(w)
        ),
        Some(w) => w.to_vec(),
    })
}

/// `0.6,0.4`: weights as they were given.
fn join(w: &[f32]) -> String {
    w.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Args::command().debug_assert();
        let parse = |args: &[&str]| Args::try_parse_from([&["ncf-eval"], args].concat());
        assert!(parse(&["ds"]).is_err(), "neither a model nor --ranked");
        assert!(parse(&["ds", "m.st", "--ranked", "-"]).is_err());
        assert!(parse(&["ds", "--ranked", "-", "--validation"]).is_err());
        assert!(parse(&["ds", "--ranked", "-", "--users", "5"]).is_err());
        let a = parse(&["ds", "a.st", "b.st", "--weights=0.6,-0.4"]).unwrap();
        assert_eq!(a.weights, Some(vec![0.6, -0.4]));
    }

    #[test]
    fn weights_default_to_equal_shares_and_are_checked() {
        assert_eq!(weights(None, 1).unwrap(), [1.0]);
        assert_eq!(weights(None, 4).unwrap(), [0.25; 4]);
        assert_eq!(weights(Some(&[0.6, 0.4]), 2).unwrap(), [0.6, 0.4]);
        assert_eq!(weights(Some(&[1.0, 0.0]), 2).unwrap(), [1.0, 0.0]);
        let err = |w: &[f32], n| weights(Some(w), n).unwrap_err().to_string();
        assert_eq!(err(&[0.5], 2), "--weights: 1 weights for 2 models");
        assert_eq!(err(&[f32::NAN, 1.0], 2), "--weights must be finite");
        assert!(err(&[0.5, -0.5], 2).starts_with("--weights 0.5,-0.5: a negative weight"));
        assert!(err(&[0.0, 0.0], 2).starts_with("--weights 0,0: all zero"));
    }
}
