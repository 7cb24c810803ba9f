//! Resource use of every kernel, read without a GPU: the PTX NVRTC makes is assembled by `ptxas`
//! of the same CUDA release (the pinned 13.0 PyPI package `nvidia-cuda-nvcc`) with `-v`, and its
//! report (registers, stack frame, spill stores and loads, static shared memory) is checked
//! against how the host launches each kernel ([`crate::kdef`]): CI catches a kernel
//! that spills, uses local memory, or cannot be resident with the block size and shared memory
//! the host gives it, before any device runs it.

use crate::CudaError;
use std::path::PathBuf;

/// Registers of one SM (every architecture the backend supports, sm_70 to sm_120).
pub const REGISTERS_PER_SM: u32 = 65_536;
/// Shared memory a block may use without opting in (`cudaFuncSetAttribute`), static + dynamic.
pub const SMEM_PER_BLOCK: u32 = 48 * 1024;

/// One kernel's resources as `ptxas -v` reports them (fields it leaves out are 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub kernel: String,
    pub registers: u32,
    pub stack_frame: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    /// Static `__shared__` bytes (dynamic shared memory is the launch's).
    pub smem: u32,
    pub barriers: u32,
}

/// The number before `unit` in `text` ("64 registers" → 64).
fn number_before(text: &str, unit: &str) -> u32 {
    text.find(unit)
        .and_then(|at| text[..at].split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The kernels of a `ptxas -v` log (stderr), in the order ptxas reports them.
pub fn parse_log(log: &str) -> Vec<Resources> {
    let mut out: Vec<Resources> = vec![];
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(Resources {
                kernel: name.to_string(),
                ..Default::default()
            });
        } else if let Some(r) = out.last_mut() {
            if line.contains("bytes stack frame") {
                r.stack_frame = number_before(line, "bytes stack frame");
                r.spill_stores = number_before(line, "bytes spill stores");
                r.spill_loads = number_before(line, "bytes spill loads");
            } else if line.contains("Used ") && line.contains(" registers") {
                r.registers = number_before(line, " registers");
                r.barriers = number_before(line, " barriers");
                r.smem = number_before(line, " bytes smem");
            }
        }
    }
    out
}

