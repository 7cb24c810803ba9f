//! The model file: safetensors with NVIDIA's PyTorch `NeuMF.state_dict()` names and shapes (f32,
//! little endian), so `safetensors.torch.load_file` + `load_state_dict` loads it into the peer.
//!
//! `__metadata__` holds JSON strings: `ncf_format_version`, `ncf_model_config` ([`ModelConfig`]),
//! `ncf_dataset_fingerprint`, `ncf_epoch`, `ncf_metrics`, `ncf_train_config` and `ncf_sha256`
//! (hex sha256 of each tensor's bytes). Tensors are stored in layout order, without padding.
//! [`load`] memory-maps the file and checks everything before it copies a single float.

use crate::data::dataset::Dataset;
use crate::eval::metrics::Metrics;
use crate::model::{Layout, Model, ModelConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Version of the model file; [`load`] refuses others.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// What a model file says about itself besides its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    pub config: ModelConfig,
    /// The `fingerprint` of the dataset the model was trained on.
    pub dataset_fingerprint: String,
    /// Its split fingerprint (train and test pairs without the test negatives), when known:
    /// the model also fits datasets that differ from it in the test negatives only.
    pub split_fingerprint: Option<String>,
    /// Epoch (0-based) the parameters come from, when trained.
    pub epoch: Option<u32>,
    /// Metrics measured when the model was saved.
    pub metrics: Option<Metrics>,
    /// The training configuration (`TrainConfig` as JSON), when trained.
    pub train_config: Option<serde_json::Value>,
}

impl ModelMeta {
    pub fn new(config: ModelConfig, dataset_fingerprint: impl Into<String>) -> Self {
        ModelMeta {
            format_version: MODEL_FORMAT_VERSION,
            config,
            dataset_fingerprint: dataset_fingerprint.into(),
            split_fingerprint: None,
            epoch: None,
            metrics: None,
            train_config: None,
        }
    }
}

const K_VERSION: &str = "ncf_format_version";
const K_CONFIG: &str = "ncf_model_config";
const K_FINGERPRINT: &str = "ncf_dataset_fingerprint";
const K_SPLIT: &str = "ncf_split_fingerprint";
const K_EPOCH: &str = "ncf_epoch";
const K_METRICS: &str = "ncf_metrics";
const K_TRAIN: &str = "ncf_train_config";
const K_SHA: &str = "ncf_sha256";
/// safetensors limits the header to 100 MB; ours is a few KB.
const MAX_HEADER: u64 = 100_000_000;

/// A model file as an output: `--force` replaces only one ncf wrote ([`written_by_ncf`]).
pub const OUTPUT: crate::io::Output = crate::io::Output {
    what: "model file",
    example: "model.safetensors",
    dir: false,
    reused: false,
    ours: written_by_ncf,
};

/// The `__metadata__` of the safetensors file at `path`, reading only its header (as
/// [`from_bytes`] splits it), or `None` when it has no readable one.
pub(crate) fn safetensors_metadata(path: &Path) -> Option<HashMap<String, String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = vec![0u8; 8];
    f.read_exact(&mut head).ok()?;
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return None;
    }
    f.take(n).read_to_end(&mut head).ok()?;
    split_header(&head, &path.display().to_string())
        .ok()
        .map(|h| h.md)
}

/// `Ok` when `path` is a model file ncf wrote: safetensors whose `__metadata__` carries the ncf
/// format version and model config (its tensors are not checked: a damaged model of ours may be
/// replaced); else why not.
pub fn written_by_ncf(path: &Path) -> std::result::Result<(), String> {
    match safetensors_metadata(path) {
        Some(md) if md.contains_key(K_VERSION) && md.contains_key(K_CONFIG) => Ok(()),
        _ => Err("not an ncf model file (no safetensors header with ncf metadata)".into()),
    }
}

