//! ncf-topk: the K best items of users by a trained model, as TSV with raw ids.
//! The flags and the run are `ncf_cli::cmd::topk`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-topk", ncf_cli::cmd::topk::run)
}
