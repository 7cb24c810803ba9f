//! Input that ncf-prep misread or misreported (issue 30, docs/RELIABILITY.md): one test per defect
//! (D8-D10, D17, D18, D23-D26) and per message of D28 about input, through the real binaries,
//! each in its own temp dir on data small enough to take well under a second.

mod common;

use common::{bin, describe, fails, ok, ratings_csv, run, run_with, s};
use ncf_core::data::dataset::Dataset;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

fn ratings() -> String {
    ratings_csv()
}

/// Exit 1, no panic; stderr.
fn failed(name: &str, args: &[&str], out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", describe(name, args, out));
    assert!(!err.contains("panicked"), "{}", describe(name, args, out));
    err
}

fn meta(ds: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(ds.join("meta.json")).unwrap()).unwrap()
}

/// A CSV with a header: `users` users, each rating items 1..=25 at times 1..=25.
fn csv(users: &[&str]) -> String {
    let mut t = String::from("userId,movieId,rating,timestamp\n");
    for u in users {
        for i in 1..=25 {
            t.push_str(&format!("{u},{i},4,{i}\n"));
        }
    }
    t
}

/// A Parquet file of `columns`, as pandas or pyarrow write them.
fn write_parquet(path: &Path, columns: Vec<(&str, arrow_array::ArrayRef)>) {
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let f = fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// 5 users x 25 items: the user, item and timestamp columns.
fn grid() -> (Vec<u64>, Vec<u64>, Vec<i64>) {
    let users = (0..125).map(|r| 1 + r / 25).collect();
    let items = (0..125).map(|r| r % 25).collect();
    (users, items, (0..125).collect())
}

/// The NCF authors' three files for 3 users and 30 items (dense ids, 2 negatives per user) under
/// `dir/x.*`; returns the prefix.
fn authors_split(dir: &Path) -> PathBuf {
    let (mut train, mut test, mut neg) = (String::new(), String::new(), String::new());
    for u in 0..3 {
        for i in 0..25 {
            train.push_str(&format!("{u}\t{}\t4\t{i}\n", (u * 3 + i) % 30));
        }
        let t = (u * 3 + 25) % 30;
        test.push_str(&format!("{u}\t{t}\t5\t99\n"));
        neg.push_str(&format!("({u},{t})\t{}\t{}\n", (t + 1) % 30, (t + 2) % 30));
    }
    let p = dir.join("x");
    fs::write(dir.join("x.train.rating"), train).unwrap();
    fs::write(dir.join("x.test.rating"), test).unwrap();
    fs::write(dir.join("x.test.negative"), neg).unwrap();
    p
}

/// D8: `--min-rating`, `--min-interactions`, `--movies` (and every other flag the split ignores)
/// were silently ignored on the NCF authors' split and recorded in meta.json's options.
#[test]
fn d08_authors_split_refuses_flags_it_cannot_apply() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let prefix = authors_split(root);
    fs::write(root.join("movies.csv"), "movieId,title\n1,One\n").unwrap();
    for (flags, named) in [
        (&["--min-rating", "4"][..], "--min-rating"),
        (&["--min-interactions", "100"], "--min-interactions"),
        (&["--movies", "movies.csv"], "--movies"),
        (&["--seed", "7"], "--seed"),
        (&["--text-ids"], "--text-ids"),
        (&["--format", "ncf", "--no-header"], "--no-header"),
    ] {
        let args = [&[s(&prefix), "-o", "out"][..], flags].concat();
        let err = fails(root, "ncf-prep", &args);
        let want = format!("the NCF authors' split is kept as given (their dense ids, train and test rows and negatives), so {named} cannot apply to it");
        assert!(err.contains(&want), "{err}");
        assert!(!root.join("out").exists());
    }
    // Several at once are named together.
    let err = fails(
        root,
        "ncf-prep",
        &[
            s(root),
            "-o",
            "out",
            "--min-rating",
            "4",
            "--movies",
            "movies.csv",
        ],
    );
    assert!(err.contains("--movies, --min-rating cannot apply"), "{err}");
    // Without them, the split is read, and meta.json records only that it was given.
    ok(root, "ncf-prep", &[s(&prefix), "-o", "given", "-q"]);
    assert_eq!(
        meta(&root.join("given"))["options"],
        serde_json::json!({"split": "given"})
    );
}

