//! Every reader fed truncated, bit-flipped and wrong-schema files, and datasets with a file not
//! in SHA256SUMS or an empty one, through the real binaries: each case exits 1 with a message
//! naming the problem, and never panics (docs/RELIABILITY.md). The files are made in a temp dir
//! from a slice of data/ml-latest-small (or from the shared prepared ml-latest-small).

mod common;

use common::TINY_EPOCH as TRAIN;
use common::{fails, ok, prepared, repo_root, run, s, scratch, scratch as env, train, train_args};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The first ratings of ml-latest-small (header + 3000 rows).
    csv: PathBuf,
    /// A dataset with 20 test negatives per user, and a model trained on it.
    data: PathBuf,
    model: PathBuf,
    /// The dataset as an Arrow IPC stream file (`ncf-prep -o -`).
    ipc: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let full =
            std::fs::read_to_string(repo_root().join("data/ml-latest-small/ratings.csv")).unwrap();
        let slice: String = full.split_inclusive('\n').take(3001).collect();
        let csv = root.join("ratings.csv");
        std::fs::write(&csv, slice).unwrap();
        let data = root.join("ds");
        ok(
            &root,
            "ncf-prep",
            &[s(&csv), "-o", s(&data), "--min-interactions", "5"],
        );
        ok(
            &root,
            "ncf-negsample",
            &[s(&data), "--test-negatives", "20", "--seed", "1"],
        );
        let model = root.join("m.safetensors");
        ok(
            &root,
            "ncf-train",
            &[
                s(&data),
                "-o",
                s(&model),
                "--preset",
                "ml1m",
                "--epochs",
                "1",
                "--batch-size",
                "4096",
                "--factors",
                "4",
                "--layers",
                "8,4",
                "--threads",
                "2",
                "--quiet",
            ],
        );
        let out = run(
            &root,
            "ncf-prep",
            &[s(&csv), "-o", "-", "--min-interactions", "5"],
        );
        assert!(out.status.success());
        let ipc = root.join("ds.arrows");
        std::fs::write(&ipc, &out.stdout).unwrap();
        Fixture {
            _dir: dir,
            root,
            csv,
            data,
            model,
            ipc,
        }
    })
}

/// A fresh copy of the fixture dataset in `dir`.
fn copy_dataset(dir: &Path) -> PathBuf {
    let to = dir.join("ds");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(&fixture().data).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

fn truncate(p: &Path, keep: usize) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..keep.min(b.len())]).unwrap();
}

fn flip(p: &Path, at: usize, mask: u8) {
    let mut b = std::fs::read(p).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= mask;
    std::fs::write(p, b).unwrap();
}

/// Each reader of a dataset directory fails on `ds` with a message containing `want`.
fn every_dataset_reader_fails(dir: &Path, ds: &Path, want: &str) {
    let f = fixture();
    let m = dir.join("out.safetensors");
    let cases: [(&str, Vec<&str>); 4] = [
        ("ncf-negsample", vec![s(ds), "--epoch", "0", "-o", "-"]),
        (
            "ncf-train",
            vec![
                s(ds),
                "-o",
                s(&m),
                "--preset",
                "ml1m",
                "--epochs",
                "1",
                "--quiet",
            ],
        ),
        ("ncf-eval", vec![s(ds), s(&f.model)]),
        ("ncf-topk", vec![s(ds), s(&f.model), "1"]),
    ];
    for (tool, args) in cases {
        let e = fails(dir, tool, &args);
        assert!(e.starts_with(&format!("{tool}: ")), "{tool}: {e}");
        assert!(e.contains(want), "{tool}: expected `{want}` in: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{tool}: one line: {e}");
    }
    assert!(!m.exists(), "a model was written from a corrupt dataset");
}

