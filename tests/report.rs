//! ncf-plot and ncf-bench-report, run as binaries: PNG charts from a training log and from results
//! files, results files from raw measurements, generated Markdown blocks, man pages, completions
//! and scripts/install.sh.

mod common;
use common::{bin, describe, fails, leftovers, ok, repo_root, run, s, wait_output, Tmpfs, FOREIGN};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOG: &str = r#"{"epoch":0,"loss":0.44,"hr":0.45,"ndcg":0.25,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}
{"epoch":1,"loss":0.38,"hr":0.51,"ndcg":0.29,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}
{"epoch":2,"loss":0.35,"hr":0.58,"ndcg":0.33,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}
{"best_hr":0.58,"best_ndcg":0.33,"best_epoch":2,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":0.3,"eval_time_s":0.03,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":3,"k":10,"eval":"test","backend":"cpu (2 threads)"}
"#;

/// (width, height) of a PNG file, after checking its signature and IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() > 1000, "{}: only {} bytes", path.display(), b.len());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&b[12..16], b"IHDR");
    let be = |k: usize| u32::from_be_bytes(b[k..k + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn curve_from_a_training_log_is_a_png_of_the_asked_size() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.jsonl"), LOG).unwrap();
    ok(
        dir.path(),
        "ncf-plot",
        &["curve", "train.jsonl", "-o", "curve.png"],
    );
    assert_eq!(png_size(&dir.path().join("curve.png")), (1200, 500));
    ok(
        dir.path(),
        "ncf-plot",
        &[
            "curve",
            "train.jsonl",
            "-o",
            "small.png",
            "--width",
            "640",
            "--height",
            "320",
        ],
    );
    assert_eq!(png_size(&dir.path().join("small.png")), (640, 320));
}

#[test]
fn curve_reads_stdin_and_rejects_bad_logs_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::bin("ncf-plot"))
        .args(["curve", "-", "-o", "stdin.png"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), LOG.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(png_size(&dir.path().join("stdin.png")), (1200, 500));

    let bad = LOG.replace(r#"{"epoch":1,"loss":0.38"#, r#"{"epoch":1,"loss":"x""#);
    std::fs::write(dir.path().join("bad.jsonl"), bad).unwrap();
    let err = fails(
        dir.path(),
        "ncf-plot",
        &["curve", "bad.jsonl", "-o", "bad.png"],
    );
    assert!(
        err.starts_with("ncf-plot: bad.jsonl:2: epoch report"),
        "{err}"
    );
    assert!(!dir.path().join("bad.png").exists());
    std::fs::write(dir.path().join("empty.jsonl"), "").unwrap();
    let err = fails(
        dir.path(),
        "ncf-plot",
        &["curve", "empty.jsonl", "-o", "e.png"],
    );
    assert!(err.contains("no epoch reports"), "{err}");
    // Usage errors exit 2.
    let out = run(dir.path(), "ncf-plot", &["curve", "bad.jsonl"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        describe("ncf-plot", &[], &out)
    );
}

#[test]
fn throughput_chart_from_a_gpu_run_and_from_a_bench_file() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = repo_root().join("benchmarks/results/2026-11-26-h200-v2");
    let v2 = v2.to_str().unwrap();
    ok(dir.path(), "ncf-plot", &["throughput", v2, "-o", "gpu.png"]);
    assert_eq!(png_size(&dir.path().join("gpu.png")), (1000, 550));

    let raw = [
        r#"{"id":"cpu.train.steady","group":"cpu-train","title":"steady","unit":"samples/s","better":"higher","value":100000}"#,
        r#"{"id":"cpu.train.steady","group":"cpu-train","title":"steady","unit":"samples/s","better":"higher","value":120000}"#,
        r#"{"id":"peer.cpu.train.steady","group":"cpu-train","title":"peer","unit":"samples/s","better":"higher","value":30000,"peer_of":"cpu.train.steady"}"#,
    ]
    .join("\n");
    std::fs::write(dir.path().join("raw.jsonl"), raw).unwrap();
    ok(
        dir.path(),
        "ncf-bench-report",
        &["collect", "raw.jsonl", "--name", "t", "-o", "r.json"],
    );
    ok(
        dir.path(),
        "ncf-plot",
        &["throughput", "r.json", "-o", "cpu.png"],
    );
    assert_eq!(png_size(&dir.path().join("cpu.png")), (1000, 550));
    let err = fails(
        dir.path(),
        "ncf-plot",
        &["throughput", "raw.jsonl", "-o", "x.png"],
    );
    assert!(err.starts_with("ncf-plot: raw.jsonl: "), "{err}");
}

#[test]
fn collect_writes_runs_median_spread_and_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    let raw = [
        r#"{"id":"prep","group":"prep","title":"prep","unit":"s","better":"lower","value":6.0}"#,
        r#"{"note":"contended"}"#,
        r#"{"id":"prep","group":"prep","title":"prep","unit":"s","better":"lower","value":5.0}"#,
        r#"{"id":"prep","group":"prep","title":"prep","unit":"s","better":"lower","value":9.0}"#,
    ]
    .join("\n");
    std::fs::write(dir.path().join("raw.jsonl"), raw).unwrap();
    ok(
        dir.path(),
        "ncf-bench-report",
        &[
            "collect",
            "raw.jsonl",
            "--name",
            "box",
            "--date",
            "2026-11-26T12:00:00Z",
            "-o",
            "r.json",
        ],
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(r["schema"], "ncf-bench/1");
    assert_eq!(r["date"], "2026-11-26T12:00:00Z");
    assert_eq!(r["machine"]["name"], "box");
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!r["machine"]["rustc"].as_str().unwrap().is_empty());
    let m = &r["benchmarks"][0];
    assert_eq!(m["runs"], serde_json::json!([6.0, 5.0, 9.0]));
    assert_eq!(
        (m["median"].as_f64(), m["min"].as_f64(), m["max"].as_f64()),
        (Some(6.0), Some(5.0), Some(9.0))
    );
    assert_eq!(r["notes"], serde_json::json!(["contended"]));

    std::fs::write(dir.path().join("bad.jsonl"), "{\"id\":\"x\"}\n").unwrap();
    let err = fails(
        dir.path(),
        "ncf-bench-report",
        &["collect", "bad.jsonl", "--name", "b", "-o", "b.json"],
    );
    assert!(err.starts_with("ncf-bench-report: bad.jsonl:1: "), "{err}");
}

