//! The kernel sources of `kernels/`, embedded in the binary and compiled by NVRTC at run time for
//! the GPU at hand. PTX is cached on disk keyed by sha256(source + options + arch).

use crate::libs::{self, Lib};
use crate::CudaError;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::path::PathBuf;

/// Every kernel source of `kernels/` (not `kernels/host/`, the host device's runtime), by the name
/// `#include` uses.
pub const SOURCES: &[(&str, &str)] = &[
    ("rng.cuh", include_str!("../../../kernels/rng.cuh")),
    ("sampler.cuh", include_str!("../../../kernels/sampler.cuh")),
    (
        "factored.cuh",
        include_str!("../../../kernels/factored.cuh"),
    ),
    ("fused.cuh", include_str!("../../../kernels/fused.cuh")),
    ("ncf.cu", include_str!("../../../kernels/ncf.cu")),
];

/// The translation units (each is compiled once per [`Act`] variant).
pub const UNITS: &[&str] = &["ncf.cu"];

/// Element type of the MLP activations and low-precision weight copies (`NCF_ACT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    F32 = 0,
    F16 = 1,
    Bf16 = 2,
}

impl Act {
    pub const ALL: [Act; 3] = [Act::F32, Act::F16, Act::Bf16];
    pub fn name(self) -> &'static str {
        match self {
            Act::F32 => "f32",
            Act::F16 => "f16",
            Act::Bf16 => "bf16",
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            Act::F32 => 4,
            _ => 2,
        }
    }
}

/// `unit` with its `#include "x"` lines replaced by the embedded files (each once).
pub fn expand(unit: &str) -> Result<String, CudaError> {
    fn go(name: &str, seen: &mut Vec<String>, out: &mut String) -> Result<(), CudaError> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        seen.push(name.to_string());
        let src = SOURCES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                CudaError::Invalid(format!("kernel source {name} is not embedded in ncf-cuda"))
            })?;
        for line in src.lines() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("#include \"") {
                let inc = rest.split('"').next().unwrap_or_default();
                go(inc, seen, out)?;
            } else if t.starts_with("#pragma once") {
                continue;
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(())
    }
    let mut out = String::new();
    go(unit, &mut vec![], &mut out)?;
    Ok(out)
}

/// NVRTC options of a unit for `arch` ("sm_90") and activation type.
pub fn options(arch: &str, act: Act, include: Option<&std::path::Path>) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={arch}"),
        format!("-DNCF_ACT={}", act as i32),
        "--std=c++17".to_string(),
        "--fmad=true".to_string(),
    ];
    if let Some(inc) = include {
        o.push(format!("--include-path={}", inc.display()));
    }
    o
}

/// The disk cache directory: `$NCF_PTX_CACHE`, `$XDG_CACHE_HOME/ncf/ptx` or `~/.cache/ncf/ptx`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("NCF_PTX_CACHE").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(d).join("ncf/ptx"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ncf/ptx"))
}

