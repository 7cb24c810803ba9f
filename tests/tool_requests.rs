//! What the scoring and sampling tools are asked (issue 30: D6, D7, D11, D12, D21, D22, D27 and
//! the D28 rows S20, D10, W07, I20), through the real binaries: ids given on the command line,
//! on stdin and in ranked lists are looked up one way and shown quoted and short; ranked lists
//! with ties or repeats, impossible test negatives and models too large for memory are refused
//! before any work, naming raw ids and the way out; NaN scores are noted by every tool.

mod common;

use common::{bin, describe, fails, ok, ratings_csv, run_with, TINY_MODEL};
use std::fs;
use std::path::Path;
use std::process::Command;

/// With [`TINY_MODEL`]: one epoch, no checkpoint.
const ONE_EPOCH: &[&str] = &["--epochs", "1", "--no-checkpoint"];

fn ratings() -> String {
    ratings_csv()
}

/// `run_with` that requires exit `code` and no panic; returns (stdout, stderr).
fn expect(
    code: i32,
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> (String, String) {
    let out = run_with(dir, name, args, env, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        describe(name, args, &out)
    );
    assert!(!err.contains("panicked"), "{}", describe(name, args, &out));
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// ml-latest-small prepared in `dir/ds` with 20 test negatives per user.
fn small(dir: &Path) -> &'static str {
    ok(dir, "ncf-prep", &[&ratings(), "-o", "ds", "-q"]);
    ok(dir, "ncf-negsample", &["ds", "--test-negatives", "20"]);
    "ds"
}

/// Train the small model of `ds` into `dir/model`.
fn train(dir: &Path, ds: &str, model: &str) {
    ok(
        dir,
        "ncf-train",
        &[&[ds, "-o", model], ONE_EPOCH, TINY_MODEL].concat(),
    );
}

/// Three users whose text ids differ only in spaces (" a", "a", "a "), 25 items each, with
/// different items, prepared with --text-ids into `dir/ws`, and a model of it.
fn spaced_users(dir: &Path) {
    let mut csv = String::from("userId,movieId,rating,timestamp\n");
    for (u, first) in [("a", 1), (" a", 100), ("a ", 200)] {
        for i in 0..25 {
            csv += &format!("{u},{},5,{}\n", first + i, 1000 + i);
        }
    }
    fs::write(dir.join("ws.csv"), csv).unwrap();
    ok(dir, "ncf-prep", &["ws.csv", "--text-ids", "-o", "ws", "-q"]);
    ok(dir, "ncf-negsample", &["ws", "--test-negatives", "5"]);
    ok(
        dir,
        "ncf-train",
        &[&["ws", "-o", "ws.st", "--topk", "5"], ONE_EPOCH, TINY_MODEL].concat(),
    );
}

/// The user column of ncf-topk's output.
fn users_listed(tsv: &str) -> Vec<String> {
    tsv.lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

/// D6: ncf-topk trimmed every id while `ncf-prep --text-ids` keeps spaces, so " a" and "a "
/// silently got user "a"'s recommendations. Now ids are looked up as ncf-prep stored them (text
/// exactly; integers trimmed), from arguments and stdin alike, and a near miss says why.
#[test]
fn d06_text_ids_with_spaces_reach_their_own_users() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    spaced_users(dir);
    let all = ok(dir, "ncf-topk", &["ws", "ws.st", "-k", "1", "--all"]);
    let by_user = |u: &str| {
        all.lines()
            .find(|l| l.starts_with(&format!("{u}\t")))
            .unwrap()
    };
    let asked = ok(
        dir,
        "ncf-topk",
        &["ws", "ws.st", "-k", "1", " a", "a ", "a"],
    );
    assert_eq!(users_listed(&asked), [" a", "a ", "a"], "{asked}");
    let want: Vec<&str> = [" a", "a ", "a"].iter().map(|u| by_user(u)).collect();
    assert_eq!(asked.lines().collect::<Vec<_>>(), want);
    // stdin: the same three users (CRLF line ends are line ends, not part of an id)
    let args = ["ws", "ws.st", "-k", "1"];
    let (out, _) = expect(0, dir, "ncf-topk", &args, &[], b" a\r\na \na\n\n");
    assert_eq!(users_listed(&out), [" a", "a ", "a"], "{out}");
    // an id that matches only once trimmed is unknown, and the message says why
    let err = fails(dir, "ncf-topk", &["ws", "ws.st", "-k", "1", "a  "]);
    assert!(
        err.contains(r#"unknown user id(s): "a  " (differs only in spaces from the user ids"#),
        "{err}"
    );
    assert!(err.contains("matched exactly, spaces included"), "{err}");
    // integer ids are still trimmed
    small(dir);
    train(dir, "ds", "m.st");
    let (out, _) = expect(
        0,
        dir,
        "ncf-topk",
        &["ds", "m.st", "-k", "1"],
        &[],
        b" 1 \n2\r\n",
    );
    assert_eq!(users_listed(&out), ["1", "2"], "{out}");
}

/// D7: ncf-eval --ranked took every item at "rank 1" (HR@1 37 times too high) and the same item
/// twice (its best rank). Now a user's ranks and items must be distinct: the line, the user
/// (raw id) and what repeats are named.
#[test]
fn d07_ranked_lists_with_tied_ranks_or_repeated_items_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // users 7 and 8, items 1..=25 each, item 25 the latest: the held-out item
    let mut csv = String::from("userId,movieId,rating,timestamp\n");
    for u in [7, 8] {
        for i in 1..=25 {
            csv += &format!("{u},{i},5,{}\n", 1000 + i);
        }
        csv += &format!("{u},{},5,900\n", 30 + u);
    }
    fs::write(dir.join("r.csv"), csv).unwrap();
    ok(dir, "ncf-prep", &["r.csv", "-o", "r", "-q"]);
    let eval = |list: &str| {
        run_with(
            dir,
            "ncf-eval",
            &["r", "--ranked", "-", "--k", "1"],
            &[],
            list.as_bytes(),
        )
    };
    // every item "rank 1": the held-out item 25 would hit at K = 1
    let tied = "7\t1\t37\n7\t1\t25\n8\t1\t38\n8\t2\t25\n";
    let out = eval(tied);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe("ncf-eval", &[], &out)
    );
    assert!(
        err.contains(
            "<stdin>:2: user 7: rank 1 again (line 1 gives it to item 37, this line to item 25)"
        ),
        "{err}"
    );
    // the same item twice
    let repeated = "7\t1\t25\n7\t2\t37\n8\t1\t38\n8\t2\t25\n8\t3\t38\n";
    let out = eval(repeated);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe("ncf-eval", &[], &out)
    );
    assert!(
        err.contains("<stdin>:5: user 8: item 38 listed again (line 3 ranks it 1, this line 3)"),
        "{err}"
    );
    // distinct ranks: user 7 hits at rank 2, user 8 at rank 1
    let out = eval("7\t1\t37\n7\t2\t25\n8\t1\t25\n");
    assert!(out.status.success(), "{}", describe("ncf-eval", &[], &out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["hr"], 0.5);
}