/// D9: `--synthetic U,I,N INPUT` generated data and never read INPUT.
#[test]
fn d09_synthetic_with_an_input_is_a_usage_error() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let r = ratings();
    for args in [
        vec!["--synthetic", "10,40,200", &r, "-o", "syn"],
        vec!["--synthetic", "10,40,200", "-o", "syn", "--movies", "m.csv"],
        vec!["--synthetic-csv", "s.csv", "--min-rating", "3", "-o", "syn"],
    ] {
        let out = run(root, "ncf-prep", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            describe("ncf-prep", &args, &out)
        );
        assert!(err.contains("cannot be used with"), "{err}");
        assert!(err.contains("--synthetic"), "{err}");
        assert!(!root.join("syn").exists() && !root.join("s.csv").exists());
    }
    let out = run(
        root,
        "ncf-prep",
        &["--synthetic", "10,40,200", &r, "-o", "syn"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("[INPUT]"));
}

/// D10: null and NaN ratings in Parquet counted as "below --min-rating", an infinite one kept;
/// the CSV reader refuses them, naming the line.
#[test]
fn d10_parquet_null_nan_and_infinite_ratings_are_refused_like_text() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, UInt64Array};
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (u, i, t) = grid();
    for (name, row, value, shown) in [
        ("null.parquet", 3, None, "null"),
        ("nan.parquet", 4, Some(f64::NAN), "NaN"),
        ("inf.parquet", 5, Some(f64::INFINITY), "inf"),
    ] {
        let mut r: Vec<Option<f64>> = vec![Some(4.0); 125];
        r[row] = value;
        write_parquet(
            &root.join(name),
            vec![
                ("userId", Arc::new(UInt64Array::from(u.clone())) as ArrayRef),
                ("movieId", Arc::new(UInt64Array::from(i.clone()))),
                ("rating", Arc::new(Float64Array::from(r))),
                ("timestamp", Arc::new(Int64Array::from(t.clone()))),
            ],
        );
        let args = [
            name,
            "--min-rating",
            "3",
            "--min-interactions",
            "2",
            "-o",
            "out",
        ];
        let err = fails(root, "ncf-prep", &args);
        let want = format!(
            "{name}: row {}: expected a number (rating) in column `rating`, found {shown}",
            row + 1
        );
        assert!(err.contains(&want), "{err}");
        assert!(!root.join("out").exists());
    }
    // The text reader says the same of the same value.
    fs::write(
        root.join("nan.csv"),
        "userId,movieId,rating,timestamp\n1,1,NaN,5\n",
    )
    .unwrap();
    let err = fails(
        root,
        "ncf-prep",
        &["nan.csv", "--min-rating", "3", "-o", "out"],
    );
    assert!(
        err.contains("expected a number (rating) in field 3, found `NaN`"),
        "{err}"
    );
}

/// The estimate in a memory refusal (`needs about 37.6 MiB`), in bytes.
fn needs_about(err: &str) -> u64 {
    let rest = &err[err.find("needs about ").expect(err) + 12..];
    let mut words = rest.split_whitespace();
    let x: f64 = words.next().unwrap().parse().unwrap();
    let unit = match words.next().unwrap() {
        "bytes" => 1u64,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => panic!("unit {u}: {err}"),
    };
    (x * unit as f64) as u64
}

