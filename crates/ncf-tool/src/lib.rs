//! What every ncf binary shares: how `main` parses, runs a command and turns its result into an
//! exit code, and the man pages and shell completions generated from each tool's clap definition.
//!
//! Exit codes: 0 ok (also a closed stdout pipe, as in `ncf-topk | head`), 1 any error the command
//! reports (bad data, impossible request, existing output), 2 a command line clap cannot parse.

use std::io::Write;
use std::process::ExitCode;

/// The exit-code paragraph every tool's `--help` ends with (one wording for all tools).
pub const EXIT_CODES: &str = "Exit codes: 0 success (also when stdout is a closed pipe), \
1 error (bad input data, impossible request, output exists), 2 usage error (bad command line).";

/// Hidden first arguments, handled before clap parses: `TOOL --generate-man` writes the roff man
/// page to stdout (`TOOL --generate-man DIR`: TOOL.1 and one TOOL-SUBCOMMAND.1 per subcommand into
/// DIR), `TOOL --generate-completions bash|zsh|fish|elvish|powershell` the completion script.
/// `make install` uses them; they are not in `--help`.
pub const GENERATE_MAN: &str = "--generate-man";
pub const GENERATE_COMPLETIONS: &str = "--generate-completions";

/// Parse the command line into `A` (usage errors exit 2), run `body` and map its result to an exit
/// code, printing errors once as `tool: error chain`.
pub fn main_with<A: clap::Parser>(
    tool: &'static str,
    body: impl FnOnce(A) -> anyhow::Result<()>,
) -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).take(3).collect();
    match argv.first().map(String::as_str) {
        Some(GENERATE_MAN) | Some(GENERATE_COMPLETIONS) => {
            let cmd = command_of::<A>(tool);
            let result = match (argv.first().map(String::as_str), argv.get(1), argv.len()) {
                (Some(GENERATE_MAN), None, 1) => write_man(cmd, &mut std::io::stdout().lock()),
                (Some(GENERATE_MAN), Some(dir), 2) => {
                    write_man_pages(cmd, std::path::Path::new(dir)).map(|_| ())
                }
                (Some(GENERATE_COMPLETIONS), Some(shell), 2) => {
                    write_completions(cmd, shell, &mut std::io::stdout().lock())
                }
                _ => {
                    eprintln!(
                        "{tool}: usage: {tool} {GENERATE_MAN} [DIR] | {tool} {GENERATE_COMPLETIONS} SHELL"
                    );
                    return ExitCode::from(2);
                }
            };
            report(tool, result)
        }
        _ => {
            let args = parse::<A>(tool);
            ncf_core::interrupt::install(tool);
            // An invalid NCF_MEMORY_LIMIT is refused before any work, also by a run that would
            // never have checked memory: a limit the user believes in force must be one.
            let limit = ncf_core::memory::available().map_err(anyhow::Error::from);
            let code = report(tool, limit.and_then(|_| body(args)));
            // After the error message: under mpirun a rank that ended makes the launcher end the
            // others, which must have said why they stop first.
            ncf_core::dist::finish();
            code
        }
    }
}

fn report(tool: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if ncf_core::io::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("{tool}: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            // Never a panic when stderr is gone (a terminal closed by SIGHUP).
            ncf_core::interrupt::note(&msg);
            ExitCode::from(1)
        }
    }
}