/// Little-endian bytes of `x` (the tensor data of model files and checkpoints).
/// `x` as little-endian bytes, a block at a time into `f` (no copy of the whole of `x`: a
/// model's tables are gigabytes at MLPerf's scale).
pub(crate) fn for_le_blocks<E>(
    x: &[f32],
    mut f: impl FnMut(&[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut b = Vec::with_capacity(1 << 18);
    for block in x.chunks(1 << 16) {
        b.clear();
        for v in block {
            b.extend_from_slice(&v.to_le_bytes());
        }
        f(&b)?;
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `x`'s little-endian bytes.
fn sha256_f32_hex(x: &[f32]) -> String {
    let mut h = Sha256::new();
    for_le_blocks(x, |b| {
        h.update(b);
        Ok::<(), ()>(())
    })
    .expect("hashing does not fail");
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) fn tensor_bytes(x: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(x.len() * 4);
    for v in x {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hex sha256 of a flat parameter vector (layout order, padding included, f32 little-endian):
/// the ranks of a data-parallel run print it at the end, and every rank's must be the same.
pub fn params_sha256(params: &[f32]) -> String {
    sha256_f32_hex(params)
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("metadata serialises")
}

/// The safetensors header (padded to 8 bytes) of `model` with `meta`.
fn header(model: &Model, meta: &ModelMeta, hashes: &BTreeMap<String, String>) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    let mut md = serde_json::Map::new();
    md.insert(K_VERSION.into(), meta.format_version.to_string().into());
    md.insert(K_CONFIG.into(), to_json(&meta.config).into());
    md.insert(
        K_FINGERPRINT.into(),
        meta.dataset_fingerprint.clone().into(),
    );
    if let Some(x) = &meta.split_fingerprint {
        md.insert(K_SPLIT.into(), x.clone().into());
    }
    if let Some(e) = meta.epoch {
        md.insert(K_EPOCH.into(), e.to_string().into());
    }
    if let Some(x) = &meta.metrics {
        md.insert(K_METRICS.into(), to_json(x).into());
    }
    if let Some(x) = &meta.train_config {
        md.insert(K_TRAIN.into(), to_json(x).into());
    }
    md.insert(K_SHA.into(), to_json(hashes).into());
    m.insert("__metadata__".into(), md.into());
    let mut offset = 0usize;
    for t in &model.layout.tensors {
        let n = t.len() * 4;
        m.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(m)).expect("header serialises");
    h.resize(h.len().next_multiple_of(8), b' ');
    h
}

/// Write `model` to `path` atomically (temp file, fsync, rename).
pub fn save(path: &Path, model: &Model, meta: &ModelMeta) -> Result<()> {
    if meta.config != model.config {
        return Err(Error::invalid(
            "model file: metadata config differs from the model's",
        ));
    }
    if model.params.len() != model.layout.total {
        return Err(Error::invalid(format!(
            "model has {} parameters, its layout {}",
            model.params.len(),
            model.layout.total
        )));
    }
    let mut hashes = BTreeMap::new();
    for t in &model.layout.tensors {
        hashes.insert(t.name.clone(), sha256_f32_hex(&model.params[t.range()]));
    }
    let h = header(model, meta, &hashes);
    crate::io::write_atomic(path, |w| {
        let io = |e| Error::io(path, e);
        w.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
        w.write_all(&h).map_err(io)?;
        for t in &model.layout.tensors {
            for_le_blocks(&model.params[t.range()], |b| w.write_all(b)).map_err(io)?;
        }
        Ok(())
    })
}

#[derive(Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Read a model file: every check (header, metadata, names, shapes, dtypes, offsets, file length,
/// checksums) is done before the parameters are trusted; errors say what is wrong and where.
pub fn load(path: &Path) -> Result<(Model, ModelMeta)> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let md = file.metadata().map_err(|e| Error::io(path, e))?;
    if md.is_dir() {
        return Err(Error::invalid(format!(
            "{p}: is a directory, not a model file (give the .safetensors file ncf-train wrote)"
        )));
    }
    let size = md.len();
    if size < 8 {
        return Err(Error::parse(
            p,
            format!("not a model file: {size} bytes, a safetensors file has at least 8"),
        ));
    }
    // SAFETY: read-only map of a file we do not modify; our writers replace files by rename
    // (write_atomic), never truncate them in place.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    from_bytes(&map, &p)
}

/// How many tensors the config has (what [`ModelConfig::layout`] would list).
fn tensor_count(c: &ModelConfig) -> usize {
    let gmf = if c.kind.has_gmf() { 2 } else { 0 };
    let mlp = if c.kind.has_mlp() {
        2 * c.layers.len()
    } else {
        0
    };
    gmf + mlp + 2
}

/// Parse a model file already in memory (`name` labels errors): what [`load`] does after the
/// memory map, and the entry point of the fuzzer.
pub fn from_bytes(map: &[u8], name: &str) -> Result<(Model, ModelMeta)> {
    let Header {
        end: header_end,
        entries,
        md,
    } = split_header(map, name)?;
    let (meta, hashes) = parse_metadata(&md, name)?;
    let config = meta.config.clone();
    let data_len = map.len() as u64 - header_end as u64;
    let layout = checked_layout(&entries, &config, name)?;
    let spans = tensor_spans(&entries, &layout, data_len, name)?;
    let params = read_params(&map[header_end..], &layout, &spans, &hashes, name)?;
    Ok((
        Model {
            config,
            layout,
            params,
        },
        meta,
    ))
}

/// The parse error `what` of the file labelled `name`.
fn parse_error(name: &str, what: String) -> Error {
    Error::parse(name.to_string(), what)
}

/// A safetensors file's header: where it ends, its tensor entries and its `__metadata__`.
struct Header {
    end: usize,
    entries: HashMap<String, serde_json::Value>,
    md: HashMap<String, String>,
}

/// Split a safetensors file's header into its tensor entries and its `__metadata__`.
fn split_header(map: &[u8], name: &str) -> Result<Header> {
    let bad = |what: String| parse_error(name, what);
    let len = map.len() as u64;
    if len < 8 {
        return Err(bad(format!(
            "not a model file: {len} bytes, a safetensors file has at least 8"
        )));
    }
    let n = u64::from_le_bytes(map[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER || n > len - 8 {
        return Err(bad(format!(
            "not a model file, or truncated: header length {n} but the file has {len} bytes"
        )));
    }
    let header_end = 8 + n as usize;
    let header_text = std::str::from_utf8(&map[8..header_end])
        .map_err(|_| bad("header is not UTF-8 (not a safetensors file?)".into()))?;
    let mut entries: HashMap<String, serde_json::Value> = serde_json::from_str(header_text)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let md: HashMap<String, String> = match entries.remove("__metadata__") {
        Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("__metadata__: {e}")))?,
        None => return Err(bad("no __metadata__: not an ncf model file".into())),
    };
    Ok(Header {
        end: header_end,
        entries,
        md,
    })
}

/// The [`ModelMeta`] and the tensor checksums in a file's `__metadata__`, checked.
fn parse_metadata(
    md: &HashMap<String, String>,
    name: &str,
) -> Result<(ModelMeta, BTreeMap<String, String>)> {
    let bad = |what: String| parse_error(name, what);
    let get = |k: &str| {
        md.get(k)
            .ok_or_else(|| bad(format!("__metadata__ lacks {k}: not an ncf model file")))
    };
    let version: u32 = get(K_VERSION)?
        .parse()
        .map_err(|_| bad(format!("{K_VERSION} is not a number")))?;
    if version != MODEL_FORMAT_VERSION {
        return Err(bad(format!(
            "model format version {version}, this build reads version {MODEL_FORMAT_VERSION}"
        )));
    }
    let config: ModelConfig =
        serde_json::from_str(get(K_CONFIG)?).map_err(|e| bad(format!("{K_CONFIG}: {e}")))?;
    config
        .validate()
        .map_err(|e| bad(format!("{K_CONFIG}: {e}")))?;
    // Every version-1 file carries checksums, so a file without them was not written by ncf
    // (or was edited): refused rather than trusted unverified.
    let hashes: BTreeMap<String, String> = match md.get(K_SHA) {
        Some(s) => serde_json::from_str(s).map_err(|e| bad(format!("{K_SHA}: {e}")))?,
        None => {
            return Err(bad(format!(
                "__metadata__ lacks {K_SHA} (tensor checksums): not written by ncf, refused \
                 because its tensors cannot be verified"
            )))
        }
    };
    let epoch = match md.get(K_EPOCH) {
        Some(s) => Some(
            s.parse()
                .map_err(|_| bad(format!("{K_EPOCH} is not a number")))?,
        ),
        None => None,
    };
    let metrics = match md.get(K_METRICS) {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| bad(format!("{K_METRICS}: {e}")))?),
        None => None,
    };
    let train_config = match md.get(K_TRAIN) {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| bad(format!("{K_TRAIN}: {e}")))?),
        None => None,
    };
    let meta = ModelMeta {
        format_version: version,
        config,
        dataset_fingerprint: get(K_FINGERPRINT)?.clone(),
        split_fingerprint: md.get(K_SPLIT).cloned(),
        epoch,
        metrics,
        train_config,
    };
    Ok((meta, hashes))
}