/// D17: the estimate was 3 bytes per input byte, too low for compact lines (5.4 measured) and
/// taken from the compressed size of gzip input: NCF_MEMORY_LIMIT was overrun. Now it counts
/// rows, and checks gzip as it decompresses.
#[test]
fn d17_prep_memory_estimate_bounds_compact_input() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    // 200,000 four-byte lines: 800 KB, ~17 MB peak RSS; the old estimate said 2.3 MiB.
    let mut compact = Vec::with_capacity(800_000);
    for k in 0..200_000u32 {
        compact.extend_from_slice(format!("{},{}\n", k % 10, (k / 10) % 10).as_bytes());
    }
    fs::write(root.join("short.csv"), &compact).unwrap();
    let args = ["short.csv", "--min-interactions", "1", "-o", "sh", "-q"];
    let out = run_with(root, "ncf-prep", &args, &[("NCF_MEMORY_LIMIT", "8M")], b"");
    let err = failed("ncf-prep", &args, &out);
    assert!(
        err.contains("short.csv: preparing this input (200000 rows in 781.2 KiB) needs about"),
        "{err}"
    );
    assert!(
        err.contains("only 8.0 MiB is available (NCF_MEMORY_LIMIT=8M)"),
        "{err}"
    );
    assert!(!root.join("sh").exists());
    // A gzip bomb (8 MB of `1,2,3,4` in 24 KB) is refused from what it decompresses to.
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&b"1,2,3,4\n".repeat(1_000_000)).unwrap();
    fs::write(root.join("b.csv.gz"), z.finish().unwrap()).unwrap();
    let args = ["b.csv.gz", "--min-interactions", "1", "-o", "bz", "-q"];
    let out = run_with(root, "ncf-prep", &args, &[("NCF_MEMORY_LIMIT", "40M")], b"");
    let err = failed("ncf-prep", &args, &out);
    assert!(
        err.contains("b.csv.gz: preparing this input (1000000 rows"),
        "{err}"
    );
    assert!(err.contains("(NCF_MEMORY_LIMIT=40M)"), "{err}");
    // The same bytes on stdin.
    let out = run_with(
        root,
        "ncf-prep",
        &["-", "-o", "st"],
        &[("NCF_MEMORY_LIMIT", "8M")],
        &compact,
    );
    let err = failed("ncf-prep", &["-"], &out);
    assert!(
        err.contains("<stdin>: preparing this input (200000 rows"),
        "{err}"
    );
    // The estimate is an upper bound of the real peak RSS.
    let probe = ["short.csv", "--min-interactions", "1", "-o", "sh", "-q"];
    let out = run_with(root, "ncf-prep", &probe, &[("NCF_MEMORY_LIMIT", "1")], b"");
    let estimate = needs_about(&failed("ncf-prep", &probe, &out));
    if !Path::new("/usr/bin/time").exists() {
        eprintln!("d17: /usr/bin/time not found: the estimate was not compared with the real RSS");
        return;
    }
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M", s(&bin("ncf-prep"))])
        .args(probe)
        .current_dir(root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let kb: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .expect(&err)
        .trim()
        .parse()
        .unwrap();
    assert!(
        estimate >= kb * 1024,
        "estimate {estimate} bytes below the real peak RSS {kb} kB"
    );
}

/// D18: an invalid NCF_MEMORY_LIMIT was ignored: a limit the user believed in force was not.
/// Every tool refuses it before any work; `1K` and `1k` are limits.
#[test]
fn d18_invalid_memory_limit_is_refused_by_every_tool() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let r = ratings();
    let tools: [(&str, Vec<&str>); 5] = [
        ("ncf-prep", vec![&r, "-o", "out"]),
        ("ncf-negsample", vec!["ds", "--test-negatives", "5"]),
        ("ncf-train", vec!["ds", "-o", "m.st"]),
        ("ncf-eval", vec!["ds", "m.st"]),
        ("ncf-topk", vec!["ds", "m.st", "1"]),
    ];
    for bad in ["1KB", "1KiB", "abc", "-5", "10E", "99999999999999999999999"] {
        for (tool, args) in &tools {
            let out = run_with(root, tool, args, &[("NCF_MEMORY_LIMIT", bad)], b"");
            let err = failed(tool, args, &out);
            assert!(
                err.contains(&format!("NCF_MEMORY_LIMIT={bad}: not a size")),
                "{tool}: {err}"
            );
        }
    }
    for good in ["1K", "1k"] {
        for (tool, args) in &tools {
            let out = run_with(root, tool, args, &[("NCF_MEMORY_LIMIT", good)], b"");
            let err = failed(tool, args, &out);
            assert!(!err.contains("not a size"), "{tool}: {err}");
        }
        let out = run_with(
            root,
            "ncf-prep",
            &tools[0].1,
            &[("NCF_MEMORY_LIMIT", good)],
            b"",
        );
        let err = failed("ncf-prep", &tools[0].1, &out);
        assert!(
            err.contains(&format!(
                "only 1.0 KiB is available (NCF_MEMORY_LIMIT={good})"
            )),
            "{err}"
        );
    }
}

