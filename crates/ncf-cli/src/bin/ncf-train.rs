//! ncf-train: train a model of any family on a dataset, keep the best model by HR@K. The flags
//! and the run are `ncf_cli::cmd::train`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-train", ncf_cli::cmd::train::run)
}
