//! ncf-eval and ncf-topk through the real binaries: ids given on the command line, on stdin and
//! in ranked lists are looked up one way and shown quoted and short; ranked lists with ties or
//! repeats, and empty or failed ones, are refused; ensemble weights are checked; NaN scores are
//! noted; scoring runs on the device asked for (`--device`). Cases of issues 24 (`caseNN_`) and
//! 30 (`dNN_`, docs/RELIABILITY.md) among them.

mod common;

use common::train as train_tiny;
use common::{
    describe, expect, fails, ok, run_with, s, scratch as env, shell, small, ONE_EPOCH, TINY_MODEL,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Train the small model of `ds` into `dir/model`.
fn train(dir: &Path, ds: &str, model: &str) {
    ok(
        dir,
        "ncf-train",
        &[&[ds, "-o", model], ONE_EPOCH, TINY_MODEL].concat(),
    );
}

/// ml-latest-small with 20 test negatives per user in `dir/ds` ([`small`]) and the tiny model of
/// it at `dir/m.st`: trained once per test binary ([`train`]), then copied.
fn small_with_model(dir: &Path) {
    static MODEL: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, model) = MODEL.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        small(d.path());
        train(d.path(), "ds", "m.st");
        let model = d.path().join("m.st");
        (d, model)
    });
    small(dir);
    fs::copy(model, dir.join("m.st")).unwrap();
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
    small_with_model(dir);
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

/// D21: ncf-topk with an empty stdin exited 0 without a word. Now it fails as ncf-eval --ranked
/// does on an empty input, naming the likely cause.
#[test]
fn d21_topk_with_an_empty_stdin_fails_naming_the_likely_cause() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small_with_model(dir);
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

/// D22: ncf-eval gave HR 0 for a model that scores NaN without a word (ncf-topk noted it), also
/// inside an ensemble. Now both tools note a model with non-finite parameters when they load
/// it, and ncf-eval counts the NaN scores of each model as ncf-topk does.
#[test]
fn d22_a_model_that_scores_nan_is_noted_by_eval_and_topk() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small_with_model(dir);
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

/// D28 I20: an unknown 100 kB id was echoed whole in the error. Now ids are shown cut, with
/// their length.
#[test]
fn d28_i20_a_long_unknown_id_is_shown_cut_with_its_length() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small_with_model(dir);
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