/// The config's layout, once the file's tensor count matches it and its size cannot overflow.
fn checked_layout(
    entries: &HashMap<String, serde_json::Value>,
    config: &ModelConfig,
    name: &str,
) -> Result<Layout> {
    let bad = |what: String| parse_error(name, what);
    if entries.len() != tensor_count(config) {
        return Err(bad(format!(
            "{} tensors, the model config needs {}",
            entries.len(),
            tensor_count(config)
        )));
    }
    // Only overflow is refused here; the per-tensor checks below say which tensor is wrong.
    if config
        .checked_total()
        .and_then(|f| f.checked_mul(4))
        .and_then(|b| usize::try_from(b).ok())
        .is_none()
    {
        return Err(bad(format!(
            "{K_CONFIG}: the model's size overflows (n_users {}, n_items {}, factors {}, \
             layers {:?})",
            config.n_users, config.n_items, config.factors, config.layers
        )));
    }
    let layout = config.layout();
    if entries.len() != layout.tensors.len() {
        let mut extra: Vec<_> = entries
            .keys()
            .filter(|k| layout.get(k).is_none())
            .cloned()
            .collect();
        extra.sort();
        return Err(bad(format!(
            "{} tensors, the model config needs {}{}",
            entries.len(),
            layout.tensors.len(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" (unexpected: {})", extra.join(", "))
            }
        )));
    }
    Ok(layout)
}

