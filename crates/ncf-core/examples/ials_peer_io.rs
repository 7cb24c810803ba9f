//! The data side of the `implicit` peer (scripts/implicit_peer.py, `make bench`'s iALS rows):
//! one split of an ncf dataset out as plain arrays, and the peer's factors back in as an ncf
//! model file, so that the peer trains on exactly our training pairs and `ncf-eval` scores it
//! with our metrics (the same ranks, ties and skipped negatives as every ncf model).
//!
//!   ials_peer_io export DATASET DIR [--validation-seed S]
//!     DIR/train.u32: the training pairs (user, item), u32 little-endian, interleaved; with
//!     --validation-seed, those of `ncf-train --validation --validation-seed S` (its held-out
//!     interactions removed). DIR/eval.u32: the ranked rows (user, held-out item, then the
//!     row's negatives), of the test set or of that validation split. DIR/meta.json: n_users,
//!     n_items, n_train, eval_rows, negatives_per_row, split.
//!   ials_peer_io import DATASET DIR MODEL
//!     DIR/user.f32 and DIR/item.f32 (row-major f32 little-endian factors, n_users × d and
//!     n_items × d) → MODEL, a GMF file (score = the dot product) of DATASET, for `ncf-eval
//!     DATASET MODEL [--validation --validation-seed S]`.
//!
//!   cargo run --release -p ncf-core --example ials_peer_io -- export ml1m /tmp/peer

use ncf_core::data::dataset::Dataset;
use ncf_core::eval::metrics::EvalSet;
use ncf_core::eval::validation;
use ncf_core::family::ials;
use ncf_core::model::file::{self as modelfile, ModelMeta};
use std::io::Write;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: ials_peer_io export DATASET DIR [--validation-seed S] | import DATASET DIR MODEL";
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["export", data, dir] => export(data, dir, None),
        ["export", data, dir, "--validation-seed", s] => match s.parse() {
            Ok(seed) => export(data, dir, Some(seed)),
            Err(_) => Err(format!("--validation-seed {s}: not a number")),
        },
        ["import", data, dir, model] => import(data, dir, model),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("ials_peer_io: {e}");
        std::process::exit(1);
    }
}

fn write_u32s(path: &Path, values: impl Iterator<Item = u32>) -> Result<(), String> {
    let mut bytes = Vec::new();
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn export(data: &str, dir: &str, validation_seed: Option<u64>) -> Result<(), String> {
    let full = Dataset::load_any(Path::new(data)).map_err(|e| e.to_string())?;
    let (train, set, split) = match validation_seed {
        Some(seed) => {
            let (d, set) =
                validation::default_validation(&full, seed, None).map_err(|e| e.to_string())?;
            (d, set, format!("validation seed {seed}"))
        }
        None => {
            let set = EvalSet::from_test(&full).map_err(|e| e.to_string())?;
            (full, set, "test".to_string())
        }
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pairs = train.train_users.iter().zip(&train.train_items);
    write_u32s(&dir.join("train.u32"), pairs.flat_map(|(u, &i)| [u, i]))?;
    let per = set.per_user;
    let rows = (0..set.len()).flat_map(|r| {
        let negs = &set.negatives[r * per..(r + 1) * per];
        [set.users[r], set.items[r]]
            .into_iter()
            .chain(negs.iter().copied())
    });
    write_u32s(&dir.join("eval.u32"), rows)?;
    let meta = serde_json::json!({
        "n_users": train.n_users,
        "n_items": train.n_items,
        "n_train": train.train_users.len(),
        "eval_rows": set.len(),
        "negatives_per_row": per,
        "split": split,
        "dataset": data,
    });
    let path = dir.join("meta.json");
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{meta}").map_err(|e| format!("{}: {e}", path.display()))
}

fn read_f32s(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{}: not a whole number of f32", path.display()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

fn import(data: &str, dir: &str, model_path: &str) -> Result<(), String> {
    let data = Dataset::load_any(Path::new(data)).map_err(|e| e.to_string())?;
    let dir = Path::new(dir);
    let (users, items) = (
        read_f32s(&dir.join("user.f32"))?,
        read_f32s(&dir.join("item.f32"))?,
    );
    let (nu, ni) = (data.n_users as usize, data.n_items as usize);
    if nu == 0 || users.len() % nu != 0 || items.len() != users.len() / nu * ni {
        return Err(format!(
            "{} user and {} item floats do not make {nu} × d and {ni} × d tables",
            users.len(),
            items.len()
        ));
    }
    let d = users.len() / nu;
    let mut model = ials::init(data.n_users, data.n_items, d, 0.0, 1).map_err(|e| e.to_string())?;
    model
        .tensor_mut("mf_user_embed.weight")
        .copy_from_slice(&users);
    model
        .tensor_mut("mf_item_embed.weight")
        .copy_from_slice(&items);
    let mut meta = ModelMeta::new(model.config.clone(), data.fingerprint());
    meta.split_fingerprint = Some(data.split_fingerprint());
    modelfile::save(Path::new(model_path), &model, &meta).map_err(|e| e.to_string())
}