/// D11: --test-negatives 99999999999 aborted (a 244 TB allocation, exit 134) and left the lock
/// file behind. Now more than the items a user has left is refused before anything is
/// allocated, and the negatives are checked against the memory available.
#[test]
fn d11_impossible_test_negatives_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    for n in ["99999999999", "4294967296"] {
        let err = fails(
            dir,
            "ncf-negsample",
            &["ds", "--test-negatives", n, "--force", "-o", "big"],
        );
        assert!(
            err.contains(&format!(
                "--test-negatives {n}: the dataset has only 9724 items"
            )),
            "{err}"
        );
        assert!(err.contains("give --test-negatives 7026 or fewer"), "{err}");
        assert!(!dir.join("big").exists() && !dir.join(".big.lock").exists());
    }
    // More than user 414 (2698 items rated) has left, in place: the dataset is kept.
    let err = fails(
        dir,
        "ncf-negsample",
        &["ds", "--test-negatives", "7027", "--force"],
    );
    assert!(err.contains("user 414 has 2698 of the 9724 items"), "{err}");
    assert!(!dir.join(".ds.lock").exists());
    // Possible, but more than the memory allowed.
    let args = ["ds", "--test-negatives", "5000", "--force", "-o", "big"];
    let (_, err) = expect(
        1,
        dir,
        "ncf-negsample",
        &args,
        &[("NCF_MEMORY_LIMIT", "25M")],
        b"",
    );
    assert!(
        err.contains("5000 test negatives for each of the 610 test users needs about"),
        "{err}"
    );
    assert!(err.contains("(NCF_MEMORY_LIMIT=25M)"), "{err}");
}

