//! Training checkpoints: everything [`crate::train::run`] needs to continue a run exactly where
//! it stopped, in one safetensors file `DIR/checkpoint.safetensors`.
//!
//! Tensors (F32, 1-D, the flat parameter layout of [`crate::model::Layout`]): `params`, `adam.m`,
//! `adam.v`. Metadata (`__metadata__`): `ncf_checkpoint` = [`CheckpointMeta`] as JSON, with the
//! SHA-256 of every tensor. The file is written atomically (temp file, fsync, rename), so the
//! previous checkpoint stays whole until the new one is complete; a reader never sees half a file.
//!
//! The random numbers of training (negatives, shuffle, dropout) are addressed by (seed, epoch,
//! sample), so the position (epoch, step) is all the RNG state there is.

use crate::model::file::{for_le_blocks, params_sha256, sha256_hex};
use crate::model::{Model, ModelConfig};
use crate::train::{Summary, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the checkpoint format; readers refuse others.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// The file inside a checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const K_META: &str = "ncf_checkpoint";
const TENSORS: [&str; 3] = ["params", "adam.m", "adam.v"];

/// A backend's optimiser state: parameters, Adam moments, step count and loss-scale state.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Optimiser steps applied (Adam's bias correction).
    pub steps: u64,
    /// FP16 dynamic loss scale and the clean steps since it last changed (1.0 / 0 elsewhere).
    pub loss_scale: f32,
    pub clean_steps: u32,
}

/// Where the training loop is: the next step to run and what has been measured so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Epoch (0-based) and step within it of the next step to run.
    pub epoch: u32,
    pub step: u64,
    /// The current epoch's loss sum (weighted by batch size), samples, skipped steps and
    /// training seconds so far.
    pub epoch_loss_sum: f64,
    pub epoch_loss_n: u64,
    pub epoch_skipped: u64,
    pub epoch_train_s: f64,
    /// Best (HR, NDCG, epoch) so far: the model file holds that epoch's parameters.
    pub best: Option<(f64, f64, u32)>,
    /// The model file this run last wrote (absent in checkpoints from before it was recorded):
    /// a resumed run writes its model file only when a later epoch does better, so it checks
    /// first that its `-o` holds these parameters.
    #[serde(default)]
    pub model_written: Option<ModelWritten>,
    /// Samples of the completed epochs.
    pub total_samples: u64,
    /// The summary of the completed epochs.
    pub summary: Summary,
}

/// A model file written by a run: where, which epoch, and the SHA-256 of its parameters
/// ([`crate::model::file::params_sha256`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelWritten {
    pub path: PathBuf,
    pub epoch: u32,
    pub params_sha256: String,
}

/// The metadata of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub model_config: ModelConfig,
    pub train_config: TrainConfig,
    pub dataset_fingerprint: String,
    /// "test" or "validation" (with its seed), and a digest of the evaluation set.
    pub eval: String,
    pub eval_digest: String,
    /// Backend that wrote it ("cpu (2 threads)"): results are bit-identical only on the same.
    pub backend: String,
    pub position: Position,
    pub steps: u64,
    pub loss_scale: f32,
    pub clean_steps: u32,
    /// SHA-256 (hex) of each tensor's bytes.
    pub sha256: std::collections::BTreeMap<String, String>,
}

/// A checkpoint directory as an output: written into (a run continues the one there), and its
/// `checkpoint.safetensors`, when present, must be ncf's ([`holds_ncf_checkpoint`]).
pub const OUTPUT: crate::io::Output = crate::io::Output {
    what: "checkpoint directory",
    example: "model.ckpt",
    dir: true,
    reused: true,
    ours: holds_ncf_checkpoint,
};

/// `Ok` when the checkpoint file in `dir` is absent or an ncf checkpoint (what ncf-train may
/// overwrite there; nothing else in the directory is touched); else why not.
pub fn holds_ncf_checkpoint(dir: &Path) -> std::result::Result<(), String> {
    let path = file_in(dir);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    match crate::model::file::safetensors_metadata(&path).is_some_and(|md| md.contains_key(K_META))
    {
        true => Ok(()),
        false => Err(format!(
            "holds {CHECKPOINT_FILE}, which is not an ncf checkpoint, and ncf-train would \
             overwrite it"
        )),
    }
}

/// Where the run whose checkpoint is in `dir` stands, reading only the file's header (`None`
/// when there is no readable checkpoint there).
pub fn position_in(dir: &Path) -> Option<Position> {
    let md = crate::model::file::safetensors_metadata(&file_in(dir))?;
    let meta: CheckpointMeta = serde_json::from_str(md.get(K_META)?).ok()?;
    Some(meta.position)
}