#[test]
fn render_fills_the_generated_blocks_and_check_detects_stale_documents() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("results")).unwrap();
    let raw = [
        r#"{"id":"cpu.train.steady","group":"cpu-train","title":"CPU steady","unit":"samples/s","better":"higher","value":118000}"#,
        r#"{"id":"peer.cpu.train.steady","group":"cpu-train","title":"peer","unit":"samples/s","better":"higher","value":29500,"peer_of":"cpu.train.steady"}"#,
        r#"{"id":"cpu.scale.r1t1","group":"cpu-scaling","title":"1 × 1","unit":"samples/s","better":"higher","value":60000}"#,
        r#"{"id":"cpu.scale.r2t1","group":"cpu-scaling","title":"2 × 1","unit":"samples/s","better":"higher","value":110000}"#,
    ]
    .join("\n");
    std::fs::write(d.join("raw.jsonl"), raw).unwrap();
    ok(
        d,
        "ncf-bench-report",
        &[
            "collect",
            "raw.jsonl",
            "--name",
            "vm",
            "-o",
            "results/2026-11-26-vm.json",
        ],
    );
    std::fs::write(
        d.join("B.md"),
        "# hand text\n<!-- generated:bench-latest -->\nold\n<!-- /generated:bench-latest -->\n\
         <!-- generated:scaling -->\n<!-- /generated:scaling -->\nmore hand text\n",
    )
    .unwrap();
    std::fs::write(
        d.join("R.md"),
        "intro\n<!-- generated:how-fast -->\n<!-- /generated:how-fast -->\n",
    )
    .unwrap();
    let args = [
        "render",
        "--results",
        "results",
        "--benchmarks",
        "B.md",
        "--readme",
        "R.md",
    ];
    let check: Vec<&str> = args.iter().copied().chain(["--check"]).collect();
    let err = fails(d, "ncf-bench-report", &check);
    assert!(err.contains("out of date"), "{err}");
    ok(d, "ncf-bench-report", &args);
    ok(d, "ncf-bench-report", &check);
    let b = std::fs::read_to_string(d.join("B.md")).unwrap();
    assert!(
        b.starts_with("# hand text\n") && b.ends_with("more hand text\n"),
        "{b}"
    );
    assert!(!b.contains("\nold\n"), "{b}");
    assert!(b.contains("| CPU steady | 118,000 samples/s |"), "{b}");
    assert!(b.contains("| 29,500 samples/s | 4.00× |"), "{b}");
    assert!(b.contains("(results/2026-11-26-vm.json)"), "{b}");
    // The scaling table: ranks × threads, speed-up over 1 × 1.
    assert!(
        b.contains("| 1 × 1 | 1 | 60,000 samples/s | 60,000 – 60,000 | 1 | 1.00× |"),
        "{b}"
    );
    assert!(
        b.contains("| 2 × 1 | 2 | 110,000 samples/s | 110,000 – 110,000 | 1 | 1.83× |"),
        "{b}"
    );
    let r = std::fs::read_to_string(d.join("R.md")).unwrap();
    assert!(r.contains("**118,000 samples/s**"), "{r}");
    assert!(r.contains("**4.00× the PyTorch peer**"), "{r}");
    // A document without its block is an error naming the marker.
    std::fs::write(d.join("R.md"), "no block\n").unwrap();
    let err = fails(d, "ncf-bench-report", &args);
    assert!(
        err.contains("R.md: no `<!-- generated:how-fast -->` marker"),
        "{err}"
    );
}

