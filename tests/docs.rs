//! The pipeline's tools (ncf-prep, ncf-negsample, ncf-train, ncf-eval, ncf-topk) document
//! themselves: `--help` states schemas, exit codes and a pipeline example in whole lines; man
//! pages and bash/zsh completions are generated from the same clap definitions, and
//! scripts/install.sh puts all of it in a prefix (what `make install` runs). ncf-plot's and
//! ncf-bench-report's are in tests/report.rs.

mod common;
use common::{describe, fails, ok, repo_root, run};
use std::path::Path;

const TOOLS: [&str; 5] = [
    "ncf-prep",
    "ncf-negsample",
    "ncf-train",
    "ncf-eval",
    "ncf-topk",
];

#[test]
fn help_states_exit_codes_and_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for tool in TOOLS {
        let help = ok(dir.path(), tool, &["--help"]);
        assert!(help.contains("Exit codes: 0 success"), "{tool}:\n{help}");
        assert!(help.contains("2 usage error"), "{tool}:\n{help}");
        assert!(help.contains("Example"), "{tool}:\n{help}");
        assert!(
            help.contains(" | "),
            "{tool}: no pipeline in the example\n{help}"
        );
    }
}

#[test]
fn man_pages_and_completions_are_generated_for_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    for tool in TOOLS {
        let man = ok(dir.path(), tool, &["--generate-man"]);
        assert!(man.contains(&format!(".TH {tool} 1")), "{tool}:\n{man}");
        assert!(man.contains(".SH \"EXIT STATUS\""), "{tool}:\n{man}");
        assert!(man.contains(".SH OPTIONS"), "{tool}:\n{man}");
        assert!(man.contains("\\-\\-help"), "{tool}:\n{man}");
        let bash = ok(dir.path(), tool, &["--generate-completions", "bash"]);
        assert!(
            bash.contains(&format!("-F _{}", tool.replace('-', "__"))),
            "{bash}"
        );
        assert!(bash.contains("--help"), "{bash}");
        let zsh = ok(dir.path(), tool, &["--generate-completions", "zsh"]);
        assert!(zsh.starts_with(&format!("#compdef {tool}")), "{zsh}");
    }
    let man = ok(dir.path(), "ncf-train", &["--generate-man"]);
    assert!(man.contains("\\-\\-preset"), "{man}");
    let err = fails(dir.path(), "ncf-topk", &["--generate-completions", "tcsh"]);
    assert!(err.starts_with("ncf-topk: unknown shell 'tcsh'"), "{err}");
    let out = run(dir.path(), "ncf-eval", &["--generate-completions"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        describe("ncf-eval", &[], &out)
    );
}

#[test]
fn install_puts_binaries_man_pages_and_completions_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("x");
    let bindir = common::bin("ncf-train").parent().unwrap().to_path_buf();
    let mut args = vec![prefix.to_str().unwrap(), bindir.to_str().unwrap()];
    args.extend(TOOLS);
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        describe("install.sh", &args, &out)
    );
    for tool in TOOLS {
        for f in [
            format!("bin/{tool}"),
            format!("share/man/man1/{tool}.1"),
            format!("share/bash-completion/completions/{tool}"),
            format!("share/zsh/site-functions/_{tool}"),
        ] {
            let len = std::fs::metadata(prefix.join(&f)).map_or(0, |m| m.len());
            assert!(len > 100, "{f}: missing or empty");
        }
    }
    // The installed binary is the tool itself.
    let v = std::process::Command::new(prefix.join("bin/ncf-topk"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("ncf-topk "));
}

/// D28 H14: clap wrapped ncf-plot's example at 100 columns, leaving `-o` at the end of a line
/// and its value on the next. No tool's help has a line ending in a flag that takes a value
/// (ncf-plot's own: tests/report.rs).
#[test]
fn help_examples_are_whole_lines_in_every_tool() {
    for tool in [
        "ncf-prep",
        "ncf-negsample",
        "ncf-train",
        "ncf-eval",
        "ncf-topk",
    ] {
        let out = run(Path::new("."), tool, &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        for line in help.lines() {
            let l = line.trim_end();
            assert!(
                !(l.ends_with(" -o") || l.ends_with(" --output")),
                "{tool} --help: a line ends in a flag without its value: {line:?}"
            );
        }
    }
}