/// Every dataset reader on `ds` exits 0 or 1 and never panics.
fn no_panic(dir: &Path, ds: &Path) {
    for (tool, args) in [
        ("ncf-negsample", vec![s(ds), "--epoch", "0", "-o", "-"]),
        ("ncf-eval", vec![s(ds), s(&fixture().model)]),
    ] {
        let out = run(dir, tool, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{tool}: {err}");
        assert!(!err.contains("panicked"), "{tool}: {err}");
    }
}

#[test]
fn truncated_parquet_tables() {
    for (table, keep) in [
        ("train.parquet", 0),
        ("train.parquet", 3),
        ("train.parquet", 200),
        ("test.parquet", 100),
        ("items.parquet", 50),
        ("test_negatives.parquet", 300),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        truncate(&ds.join(table), keep);
        every_dataset_reader_fails(dir.path(), &ds, table);
    }
}

#[test]
fn bit_flipped_parquet_tables() {
    // Flips in the footer (schema, offsets), the page headers and the data pages.
    for (table, from_end, mask) in [
        ("train.parquet", 9, 0x01), // footer length
        ("train.parquet", 40, 0x10),
        ("train.parquet", 300, 0x04),
        ("users.parquet", 60, 0x80),
        ("test_negatives.parquet", 120, 0x02),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        let p = ds.join(table);
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        flip(&p, len - from_end, mask);
        // A flip the decoder accepts changes the content: the fingerprint catches it.
        let e = fails(dir.path(), "ncf-eval", &[s(&ds), s(&fixture().model)]);
        assert!(
            e.contains(table) || e.contains("fingerprint") || e.contains(s(&ds)),
            "{table} -{from_end}: {e}"
        );
        every_dataset_reader_fails(dir.path(), &ds, "checksum mismatch with SHA256SUMS");
        // Without SHA256SUMS the decoder sees the flip: an error, or (a flip in statistics or
        // padding) the same content, never a panic.
        std::fs::remove_file(ds.join("SHA256SUMS")).unwrap();
        no_panic(dir.path(), &ds);
    }
    // A flip in the first data page (after the 4-byte magic).
    for at in [4usize, 12, 30] {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        flip(&ds.join("train.parquet"), at, 0x20);
        every_dataset_reader_fails(dir.path(), &ds, "ds");
        std::fs::remove_file(ds.join("SHA256SUMS")).unwrap();
        no_panic(dir.path(), &ds);
    }
}

/// An edit of meta.json's text.
type MetaEdit = Box<dyn Fn(&str) -> String>;

/// SHA256SUMS catches any edited file first; without it (datasets written before it existed)
/// the schema and meta.json checks give `want`.
fn sums_then_schema(dir: &Path, ds: &Path, want: &str) {
    every_dataset_reader_fails(dir, ds, "checksum mismatch with SHA256SUMS");
    std::fs::remove_file(ds.join("SHA256SUMS")).unwrap();
    every_dataset_reader_fails(dir, ds, want);
}

#[test]
fn wrong_schema_tables_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    // test.parquet holding the users table: names and types are checked.
    let ds = copy_dataset(dir.path());
    std::fs::copy(ds.join("users.parquet"), ds.join("test.parquet")).unwrap();
    sums_then_schema(dir.path(), &ds, "holds table `users`, expected `test`");
    // train.parquet holding the test table: same columns, other rows: meta.json counts.
    let dir = tempfile::tempdir().unwrap();
    let ds = copy_dataset(dir.path());
    std::fs::copy(ds.join("test.parquet"), ds.join("train.parquet")).unwrap();
    sums_then_schema(dir.path(), &ds, "holds table `test`, expected `train`");
    // A missing table.
    let dir = tempfile::tempdir().unwrap();
    let ds = copy_dataset(dir.path());
    std::fs::remove_file(ds.join("items.parquet")).unwrap();
    every_dataset_reader_fails(dir.path(), &ds, "items.parquet");

    let meta_cases: [(&str, MetaEdit); 5] = [
        (
            "n_train = ",
            Box::new(|m| m.replace("\"n_train\": ", "\"n_train\": 1")),
        ),
        ("not valid JSON", Box::new(|m| m[..m.len() / 2].to_string())),
        (
            "format_version 7",
            Box::new(|m| m.replace("\"format_version\": 1", "\"format_version\": 7")),
        ),
        (
            "does not match the format",
            Box::new(|m| m.replace("\"n_users\": ", "\"n_users\": -")),
        ),
        (
            "fingerprint",
            Box::new(|m| {
                let k = m.find("\"fingerprint\": \"").unwrap() + 16;
                let mut b = m.as_bytes().to_vec();
                b[k] = if b[k] == b'a' { b'b' } else { b'a' };
                String::from_utf8(b).unwrap()
            }),
        ),
    ];
    for (want, edit) in meta_cases {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        let mp = ds.join("meta.json");
        let meta = std::fs::read_to_string(&mp).unwrap();
        std::fs::write(&mp, edit(&meta)).unwrap();
        sums_then_schema(dir.path(), &ds, want);
    }
    // meta.json that is not text at all
    let dir = tempfile::tempdir().unwrap();
    let ds = copy_dataset(dir.path());
    std::fs::write(ds.join("meta.json"), [0xff, 0xfe, 0, 1, 2]).unwrap();
    sums_then_schema(dir.path(), &ds, "meta.json");
}

