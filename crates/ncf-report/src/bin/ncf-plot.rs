//! ncf-plot: PNG charts of a training log or of benchmark results files. The flags and the run
//! are `ncf_report::plot`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-plot", ncf_report::plot::run)
}