/// Parse the command line as `tool` (so `--version` and usage name the tool); exits 2 on a usage
/// error, 0 after --help / --version.
fn parse<A: clap::Parser>(tool: &'static str) -> A {
    let mut cmd = command_of::<A>(tool);
    let matches = cmd.clone().get_matches();
    A::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// The clap command of a tool, named as installed (derive would name it after the crate).
pub fn command_of<A: clap::CommandFactory>(tool: &'static str) -> clap::Command {
    A::command().name(tool).bin_name(tool)
}

/// Hide clap's implicit `help` subcommand from man pages (it has no page of its own).
fn without_help_subcommand(mut cmd: clap::Command) -> clap::Command {
    cmd.build();
    if cmd.find_subcommand("help").is_some() {
        cmd = cmd.mut_subcommand("help", |s| s.hide(true));
    }
    cmd
}

/// Write `NAME.1` for `cmd` and `NAME-SUB.1` for each of its subcommands into `dir` (created if
/// needed); returns the files written.
pub fn write_man_pages(
    cmd: clap::Command,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let cmd = without_help_subcommand(cmd);
    let name = cmd.get_name().to_string();
    // clap keeps versions as &'static str; this runs once per process.
    let version: Option<&'static str> = cmd
        .get_version()
        .map(|v| &*Box::leak(v.to_string().into_boxed_str()));
    let mut pages = vec![(format!("{name}.1"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut page = sub
            .clone()
            .display_name(format!("{name}-{}", sub.get_name()))
            .bin_name(format!("{name} {}", sub.get_name()));
        if let Some(v) = version {
            page = page.version(v);
        }
        pages.push((format!("{name}-{}.1", sub.get_name()), page));
    }
    let mut written = vec![];
    for (file, page) in pages {
        let path = dir.join(file);
        let mut buf = Vec::new();
        write_man(page, &mut buf)?;
        std::fs::write(&path, buf).with_context(|| path.display().to_string())?;
        written.push(path);
    }
    Ok(written)
}

/// The man page (section 1, roff) of `cmd`, with an EXIT STATUS section.
pub fn write_man(cmd: clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(without_help_subcommand(cmd));
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    man.render_subcommands_section(&mut buf)?;
    buf.extend_from_slice(
        b".SH \"EXIT STATUS\"\n.TP\n0\nsuccess (also when stdout is a closed pipe)\n\
.TP\n1\nerror: bad input data, impossible request, output exists\n\
.TP\n2\nusage error: the command line could not be parsed\n",
    );
    man.render_version_section(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}

/// The completion script of `cmd` for `shell` (bash, zsh, fish, elvish, powershell).
pub fn write_completions(
    mut cmd: clap::Command,
    shell: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use clap::ValueEnum;
    let sh = clap_complete::Shell::from_str(shell, true).map_err(|_| {
        anyhow::anyhow!("unknown shell '{shell}' (expected bash, zsh, fish, elvish or powershell)")
    })?;
    let name = cmd.get_name().to_string();
    clap_complete::generate(sh, &mut cmd, name, out);
    out.flush()?;
    Ok(())
}

/// True when stderr is a terminal (progress bars only then).
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Demo tool: reads things.
    ///
    /// Longer description.
    #[derive(Parser, Debug)]
    #[command(version)]
    struct Demo {
        /// The input file.
        input: String,
        /// How many.
        #[arg(long, default_value_t = 3)]
        count: usize,
    }

    #[test]
    fn man_page_is_named_after_the_tool_and_has_exit_status() {
        let mut out = Vec::new();
        write_man(command_of::<Demo>("ncf-demo"), &mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        assert!(man.contains(".TH ncf-demo 1"), "{man}");
        assert!(man.contains("EXIT STATUS"), "{man}");
        assert!(man.contains("\\-\\-count"), "{man}");
        assert!(man.contains("Longer description"), "{man}");
    }

    #[derive(Parser, Debug)]
    #[command(version)]
    enum WithSubs {
        /// Draw a curve.
        Curve {
            /// The log.
            log: String,
        },
        /// Draw bars.
        Bars,
    }

    #[test]
    fn subcommands_get_pages_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(command_of::<WithSubs>("ncf-demo"), dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ncf-demo.1", "ncf-demo-curve.1", "ncf-demo-bars.1"]);
        let main = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            main.contains("ncf\\-demo\\-curve(1)") || main.contains("ncf-demo-curve(1)"),
            "{main}"
        );
        assert!(!main.contains("demo-help"), "{main}");
        let curve = std::fs::read_to_string(&files[1]).unwrap();
        assert!(curve.contains(".TH ncf-demo-curve 1"), "{curve}");
        assert!(
            curve.contains("ncf\\-demo curve") || curve.contains("ncf-demo curve"),
            "{curve}"
        );
        assert!(curve.contains("EXIT STATUS"), "{curve}");
    }

    #[test]
    fn completions_for_bash_and_zsh_name_the_options() {
        for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef ncf-demo")] {
            let mut out = Vec::new();
            write_completions(command_of::<Demo>("ncf-demo"), shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(marker), "{shell}: {text}");
            assert!(text.contains("--count"), "{shell}: {text}");
        }
        let err = write_completions(command_of::<Demo>("ncf-demo"), "tcsh", &mut Vec::new());
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("unknown shell 'tcsh'"));
    }
}
