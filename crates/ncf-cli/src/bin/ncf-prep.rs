//! ncf-prep: ratings file in, dataset directory (or Arrow IPC stream) out.
//! The flags and the run are `ncf_cli::cmd::prep`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-prep", ncf_cli::cmd::prep::run)
}
