//! ncf-eval: HR@K and NDCG@K of a model, or of any recommender's ranked lists, on a dataset.
//! The flags and the run are `ncf_cli::cmd::eval`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-eval", ncf_cli::cmd::eval::run)
}
