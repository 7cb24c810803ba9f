//! The env stage's verdict: from what the script found on the GPU machine (nvidia-smi's lines,
//! the Pythons it could run, candidate CUDA library directories and compute-sanitizers), which
//! CUDA libraries to use (no newer than the driver: PTX from a newer NVRTC does not load), which
//! compute-sanitizer, the environment of the later stages (`env.sh`), and whether the check can
//! run at all (binaries and data carried, a GPU that two processes may share).

use crate::results::EnvDetail;
use crate::{StageVerdict, Status};
use std::path::{Path, PathBuf};

/// What the script found.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub gpu: bool,
    /// `nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader`.
    pub smi_query: String,
    /// `nvidia-smi`'s table (its "CUDA Version: X.Y").
    pub smi: String,
    pub python: String,
    pub torch_python: String,
    /// `sys.executable torch.__version__ torch.version.cuda` of the torch Python.
    pub torch: String,
    /// NCCL's lib directory as the Python found it (pip's nvidia-nccl wheel); else `ldconfig`.
    pub nccl_dir: String,
    /// `ldconfig -p`.
    pub ldconfig: String,
    /// Candidate CUDA library directories, in order of preference.
    pub cuda_dirs: Vec<PathBuf>,
    /// Candidate compute-sanitizers, after the chosen toolkit's own.
    pub sanitizers: Vec<PathBuf>,
    pub ld_library_path: String,
    pub bin: PathBuf,
    pub data: PathBuf,
    pub commit: String,
}

/// `X.Y` of a CUDA version string (`13.0`, `13.0.88`) as numbers.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.trim().split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The CUDA version of a library directory: from libnvrtc.so.13's real name
/// (`libnvrtc.so.13.0.88`), else the toolkit's version.json.
fn cuda_version(dir: &Path) -> String {
    let real = std::fs::canonicalize(dir.join("libnvrtc.so.13")).ok();
    let from_name = real
        .as_ref()
        .and_then(|p| {
            p.file_name()?
                .to_str()?
                .strip_prefix("libnvrtc.so.")
                .map(String::from)
        })
        .and_then(|v| major_minor(&v).map(|(a, b)| format!("{a}.{b}")));
    from_name
        .or_else(|| {
            let text = std::fs::read_to_string(dir.join("../version.json")).ok()?;
            let at = text.find("\"version\"")?;
            let rest = &text[at + "\"version\"".len()..];
            let v = rest.split('"').nth(1)?;
            major_minor(v).map(|(a, b)| format!("{a}.{b}"))
        })
        .unwrap_or_default()
}