/// The committed BENCHMARKS.md and README.md are what the committed results files render to:
/// every generated number traces to a results file.
#[test]
fn committed_documents_are_rendered_from_the_committed_results() {
    let root = repo_root();
    let out = run(&root, "ncf-bench-report", &["render", "--check"]);
    assert!(
        out.status.success(),
        "run `ncf-bench-report render` (or make bench)\n{}",
        describe("ncf-bench-report", &["render", "--check"], &out)
    );
}

#[test]
fn man_pages_and_completions_come_from_the_clap_definitions() {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["ncf-plot", "ncf-bench-report"] {
        let man = ok(dir.path(), tool, &["--generate-man"]);
        assert!(man.contains(&format!(".TH {tool} 1")), "{man}");
        assert!(man.contains("EXIT STATUS"), "{man}");
        let bash = ok(dir.path(), tool, &["--generate-completions", "bash"]);
        assert!(
            bash.contains(&format!("complete -F _{}", tool.replace('-', "__"))),
            "{bash}"
        );
        let zsh = ok(dir.path(), tool, &["--generate-completions", "zsh"]);
        assert!(zsh.starts_with(&format!("#compdef {tool}")), "{zsh}");
        let help = ok(dir.path(), tool, &["--help"]);
        assert!(help.contains("Exit codes: 0"), "{help}");
        assert!(help.contains("Example:"), "{help}");
    }
    let man = ok(dir.path(), "ncf-plot", &["--generate-man"]);
    assert!(man.contains("curve") && man.contains("throughput"), "{man}");
    let err = fails(dir.path(), "ncf-plot", &["--generate-completions", "tcsh"]);
    assert!(err.contains("unknown shell 'tcsh'"), "{err}");
    let out = run(dir.path(), "ncf-plot", &["--generate-man", "a", "b"]);
    assert_eq!(out.status.code(), Some(2));
    ok(dir.path(), "ncf-plot", &["--generate-man", "pages"]);
    let mut pages: Vec<_> = std::fs::read_dir(dir.path().join("pages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        ["ncf-plot-curve.1", "ncf-plot-throughput.1", "ncf-plot.1"]
    );
}

#[test]
fn install_script_puts_binaries_man_pages_and_completions_in_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let bindir = common::bin("ncf-plot").parent().unwrap().to_path_buf();
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args([
            prefix.to_str().unwrap(),
            bindir.to_str().unwrap(),
            "ncf-plot",
            "ncf-bench-report",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh", &[], &out)
    );
    for tool in ["ncf-plot", "ncf-bench-report"] {
        for f in [
            format!("bin/{tool}"),
            format!("share/man/man1/{tool}.1"),
            format!("share/bash-completion/completions/{tool}"),
            format!("share/zsh/site-functions/_{tool}"),
            format!("share/fish/vendor_completions.d/{tool}.fish"),
        ] {
            let p = prefix.join(&f);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 100, "{f}: missing or empty");
        }
    }
    let man = std::fs::read_to_string(prefix.join("share/man/man1/ncf-plot.1")).unwrap();
    assert!(man.contains(".TH ncf-plot 1"), "{man}");
    // Each subcommand has its own page, named as the main page refers to it.
    for sub in [
        "ncf-plot-curve",
        "ncf-plot-throughput",
        "ncf-bench-report-render",
    ] {
        let page = std::fs::read_to_string(prefix.join(format!("share/man/man1/{sub}.1")))
            .unwrap_or_else(|e| panic!("{sub}.1: {e}"));
        assert!(page.contains(&format!(".TH {sub} 1")), "{page}");
    }
    // A missing binary is an error before anything is installed.
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args([
            dir.path().join("p2").to_str().unwrap(),
            bindir.to_str().unwrap(),
            "no-such-tool",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("p2").exists());
}

/// D2 (defects probe of 2026-12-07): `ncf-plot -o` overwrote any file (its own input, a model),
/// and not atomically. Now it claims its output: an existing file is replaced only with --force and only when ncf-plot
/// wrote it, through a temp file (a full disk leaves the previous chart whole).
#[test]
fn d02_plot_replaces_only_its_own_charts_and_writes_them_whole() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let log = LOG;
    fs::write(r.join("log.jsonl"), log).unwrap();
    // Any file ncf-plot did not write, e.g. a model.
    fs::write(r.join("p.st"), FOREIGN).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let mut a = vec!["curve", "log.jsonl", "-o", "log.jsonl"];
        a.extend_from_slice(force);
        fails(r, "ncf-plot", &a);
        assert_eq!(fs::read_to_string(r.join("log.jsonl")).unwrap(), log);
        let mut a = vec!["curve", "log.jsonl", "-o", "p.st"];
        a.extend_from_slice(force);
        let e = fails(r, "ncf-plot", &a);
        assert!(e.contains("p.st"), "{e}");
        assert_eq!(fs::read(r.join("p.st")).unwrap(), FOREIGN);
    }
    let e = fails(
        r,
        "ncf-plot",
        &["curve", "log.jsonl", "-o", "p.st", "--force"],
    );
    assert!(e.contains("not a PNG file"), "{e}");
    ok(r, "ncf-plot", &["curve", "log.jsonl", "-o", "c.png"]);
    let e = fails(r, "ncf-plot", &["curve", "log.jsonl", "-o", "c.png"]);
    assert!(
        e.contains("c.png: output already exists (use --force"),
        "{e}"
    );
    ok(
        r,
        "ncf-plot",
        &["curve", "log.jsonl", "-o", "c.png", "--force"],
    );
    // A PNG that ncf-plot did not write is the user's.
    let mut foreign = fs::read(r.join("c.png")).unwrap();
    let at = foreign.windows(8).position(|w| w == b"Software").unwrap();
    foreign[at] = b's';
    fs::write(r.join("photo.png"), &foreign).unwrap();
    let e = fails(
        r,
        "ncf-plot",
        &["curve", "log.jsonl", "-o", "photo.png", "--force"],
    );
    assert!(e.contains("a PNG that ncf-plot did not write"), "{e}");
    assert_eq!(fs::read(r.join("photo.png")).unwrap(), foreign);
    // A full disk leaves the previous chart as it was.
    let Some(disk) = Tmpfs::mount(&r.join("small"), "2m") else {
        eprintln!("SKIPPED the full-disk part of d02: cannot mount a tmpfs (not root)");
        return;
    };
    let png = r.join("small/p.png");
    ok(r, "ncf-plot", &["curve", "log.jsonl", "-o", s(&png)]);
    let before = fs::read(&png).unwrap();
    disk.fill(4096);
    let args = [
        "curve",
        "log.jsonl",
        "-o",
        s(&png),
        "--force",
        "--width",
        "4000",
    ];
    let e = fails(r, "ncf-plot", &args);
    assert!(e.contains("no space left on device"), "{e}");
    assert_eq!(
        fs::read(&png).unwrap(),
        before,
        "the previous chart was damaged"
    );
    assert_eq!(leftovers(&r.join("small")), Vec::<String>::new());
}