/// `(.maxntid x, .minnctapersm)` of kernel `name` in `ptx` (its `__launch_bounds__`).
pub fn launch_bounds(ptx: &str, name: &str) -> Option<(u32, Option<u32>)> {
    let body = &ptx[ptx.find(&format!(".entry {name}("))?..];
    let head = &body[..body.find('{')?];
    let value = |key: &str| -> Option<u32> {
        let rest = &head[head.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((value(".maxntid")?, value(".minnctapersm")))
}

/// `ptxas`: `$NCF_PTXAS`, else `bin/ptxas` under `$NCF_NVRTC_HOME` (the pip package puts it
/// beside NVRTC's `lib/`), `$CUDA_HOME` or `/usr/local/cuda`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NCF_PTXAS").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = ["NCF_NVRTC_HOME", "CUDA_HOME"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|s| !s.is_empty()))
        .map(PathBuf::from)
        .collect();
    roots.push(PathBuf::from("/usr/local/cuda"));
    roots
        .into_iter()
        .map(|r| r.join("bin/ptxas"))
        .find(|p| p.is_file())
}

/// Assemble `ptx` for `arch` ("sm_90") with `ptxas -v` and return every kernel's resources.
pub fn assemble(
    ptxas: &std::path::Path,
    ptx: &str,
    arch: &str,
) -> Result<Vec<Resources>, CudaError> {
    let dir = std::env::temp_dir().join(format!("ncf-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CudaError::Invalid(format!("{}: {e}", dir.display())))?;
    let src = dir.join(format!("k-{arch}-{:x}.ptx", ptx.len()));
    std::fs::write(&src, ptx).map_err(|e| CudaError::Invalid(format!("{}: {e}", src.display())))?;
    let out = std::process::Command::new(ptxas)
        .arg(format!("-arch={arch}"))
        .args([
            "-v",
            "--warn-on-spills",
            "--warn-on-local-memory-usage",
            "-o",
            "/dev/null",
        ])
        .arg(&src)
        .output()
        .map_err(|e| CudaError::Unavailable(format!("{}: {e}", ptxas.display())));
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_dir(&dir);
    let out = out?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(CudaError::Compile {
            what: format!("ptxas -arch={arch}"),
            log,
        });
    }
    Ok(parse_log(&log))
}

/// What is wrong with `r` for a kernel launched with `block` threads and up to `dynamic_smem`
/// bytes of dynamic shared memory, `bounds` being its `(.maxntid, .minnctapersm)`: spills, local
/// memory, more threads than its bounds, more registers or shared memory than a block (or than
/// `minnctapersm` resident blocks) can have. Empty when it fits.
pub fn problems(
    r: &Resources,
    block: u32,
    dynamic_smem: u32,
    bounds: Option<(u32, Option<u32>)>,
) -> Vec<String> {
    let mut p = vec![];
    if r.spill_stores > 0 || r.spill_loads > 0 {
        p.push(format!(
            "spills ({} bytes stores, {} bytes loads)",
            r.spill_stores, r.spill_loads
        ));
    }
    if r.stack_frame > 0 {
        p.push(format!(
            "{} bytes of local memory (stack frame)",
            r.stack_frame
        ));
    }
    if let Some((max_threads, _)) = bounds {
        if block > max_threads {
            p.push(format!(
                "launched with {block} threads, bounds allow {max_threads}"
            ));
        }
    }
    let resident = bounds.and_then(|b| b.1).unwrap_or(1).max(1);
    if r.registers * block * resident > REGISTERS_PER_SM {
        p.push(format!(
            "{} registers × {block} threads × {resident} blocks exceed the SM's {REGISTERS_PER_SM}",
            r.registers
        ));
    }
    if r.smem + dynamic_smem > SMEM_PER_BLOCK {
        p.push(format!(
            "{} + {dynamic_smem} bytes of shared memory exceed {SMEM_PER_BLOCK} per block",
            r.smem
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "ptxas warning : Registers are spilled to local memory in function 'ncf_final', 4 bytes spill stores, 16 bytes spill loads
ptxas info    : 2 bytes gmem
ptxas info    : Compiling entry function 'ncf_adam' for 'sm_90'
ptxas info    : Function properties for ncf_adam
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 37 registers, used 0 barriers
ptxas info    : Compiling entry function 'ncf_final' for 'sm_80'
ptxas info    : Function properties for ncf_final
    8 bytes stack frame, 4 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 8 bytes cumulative stack size, 2064 bytes smem, 496 bytes cmem[0], 8 bytes cmem[2]
";

    #[test]
    fn reads_the_ptxas_report() {
        let r = parse_log(LOG);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Resources {
                kernel: "ncf_adam".into(),
                registers: 37,
                ..Default::default()
            }
        );
        assert_eq!(
            (
                r[1].registers,
                r[1].stack_frame,
                r[1].spill_stores,
                r[1].spill_loads
            ),
            (64, 8, 4, 16)
        );
        assert_eq!((r[1].smem, r[1].barriers), (2064, 1));
    }

    #[test]
    fn problems_name_spills_registers_and_shared_memory() {
        let r = parse_log(LOG);
        assert!(problems(&r[0], 256, 0, Some((256, None))).is_empty());
        let p = problems(&r[1], 256, 0, Some((256, Some(4))));
        assert!(p.iter().any(|x| x.contains("spills")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("local memory")), "{p:?}");
        let big = Resources {
            registers: 80,
            smem: 40_000,
            ..r[0].clone()
        };
        let p = problems(&big, 512, 16_384, Some((256, Some(2))));
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn launch_bounds_come_from_the_ptx() {
        let ptx = ".visible .entry k(\n\t.param .u64 k_param_0\n)\n.maxntid 256, 1, 1\n.minnctapersm 3\n{\n}\n\
.visible .entry j(\n)\n{\n}\n";
        assert_eq!(launch_bounds(ptx, "k"), Some((256, Some(3))));
        assert_eq!(launch_bounds(ptx, "j"), None);
    }
}