/// The data span of each of the layout's tensors, in layout order, once each entry's dtype,
/// shape and offsets are checked and the spans tile the `data_len` bytes of data exactly.
fn tensor_spans(
    entries: &HashMap<String, serde_json::Value>,
    layout: &Layout,
    data_len: u64,
    name: &str,
) -> Result<Vec<(u64, u64)>> {
    let bad = |what: String| parse_error(name, what);
    let mut spans = Vec::with_capacity(layout.tensors.len());
    for t in &layout.tensors {
        let v = entries
            .get(&t.name)
            .ok_or_else(|| bad(format!("tensor {} is missing", t.name)))?;
        let e: TensorEntry = serde_json::from_value(v.clone())
            .map_err(|err| bad(format!("tensor {}: {err}", t.name)))?;
        if e.dtype != "F32" {
            return Err(bad(format!(
                "tensor {}: dtype {}, expected F32",
                t.name, e.dtype
            )));
        }
        if e.shape != t.shape {
            return Err(bad(format!(
                "tensor {}: shape {:?}, the config needs {:?}",
                t.name, e.shape, t.shape
            )));
        }
        let (s, end) = e.data_offsets;
        if end < s || end - s != t.len() as u64 * 4 {
            return Err(bad(format!(
                "tensor {}: data offsets [{s}, {end}] do not hold {} floats",
                t.name,
                t.len()
            )));
        }
        if end > data_len {
            return Err(bad(format!(
                "truncated: tensor {} ends at byte {end} of the data, which has {data_len} bytes",
                t.name
            )));
        }
        spans.push((s, end));
    }
    // The tensors must tile the data exactly (no overlap, no gap, no trailing bytes).
    let mut sorted = spans.clone();
    sorted.sort_unstable();
    let mut at = 0;
    for &(s, e) in &sorted {
        if s != at {
            return Err(bad(format!(
                "tensor data overlaps or has a gap at byte {at}"
            )));
        }
        at = e;
    }
    if at != data_len {
        return Err(bad(format!(
            "{} bytes after the last tensor (expected none)",
            data_len - at
        )));
    }
    Ok(spans)
}