/// D23: text input was limited to 16 fields: a wide export with the needed columns first was
/// refused. Only the columns used are parsed; the others are counted.
#[test]
fn d23_wide_text_input_reads_the_columns_it_needs() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let extra: Vec<String> = (0..16).map(|k| format!("c{k}")).collect();
    let mut t = format!("userId,movieId,rating,{},timestamp\n", extra.join(","));
    for u in 0..3 {
        for i in 0..25 {
            t.push_str(&format!(
                "{u},{i},5,{},{}\n",
                vec!["x"; 16].join(","),
                1000 + i
            ));
        }
    }
    fs::write(root.join("wide.csv"), t).unwrap();
    ok(root, "ncf-prep", &["wide.csv", "-o", "w", "-q"]);
    let ds = Dataset::load(&root.join("w")).unwrap();
    assert_eq!((ds.n_users, ds.n_items, ds.train_users.len()), (3, 25, 72));
    // The timestamp is field 20: read, so the latest item is each user's test row.
    assert_eq!(ds.test_timestamps, Some(vec![1024; 3]));
}

/// D24: `--movies` took a ratings file (titles were its movieId column) and a movies file giving
/// an id twice (the last title won); an ELF file was "not a text ratings file".
#[test]
fn d24_movies_must_be_a_movies_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let r = ratings();
    let err = fails(root, "ncf-prep", &[&r, "--movies", &r, "-o", "mv"]);
    assert!(
        err.contains(
            "ratings.csv:1: header [userId, movieId, rating, timestamp] has no title column"
        ),
        "{err}"
    );
    assert!(err.contains("--movies takes a movies file"), "{err}");
    fs::write(
        root.join("dup.csv"),
        "movieId,title\n1,Toy Story (1995)\n2,Two\n1,Other\n",
    )
    .unwrap();
    let err = fails(root, "ncf-prep", &[&r, "--movies", "dup.csv", "-o", "mv"]);
    assert!(
        err.contains("dup.csv:4: movie id 1 again (first on line 2)"),
        "{err}"
    );
    fs::write(
        root.join("ratings.dat"),
        "1::1193::5::978300760\n1::661::3::978302109\n",
    )
    .unwrap();
    let err = fails(
        root,
        "ncf-prep",
        &[&r, "--movies", "ratings.dat", "-o", "mv"],
    );
    assert!(
        err.contains("ratings.dat: every title is a number"),
        "{err}"
    );
    let elf = s(&bin("ncf-prep")).to_string();
    let err = fails(root, "ncf-prep", &[&r, "--movies", &elf, "-o", "mv"]);
    assert!(
        err.contains("this is an ELF executable, not a text movies file"),
        "{err}"
    );
    // A movies file that titles no item at all is not this ratings file's.
    fs::write(root.join("other.csv"), "movieId,title\n999999,Nothing\n").unwrap();
    let err = fails(root, "ncf-prep", &[&r, "--movies", "other.csv", "-o", "mv"]);
    assert!(
        err.contains("other.csv: none of the 9724 items has a title in it"),
        "{err}"
    );
    assert!(!root.join("mv").exists());
}

/// D25: `"1","2","3.5","100"` (pandas QUOTE_ALL, R) was refused without --text-ids, and a quoted
/// separator (`"a,b",54,...`) split the field. RFC 4180 quoting now applies to ratings as to
/// movies.csv, integer ids included.
#[test]
fn d25_quoted_csv_fields_parse_as_rfc4180() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let plain = csv(&["1", "2", "3"]);
    let quoted: String = plain
        .lines()
        .map(|l| {
            let f: Vec<String> = l.split(',').map(|f| format!("\"{f}\"")).collect();
            f.join(",") + "\n"
        })
        .collect();
    fs::write(root.join("plain.csv"), &plain).unwrap();
    fs::write(root.join("quoted.csv"), &quoted).unwrap();
    ok(root, "ncf-prep", &["plain.csv", "-o", "p", "-q"]);
    ok(root, "ncf-prep", &["quoted.csv", "-o", "q", "-q"]);
    assert_eq!(
        meta(&root.join("q"))["fingerprint"],
        meta(&root.join("p"))["fingerprint"]
    );
    // Quoted separators and doubled quotes in text ids.
    let text = csv(&["\"a,b\"", "\"say \"\"hi\"\"\"", "c"]);
    fs::write(root.join("text.csv"), text).unwrap();
    ok(
        root,
        "ncf-prep",
        &["text.csv", "--text-ids", "-o", "t", "-q"],
    );
    let ds = Dataset::load(&root.join("t")).unwrap();
    assert_eq!(ds.user_raw, ["a,b", "c", "say \"hi\""]);
    // A quote left open is named.
    fs::write(root.join("open.csv"), "userId,movieId\n\"1,2\n").unwrap();
    let err = fails(root, "ncf-prep", &["open.csv", "-o", "o"]);
    assert!(
        err.contains("open.csv:2: field 1 opens a quote that the line does not close"),
        "{err}"
    );
}

