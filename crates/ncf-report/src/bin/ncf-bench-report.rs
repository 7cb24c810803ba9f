//! ncf-bench-report: benchmark results files in, results file / Markdown out; the reports of
//! the experiment scripts and of `make demo`. The flags and the run are `ncf_report::bench_report`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-bench-report", ncf_report::bench_report::run)
}