#[test]
fn truncated_and_flipped_ipc_streams() {
    let f = fixture();
    let bytes = std::fs::read(&f.ipc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ds.arrows");
    let m = dir.path().join("m.safetensors");
    let mut cases: Vec<Vec<u8>> = [0, 7, 100, bytes.len() / 2, bytes.len() - 8]
        .iter()
        .map(|&n| bytes[..n].to_vec())
        .collect();
    for at in [20, 300, bytes.len() / 3, bytes.len() - 100] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        cases.push(b);
    }
    for (k, b) in cases.iter().enumerate() {
        std::fs::write(&p, b).unwrap();
        for (tool, args) in [
            (
                "ncf-negsample",
                vec![s(&p), "--test-negatives", "5", "-o", "-"],
            ),
            (
                "ncf-train",
                vec![s(&p), "-o", s(&m), "--epochs", "1", "--quiet"],
            ),
        ] {
            let out = run(dir.path(), tool, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "case {k} {tool}: {err}");
            // Some flips land in padding or a value the stream still holds: then the
            // fingerprint in the metadata must catch the change, or the tool succeeds on
            // identical content.
            if !out.status.success() {
                assert_eq!(out.status.code(), Some(1), "case {k} {tool}: {err}");
                assert!(err.starts_with(&format!("{tool}: ")), "case {k}: {err}");
            }
        }
    }
    // Truncations always fail, except of the 8-byte end-of-stream marker alone (no data lost;
    // a cut at any message boundary before it changes the row counts meta.json holds).
    for n in [0, 7, 100, bytes.len() / 2, bytes.len() - 9] {
        std::fs::write(&p, &bytes[..n]).unwrap();
        let e = fails(
            dir.path(),
            "ncf-negsample",
            &[s(&p), "--test-negatives", "5", "-o", "-"],
        );
        assert!(e.contains("ds.arrows"), "{e}");
    }
    assert!(!m.exists());
}

/// Each model reader fails on `model` with a message containing `want`.
fn every_model_reader_fails(dir: &Path, model: &Path, want: &str) {
    let data = &fixture().data;
    for (tool, args) in [
        ("ncf-eval", vec![s(data), s(model)]),
        ("ncf-topk", vec![s(data), s(model), "1"]),
    ] {
        let e = fails(dir, tool, &args);
        assert!(e.contains(want), "{tool}: expected `{want}` in: {e}");
        assert!(
            e.contains(s(model)),
            "{tool}: the message names the file: {e}"
        );
    }
}

fn header_of(bytes: &[u8]) -> (usize, String) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (n, String::from_utf8(bytes[8..8 + n].to_vec()).unwrap())
}