/// D26: a dictionary-encoded string id column (a pandas categorical) was refused as "not an
/// integer", while the same ids as a plain string column were read as text ids.
#[test]
fn d26_dictionary_encoded_parquet_string_ids_are_text_ids() {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, StringArray};
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (u, i, t) = grid();
    let names: Vec<String> = u.iter().map(|u| format!("u{u}")).collect();
    let dict: DictionaryArray<Int32Type> = names.iter().map(String::as_str).collect();
    for (file, users) in [
        (
            "plain.parquet",
            Arc::new(StringArray::from(names.clone())) as ArrayRef,
        ),
        ("dict.parquet", Arc::new(dict) as ArrayRef),
    ] {
        write_parquet(
            &root.join(file),
            vec![
                ("userId", users),
                (
                    "movieId",
                    Arc::new(Int64Array::from(
                        i.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                    )),
                ),
                ("timestamp", Arc::new(Int64Array::from(t.clone()))),
            ],
        );
        ok(
            root,
            "ncf-prep",
            &[file, "-o", file.strip_suffix(".parquet").unwrap(), "-q"],
        );
    }
    let plain = Dataset::load(&root.join("plain")).unwrap();
    let dict = Dataset::load(&root.join("dict")).unwrap();
    assert_eq!(dict.user_raw, ["u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(dict.user_raw, plain.user_raw);
    assert_eq!(dict.fingerprint(), plain.fingerprint());
}

/// D28 I26: an integer id above 2^64 - 1 was "not an integer (pass --text-ids)"; it is one, out
/// of range. The largest is read.
#[test]
fn d28_i26_an_integer_id_beyond_u64_is_out_of_range() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::write(root.join("big.csv"), csv(&["18446744073709551616"])).unwrap();
    let err = fails(root, "ncf-prep", &["big.csv", "-o", "b"]);
    assert!(
        err.contains(
            "big.csv:2: user id 18446744073709551616 in field 1 is out of range (integer ids are \
             at most 18446744073709551615"
        ),
        "{err}"
    );
    fs::write(root.join("max.csv"), csv(&["18446744073709551615"])).unwrap();
    ok(root, "ncf-prep", &["max.csv", "-o", "m", "-q"]);
    let ds = Dataset::load(&root.join("m")).unwrap();
    assert_eq!(ds.user_raw, ["18446744073709551615"]);
}

/// D28 T_min: the timestamp -9223372036854775808 (i64::MIN) was "not an integer".
#[test]
fn d28_t_min_the_smallest_i64_timestamp_is_read() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let t = "userId,movieId,timestamp\n1,1,-9223372036854775808\n1,2,9223372036854775807\n";
    fs::write(root.join("t.csv"), t).unwrap();
    ok(
        root,
        "ncf-prep",
        &["t.csv", "--min-interactions", "1", "-o", "t", "-q"],
    );
    let ds = Dataset::load(&root.join("t")).unwrap();
    assert_eq!(ds.train_timestamps, Some(vec![i64::MIN]));
    fs::write(
        root.join("over.csv"),
        "userId,movieId,timestamp\n1,1,9223372036854775808\n",
    )
    .unwrap();
    let err = fails(root, "ncf-prep", &["over.csv", "-o", "o"]);
    assert!(
        err.contains("found `9223372036854775808`, which is out of range (timestamps are 64-bit"),
        "{err}"
    );
}