/// D12: --factors 4000000000, --layers 16,4000000000 and --layers 2000000,8 aborted in the
/// allocator (exit 134). Now every family's model is sized with overflow checks and checked
/// against the memory available before it is allocated.
#[test]
fn d12_models_too_large_for_memory_are_refused_with_their_size() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let limit = [("NCF_MEMORY_LIMIT", "4G")];
    let cases: [(&[&str], &str); 6] = [
        (
            &["--factors", "4000000000", "--layers", "16,8"],
            "41340000082848 parameters",
        ),
        (
            &["--factors", "8", "--layers", "16,4000000000"],
            "72000165376 parameters",
        ),
        (
            &["--factors", "8", "--layers", "2000000,8"],
            "10350082720 parameters",
        ),
        (
            &["--model", "mf", "--factors", "1000000000"],
            "--model mf --factors 1000000000",
        ),
        (
            &["--model", "ials", "--factors", "1000000000"],
            "--model ials --factors 1000000000",
        ),
        (
            &["--factors", "18446744073709551615"],
            "the model's size overflows",
        ),
    ];
    for (shape, what) in cases {
        let args = [
            &["ds", "-o", "f.st", "--epochs", "1", "-q", "--no-checkpoint"],
            shape,
        ]
        .concat();
        let (_, err) = expect(1, dir, "ncf-train", &args, &limit, b"");
        assert!(err.contains(what), "{shape:?}: {err}");
        if !what.contains("overflows") {
            assert!(
                err.contains("needs about") && err.contains("NCF_MEMORY_LIMIT=4G"),
                "{err}"
            );
        }
        assert!(!dir.join("f.st").exists() && !dir.join(".f.st.lock").exists());
    }
    // A sensible model, over a small limit: refused with its size before training.
    let args = [
        "ds",
        "-o",
        "f.st",
        "--epochs",
        "1",
        "-q",
        "--no-checkpoint",
        "--factors",
        "1000",
    ];
    let (_, err) = expect(
        1,
        dir,
        "ncf-train",
        &args,
        &[("NCF_MEMORY_LIMIT", "60M")],
        b"",
    );
    assert!(
        err.contains("this model (--model neumf --factors 1000 --layers 256,256,128,64 for 610 users × 9724 items: 11764784 parameters"),
        "{err}"
    );
}

/// D21: ncf-topk with an empty stdin exited 0 without a word. Now it fails as ncf-eval --ranked
/// does on an empty input, naming the likely cause.
#[test]
fn d21_topk_with_an_empty_stdin_fails_naming_the_likely_cause() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    train(dir, "ds", "m.st");
    for input in [&b""[..], b"\n\r\n  \n"] {
        let (out, err) = expect(1, dir, "ncf-topk", &["ds", "m.st", "-k", "5"], &[], input);
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("ncf-topk: <stdin>: no user ids"), "{err}");
        assert!(
            err.contains("the command before it may have failed"),
            "{err}"
        );
    }
    // the same wording as ncf-eval's
    let (_, err) = expect(1, dir, "ncf-eval", &["ds", "--ranked", "-"], &[], b"");
    assert!(
        err.contains("the command before it may have failed"),
        "{err}"
    );
}