/// The parameters in `data` (the bytes after the header), each tensor checked against its
/// checksum before it is copied.
fn read_params(
    data: &[u8],
    layout: &Layout,
    spans: &[(u64, u64)],
    hashes: &BTreeMap<String, String>,
    name: &str,
) -> Result<Vec<f32>> {
    let bad = |what: String| parse_error(name, what);
    let mut params = vec![0f32; layout.total];
    for (t, &(s, e)) in layout.tensors.iter().zip(spans) {
        let bytes = &data[s as usize..e as usize];
        let want = hashes
            .get(&t.name)
            .ok_or_else(|| bad(format!("{K_SHA} lacks tensor {}", t.name)))?;
        if &sha256_hex(bytes) != want {
            return Err(bad(format!(
                "tensor {}: checksum mismatch (the file is corrupt)",
                t.name
            )));
        }
        for (dst, src) in params[t.range()].iter_mut().zip(bytes.chunks_exact(4)) {
            *dst = f32::from_le_bytes(src.try_into().expect("4 bytes"));
        }
    }
    Ok(params)
}

/// Refuse a model trained on another dataset. A dataset that differs only in its test negatives
/// (same train and test pairs: [`Dataset::split_fingerprint`]) is accepted when the model records
/// its split fingerprint.
pub fn check_dataset(meta: &ModelMeta, data: &Dataset) -> Result<()> {
    let fingerprint = data
        .meta
        .as_ref()
        .map(|m| m.fingerprint.as_str())
        .unwrap_or("");
    if fingerprint != meta.dataset_fingerprint {
        if let Some(split) = &meta.split_fingerprint {
            if *split == data.split_fingerprint() {
                return check_sizes(meta, data.n_users, data.n_items);
            }
        }
    }
    check_fingerprint(meta, fingerprint, data.n_users, data.n_items)
}

/// Refuse a model whose dataset fingerprint or sizes differ from these.
pub fn check_fingerprint(
    meta: &ModelMeta,
    fingerprint: &str,
    n_users: u32,
    n_items: u32,
) -> Result<()> {
    if meta.dataset_fingerprint != fingerprint {
        let also = if meta.split_fingerprint.is_some() {
            ", and its train/test split differs too"
        } else {
            ""
        };
        return Err(Error::invalid(format!(
            "the model was trained on another dataset (fingerprint {}…, this dataset {}…{also})",
            short(&meta.dataset_fingerprint),
            short(fingerprint)
        )));
    }
    check_sizes(meta, n_users, n_items)
}