fn with_header(bytes: &[u8], header: &str) -> Vec<u8> {
    let (n, _) = header_of(bytes);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn truncated_flipped_and_wrong_schema_models() {
    let f = fixture();
    let good = std::fs::read(&f.model).unwrap();
    let (n, header) = header_of(&good);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.safetensors");
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "at least 8"),
        (good[..5].to_vec(), "at least 8"),
        (good[..8 + n / 2].to_vec(), "truncated"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        (good[..8 + n + 10].to_vec(), "truncated"),
    ];
    let mut b = good.clone();
    b[good.len() - 3] ^= 0x01;
    cases.push((b, "checksum mismatch"));
    let mut b = good.clone();
    b[8 + n + 1] ^= 0x80;
    cases.push((b, "checksum mismatch"));
    let mut b = good.clone();
    b[7] ^= 0x10; // header length
    cases.push((b, "header length"));
    let mut b = good.clone();
    b[8] ^= 0x40; // `{` -> `;`
    cases.push((b, "not valid JSON"));
    let mut extra = good.clone();
    extra.extend_from_slice(&[0; 8]);
    cases.push((extra, "after the last tensor"));
    // Wrong schema: a dtype, a shape, a name, missing metadata, another model config.
    let f16 = header.replacen("\"F32\"", "\"F16\"", 1);
    cases.push((with_header(&good, &f16), "expected F32"));
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    v["final.bias"]["shape"] = serde_json::json!([2]);
    let shape = serde_json::to_string(&v).unwrap();
    cases.push((with_header(&good, &shape), "shape [2]"));
    let name = header.replace("\"final.bias\"", "\"final.bias_\"");
    cases.push((with_header(&good, &name), "final.bias"));
    let nometa = header.replace("\"__metadata__\"", "\"__metadata_x\"");
    cases.push((with_header(&good, &nometa), "__metadata__"));
    let nosum = header.replace("\"ncf_sha256\"", "\"ncf_sha256_\"");
    cases.push((with_header(&good, &nosum), "checksums"));
    let with_config = |key: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
        let md = &mut v["__metadata__"]["ncf_model_config"];
        let mut cfg: serde_json::Value = serde_json::from_str(md.as_str().unwrap()).unwrap();
        cfg[key] = value;
        *md = serde_json::Value::String(cfg.to_string());
        with_header(&good, &serde_json::to_string(&v).unwrap())
    };
    cases.push((with_config("n_users", 4_000_000_000u32.into()), "shape"));
    cases.push((with_config("factors", u64::MAX.into()), "overflows"));
    cases.push((
        with_config("layers", serde_json::json!([8, 0])),
        "none zero",
    ));
    // Not a model at all: the dataset's Parquet, a CSV.
    cases.push((
        std::fs::read(f.data.join("train.parquet")).unwrap(),
        "not a model file",
    ));
    cases.push((std::fs::read(&f.csv).unwrap(), "not a model file"));
    for (bytes, want) in cases {
        std::fs::write(&p, &bytes).unwrap();
        every_model_reader_fails(dir.path(), &p, want);
    }
}

#[test]
fn corrupt_raw_ratings_files() {
    let f = fixture();
    let text = std::fs::read_to_string(&f.csv).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines: Vec<&str> = text.lines().collect();
    let dat: String = lines[1..]
        .iter()
        .map(|l| l.replace(',', "::") + "\n")
        .collect();
    let tsv: String = lines[1..]
        .iter()
        .map(|l| l.replace(',', "\t") + "\n")
        .collect();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // truncated inside a line
        (
            "ratings.csv",
            text.as_bytes()[..text.len() / 2 - 5].to_vec(),
            "ratings.csv:",
        ),
        (
            "ratings.csv",
            text.as_bytes()[..40].to_vec(),
            "ratings.csv:2",
        ),
        (
            "ratings.dat",
            dat.as_bytes()[..dat.len() - 12].to_vec(),
            "ratings.dat:3000",
        ),
        ("u.data", tsv.as_bytes()[..24].to_vec(), "u.data:2"),
        ("ratings.csv", vec![], "empty input"),
        ("ratings.csv", b"\n\n  \n".to_vec(), "empty input"),
        (
            "ratings.csv",
            text.lines().next().unwrap().as_bytes().to_vec(),
            "no rating rows",
        ),
        // wrong schema
        (
            "ratings.csv",
            b"a,b,c\n1,2,3\n".to_vec(),
            "has no user column",
        ),
        (
            "ratings.dat",
            b"1::2::3::4::5\n1::2\n".to_vec(),
            "expected 5 fields",
        ),
        (
            "u.data",
            b"1\t2\t3\t4\nx\t2\t3\t4\n".to_vec(),
            "expected an integer user id",
        ),
        (
            "ratings.csv",
            b"userId,movieId,rating,timestamp\n1,2,3,yesterday\n".to_vec(),
            "timestamp",
        ),
        // binary junk
        (
            "ratings.csv",
            (0..=255u8).cycle().take(5000).collect(),
            "ratings.csv",
        ),
        ("ratings.csv", b"PAR1\0\0\0\0".to_vec(), "Parquet"),
        (
            "ratings.zip",
            b"PK\x03\x04 not really a zip".to_vec(),
            "not a readable zip",
        ),
    ];
    // bit flips in ids and timestamps
    for (at, want) in [(33, "user id"), (35, "item id"), (50, "timestamp")] {
        let mut b = text.as_bytes().to_vec();
        b[at] ^= 0x40;
        cases.push(("ratings.csv", b, want));
    }
    for (name, bytes, want) in &cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = d.join("out");
        let e = fails(d, "ncf-prep", &[s(&p), "-o", s(&out)]);
        assert!(e.contains(want), "{name}: expected `{want}` in: {e}");
        assert!(!out.exists(), "{name}: output written from a corrupt input");
    }
    // A truncated zip archive of the real files.
    let zip_src =
        std::fs::read(common::shared_datasets().join("ml-latest-small/ml-latest-small.zip"));
    if let Ok(z) = zip_src {
        for keep in [100, z.len() / 2, z.len() - 30] {
            let p = d.join("ml.zip");
            std::fs::write(&p, &z[..keep]).unwrap();
            let e = fails(d, "ncf-prep", &[s(&p), "-o", s(&d.join("out"))]);
            assert!(e.contains("ml.zip"), "{e}");
        }
    }
    // Parquet input with the wrong columns, and truncated.
    let users = f.data.join("users.parquet");
    let e = fails(d, "ncf-prep", &[s(&users), "-o", s(&d.join("out"))]);
    assert!(e.contains("no item column"), "{e}");
    let p = d.join("train.parquet");
    std::fs::copy(f.data.join("train.parquet"), &p).unwrap();
    truncate(&p, 100);
    let e = fails(d, "ncf-prep", &[s(&p), "-o", s(&d.join("out"))]);
    assert!(e.contains("not a readable Parquet file"), "{e}");
}