/// ncf-train's epoch lines with these (epoch, loss, hr, ndcg) values, as written.
fn epoch_lines(values: &[(u32, &str, &str, &str)]) -> String {
    values
        .iter()
        .map(|(e, loss, hr, ndcg)| {
            format!(
                "{{\"epoch\":{e},\"loss\":{loss},\"hr\":{hr},\"ndcg\":{ndcg},\"k\":10,\"eval\":\"test\",\
                 \"train_s\":0.1,\"eval_s\":0.01,\"samples\":10,\"samples_per_s\":100.0,\"steps\":1,\
                 \"skipped_steps\":0}}\n"
            )
        })
        .collect()
}

/// D13 (defects probe of 2026-12-07): `ncf-plot curve` spun forever on a loss range that overflows f64, and drew HR 2 and NDCG
/// -1. Now both are errors naming the line or the range.
#[test]
fn d13_plot_refuses_what_it_cannot_draw_instead_of_hanging() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let cases = [
        (
            epoch_lines(&[(0, "1e308", "0.5", "0.3"), (1, "-1e308", "0.5", "0.3")]),
            "too wide to draw",
        ),
        (
            epoch_lines(&[(0, "0.3", "2", "0.3")]),
            "h.jsonl:1: hr 2 is outside [0, 1]",
        ),
        (
            epoch_lines(&[(0, "0.3", "0.5", "-1")]),
            "h.jsonl:1: ndcg -1 is outside [0, 1]",
        ),
    ];
    for (log, want) in cases {
        fs::write(r.join("h.jsonl"), &log).unwrap();
        let mut child = Command::new(bin("ncf-plot"))
            .args(["curve", "h.jsonl", "-o", "h.png"])
            .current_dir(r)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("ncf-plot still running after 20 s on {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, err) = wait_output(child);
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!r.join("h.png").exists());
    }
}

