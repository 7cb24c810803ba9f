//! ncf-cuda's own tests that need CUDA's tools (its other tests are unit tests, and
//! tests/host_device.rs runs the kernels on the host device):
//!
//! - Every kernel source compiles with NVRTC for sm_80 and sm_90 in every activation variant, with
//!   no diagnostics, and ptxas (CUDA 13.0) fits every kernel in the geometry it is launched with.
//!   Needs no GPU: `NCF_NVRTC_HOME` (set by `make unit`) points at the pip NVRTC and ptxas.
//!   Without it the tests skip, or fail when `CI=true`.
//! - On a machine with a GPU, every kernel parity check and the golden CPU/GPU run pass in every
//!   precision. Without a GPU they skip with a message, or fail when `NCF_REQUIRE_GPU=1`.
//! - The factored first-layer kernels on the host emulator (kernels/emu, g++) match their CPU
//!   twins bit for bit.
//!
//! The tools that score on a device (`--device cuda`) are tested as processes in the workspace's
//! tests/scoring.rs.

mod common {
    /// The repository root.
    pub fn repo_root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }
}

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

/// The factored first-layer kernels (kernels/factored.cuh) run on the host emulator
/// (kernels/emu: one std::thread per CUDA thread) with the trainer's launch shapes, for FP32 and
/// BF16 activations, and give exactly what their CPU twins (ncf_cuda::factored) give: slots,
/// distinct lists, the stable radix sort (3 passes in the larger case), segments, gathered rows,
/// z, per-slot sums in sample order and the row scatter. Needs g++ (C++20); skips without it
/// (fails under CI).
#[test]
fn factored_kernels_match_their_cpu_twins_on_the_host_emulator() {
    use ncf_core::sampling::rng::{below, stream, Rng};
    use ncf_cuda::factored as twin;
    use ncf_cuda::kernels::Act;
    use std::process::Command;
    if Command::new("g++").arg("--version").output().is_err() {
        assert!(
            !env_is("CI", "true"),
            "g++ is needed under CI for the kernel emulator"
        );
        eprintln!("skipped: no g++");
        return;
    }
    let root = common::repo_root();
    let (k, emu) = (root.join("kernels"), root.join("kernels/emu"));
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let shared = |text: &str| {
        text.replace(
            "extern __shared__ float sbias[];",
            "float* sbias = g_dyn_smem;",
        )
        .replace("__shared__ ", "static ")
    };
    for f in ["ncf.cu", "rng.cuh", "sampler.cuh", "factored.cuh"] {
        let text = std::fs::read_to_string(k.join(f)).unwrap();
        let name = if f == "ncf.cu" {
            "k.cu".to_string()
        } else {
            f.to_string()
        };
        std::fs::write(w.join(name), shared(&text)).unwrap();
    }
    let words = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let fwords = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (act, a) in [(Act::F32, 0), (Act::Bf16, 2)] {
        let exe = w.join(format!("factored-{a}"));
        let out = Command::new("g++")
            .args(["-std=c++20", "-O1", "-w", "-pthread"])
            .arg(format!("-I{}", w.display()))
            .arg(format!("-I{}", emu.display()))
            .arg(format!("-I{}", emu.join("inc").display()))
            .arg("-include")
            .arg(emu.join("shim.h"))
            .arg(format!("-DNCF_ACT={a}"))
            .arg("-DKFILE=\"k.cu\"")
            .arg(emu.join("factored.cpp"))
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "g++: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = |x: f32| ncf_cuda::check::round_act(x, act);
        for (case, (n, n_ids, e, w0)) in
            [(2500u32, 300u32, 8usize, 16usize), (70_000, 90_000, 4, 8)]
                .into_iter()
                .enumerate()
        {
            let rng = Rng::new(case as u64 + 1);
            let uni = |k: usize, c: u32| {
                (rng.uniform_f64(stream::SYNTH, k as u32, c, 0) * 2.0 - 1.0) as f32
            };
            // Skewed ids (some rows never drawn): popular ones repeat, as items do.
            let ids: Vec<u32> = (0..n)
                .map(|b| {
                    let x = rng.word(stream::SYNTH, b, 9, 0);
                    if x.is_multiple_of(3) {
                        below(x, 17.min(n_ids))
                    } else {
                        below(x >> 1, n_ids)
                    }
                })
                .collect();
            let cap = (n_ids.min(n)) as usize;
            let table: Vec<f32> = (0..n_ids as usize * e).map(|k| uni(k, 1)).collect();
            let pu: Vec<f32> = (0..cap * w0).map(|k| uni(k, 2)).collect();
            let pi: Vec<f32> = (0..cap * w0).map(|k| uni(k, 3)).collect();
            let dz: Vec<f32> = (0..n as usize * w0).map(|k| uni(k, 4)).collect();
            let drows: Vec<f32> = (0..cap * e).map(|k| uni(k, 5)).collect();
            let g0: Vec<f32> = (0..n_ids as usize * e).map(|k| uni(k, 6)).collect();
            let mut input = words(&[n, n_ids, cap as u32, e as u32, w0 as u32]);
            input.extend(words(&ids));
            for v in [&table, &pu, &pi, &dz, &drows, &g0] {
                input.extend(fwords(v));
            }
            let (fin, fout) = (w.join("in.bin"), w.join("out.bin"));
            std::fs::write(&fin, input).unwrap();
            let run = Command::new(&exe).arg(&fin).arg(&fout).output().unwrap();
            assert!(
                run.status.success(),
                "emulator: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let bytes = std::fs::read(&fout).unwrap();
            let mut at = 0usize;
            let mut next = |len: usize| -> Vec<u32> {
                let v = bytes[at..at + 4 * len]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                at += 4 * len;
                v
            };
            let f = |v: Vec<u32>| -> Vec<f32> { v.into_iter().map(f32::from_bits).collect() };
            let tag = format!("act {a} case {case}");
            // The twins.
            let s = twin::slots(&ids, n_ids);
            let d = s.list.len();
            let keys = twin::keys_of(&ids, &s);
            let (sorted, order) = twin::sort_by_key(&keys);
            let starts = twin::starts(&sorted, d);
            let rows: Vec<f32> = twin::gather_rows(&s.list, cap, e, &table)
                .into_iter()
                .map(r)
                .collect();
            let z = twin::factored_z(&keys, &keys, w0, &pu, &pi);
            let dz_act: Vec<f32> = dz.iter().map(|&x| r(x)).collect();
            let sums: Vec<f32> = twin::segment_sum(&dz_act, w0, &order, &starts, cap)
                .into_iter()
                .map(r)
                .collect();
            let mut g = g0.clone();
            twin::scatter_rows(&s.list, e, &drows, &mut g);
            // What the kernels gave.
            assert_eq!(next(n_ids as usize), s.slots, "{tag}: slots");
            assert_eq!(next(cap)[..d], s.list[..], "{tag}: list");
            assert_eq!(next(1), [d as u32], "{tag}: count");
            assert_eq!(next(n as usize), keys, "{tag}: keys");
            assert_eq!(next(n as usize), sorted, "{tag}: sorted keys");
            assert_eq!(next(n as usize), order, "{tag}: order (stable)");
            assert_eq!(next(cap + 1)[..=d], starts[..], "{tag}: starts");
            assert_eq!(f(next(cap * e)), rows, "{tag}: gathered rows");
            assert_eq!(f(next(n as usize * w0)), z, "{tag}: z");
            assert_eq!(f(next(cap * w0)), sums, "{tag}: segment sums");
            assert_eq!(f(next(n_ids as usize * e)), g, "{tag}: scattered rows");
            assert_eq!(at, bytes.len(), "{tag}: output size");
            if case == 1 {
                assert_eq!(
                    twin::radix_passes(cap),
                    3,
                    "the larger case sorts in 3 passes"
                );
            }
        }
    }
}