#[test]
fn corrupt_ncf_authors_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A small split in the authors' format: 3 users, 4 items, 2 negatives each.
    let train = "0\t1\t5\t0\n0\t2\t4\t0\n1\t0\t3\t0\n2\t3\t5\t0\n2\t1\t1\t0\n";
    let test = "0\t3\t5\t0\n1\t2\t4\t0\n2\t0\t3\t0\n";
    let neg = "(0,3)\t0\t2\n(1,2)\t1\t3\n(2,0)\t2\t3\n";
    let write = |tr: &str, te: &str, ne: &str| {
        std::fs::write(d.join("x.train.rating"), tr).unwrap();
        std::fs::write(d.join("x.test.rating"), te).unwrap();
        std::fs::write(d.join("x.test.negative"), ne).unwrap();
    };
    write(train, test, neg);
    ok(
        d,
        "ncf-prep",
        &[s(&d.join("x.train.rating")), "-o", s(&d.join("good"))],
    );
    let cases = [
        (
            train,
            test,
            &neg[..neg.len() - 3],
            "negatives, earlier lines have 2",
        ),
        (train, &test[..test.len() - 9], neg, "user 2 has no row"),
        (&train[..2], test, neg, "x.train.rating:1"),
        (train, test, "(0,3\t0\t2\n", "expected `(user,item)`"),
        (
            train,
            test,
            "(0,1)\t0\t2\n(1,2)\t1\t3\n(2,0)\t2\t3\n",
            "test item of user 0 is 3",
        ),
        (
            train,
            test,
            "(0,3)\t0\t2\n(1,2)\t1\t3\n",
            "no negatives line for test user 2",
        ),
        (
            train,
            "0\t3\t5\t0\n0\t2\t4\t0\n",
            neg,
            "more than one test row",
        ),
        (
            "0\t1\t5\t0\n4000000000\t2\t5\t0\n",
            test,
            neg,
            "not the authors' dense ids",
        ),
        (
            train,
            test,
            "(0,3)\t0\t4000000000\n(1,2)\t1\t3\n(2,0)\t2\t3\n",
            "not the authors' dense ids",
        ),
        (
            train,
            test,
            "(0,3)\t0\tq\n(1,2)\t1\t3\n(2,0)\t2\t3\n",
            "integer negative",
        ),
    ];
    for (k, (tr, te, ne, want)) in cases.iter().enumerate() {
        write(tr, te, ne);
        let out = d.join(format!("out{k}"));
        let e = fails(
            d,
            "ncf-prep",
            &[s(&d.join("x.train.rating")), "-o", s(&out)],
        );
        assert!(e.contains(want), "case {k}: expected `{want}` in: {e}");
        assert!(!out.exists());
    }
}

