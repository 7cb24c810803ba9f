//! Round trips, corrupt files, fuzz regressions and fingerprints.

use super::*;

pub(crate) fn tiny() -> Dataset {
    Dataset {
        meta: None,
        n_users: 3,
        n_items: 4,
        train_users: vec![0, 0, 1, 2, 2].into(),
        train_items: vec![1, 2, 0, 3, 1].into(),
        train_timestamps: Some(vec![1, 2, 3, 4, 5]),
        test_users: vec![0, 1, 2].into(),
        test_items: vec![3, 2, 0].into(),
        test_timestamps: Some(vec![9, 9, 9]),
        test_negatives: vec![].into(),
        test_negatives_per_user: 0,
        user_raw: vec!["10".into(), "20".into(), "30".into()],
        item_raw: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        item_titles: Some(vec![Some("A".into()), None, Some("C".into()), None]),
        timestamps_in: None,
        mapped_split: None,
    }
}

fn same(a: &Dataset, b: &Dataset) {
    assert_eq!(a.train_users, b.train_users);
    assert_eq!(a.train_items, b.train_items);
    assert_eq!(a.train_timestamps, b.train_timestamps);
    assert_eq!(a.test_users, b.test_users);
    assert_eq!(a.test_items, b.test_items);
    assert_eq!(a.test_timestamps, b.test_timestamps);
    assert_eq!(a.test_negatives, b.test_negatives);
    assert_eq!(a.user_raw, b.user_raw);
    assert_eq!(a.item_raw, b.item_raw);
    assert_eq!(a.item_titles, b.item_titles);
}

#[test]
fn parquet_round_trip_and_negatives() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ds");
    let ds = tiny();
    ds.write(&p, false).unwrap();
    let back = Dataset::load(&p).unwrap();
    same(&ds, &back);
    assert_eq!(back.meta.as_ref().unwrap().fingerprint, ds.fingerprint());
    assert!(ds.write(&p, false).is_err(), "existing dir must be refused");
    // As the tools open it: columns mapped from train.cols, users as offsets, timestamps on
    // disk until asked for; the same content and fingerprints.
    let open = Dataset::open(&p).unwrap();
    assert!(open.train_items.is_mapped() && open.test_users.is_mapped());
    assert!(matches!(open.train_users, TrainUsers::Offsets(_)));
    assert_eq!(open.train_timestamps, None);
    same(&ds, &open.with_timestamps().unwrap());
    assert_eq!(open.split_fingerprint(), ds.split_fingerprint());
    assert_eq!(open.fingerprint(), ds.fingerprint());

    let m = write_test_negatives(&p, 2, vec![0, 1, 0, 1, 2, 3], "sampled", Some(7), false).unwrap();
    assert_eq!(m.test_negatives_per_user, 2);
    let back = Dataset::load(&p).unwrap();
    assert_eq!(back.test_negatives, vec![0, 1, 0, 1, 2, 3]);
    assert!(back.test_negatives.is_mapped(), "from test_negatives.cols");
    assert_eq!(back.fingerprint(), m.fingerprint);
    assert_ne!(back.fingerprint(), ds.fingerprint());
    assert_eq!(back.meta.unwrap().test_negatives_seed, Some(7));
    assert!(write_test_negatives(&p, 1, vec![0, 1, 2], "sampled", None, false).is_err());
    write_test_negatives(&p, 1, vec![0, 1, 2], "sampled", None, true).unwrap();
    assert_eq!(Dataset::load(&p).unwrap().test_negatives, vec![0, 1, 2]);
    // Wrong count: refused, old content kept.
    assert!(write_test_negatives(&p, 1, vec![0], "sampled", None, true).is_err());
    assert_eq!(Dataset::load(&p).unwrap().test_negatives, vec![0, 1, 2]);
}

#[test]
fn ipc_round_trip() {
    let mut ds = tiny();
    ds.set_test_negatives(1, vec![1, 1, 2], "given", None)
        .unwrap();
    let mut buf = Vec::new();
    ds.write_ipc(&mut buf).unwrap();
    let back = Dataset::read_ipc(&buf[..], "buf").unwrap();
    same(&ds, &back);
    assert_eq!(
        back.meta.unwrap().test_negatives_source.as_deref(),
        Some("given")
    );
    // No timestamps, no titles.
    let mut ds = tiny();
    ds.train_timestamps = None;
    ds.test_timestamps = None;
    ds.item_titles = None;
    let mut buf = Vec::new();
    ds.write_ipc(&mut buf).unwrap();
    same(&ds, &Dataset::read_ipc(&buf[..], "buf").unwrap());
    // Truncated: an error, not a panic.
    for cut in [0, 10, buf.len() / 2, buf.len() - 9] {
        assert!(Dataset::read_ipc(&buf[..cut], "buf").is_err(), "cut {cut}");
    }
}