/// sha256 over source, options and arch: the PTX cache key.
pub fn cache_key(source: &str, opts: &[String], arch: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    for o in opts {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    h.update([1u8]);
    h.update(arch.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compile one unit with NVRTC; any diagnostic in the log (warnings included) is an error.
pub fn compile(unit: &str, arch: &str, act: Act) -> Result<String, CudaError> {
    libs::require(&[Lib::Nvrtc])?;
    let source = expand(unit)?;
    let include = libs::cuda_include_dir();
    if act != Act::F32 && include.is_none() {
        return Err(CudaError::Unavailable(
            "cuda_fp16.h not found: set NCF_NVRTC_HOME or CUDA_HOME (its include/ holds it)".into(),
        ));
    }
    let opts = options(arch, act, include.as_deref());
    let what = format!("{unit} for {arch}, NCF_ACT={}", act.name());
    let src_c = CString::new(source.clone())
        .map_err(|_| CudaError::Invalid(format!("{unit}: NUL byte in source")))?;
    let name_c = CString::new(unit).expect("unit names have no NUL");
    use cudarc::nvrtc::result as nv;
    let prog = nv::create_program(&src_c, Some(&name_c)).map_err(|e| CudaError::Compile {
        what: what.clone(),
        log: format!("{e:?}"),
    })?;
    let compiled = unsafe { nv::compile_program(prog, &opts) };
    let log = unsafe { nv::get_program_log(prog) }
        .map(|l| {
            let bytes: Vec<u8> = l
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).trim().to_string()
        })
        .unwrap_or_default();
    let ptx = unsafe { nv::get_ptx(prog) };
    let _ = unsafe { nv::destroy_program(prog) };
    if let Err(e) = compiled {
        return Err(CudaError::Compile {
            what,
            log: format!("{e:?}\n{log}"),
        });
    }
    if !log.is_empty() {
        return Err(CudaError::Compile {
            what,
            log: format!("diagnostics are errors here:\n{log}"),
        });
    }
    let ptx = ptx.map_err(|e| CudaError::Compile {
        what: what.clone(),
        log: format!("{e:?}"),
    })?;
    let bytes: Vec<u8> = ptx
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).map_err(|_| CudaError::Compile {
        what,
        log: "PTX is not UTF-8".into(),
    })
}

/// [`compile`] through the disk cache (a cache that cannot be written is skipped silently).
pub fn compile_cached(unit: &str, arch: &str, act: Act) -> Result<String, CudaError> {
    let source = expand(unit)?;
    let key = cache_key(&source, &options(arch, act, None), arch);
    let path = cache_dir().map(|d| d.join(format!("{}-{}-{arch}-{key}.ptx", unit, act.name())));
    if let Some(p) = &path {
        if let Ok(ptx) = std::fs::read_to_string(p) {
            if ptx.contains(".entry") {
                return Ok(ptx);
            }
        }
    }
    let ptx = compile(unit, arch, act)?;
    if let Some(p) = &path {
        if let Some(d) = p.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok(ptx)
}

/// Compile every unit in every variant for `arch` (the CI test and `ncf-cuda-check` use it).
pub fn compile_all(arch: &str) -> Result<Vec<(String, usize)>, CudaError> {
    let mut out = vec![];
    for unit in UNITS {
        for act in Act::ALL {
            let ptx = compile(unit, arch, act)?;
            out.push((format!("{unit} {arch} {}", act.name()), ptx.len()));
        }
    }
    Ok(out)
}

/// Parameter classes of kernel `name` in `ptx`: 'q' 8-byte integer or pointer, 'u' 4-byte
/// integer, 'f' float, '?' other; None when the entry is missing.
pub fn entry_params(ptx: &str, name: &str) -> Option<String> {
    let start = ptx.find(&format!(".entry {name}("))?;
    let body = &ptx[start..];
    let end = body.find(')')?;
    let mut sig = String::new();
    for line in body[..end].lines().filter(|l| l.contains(".param")) {
        let ty = line
            .split_whitespace()
            .skip_while(|t| *t != ".param")
            .nth(1)
            .unwrap_or("");
        sig.push(match ty {
            ".u64" | ".b64" | ".s64" => 'q',
            ".u32" | ".b32" | ".s32" => 'u',
            ".f32" => 'f',
            _ => '?',
        });
    }
    Some(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_expanded_once() {
        let s = expand("ncf.cu").unwrap();
        assert!(!s.contains("#include \""), "an include was left");
        assert_eq!(s.matches("struct ncf_perm {").count(), 1);
        assert!(s.contains("ncf_adam"));
    }

    #[test]
    fn cache_key_depends_on_everything() {
        let o = vec!["-DA".to_string()];
        let k = cache_key("src", &o, "sm_90");
        assert_eq!(k.len(), 64);
        assert_ne!(k, cache_key("src2", &o, "sm_90"));
        assert_ne!(k, cache_key("src", &o, "sm_80"));
        assert_ne!(k, cache_key("src", &["-DB".to_string()], "sm_90"));
    }

    #[test]
    fn entry_params_reads_ptx_parameters() {
        let ptx = ".visible .entry k(\n\t.param .u64 .ptr .align 1 k_param_0,\n\t.param .u32 k_param_1,\n\t.param .f32 k_param_2\n)\n{";
        assert_eq!(entry_params(ptx, "k").as_deref(), Some("quf"));
        assert_eq!(entry_params(ptx, "other"), None);
    }
}