/// A copy of the model file `src` at `dst` whose `final.bias` is NaN, its checksum recomputed:
/// a file that loads (the loader checks checksums, not values).
fn nan_model(src: &Path, dst: &Path) {
    let mut b = fs::read(src).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let off = header["final.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
    let old: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["ncf_sha256"].as_str().unwrap()).unwrap();
    let old = old["final.bias"].as_str().unwrap().to_string();
    b[8 + n + off..8 + n + off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    // sha256 of the 4 bytes of f32::NAN: the hex has the length of the old one, so the header
    // keeps its length.
    let nan_sha = "ef1eaf26cea96eb18f8fa3137abdf23f52852a855c22ae6f169d21a379dcd739";
    let text = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
    assert_eq!(text.matches(&old).count(), 1);
    b[8..8 + n].copy_from_slice(text.replace(&old, nan_sha).as_bytes());
    fs::write(dst, b).unwrap();
}

/// D22: ncf-eval gave HR 0 for a model that scores NaN without a word (ncf-topk noted it), also
/// inside an ensemble. Now both tools note a model with non-finite parameters when they load
/// it, and ncf-eval counts the NaN scores of each model as ncf-topk does.
#[test]
fn d22_a_model_that_scores_nan_is_noted_by_eval_and_topk() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    train(dir, "ds", "m.st");
    nan_model(&dir.join("m.st"), &dir.join("nan.st"));
    let loaded =
        "note: nan.st: 1 of its 82717 parameters are NaN or infinite (the first in final.bias)";
    let (out, err) = expect(0, dir, "ncf-eval", &["ds", "nan.st"], &[], b"");
    assert!(out.contains("\"hr\":0.0"), "{out}");
    assert!(err.contains(&format!("ncf-eval: {loaded}")), "{err}");
    assert!(
        err.contains("ncf-eval: note: the model scored 12810 (user, item) pairs NaN"),
        "{err}"
    );
    // in an ensemble, the model is named
    let (_, err) = expect(0, dir, "ncf-eval", &["ds", "m.st", "nan.st"], &[], b"");
    assert!(err.contains(&format!("ncf-eval: {loaded}")), "{err}");
    assert!(
        err.contains("ncf-eval: note: nan.st scored 12810 (user, item) pairs NaN"),
        "{err}"
    );
    assert!(!err.contains("m.st scored"), "{err}");
    // ncf-topk says the same about the file
    let (_, err) = expect(
        0,
        dir,
        "ncf-topk",
        &["ds", "nan.st", "-k", "3", "1"],
        &[],
        b"",
    );
    assert!(err.contains(&format!("ncf-topk: {loaded}")), "{err}");
    assert!(
        err.contains("the model scored 9724 (user, item) pairs NaN"),
        "{err}"
    );
}

/// D27: messages named ncf's dense ids ("user 0" for raw user 7) and showed ids with spaces
/// unquoted. Now they name the raw id, quoted when it has spaces, and the way out.
#[test]
fn d27_messages_name_raw_ids_quoted_and_the_way_out() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut csv = String::from("userId,movieId,rating,timestamp\n");
    for i in 1..=25 {
        csv += &format!("7,{i},5,{i}\n");
    }
    fs::write(dir.join("one.csv"), csv).unwrap();
    ok(dir, "ncf-prep", &["one.csv", "-o", "one", "-q"]);
    let err = fails(dir, "ncf-negsample", &["one", "--test-negatives", "20"]);
    assert!(
        err.contains(
            "--test-negatives 20: user 7 has 25 of the 25 items in train and test, so none is left"
        ),
        "{err}"
    );
    assert!(
        err.contains("leave user 7 out of the ratings before ncf-prep"),
        "{err}"
    );
    assert!(!err.contains("user 0"), "{err}");
    spaced_users(dir);
    let err = fails(dir, "ncf-topk", &["ws", "ws.st", "-k", "60", " a"]);
    assert!(
        err.contains(r#"-k 60 is larger than the 51 candidate items of user " a""#),
        "{err}"
    );
}

