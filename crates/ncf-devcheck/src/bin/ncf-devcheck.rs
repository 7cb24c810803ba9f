//! ncf-devcheck: the verdicts and the results file of scripts/device-check.sh (the GPU check).
//! The flags and the run are `ncf_devcheck::cli`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-devcheck", ncf_devcheck::cli::run)
}