#[test]
fn a_dataset_larger_than_memory_fails_early_with_the_size() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for tool_args in [
        vec!["ncf-eval", s(&f.data), s(&f.model)],
        vec!["ncf-negsample", s(&f.data), "--epoch", "0", "-o", "-"],
        vec!["ncf-prep", s(&f.csv), "-o", "out"],
    ] {
        let out = std::process::Command::new(common::bin(tool_args[0]))
            .args(&tool_args[1..])
            .current_dir(dir.path())
            .env("NCF_MEMORY_LIMIT", "20K")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{tool_args:?}: {err}");
        assert!(err.contains("needs about"), "{err}");
        assert!(
            err.contains("only 20.0 KiB is available (NCF_MEMORY_LIMIT=20K)"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.path().join("out").exists());
}

/// Unmounts the tmpfs when the test ends, failed or not.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk: a tiny tmpfs (needs root; skipped otherwise). The old dataset survives
/// and the message says the disk is full.
#[test]
fn disk_full_keeps_the_previous_dataset() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs", s(&mnt)])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("SKIPPED disk_full_keeps_the_previous_dataset: cannot mount a tmpfs (not root)");
        return;
    }
    let _guard = Mount(mnt.clone());
    let small = dir.path().join("small.csv");
    let text = std::fs::read_to_string(&f.csv).unwrap();
    let head: String = text.split_inclusive('\n').take(300).collect();
    std::fs::write(&small, head).unwrap();
    let ds = mnt.join("ds");
    ok(
        &f.root,
        "ncf-prep",
        &[s(&small), "-o", s(&ds), "--min-interactions", "5"],
    );
    let before = std::fs::read(ds.join("meta.json")).unwrap();
    let full = repo_root().join("data/ml-latest-small/ratings.csv");
    let e = fails(&f.root, "ncf-prep", &[s(&full), "-o", s(&ds), "--force"]);
    assert!(e.contains("no space left on device"), "{e}");
    assert!(e.contains("previous version is left intact"), "{e}");
    assert_eq!(std::fs::read(ds.join("meta.json")).unwrap(), before);
    ok(
        &f.root,
        "ncf-negsample",
        &[s(&ds), "--epoch", "0", "-o", "-"],
    );
    // nothing left behind but the old dataset
    let names: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ds")]);
}

/// Case 10: a file not listed in SHA256SUMS inside a dataset was accepted, contrary to
/// docs/RELIABILITY.md. Now every reader refuses it, naming the file.
#[test]
fn case10_a_file_not_in_sha256sums_is_refused() {
    let e = env();
    train(&e, &e.root.join("m.st"), &[]);
    fs::write(e.ds.join("extra.parquet"), b"not ours").unwrap();
    let ds = s(&e.ds);
    let want = "ds/extra.parquet: not listed in SHA256SUMS";
    let mut a = vec![ds, "-o", "n.st", "--no-checkpoint"];
    a.extend_from_slice(TRAIN);
    for (tool, args) in [
        ("ncf-eval", vec![ds, "m.st"]),
        ("ncf-topk", vec![ds, "m.st", "1"]),
        ("ncf-train", a),
        ("ncf-negsample", vec![ds, "--epoch", "0", "-o", "e.tsv"]),
    ] {
        let err = fails(&e.root, tool, &args);
        assert!(err.contains(want), "{tool}: {err}");
    }
    fs::remove_file(e.ds.join("extra.parquet")).unwrap();
    ok(&e.root, "ncf-eval", &[ds, "m.st"]);
}

