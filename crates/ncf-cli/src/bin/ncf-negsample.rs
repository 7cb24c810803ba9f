//! ncf-negsample: test negatives into a dataset, or the training samples of one epoch.
//! The flags and the run are `ncf_cli::cmd::negsample`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-negsample", ncf_cli::cmd::negsample::run)
}
