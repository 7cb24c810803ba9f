//! What every ncf binary shares: how `main` runs a command and turns its result into an exit code.
//!
//! Exit codes: 0 ok (also a closed stdout pipe, as in `ncf-topk | head`), 1 any error the command
//! reports (bad data, impossible request, existing output), 2 a command line clap cannot parse.

use std::process::ExitCode;

/// Run `body` and map its result to an exit code, printing errors once as `tool: error chain`.
pub fn main_with(tool: &str, body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if ncf_core::io::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("{tool}: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

/// True when stderr is a terminal (progress bars only then).
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