#[test]
fn corrupt_files_are_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("ds");
    tiny().write(&p, false).unwrap();
    let train = p.join("train.parquet");
    let bytes = std::fs::read(&train).unwrap();
    std::fs::write(&train, &bytes[..bytes.len() / 2]).unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("train.parquet"), "{e}");
    std::fs::write(&train, &bytes).unwrap();
    Dataset::load(&p).unwrap();
    // SHA256SUMS catches any edit, before parsing
    let mp = p.join("meta.json");
    let meta = std::fs::read_to_string(&mp).unwrap();
    std::fs::write(&mp, meta.replace("\"n_train\": 5", "\"n_train\": 6")).unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(
        e.contains("meta.json: checksum mismatch with SHA256SUMS"),
        "{e}"
    );
    std::fs::write(&mp, &meta).unwrap();
    let sums = std::fs::read_to_string(p.join(SUMS)).unwrap();
    std::fs::write(p.join(SUMS), sums.replace("  items.parquet", "  other")).unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("items.parquet: not listed in SHA256SUMS"), "{e}");
    std::fs::write(p.join(SUMS), "abc  meta.json\n").unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("SHA256SUMS:1: expected"), "{e}");
    // without SHA256SUMS (older datasets) the other checks still hold
    std::fs::remove_file(p.join(SUMS)).unwrap();
    // meta disagreeing with the tables
    std::fs::write(&mp, meta.replace("\"n_train\": 5", "\"n_train\": 6")).unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("n_train"), "{e}");
    std::fs::write(
        &mp,
        meta.replace("\"format_version\": 1", "\"format_version\": 9"),
    )
    .unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("format_version 9"), "{e}");
    std::fs::remove_file(p.join("users.parquet")).unwrap();
    std::fs::write(&mp, meta).unwrap();
    let e = Dataset::load(&p).unwrap_err().to_string();
    assert!(e.contains("users.parquet"), "{e}");
}

/// Inputs the fuzzer found (fuzz/regressions): each is an error, not a panic.
#[test]
fn fuzz_regressions_are_errors() {
    let ipc: &[&[u8]] = &[include_bytes!(
        "../../../../../fuzz/regressions/dataset_ipc/crash-fcaa6d681a9382244402ed9b4f43620975a3a8d8"
    )];
    for (k, bytes) in ipc.iter().enumerate() {
        let e = Dataset::read_ipc(*bytes, "crash").unwrap_err().to_string();
        assert!(e.contains("crash"), "ipc {k}: {e}");
    }
    // dataset_parquet inputs: six sections, each a u32 LE length and a file
    let dir: &[&[u8]] = &[include_bytes!(
        "../../../../../fuzz/regressions/dataset_parquet/crash-6ee6c6e9dc5aec4c4e450188a7000f8022758b17"
    ), include_bytes!(
        "../../../../../fuzz/regressions/dataset_parquet/crash-16b88e1072c0ea5239338e1243fb815184ef59c1"
    )];
    let wants = ["lies outside", "dictionary page"];
    let names = [
        "meta.json",
        "train.parquet",
        "test.parquet",
        "users.parquet",
        "items.parquet",
        "test_negatives.parquet",
    ];
    for (k, bytes) in dir.iter().enumerate() {
        let mut rest = *bytes;
        let mut files = Vec::new();
        for name in names {
            let n = if rest.len() >= 4 {
                u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize
            } else {
                0
            };
            let n = n.min(rest.len().saturating_sub(4));
            let body = if rest.len() >= 4 {
                &rest[4..4 + n]
            } else {
                &[][..]
            };
            rest = if rest.len() >= 4 { &rest[4 + n..] } else { &[] };
            files.push((name, body));
        }
        let e = Dataset::from_bytes(&files).unwrap_err().to_string();
        assert!(e.contains(wants[k]), "parquet {k}: {e}");
    }
}

#[test]
fn an_ipc_buffer_outside_its_body_is_refused() {
    let mut buf = Vec::new();
    tiny().write_ipc(&mut buf).unwrap();
    // The first record batch: find its message and stretch one buffer's length.
    let mut at = 0;
    let mut done = false;
    while at + 8 <= buf.len() && !done {
        let len = i32::from_le_bytes(buf[at + 4..at + 8].try_into().unwrap()) as usize;
        let meta = &buf[at + 8..at + 8 + len];
        let msg = crate::arrow::ipc::root_as_message(meta).unwrap();
        let body = msg.bodyLength() as usize;
        if let Some(rb) = msg.header_as_record_batch() {
            let b = rb.buffers().unwrap().get(1);
            let want = b.length().to_le_bytes();
            let pos = meta.windows(8).position(|w| w == want).unwrap();
            buf[at + 8 + pos..at + 16 + pos].copy_from_slice(&(1i64 << 40).to_le_bytes());
            done = true;
        }
        at += 8 + len + body;
    }
    assert!(done);
    let e = Dataset::read_ipc(&buf[..], "stretched")
        .unwrap_err()
        .to_string();
    assert!(e.contains("lies outside"), "{e}");
}

#[test]
fn fingerprint_depends_on_order_and_sections() {
    let a = fingerprint((&[0, 1], &[1, 0]), (&[0], &[2]), &[]);
    let b = fingerprint((&[1, 0], &[0, 1]), (&[0], &[2]), &[]);
    let c = fingerprint((&[0], &[1]), (&[1, 0], &[0, 2]), &[]);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 64);
}

#[test]
fn train_cols_from_memory_are_the_bytes_derived_from_the_tables() {
    // The in-memory writer makes train.cols from its columns (beside the Parquet writes);
    // `finish` alone derives it from the tables read back: the same bytes, with and without
    // test negatives (whose train.cols fingerprint is then the dataset's without them).
    let mut with_negs = tiny();
    with_negs
        .set_test_negatives(2, vec![0, 1, 0, 1, 2, 3], "sampled", Some(7))
        .unwrap();
    for ds in [tiny(), with_negs] {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ds");
        ds.write(&p, false).unwrap();
        let from_memory = std::fs::read(p.join("train.cols")).unwrap();
        let out = crate::io::AtomicDir::new(&d.path().join("derived"), &OUTPUT, false).unwrap();
        for t in ds.tables() {
            ds.write_parquet(t, &out.path(&format!("{t}.parquet")))
                .unwrap();
        }
        finish(&out, &ds.current_meta()).unwrap();
        let derived = std::fs::read(out.path("train.cols")).unwrap();
        assert_eq!(from_memory.len(), derived.len());
        assert!(
            from_memory == derived,
            "train.cols differs between the two writers"
        );
    }
}