/// Case 3: `ncf-eval ds --ranked - </dev/null` gave rc 0 and HR 0, and so did a failed
/// `ncf-topk` before the pipe. An input without a ranked line is now an error; a list that
/// leaves test users out says how many.
#[test]
fn case03_an_empty_or_failed_ranked_list_is_an_error() {
    let e = env();
    let ds = s(&e.ds);
    let out = shell(&e.root, &format!("ncf-eval {ds} --ranked - </dev/null"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("<stdin>: no ranked lines"), "{err}");
    assert!(err.contains("pipefail"), "{err}");
    assert!(out.stdout.is_empty(), "a result was printed");
    // ncf-topk fails (no such model) before it prints a line: no result either
    let out = shell(
        &e.root,
        &format!("ncf-topk {ds} missing.safetensors --all -k 5 | ncf-eval {ds} --ranked -"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("missing.safetensors"), "{err}");
    assert!(err.contains("no ranked lines"), "{err}");
    // a file with the header only is empty too
    fs::write(e.root.join("header.tsv"), "user\trank\titem\n").unwrap();
    let err = fails(&e.root, "ncf-eval", &[ds, "--ranked", "header.tsv"]);
    assert!(err.contains("header.tsv: no ranked lines"), "{err}");
    // a list for one user is evaluated, and says that the others count as misses
    let model = e.root.join("m.st");
    train_tiny(&e, &model, &[]);
    let out = shell(
        &e.root,
        &format!("set -o pipefail; ncf-topk {ds} m.st 1 -k 10 | ncf-eval {ds} --ranked -"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("<stdin> lists 1 of the 610 test users; the other 609 count as misses"),
        "{err}"
    );
}

/// Case 6: `ncf-eval A B --weights=0,0` and `--weights=-1` were accepted (HR 0, an inverted
/// model). Now weights must be ≥ 0 with at least one > 0.
#[test]
fn case06_ensemble_weights_must_be_non_negative_and_not_all_zero() {
    let e = env();
    train_tiny(&e, &e.root.join("a.st"), &[]);
    train_tiny(&e, &e.root.join("b.st"), &["--seed", "2"]);
    let ds = s(&e.ds);
    let err = fails(&e.root, "ncf-eval", &[ds, "a.st", "b.st", "--weights=0,0"]);
    assert!(err.contains("--weights 0,0: all zero"), "{err}");
    let err = fails(&e.root, "ncf-eval", &[ds, "a.st", "--weights=-1"]);
    assert!(err.contains("--weights -1: a negative weight"), "{err}");
    let err = fails(
        &e.root,
        "ncf-eval",
        &[ds, "a.st", "b.st", "--weights=0.5,-0.5"],
    );
    assert!(
        err.contains("--weights 0.5,-0.5: a negative weight"),
        "{err}"
    );
    ok(&e.root, "ncf-eval", &[ds, "a.st", "b.st", "--weights=1,0"]);
}

/// The tools that score (ncf-eval, ncf-topk) take `--device cuda` through the one Scorer
/// interface: with a GPU they give the CPU's rankings (FP32 scores, equal up to rounding); without
/// one `cuda` is refused as unavailable and `auto` falls back to the CPU with a note and the same
/// output.
#[test]
fn eval_and_topk_score_on_the_device_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = common::ml100k_dataset(root, 100);
    let d = data.to_str().unwrap();
    let model = root.join("m.safetensors");
    let m = model.to_str().unwrap();
    common::ok(
        root,
        "ncf-train",
        &[
            d,
            "-o",
            m,
            "--preset",
            "ml1m",
            "--epochs",
            "1",
            "--batch-size",
            "8192",
            "-q",
        ],
    );
    // The CPU takes the choice of path too (`--first-layer`, once CUDA's alone as
    // `--cuda-first-layer`): per sample gives a model close to, not equal to, the factored one;
    // a family without an MLP refuses it.
    let x = root.join("x.safetensors");
    common::ok(
        root,
        "ncf-train",
        &[
            d,
            "-o",
            x.to_str().unwrap(),
            "--preset",
            "ml1m",
            "--epochs",
            "1",
            "--batch-size",
            "8192",
            "-q",
            "--cuda-first-layer",
            "per-sample",
        ],
    );
    assert_ne!(std::fs::read(&x).unwrap(), std::fs::read(&model).unwrap());
    let e = common::fails(
        root,
        "ncf-train",
        &[
            d,
            "-o",
            "y.safetensors",
            "--model",
            "mf",
            "--epochs",
            "1",
            "--first-layer",
            "factored",
        ],
    );
    assert!(
        e.contains("--first-layer is how NeuMF, GMF and MLP compute"),
        "{e}"
    );
    let topk = |device: &str| {
        common::run(
            root,
            "ncf-topk",
            &[d, m, "--all", "-k", "5", "--device", device],
        )
    };
    let cpu = topk("cpu");
    assert!(
        cpu.status.success(),
        "{}",
        common::describe("ncf-topk", &[], &cpu)
    );
    let items = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join("\t"))
            .collect()
    };
    let eval = |device: &str| common::run(root, "ncf-eval", &[d, m, "--device", device]);
    match ncf_cuda::available() {
        Ok(info) => {
            let gpu = topk("cuda");
            assert!(
                gpu.status.success(),
                "{}",
                common::describe("ncf-topk", &[], &gpu)
            );
            let (a, b) = (items(&cpu), items(&gpu));
            assert_eq!(a.len(), b.len());
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert!(
                differ * 100 <= a.len(),
                "on {}: {differ} of {} lines differ",
                info.name,
                a.len()
            );
            let (ec, eg) = (eval("cpu"), eval("cuda"));
            assert!(
                eg.status.success(),
                "{}",
                common::describe("ncf-eval", &[], &eg)
            );
            let hr = |o: &std::process::Output| {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                v["hr"].as_f64().unwrap()
            };
            assert!(
                (hr(&ec) - hr(&eg)).abs() <= 0.005,
                "{} vs {}",
                hr(&ec),
                hr(&eg)
            );
        }
        Err(_) => {
            for tool in ["ncf-topk", "ncf-eval"] {
                let args: Vec<&str> = if tool == "ncf-topk" {
                    vec![d, m, "1", "--device", "cuda"]
                } else {
                    vec![d, m, "--device", "cuda"]
                };
                let err = common::fails(root, tool, &args);
                assert!(err.contains("CUDA unavailable"), "{tool}: {err}");
            }
            let auto = topk("auto");
            assert!(
                auto.status.success(),
                "{}",
                common::describe("ncf-topk", &[], &auto)
            );
            assert!(String::from_utf8_lossy(&auto.stderr).contains("scoring on the CPU"));
            assert_eq!(items(&auto), items(&cpu));
            assert_eq!(eval("auto").stdout, eval("cpu").stdout);
        }
    }
}