/// The checkpoint file of directory `dir`.
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// Write a checkpoint into `dir` (created if missing) atomically. `meta.sha256` is filled here.
pub fn save(dir: &Path, mut meta: CheckpointMeta, state: &OptimizerState) -> Result<()> {
    let n = state.params.len();
    if state.m.len() != n || state.v.len() != n {
        return Err(Error::invalid(format!(
            "checkpoint: {} parameters but {} / {} Adam moments",
            n,
            state.m.len(),
            state.v.len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Hashed and written a block at a time, never copied whole (gigabytes at MLPerf's scale).
    let data = [&state.params, &state.m, &state.v];
    meta.format_version = CHECKPOINT_FORMAT_VERSION;
    meta.steps = state.steps;
    meta.loss_scale = state.loss_scale;
    meta.clean_steps = state.clean_steps;
    meta.sha256 = TENSORS
        .iter()
        .zip(&data)
        .map(|(name, x)| (name.to_string(), params_sha256(x)))
        .collect();
    let meta_json = serde_json::to_string(&meta).map_err(|e| Error::invalid(e.to_string()))?;
    let mut h = serde_json::Map::new();
    h.insert(
        "__metadata__".into(),
        serde_json::json!({ K_META: meta_json }),
    );
    for (k, name) in TENSORS.iter().enumerate() {
        let (a, b) = (k * n * 4, (k + 1) * n * 4);
        h.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": [n], "data_offsets": [a, b]}),
        );
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(h))
        .map_err(|e| Error::invalid(e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let path = file_in(dir);
    crate::io::write_atomic(&path, |w| {
        let io = |e| Error::io(&path, e);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        for x in data {
            for_le_blocks(x, |b| w.write_all(b)).map_err(io)?;
        }
        Ok(())
    })
}

/// Read and verify the checkpoint in `dir`: format, tensor names, dtypes, lengths (against the
/// model layout of its own config) and checksums.
pub fn load(dir: &Path) -> Result<(CheckpointMeta, OptimizerState)> {
    let path = file_in(dir);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::invalid(format!(
            "{}: no checkpoint there (ncf-train writes one with --checkpoint DIR)",
            path.display()
        )),
        _ => Error::io(&path, e),
    })?;
    let bad = |what: String| Error::parse(path.display().to_string(), what);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(K_META))
        .ok_or_else(|| bad(format!("no {K_META} metadata: not an ncf-train checkpoint")))?;
    let meta: CheckpointMeta =
        serde_json::from_str(meta_json).map_err(|e| bad(format!("checkpoint metadata: {e}")))?;
    if meta.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(bad(format!(
            "checkpoint format version {} (this ncf-train reads {CHECKPOINT_FORMAT_VERSION})",
            meta.format_version
        )));
    }
    meta.model_config.validate()?;
    let n = meta.model_config.layout().total;
    let mut tensors = Vec::with_capacity(3);
    for name in TENSORS {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("tensor {name} is missing")))?;
        if t.dtype() != safetensors::Dtype::F32 || t.shape() != [n] {
            return Err(bad(format!(
                "tensor {name} is {:?} {:?}, expected F32 [{n}] for its model config",
                t.dtype(),
                t.shape()
            )));
        }
        let want = meta.sha256.get(name).map(String::as_str).unwrap_or("");
        if sha256_hex(t.data()) != want {
            return Err(bad(format!(
                "tensor {name} fails its SHA-256 check: the file is corrupt"
            )));
        }
        tensors.push(
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<f32>>(),
        );
    }
    let v = tensors.pop().unwrap_or_default();
    let m = tensors.pop().unwrap_or_default();
    let params = tensors.pop().unwrap_or_default();
    let state = OptimizerState {
        params,
        m,
        v,
        steps: meta.steps,
        loss_scale: meta.loss_scale,
        clean_steps: meta.clean_steps,
    };
    Ok((meta, state))
}

impl CheckpointMeta {
    /// Why this checkpoint cannot continue a run of `model`/`cfg` on dataset `fingerprint`
    /// evaluated on `eval`/`eval_digest` (None if it can). The number of epochs and the target
    /// HR may change on resume; nothing else may.
    pub fn mismatch(
        &self,
        model: &ModelConfig,
        cfg: &TrainConfig,
        fingerprint: &str,
        eval: &str,
        eval_digest: &str,
    ) -> Option<String> {
        if self.dataset_fingerprint != fingerprint {
            return Some(format!(
                "it is from another dataset (fingerprint {} vs {fingerprint})",
                self.dataset_fingerprint
            ));
        }
        if &self.model_config != model {
            return Some(format!(
                "it is from another model: {} vs {}",
                serde_json::to_string(&self.model_config).unwrap_or_default(),
                serde_json::to_string(model).unwrap_or_default()
            ));
        }
        let mut theirs = self.train_config.clone();
        theirs.epochs = cfg.epochs;
        theirs.target_hr = cfg.target_hr;
        if &theirs != cfg {
            let a = serde_json::to_value(&theirs).unwrap_or_default();
            let b = serde_json::to_value(cfg).unwrap_or_default();
            // Keys on either side (a key left out of one file, like an exact ials_solver, too).
            let none = serde_json::Value::String("none".into());
            let mut keys: Vec<&String> = a
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .collect();
            keys.extend(b.as_object().into_iter().flatten().map(|(k, _)| k));
            keys.sort();
            keys.dedup();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
                .map(|k| {
                    let side = |v: &serde_json::Value| v.get(k.as_str()).unwrap_or(&none).clone();
                    format!("{k} {} vs {}", side(&a), side(&b))
                })
                .collect();
            return Some(format!(
                "it is from another training config ({})",
                diff.join(", ")
            ));
        }
        if self.eval != eval || self.eval_digest != eval_digest {
            return Some(format!(
                "it was evaluated on another set ({} vs {eval})",
                self.eval
            ));
        }
        None
    }
}

