//! Integration tests of the CUDA backend (ncf-cuda).
//!
//! - Every kernel source compiles with NVRTC for sm_80 and sm_90 in every activation variant, with
//!   no diagnostics. Needs no GPU: `NCF_NVRTC_HOME` (set by `make unit`) points at the pip NVRTC.
//!   Without it the test skips, or fails when `CI=true`.
//! - On a machine with a GPU, every kernel parity check and the golden CPU/GPU run pass in every
//!   precision. Without a GPU they skip with a message, or fail when `NCF_REQUIRE_GPU=1`.
mod common;

fn env_is(var: &str, value: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == value)
}

#[test]
fn nvrtc_compiles_every_kernel_for_sm80_and_sm90() {
    if std::env::var_os("NCF_NVRTC_HOME").is_none_or(|v| v.is_empty()) {
        assert!(
            !env_is("CI", "true"),
            "NCF_NVRTC_HOME is unset under CI: run `make unit` (it sets it)"
        );
        eprintln!(
            "skipped: NCF_NVRTC_HOME is unset (run `make unit` to compile the kernels with NVRTC)"
        );
        return;
    }
    let mut compiled = vec![];
    for arch in ["sm_80", "sm_90"] {
        match ncf_cuda::kernels::compile_all(arch) {
            Ok(list) => compiled.extend(list),
            Err(e) => panic!("{e}"),
        }
    }
    // One PTX per unit, arch and activation type, each with every kernel entry.
    assert_eq!(
        compiled.len(),
        ncf_cuda::kernels::UNITS.len() * 2 * 3,
        "{compiled:?}"
    );
    // Every kernel the host launches is in the PTX with the parameters the host passes.
    for act in ncf_cuda::kernels::Act::ALL {
        let ptx = ncf_cuda::kernels::compile("ncf.cu", "sm_90", act).unwrap();
        for (k, sig) in ncf_cuda::trainer::KERNELS {
            let got = ncf_cuda::kernels::entry_params(&ptx, k);
            assert_eq!(
                got.as_deref(),
                Some(*sig),
                "kernel {k} ({act:?}): PTX parameters vs host table"
            );
        }
    }
}

#[test]
fn kernel_parity_and_golden_run_on_the_gpu() {
    let info = match ncf_cuda::available() {
        Ok(info) => info,
        Err(e) => {
            assert!(!env_is("NCF_REQUIRE_GPU", "1"), "NCF_REQUIRE_GPU=1 but {e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let mut log = |m: &str| eprintln!("{m}");
    let checks = ncf_cuda::check::run_all(info.ordinal, &mut log).expect("checks ran");
    let lines: Vec<String> = checks.iter().map(|c| c.line()).collect();
    assert!(
        checks.iter().all(|c| c.pass),
        "on {}:\n{}",
        info.name,
        lines.join("\n")
    );
}

#[test]
fn without_a_gpu_the_error_says_cuda_is_unavailable() {
    match ncf_cuda::available() {
        Ok(info) => eprintln!("skipped: a GPU is present ({})", info.name),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("CUDA unavailable: "), "{msg}");
        }
    }
}