/// The CUDA library directory to use: one with libnvrtc.so.13 and libcublas.so.13 whose CUDA is
/// no newer than the driver's, the driver's exact version first. Returns (dir, version, notes
/// on every candidate).
pub fn choose_cuda_dir(cands: &[PathBuf], driver_cuda: &str) -> (String, String, String) {
    let (mut best, mut best_v, mut notes) = (String::new(), String::new(), String::new());
    let mut seen = vec![];
    for d in cands {
        if !d.is_dir() || seen.contains(d) {
            continue;
        }
        seen.push(d.clone());
        let shown = d.display();
        if !(d.join("libnvrtc.so.13").exists() && d.join("libcublas.so.13").exists()) {
            notes += &format!("{shown}: no libnvrtc.so.13/libcublas.so.13; ");
            continue;
        }
        let v = cuda_version(d);
        notes += &format!("{shown}: CUDA {}; ", if v.is_empty() { "?" } else { &v });
        if let (Some(lib), Some(drv)) = (major_minor(&v), major_minor(driver_cuda)) {
            if lib > drv {
                continue; // newer than the driver
            }
        }
        if best.is_empty() || (v == driver_cuda && best_v != driver_cuda) {
            best = shown.to_string();
            best_v = v;
        }
    }
    (best, best_v, notes)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A word quoted for bash (`'…'`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The env stage: its verdict (detail: [`EnvDetail`]), the lines it prints, and the `env.sh`
/// every later stage sources.
pub fn judge_env(f: &Facts) -> (StageVerdict, Vec<String>, String) {
    let first = f.smi_query.lines().next().unwrap_or("");
    let mut q = first.split(',').map(|s| s.trim().to_string());
    let (gpu, drv, mem, mode) = (
        q.next().unwrap_or_default(),
        q.next().unwrap_or_default(),
        q.next().unwrap_or_default(),
        q.next().unwrap_or_default(),
    );
    let cudav = f
        .smi
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("CUDA Version:")? + "CUDA Version:".len()..];
            let v: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            Some(v)
        })
        .unwrap_or_default();
    let nccl_dir = match f.nccl_dir.trim() {
        "" => f
            .ldconfig
            .lines()
            .find(|l| l.contains("libnccl.so"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|p| Path::new(p).parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        d => d.to_string(),
    };
    let (best, best_v, notes) = choose_cuda_dir(&f.cuda_dirs, &cudav);
    let own = (!best.is_empty()).then(|| Path::new(&best).join("../bin/compute-sanitizer"));
    let san = own
        .iter()
        .chain(&f.sanitizers)
        .find(|p| executable(p))
        .map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or(p.clone())
                .display()
                .to_string()
        })
        .unwrap_or_default();
    let mut ld: Vec<&str> = [best.as_str(), nccl_dir.as_str()]
        .into_iter()
        .filter(|d| !d.is_empty())
        .collect();
    if !f.ld_library_path.is_empty() {
        ld.push(&f.ld_library_path);
    }
    let ld = ld.join(":");
    let q = |s: &str| shell_quote(s);
    let mut env_sh = format!(
        "export LD_LIBRARY_PATH={}\nexport NCF_PTX_CACHE=/tmp/ncf-ptx\nTORCH_PY={}\nPY={}\n\
         SANITIZER={}\nNCCL_DIR={}\nCUDA_DIR={}\n",
        q(&ld),
        q(&f.torch_python),
        q(&f.python),
        q(&san),
        q(&nccl_dir),
        q(&best)
    );
    // Headers for NVRTC (fp16/bf16): the toolkit's include/.
    if !best.is_empty() && Path::new(&best).join("../include/cuda_fp16.h").is_file() {
        if let Ok(home) = std::fs::canonicalize(Path::new(&best).join("..")) {
            env_sh += &format!("export NCF_NVRTC_HOME={}\n", q(&home.display().to_string()));
        }
    }
    let or = |s: &str, none: &str| {
        if s.is_empty() {
            none.to_string()
        } else {
            s.to_string()
        }
    };
    let lines = vec![
        format!(
            "GPU: {} driver {} (CUDA {}) {mem} compute mode {}",
            or(&gpu, "none"),
            or(&drv, "none"),
            or(&cudav, "?"),
            or(&mode, "?")
        ),
        format!(
            "python (torch): {} {}",
            or(&f.torch_python, "not found"),
            f.torch
        ),
        format!("python: {}", or(&f.python, "not found")),
        format!("NCCL lib dir: {}", or(&nccl_dir, "not found")),
        format!(
            "CUDA lib dir: {} (CUDA {}); candidates: {}",
            or(&best, "not found"),
            or(&best_v, "?"),
            or(&notes, "none")
        ),
        format!("compute-sanitizer: {}", or(&san, "not found")),
        format!("LD_LIBRARY_PATH={ld}"),
    ];
    let detail = EnvDetail {
        gpu: gpu.clone(),
        driver: drv.clone(),
        driver_cuda: cudav.clone(),
        memory: mem,
        compute_mode: mode.clone(),
        torch_python: f.torch_python.clone(),
        torch: f.torch.trim().to_string(),
        python: f.python.clone(),
        nccl_lib_dir: nccl_dir.clone(),
        cuda_lib_dir: best.clone(),
        cuda_lib_version: best_v,
        cuda_candidates: notes,
        compute_sanitizer: san,
        ld_library_path: ld,
        commit: crate::stages::cut(f.commit.trim(), 200),
    };
    let mut missing = String::new();
    for b in ["ncf-train", "ncf-cuda-check", "ncf-devcheck"] {
        if !executable(&f.bin.join(b)) {
            missing += &format!(" {b}");
        }
    }
    if !f.data.exists() {
        missing += &format!(" {}", f.data.display());
    }
    let (status, summary) = if !missing.is_empty() {
        (
            Status::Fail,
            format!("missing (run scripts/device-pack.sh and carry .device/...):{missing}"),
        )
    } else if !f.gpu {
        (
            Status::NoGpu,
            format!(
                "no GPU; binaries and data present; python {}, torch {}",
                or(&f.python, "none"),
                or(&f.torch_python, "none")
            ),
        )
    } else if mode.contains("Exclusive") {
        (
            Status::Fail,
            format!(
                "{gpu} in compute mode {mode}: two processes (the 2-rank stages) cannot share it"
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "{gpu}, driver {drv} (CUDA {cudav}); CUDA libs {}; NCCL {}; torch {}",
                or(&best, "?"),
                or(&nccl_dir, "?"),
                or(&f.torch_python, "none")
            ),
        )
    };
    let detail = serde_json::to_value(detail).unwrap_or_default();
    (StageVerdict::new(status, summary, detail), lines, env_sh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toolkit(root: &Path, name: &str, nvrtc: &str) -> PathBuf {
        let lib = root.join(name).join("lib64");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join(nvrtc), "").unwrap();
        std::os::unix::fs::symlink(lib.join(nvrtc), lib.join("libnvrtc.so.13")).unwrap();
        std::fs::write(lib.join("libcublas.so.13"), "").unwrap();
        lib
    }

    #[test]
    fn the_cuda_libraries_are_no_newer_than_the_driver_its_own_version_first() {
        let d = tempfile::tempdir().unwrap();
        let newer = toolkit(d.path(), "cuda-13.2", "libnvrtc.so.13.2.20");
        let older = toolkit(d.path(), "cuda-13.0", "libnvrtc.so.13.0.88");
        let exact = toolkit(d.path(), "cuda-13.1", "libnvrtc.so.13.1.80");
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let cands = [empty.clone(), newer, older.clone(), exact.clone()];
        let (best, v, notes) = choose_cuda_dir(&cands, "13.1");
        assert_eq!(
            (best.as_str(), v.as_str()),
            (exact.to_str().unwrap(), "13.1")
        );
        assert!(notes.contains("no libnvrtc.so.13"), "{notes}");
        assert!(notes.contains("CUDA 13.2"), "{notes}");
        let (best, ..) = choose_cuda_dir(&cands[..3], "13.1");
        assert_eq!(best, older.to_str().unwrap());
        assert_eq!(choose_cuda_dir(&cands[..2], "13.1").0, "");
    }

    #[test]
    fn env_passes_with_binaries_data_and_a_shareable_gpu() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for b in ["ncf-train", "ncf-cuda-check", "ncf-devcheck"] {
            std::fs::write(bin.join(b), "").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(bin.join(b), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let f = Facts {
            gpu: true,
            smi_query: "NVIDIA H200, 580.159.04, 143771 MiB, Default\n".into(),
            smi: "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |"
                .into(),
            python: "/usr/bin/python3".into(),
            ldconfig: "\tlibnccl.so.2 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnccl.so.2\n"
                .into(),
            ld_library_path: "/x".into(),
            bin: bin.clone(),
            data: d.path().to_path_buf(),
            commit: "abc\n".into(),
            ..Facts::default()
        };
        let (v, lines, env_sh) = judge_env(&f);
        assert_eq!(v.status, Status::Pass, "{}", v.summary);
        assert_eq!(v.detail["driver_cuda"], "13.0");
        assert_eq!(v.detail["nccl_lib_dir"], "/usr/lib/x86_64-linux-gnu");
        assert_eq!(v.detail["commit"], "abc");
        assert!(lines[0].starts_with("GPU: NVIDIA H200 driver 580.159.04 (CUDA 13.0) 143771 MiB"));
        assert!(
            env_sh.contains("export LD_LIBRARY_PATH='/usr/lib/x86_64-linux-gnu:/x'\n"),
            "{env_sh}"
        );
        let excl = Facts {
            smi_query: "NVIDIA H200, 580, 1 MiB, Exclusive_Process".into(),
            ..f.clone()
        };
        assert_eq!(judge_env(&excl).0.status, Status::Fail);
        let dry = Facts {
            gpu: false,
            ..f.clone()
        };
        assert_eq!(judge_env(&dry).0.status, Status::NoGpu);
        let gone = Facts {
            bin: d.path().join("nothing"),
            ..f
        };
        let (v, ..) = judge_env(&gone);
        assert!(
            v.summary.contains(" ncf-train ncf-cuda-check ncf-devcheck"),
            "{}",
            v.summary
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