/// D28 O15: an empty SHA256SUMS was reported as the first table "not listed", with the advice to
/// move the real tables out of the dataset.
#[test]
fn d28_o15_an_empty_sha256sums_is_named() {
    let sc = scratch();
    fs::write(sc.ds.join("SHA256SUMS"), "").unwrap();
    ok(
        &sc.root,
        "ncf-train",
        &train_args(prepared(), "m.st", "1", &["--no-checkpoint"]),
    );
    let e = fails(&sc.root, "ncf-eval", &["ds", "m.st"]);
    assert!(e.contains("ds/SHA256SUMS: is empty"), "{e}");
    assert!(!e.contains("move it out"), "{e}");
}

/// The column files (train.cols, test_negatives.cols) truncated, bit-flipped or left from
/// another dataset: every reader refuses them, naming the file, what is wrong and the way out;
/// without them the tools read the Parquet tables (docs/RELIABILITY.md).
#[test]
fn truncated_altered_and_stale_column_files() {
    let len = |p: &Path| std::fs::metadata(p).unwrap().len() as usize;
    let train_len = len(&fixture().data.join("train.cols"));
    let neg_len = len(&fixture().data.join("test_negatives.cols"));
    // Cut at 0 bytes, inside the header, and one byte short of the end.
    for (file, keep, want) in [
        (
            "train.cols",
            0,
            "train.cols: truncated column file (0 bytes",
        ),
        (
            "train.cols",
            100,
            "train.cols: truncated column file (100 bytes",
        ),
        (
            "train.cols",
            train_len - 1,
            "train.cols: truncated column file",
        ),
        (
            "test_negatives.cols",
            neg_len - 4,
            "test_negatives.cols: truncated",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        truncate(&ds.join(file), keep);
        every_dataset_reader_fails(dir.path(), &ds, want);
        let e = fails(dir.path(), "ncf-eval", &[s(&ds), s(&fixture().model)]);
        assert!(e.contains(&format!("delete {file}")), "the way out: {e}");
    }
    // A flip in the magic bytes, the header, the train items and the negatives.
    for (file, at, want) in [
        ("train.cols", 0, "train.cols: not an ncf column file"),
        (
            "train.cols",
            40,
            "train.cols: its header does not match its checksum",
        ),
        (
            "train.cols",
            4096 + 9,
            "train.cols: section train_items (bytes 4096..",
        ),
        (
            "test_negatives.cols",
            4096 + 33,
            "section test_negatives (bytes 4096..",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_dataset(dir.path());
        flip(&ds.join(file), at, 0x04);
        every_dataset_reader_fails(dir.path(), &ds, want);
        // Deleted, the Parquet tables are read instead: the same evaluation.
        std::fs::remove_file(ds.join(file)).unwrap();
        let fresh = run(
            dir.path(),
            "ncf-eval",
            &[s(&fixture().data), s(&fixture().model)],
        );
        let again = ok(dir.path(), "ncf-eval", &[s(&ds), s(&fixture().model)]);
        assert_eq!(again, String::from_utf8(fresh.stdout).unwrap(), "{file}");
    }
    // A train.cols from another dataset (other counts), and a test_negatives.cols of other
    // negatives for the same split.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    let csv = dir.path().join("fewer.csv");
    let text = std::fs::read_to_string(&fixture().csv).unwrap();
    let fewer: String = text.split_inclusive('\n').take(2001).collect();
    std::fs::write(&csv, fewer).unwrap();
    let args = [s(&csv), "-o", s(&other), "--min-interactions", "5"];
    ok(dir.path(), "ncf-prep", &args);
    let ds = copy_dataset(dir.path());
    std::fs::copy(other.join("train.cols"), ds.join("train.cols")).unwrap();
    every_dataset_reader_fails(dir.path(), &ds, "train.cols: made for another dataset");
    let dir = tempfile::tempdir().unwrap();
    let ds = copy_dataset(dir.path());
    let redrawn = dir.path().join("redrawn");
    ok(
        dir.path(),
        "ncf-negsample",
        &[
            s(&ds),
            "--test-negatives",
            "20",
            "--seed",
            "2",
            "--force",
            "-o",
            s(&redrawn),
        ],
    );
    std::fs::copy(
        redrawn.join("test_negatives.cols"),
        ds.join("test_negatives.cols"),
    )
    .unwrap();
    every_dataset_reader_fails(dir.path(), &ds, "test_negatives.cols: made from another");
}