/// A model from a checkpoint's parameters.
pub fn model_of(meta: &CheckpointMeta, state: &OptimizerState) -> Result<Model> {
    Ok(Model {
        config: meta.model_config.clone(),
        layout: meta.model_config.layout(),
        params: state.params.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;
    use crate::train::Summary;

    fn meta(mc: &ModelConfig, cfg: &TrainConfig) -> CheckpointMeta {
        CheckpointMeta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model_config: mc.clone(),
            train_config: cfg.clone(),
            dataset_fingerprint: "fp".into(),
            eval: "test".into(),
            eval_digest: "d".into(),
            backend: "cpu (2 threads)".into(),
            position: Position {
                epoch: 2,
                step: 7,
                epoch_loss_sum: 1.5,
                epoch_loss_n: 3,
                epoch_skipped: 0,
                epoch_train_s: 0.25,
                best: Some((0.5, 0.25, 1)),
                model_written: None,
                total_samples: 99,
                summary: Summary {
                    best_hr: 0.0,
                    best_ndcg: 0.0,
                    best_epoch: None,
                    first_epoch_reaching_target: None,
                    time_to_target_s: None,
                    train_time_s: 1.0,
                    eval_time_s: 0.5,
                    avg_samples_per_s: 0.0,
                    best_samples_per_s: 9.0,
                    epochs_run: 2,
                    k: 10,
                    eval: "test".into(),
                    backend: "cpu (2 threads)".into(),
                },
            },
            steps: 0,
            loss_scale: 1.0,
            clean_steps: 0,
            sha256: Default::default(),
        }
    }

    fn setup() -> (ModelConfig, TrainConfig, OptimizerState) {
        let mc = ModelConfig {
            kind: ModelKind::Neumf,
            n_users: 5,
            n_items: 7,
            factors: 4,
            layers: vec![8, 4],
            dropout: 0.5,
        };
        let n = mc.layout().total;
        let st = OptimizerState {
            params: (0..n).map(|k| k as f32 * 0.5).collect(),
            m: (0..n).map(|k| -(k as f32)).collect(),
            v: (0..n).map(|k| k as f32 * 1e-3).collect(),
            steps: 41,
            loss_scale: 1024.0,
            clean_steps: 3,
        };
        (mc, TrainConfig::nvidia(3), st)
    }

    #[test]
    fn round_trip_keeps_state_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let (mc, cfg, st) = setup();
        save(dir.path(), meta(&mc, &cfg), &st).unwrap();
        let (m, back) = load(dir.path()).unwrap();
        assert_eq!(back, st);
        assert_eq!(m.position, meta(&mc, &cfg).position);
        assert_eq!(m.mismatch(&mc, &cfg, "fp", "test", "d"), None);
        // Epochs and target may change; the rest may not.
        let more = TrainConfig {
            epochs: 99,
            target_hr: Some(0.5),
            ..cfg.clone()
        };
        assert_eq!(m.mismatch(&mc, &more, "fp", "test", "d"), None);
        let other = TrainConfig {
            lr: 0.1,
            ..cfg.clone()
        };
        let why = m.mismatch(&mc, &other, "fp", "test", "d").unwrap();
        assert!(why.contains("lr"), "{why}");
        assert!(m.mismatch(&mc, &cfg, "other", "test", "d").is_some());
        assert!(m.mismatch(&mc, &cfg, "fp", "validation", "d").is_some());
        let mc2 = ModelConfig {
            factors: 8,
            ..mc.clone()
        };
        assert!(m.mismatch(&mc2, &cfg, "fp", "test", "d").is_some());
    }

    #[test]
    fn corrupt_or_truncated_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mc, cfg, st) = setup();
        save(dir.path(), meta(&mc, &cfg), &st).unwrap();
        let file = file_in(dir.path());
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        let k = good.len() - 5;
        flipped[k] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("SHA-256"), "{e}");
        for cut in [0, 7, 100, good.len() - 1] {
            std::fs::write(&file, &good[..cut]).unwrap();
            let e = load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("checkpoint"), "{cut}: {e}");
        }
        let e = load(&dir.path().join("none")).unwrap_err().to_string();
        assert!(e.contains("no checkpoint there"), "{e}");
    }
}
