//! The CUDA backend on the host device (no GPU): the kernels compiled for the CPU, every launch
//! and GEMM checked, against the CPU reference.

use ncf_core::train::Precision;
use ncf_cuda::check;
use ncf_cuda::device::Which;

#[test]
fn kernel_checks_pass_on_the_host_device() {
    let mut log = |m: &str| eprintln!("{m}");
    for p in Precision::ALL {
        let checks = check::kernel_checks(Which::Host, p, &mut log).expect("checks ran");
        let lines: Vec<String> = checks.iter().map(|c| c.line()).collect();
        eprintln!("{}", lines.join("\n"));
        assert!(checks.iter().all(|c| c.pass), "{}", lines.join("\n"));
    }
}