fn check_sizes(meta: &ModelMeta, n_users: u32, n_items: u32) -> Result<()> {
    if meta.config.n_users != n_users || meta.config.n_items != n_items {
        return Err(Error::invalid(format!(
            "the model has {} users and {} items, the dataset {} and {}",
            meta.config.n_users, meta.config.n_items, n_users, n_items
        )));
    }
    Ok(())
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    fn small(kind: ModelKind) -> Model {
        let c = ModelConfig {
            kind,
            n_users: 5,
            n_items: 7,
            factors: 3,
            layers: vec![4, 6, 2],
            dropout: 0.1,
        };
        Model::init(c, 3).unwrap()
    }

    fn meta(m: &Model) -> ModelMeta {
        let mut meta = ModelMeta::new(m.config.clone(), "abc123");
        meta.epoch = Some(2);
        meta.metrics = Some(Metrics {
            hr: 0.5,
            ndcg: 0.25,
            k: 10,
            users: 5,
            candidates: 101,
            protocol: "sampled".into(),
        });
        meta.train_config = Some(serde_json::json!({"lr": 0.001}));
        meta
    }

    #[test]
    fn round_trip_every_kind() {
        let d = tempfile::tempdir().unwrap();
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let m = small(kind);
            let p = d.path().join("m.safetensors");
            save(&p, &m, &meta(&m)).unwrap();
            let (back, bm) = load(&p).unwrap();
            assert_eq!(back.params, m.params);
            assert_eq!(back.config, m.config);
            assert_eq!(bm, meta(&m));
        }
    }

    #[test]
    fn readable_by_the_safetensors_crate() {
        let d = tempfile::tempdir().unwrap();
        let m = small(ModelKind::Neumf);
        let p = d.path().join("m.safetensors");
        save(&p, &m, &meta(&m)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), m.layout.tensors.len());
        let t = st.tensor("mlp.0.weight").unwrap();
        assert_eq!(t.shape(), &[6, 4]);
        assert_eq!(t.data(), &tensor_bytes(m.tensor("mlp.0.weight"))[..]);
        assert_eq!(st.tensor("final.weight").unwrap().shape(), &[1, 5]);
    }

    #[test]
    fn only_an_ncf_model_is_recognised_as_one() {
        let d = tempfile::tempdir().unwrap();
        let m = small(ModelKind::Gmf);
        let p = d.path().join("m.safetensors");
        save(&p, &m, &meta(&m)).unwrap();
        assert_eq!(written_by_ncf(&p), Ok(()));
        for bytes in [
            &b"thesis"[..],
            b"",
            b"\x02\0\0\0\0\0\0\0{}",
            b"\x0e\0\0\0\0\0\0\0{\"a\":{\"b\":1}}",
        ] {
            std::fs::write(&p, bytes).unwrap();
            assert!(written_by_ncf(&p).unwrap_err().contains("not an ncf model"));
        }
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "is a directory, not a model file (give the .safetensors file ncf-train wrote)"
            ),
            "{e}"
        );
    }

    fn load_err(bytes: &[u8]) -> String {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bad.safetensors");
        std::fs::write(&p, bytes).unwrap();
        load(&p).unwrap_err().to_string()
    }

    #[test]
    fn corrupt_files_are_refused_with_reasons() {
        let d = tempfile::tempdir().unwrap();
        let m = small(ModelKind::Neumf);
        let p = d.path().join("m.safetensors");
        save(&p, &m, &meta(&m)).unwrap();
        let good = std::fs::read(&p).unwrap();

        assert!(load_err(&good[..5]).contains("at least 8"));
        assert!(
            load_err(&good[..good.len() - 4]).contains("truncated"),
            "{}",
            load_err(&good[..good.len() - 4])
        );
        assert!(load_err(&good[..100]).contains("truncated"));
        let mut extra = good.clone();
        extra.extend_from_slice(&[0; 4]);
        assert!(load_err(&extra).contains("after the last tensor"));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(load_err(&flipped).contains("checksum"));
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(load_err(&huge).contains("header length"));
        assert!(load_err(b"\x04\0\0\0\0\0\0\0{}  ").contains("__metadata__"));
        let junk: Vec<u8> = (0..64u8).collect();
        assert!(!load_err(&junk).is_empty());
    }

    #[test]
    fn shapes_and_names_are_checked_against_the_config() {
        let d = tempfile::tempdir().unwrap();
        let m = small(ModelKind::Neumf);
        let p = d.path().join("m.safetensors");
        save(&p, &m, &meta(&m)).unwrap();
        let good = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
        // claim 6 users in the config: every user tensor has the wrong shape
        let wrong = header.replace("\\\"n_users\\\":5", "\\\"n_users\\\":6");
        assert_ne!(wrong, header);
        let mut bytes = (wrong.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(wrong.as_bytes());
        bytes.extend_from_slice(&good[8 + n..]);
        assert!(load_err(&bytes).contains("shape"), "{}", load_err(&bytes));
        // rename a tensor
        let renamed = header.replace("\"final.bias\"", "\"final.bias2\"");
        let mut bytes = (renamed.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(renamed.as_bytes());
        bytes.extend_from_slice(&good[8 + n..]);
        assert!(
            load_err(&bytes).contains("final.bias"),
            "{}",
            load_err(&bytes)
        );
    }

    #[test]
    fn another_dataset_is_refused() {
        let m = small(ModelKind::Neumf);
        let mt = meta(&m);
        let err = check_fingerprint(&mt, "", 5, 7).unwrap_err().to_string();
        assert!(err.contains("another dataset"), "{err}");
        assert!(check_fingerprint(&mt, "abc124", 5, 7).is_err());
        check_fingerprint(&mt, "abc123", 5, 7).unwrap();
        assert!(check_fingerprint(&mt, "abc123", 5, 8).is_err());
        let data = Dataset {
            n_users: 5,
            n_items: 7,
            ..Default::default()
        };
        assert!(check_dataset(&mt, &data).is_err());
    }
}
