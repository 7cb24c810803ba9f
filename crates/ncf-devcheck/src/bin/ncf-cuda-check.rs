//! ncf-cuda-check: parity checks, golden runs and bench of the CUDA kernels, NCCL's version. The
//! flags and the run are `ncf_devcheck::cuda_check`.

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-cuda-check", ncf_devcheck::cuda_check::run)
}