/// D28 H14 (defects probe of 2026-12-07): clap wrapped the example at 100 columns, leaving `-o`
/// at the end of a line and its value on the next.
#[test]
fn d28_h14_the_plot_example_is_one_line() {
    let out = run(Path::new("."), "ncf-plot", &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("ncf-plot curve train.jsonl -o curve.png"),
        "{help}"
    );
    for line in help.lines() {
        assert!(!line.trim_end().ends_with(" -o"), "{line:?}");
    }
}

/// `make demo` ends with `ncf-bench-report run-summary`, not Python (issue 31): it runs with no
/// python3 on PATH, and the demo target names no Python.
#[test]
fn the_demo_summary_needs_no_python() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    fs::write(r.join("train.jsonl"), LOG).unwrap();
    fs::write(
        r.join("eval.json"),
        r#"{"hr":0.6,"ndcg":0.35,"k":10,"users":610,"candidates":101,"protocol":"sampled"}"#,
    )
    .unwrap();
    let out = Command::new(bin("ncf-bench-report"))
        .args([
            "run-summary",
            "train.jsonl",
            "eval.json",
            "--curve",
            "curve.png",
        ])
        .current_dir(r)
        .env("PATH", r)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        describe("run-summary", &[], &out)
    );
    assert_eq!(
        text,
        "== training curve: curve.png\n== model: HR@10 0.6000, NDCG@10 0.3500 (sampled, 101 \
         candidates per user); trained 3 epochs in 0.3 s on cpu (2 threads)\n"
    );
    let makefile = fs::read_to_string(repo_root().join("Makefile")).unwrap();
    let demo = makefile.split("\ndemo:").nth(1).unwrap();
    let demo = &demo[..demo.find("\n\n").unwrap()];
    assert!(demo.contains("ncf-bench-report run-summary"), "{demo}");
    assert!(!demo.contains("python"), "{demo}");
}
