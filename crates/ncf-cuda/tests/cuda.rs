//! ncf-cuda's own tests that need CUDA's tools (its other tests are unit tests, and
//! tests/host_device.rs runs the kernels on the host device):
//!
//! - Every kernel source compiles with NVRTC for sm_80 and sm_90 in every activation variant, with
//!   no diagnostics, and ptxas (CUDA 13.0) fits every kernel in the geometry it is launched with.
//!   Needs no GPU: `NCF_NVRTC_HOME` (set by `make unit`) points at the pip NVRTC and ptxas.
//!   Without it the tests skip, or fail when `CI=true`.
//! - On a machine with a GPU, every kernel parity check and the golden CPU/GPU run pass in every
//!   precision. Without a GPU they skip with a message, or fail when `NCF_REQUIRE_GPU=1`.
//!
//! The tools that score on a device (`--device cuda`) are tested as processes in the workspace's
//! tests/scoring.rs.

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
        for def in ncf_cuda::kdef::ALL {
            let got = ncf_cuda::kernels::entry_params(&ptx, def.name);
            assert_eq!(
                got,
                Some(def.classes()),
                "kernel {} ({act:?}): PTX parameters vs its definition",
                def.name
            );
        }
    }
}

/// Every kernel, in every activation variant for sm_80 and sm_90, assembled by ptxas of the
/// pinned CUDA 13.0 (PyPI `nvidia-cuda-nvcc`): no spills, no local memory, and registers and
/// shared memory that fit the geometry the host launches it with (`ncf_cuda::kdef`)
/// and its `__launch_bounds__`. Needs no GPU; skips without ptxas (fails under CI).
#[test]
fn ptxas_resources_fit_every_launch() {
    use ncf_cuda::{kdef, kernels, ptxas};
    let Some(exe) = ptxas::find() else {
        assert!(
            !env_is("CI", "true"),
            "ptxas not found under CI: run `make unit` (it installs nvidia-cuda-nvcc and sets NCF_NVRTC_HOME)"
        );
        eprintln!("skipped: no ptxas (NCF_PTXAS, $NCF_NVRTC_HOME/bin/ptxas, $CUDA_HOME/bin/ptxas)");
        return;
    };
    if std::env::var_os("NCF_NVRTC_HOME").is_none_or(|v| v.is_empty()) {
        assert!(!env_is("CI", "true"), "NCF_NVRTC_HOME is unset under CI");
        eprintln!("skipped: NCF_NVRTC_HOME is unset (NVRTC makes the PTX)");
        return;
    }
    let mut bad = vec![];
    let mut seen = 0;
    for arch in ["sm_80", "sm_90"] {
        for act in kernels::Act::ALL {
            let ptx = kernels::compile("ncf.cu", arch, act).unwrap();
            let report = ptxas::assemble(&exe, &ptx, arch).unwrap();
            for def in kdef::ALL {
                let name = def.name;
                let Some(r) = report.iter().find(|r| r.kernel == name) else {
                    bad.push(format!("{arch} {act:?} {name}: not in the ptxas report"));
                    continue;
                };
                seen += 1;
                let bounds = ptxas::launch_bounds(&ptx, name);
                for p in ptxas::problems(r, def.block, def.max_smem, bounds) {
                    bad.push(format!("{arch} {act:?} {name}: {p} ({r:?})"));
                }
            }
        }
    }
    assert_eq!(seen, 2 * 3 * kdef::ALL.len(), "{bad:?}");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
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
    let which = ncf_cuda::device::Which::Gpu(info.ordinal);
    let checks = ncf_cuda::check::run_all(which, &mut log).expect("checks ran");
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