/// D28 S20: `ncf-train --negatives 4294967295` said "(100226 positives × 0)" (1 + negatives
/// overflowed a u32; a debug build panicked). Now it is refused before the data is read.
#[test]
fn d28_s20_negatives_that_no_epoch_can_hold_are_refused_up_front() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let err = fails(
        dir,
        "ncf-train",
        &[
            &["ds", "-o", "x.st", "--negatives", "4294967295"],
            ONE_EPOCH,
            TINY_MODEL,
        ]
        .concat(),
    );
    assert!(
        err.contains("--negatives 4294967295: an epoch has positives × (1 + negatives) samples, at most 2^32 − 1"),
        "{err}"
    );
    // the dataset's own limit names the real product
    let err = fails(
        dir,
        "ncf-train",
        &[
            &["ds", "-o", "x.st", "--negatives", "4294967294"],
            ONE_EPOCH,
            TINY_MODEL,
        ]
        .concat(),
    );
    assert!(err.contains("(100226 positives × 4294967295)"), "{err}");
    let err = fails(
        dir,
        "ncf-negsample",
        &[
            "ds",
            "--epoch",
            "0",
            "--negatives",
            "4294967295",
            "-o",
            "e.tsv",
        ],
    );
    assert!(err.contains("(100226 positives × 4294967296)"), "{err}");
}

/// D28 D10: `ncf-negsample stream.arrows --test-negatives 10` (in place on a stream file) got an
/// output's message ("give a new path, or move the file away"). Now it says that in place needs
/// a dataset directory and suggests -o DIR.
#[test]
fn d28_d10_in_place_on_a_stream_file_suggests_o_dir() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let out = Command::new(bin("ncf-prep"))
        .args([&ratings(), "-o", "-", "-q"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(dir.join("stream.arrows"), &out.stdout).unwrap();
    let err = fails(
        dir,
        "ncf-negsample",
        &["stream.arrows", "--test-negatives", "10"],
    );
    assert!(
        err.contains("stream.arrows: not a dataset directory"),
        "{err}"
    );
    assert!(err.contains("with -o DIR (or -o - for a stream)"), "{err}");
    assert!(!err.contains("move the file away"), "{err}");
    assert_eq!(fs::read(dir.join("stream.arrows")).unwrap(), out.stdout);
    ok(
        dir,
        "ncf-negsample",
        &["stream.arrows", "--test-negatives", "10", "-o", "withneg"],
    );
}

/// D28 W07: a bad `--rendezvous` was reported as `(MASTER_ADDR:MASTER_PORT)`. Now the message
/// says where the address came from.
#[test]
fn d28_w07_the_rendezvous_error_names_where_the_address_came_from() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let ranks = [
        "--rank",
        "0",
        "--world-size",
        "2",
        "--rendezvous-timeout",
        "5",
    ];
    let base = [&["ds", "-o", "w.st"], ONE_EPOCH, TINY_MODEL, &ranks].concat();
    let args = [&base[..], &["--rendezvous", "notahost:99999"]].concat();
    let (_, err) = expect(1, dir, "ncf-train", &args, &[], b"");
    assert!(
        err.contains("cannot listen at notahost:99999 (from --rendezvous): invalid port value"),
        "{err}"
    );
    let env = [("MASTER_ADDR", "notahost"), ("MASTER_PORT", "99999")];
    let (_, err) = expect(1, dir, "ncf-train", &base, &env, b"");
    assert!(
        err.contains("cannot listen at notahost:99999 (from MASTER_ADDR and MASTER_PORT)"),
        "{err}"
    );
}

/// D28 I20: an unknown 100 kB id was echoed whole in the error. Now ids are shown cut, with
/// their length.
#[test]
fn d28_i20_a_long_unknown_id_is_shown_cut_with_its_length() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    train(dir, "ds", "m.st");
    let long = "7".repeat(100_000);
    let err = fails(dir, "ncf-topk", &["ds", "m.st", "-k", "1", &long]);
    assert!(
        err.len() < 400,
        "{} bytes: {}",
        err.len(),
        &err[..400.min(err.len())]
    );
    assert!(
        err.contains(&format!(
            "unknown user id(s): {}… (100000 bytes)",
            "7".repeat(40)
        )),
        "{err}"
    );
    let list = format!("1\t1\t{long}\n");
    let (_, err) = expect(
        1,
        dir,
        "ncf-eval",
        &["ds", "--ranked", "-"],
        &[],
        list.as_bytes(),
    );
    assert!(err.len() < 400, "{} bytes", err.len());
    assert!(err.contains("(100000 bytes)"), "{err}");
}