/// D28 P32: a Parquet `uint64` id of 2^63 or more was "out of range" (the CSV reader takes ids
/// up to 2^64 - 1).
#[test]
fn d28_p32_parquet_uint64_ids_above_2_63_are_read() {
    use arrow_array::{ArrayRef, Int64Array, UInt64Array};
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (u, i, t) = grid();
    write_parquet(
        &root.join("u64.parquet"),
        vec![
            (
                "userId",
                Arc::new(UInt64Array::from(
                    u.iter().map(|&u| (1 << 63) + u).collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            ("movieId", Arc::new(UInt64Array::from(i))),
            ("timestamp", Arc::new(Int64Array::from(t))),
        ],
    );
    ok(root, "ncf-prep", &["u64.parquet", "-o", "u", "-q"]);
    let ds = Dataset::load(&root.join("u")).unwrap();
    assert_eq!(ds.user_raw[0], "9223372036854775809");
    assert_eq!(ds.user_raw[4], "9223372036854775813");
}

/// D28 Y07: `--synthetic 10,20,200` asked for interactions "between 200 and 100"; 40 items are
/// the least that works.
#[test]
fn d28_y07_synthetic_with_too_few_items_names_the_minimum() {
    let d = tempfile::tempdir().unwrap();
    let err = fails(
        d.path(),
        "ncf-prep",
        &["--synthetic", "10,20,200", "-o", "y"],
    );
    assert!(
        err.contains("--synthetic 10,20,200: needs users >= 1 and items >= 40"),
        "{err}"
    );
    ok(
        d.path(),
        "ncf-prep",
        &["--synthetic", "10,40,200", "-o", "y", "-q"],
    );
}

/// D28 N08: `ncf-prep - --format ncf` looked for `-.train.rating`.
#[test]
fn d28_n08_authors_split_from_stdin_says_it_needs_files() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    authors_split(root);
    let train = fs::read(root.join("x.train.rating")).unwrap();
    let args = ["-", "--format", "ncf", "-o", "x"];
    let out = run_with(root, "ncf-prep", &args, &[], &train);
    let err = failed("ncf-prep", &args, &out);
    assert!(
        err.contains("the NCF authors' split (--format ncf) is three files")
            && err.contains("not stdin"),
        "{err}"
    );
}

/// D28 D08: a Parquet table piped where an Arrow IPC stream is expected was "Expected schema
/// message, found empty stream".
#[test]
fn d28_d08_parquet_piped_as_a_stream_is_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::write(root.join("r.csv"), csv(&["1", "2"])).unwrap();
    ok(root, "ncf-prep", &["r.csv", "-o", "ds", "-q"]);
    let table = fs::read(root.join("ds/train.parquet")).unwrap();
    let want = "this is a Parquet file, not an ncf Arrow IPC stream: give the dataset's directory";
    for (tool, args) in [
        ("ncf-eval", &["-", "m.st"][..]),
        ("ncf-negsample", &["-", "--test-negatives", "5", "-o", "n"]),
    ] {
        let out = run_with(root, tool, args, &[], &table);
        let err = failed(tool, args, &out);
        assert!(err.contains(&format!("<stdin>: {want}")), "{tool}: {err}");
    }
    let err = fails(root, "ncf-eval", &["ds/train.parquet", "m.st"]);
    assert!(err.contains(&format!("ds/train.parquet: {want}")), "{err}");
}

/// D28 V01/V04: `--validation-holdout latest` without a time order said "use a random holdout"
/// without naming the flag.
#[test]
fn d28_v01_latest_holdout_without_time_order_names_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut t = String::from("userId,movieId\n");
    for u in 1..=3 {
        for i in 1..=25 {
            t.push_str(&format!("{u},{i}\n"));
        }
    }
    fs::write(root.join("r.csv"), t).unwrap();
    ok(root, "ncf-prep", &["r.csv", "-o", "ds", "-q"]);
    let args = [
        "ds",
        "-o",
        "m.st",
        "--validation",
        "--validation-holdout",
        "latest",
        "--epochs",
        "1",
        "--no-checkpoint",
        "-q",
    ];
    let err = fails(root, "ncf-train", &args);
    assert!(err.contains("pass --validation-holdout random"), "{err}");
}
