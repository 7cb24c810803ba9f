//! The kernels of `kernels/` compiled for the CPU: the same sources NVRTC compiles (embedded,
//! [`crate::kernels::SOURCES`]), with `kernels/host/host_runtime.h` as their CUDA runtime, and a
//! dispatcher generated from the typed definitions ([`crate::kdef`]) that unpacks each launch's
//! arguments into the kernel's C parameters. Built by g++ (`$NCF_CXX`, default `g++`, C++20) once
//! per activation type into a cache keyed by the SHA-256 of the source and the command line
//! (`$NCF_HOST_CACHE`, default beside the PTX cache), then opened with dlopen.

use crate::kdef::{Elem, KernelDef, Ty};
use crate::kernels::{self, Act};
use crate::CudaError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The host runtime and the headers the sources include, embedded like the kernels.
const RUNTIME: &[(&str, &str)] = &[
    (
        "host_runtime.h",
        include_str!("../../../../kernels/host/host_runtime.h"),
    ),
    (
        "cuda_fp16.h",
        include_str!("../../../../kernels/host/cuda_fp16.h"),
    ),
    (
        "cuda_bf16.h",
        include_str!("../../../../kernels/host/cuda_bf16.h"),
    ),
    ("mma.h", include_str!("../../../../kernels/host/mma.h")),
];

type LaunchFn = unsafe extern "C" fn(
    name: *const c_char,
    grid: u32,
    block: u32,
    smem: u32,
    args: *const u64,
    nargs: u32,
    threads: u32,
    err: *mut c_char,
    errlen: u32,
) -> i32;

/// The compiled kernels of one activation type.
pub struct HostKernels {
    pub path: PathBuf,
    launch: LaunchFn,
}

impl HostKernels {
    /// Run kernel `def` on `grid` blocks with `args` (already checked), on up to `threads` OS
    /// threads; returns when every block has finished.
    pub fn launch(
        &self,
        def: &KernelDef,
        grid: u32,
        smem: u32,
        args: &[u64],
        threads: u32,
    ) -> Result<(), String> {
        let name = CString::new(def.name).expect("kernel names have no NUL");
        let mut err = vec![0u8; 512];
        // SAFETY: the library's entry point takes these exactly (generated below); `args` and
        // `err` outlive the call, which returns when the launch is over.
        let code = unsafe {
            (self.launch)(
                name.as_ptr(),
                grid,
                def.block,
                smem,
                args.as_ptr(),
                args.len() as u32,
                threads,
                err.as_mut_ptr().cast(),
                err.len() as u32,
            )
        };
        if code == 0 {
            return Ok(());
        }
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        Err(String::from_utf8_lossy(&err[..end]).into_owned())
    }
}

/// The kernels of `act`, compiled on first use in this process (and cached on disk).
pub fn load(act: Act) -> Result<Arc<HostKernels>, CudaError> {
    static LOADED: OnceLock<Mutex<HashMap<u8, Arc<HostKernels>>>> = OnceLock::new();
    let map = LOADED.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = map.get(&(act as u8)) {
        return Ok(k.clone());
    }
    let k = Arc::new(build(act)?);
    map.insert(act as u8, k.clone());
    Ok(k)
}

/// The translation unit: the runtime, the kernels (dynamic shared arrays rewritten to the
/// runtime's buffer), and the dispatcher.
pub fn source() -> Result<String, CudaError> {
    let mut s = String::from("#include \"host_runtime.h\"\n");
    for unit in kernels::UNITS {
        for line in kernels::expand(unit)?.lines() {
            s.push_str(&dynamic_shared(line));
            s.push('\n');
        }
    }
    s.push_str(&dispatcher());
    Ok(s)
}

/// `extern __shared__ float NAME[];` → a pointer to the block's dynamic shared memory.
fn dynamic_shared(line: &str) -> String {
    let t = line.trim_start();
    let Some(rest) = t.strip_prefix("extern __shared__ ") else {
        return line.to_string();
    };
    let mut words = rest.trim_end_matches(';').split_whitespace();
    match (words.next(), words.next()) {
        (Some(ty), Some(name)) if name.ends_with("[]") => format!(
            "{}{ty}* {} = ({ty}*)ncfhost::dyn_smem();",
            &line[..line.len() - t.len()],
            name.trim_end_matches("[]")
        ),
        _ => line.to_string(),
    }
}

/// The C++ of `ncf_host_launch`: one branch per kernel, unpacking its u64 argument slots.
fn dispatcher() -> String {
    let mut s = String::from(
        "extern \"C\" __attribute__((visibility(\"default\"))) int ncf_host_launch(const char* name, unsigned grid, unsigned block, \
         unsigned smem, const unsigned long long* a, unsigned nargs, unsigned threads, char* err, \
         unsigned errlen) {\n    std::function<void()> body;\n",
    );
    for (k, def) in crate::kdef::ALL.iter().enumerate() {
        let args: Vec<String> = def
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| match p.ty {
                Ty::U32 => format!("(u32)a[{i}]"),
                Ty::U64 => format!("(u64)a[{i}]"),
                Ty::I32 => format!("(int)(u32)a[{i}]"),
                Ty::F32 => format!("ncfhost::f32(a[{i}])"),
                Ty::Ptr { elem, .. } => format!("({}*)(uintptr_t)a[{i}]", c_type(elem)),
            })
            .collect();
        s.push_str(&format!(
            "    {}if (!strcmp(name, \"{n}\")) {{\n        if (nargs != {c}) {{ snprintf(err, errlen, \
             \"{n}: %u arguments, its signature has {c}\", nargs); return 2; }}\n        body = \
             [=] {{ {n}({}); }};\n    }}",
            if k == 0 { "" } else { "else " },
            args.join(", "),
            n = def.name,
            c = def.params.len(),
        ));
        s.push('\n');
    }
    s.push_str(
        "    else { snprintf(err, errlen, \"no kernel %s in the host library\", name); return 2; }\n\
         \x20   return ncfhost::launch(grid, block, smem, threads, body, err, errlen);\n}\n",
    );
    s
}

fn c_type(e: Elem) -> &'static str {
    e.c_name()
}

/// Where the host libraries are cached: `$NCF_HOST_CACHE`, else `host` beside the PTX cache.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NCF_HOST_CACHE").filter(|s| !s.is_empty()) {
        return PathBuf::from(d);
    }
    kernels::cache_dir()
        .map(|d| d.with_file_name("host"))
        .unwrap_or_else(|| std::env::temp_dir().join("ncf-host-kernels"))
}

fn compiler() -> String {
    std::env::var("NCF_CXX")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "g++".into())
}

/// g++'s flags for `act` (the include directory added when compiling).
fn flags(act: Act) -> Vec<String> {
    [
        "-std=c++20",
        "-O2",
        "-g0",
        "-fPIC",
        "-shared",
        "-pthread",
        "-fno-strict-aliasing",
        // One library per activation type in one process, with the same kernel names: only
        // the entry point is exported, so each library's dispatcher calls its own kernels.
        "-fvisibility=hidden",
        "-Wl,-Bsymbolic",
        "-w",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-DNCF_ACT={}", act as i32)])
    .collect()
}

fn build(act: Act) -> Result<HostKernels, CudaError> {
    let src = source()?;
    let cxx = compiler();
    let mut h = Sha256::new();
    h.update(src.as_bytes());
    for (_, r) in RUNTIME {
        h.update(r.as_bytes());
    }
    for f in flags(act) {
        h.update(f.as_bytes());
    }
    h.update(cxx.as_bytes());
    let key: String = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir().join(format!("{}-{key}", act.name()));
    let lib = dir.join(format!("libncf_host_{}.so", act.name()));
    if !lib.is_file() {
        compile(&dir, &lib, &src, &cxx, act)?;
    }
    open(&lib)
}

fn compile(
    dir: &std::path::Path,
    lib: &std::path::Path,
    src: &str,
    cxx: &str,
    act: Act,
) -> Result<(), CudaError> {
    let io = |what: &str, e: std::io::Error| {
        CudaError::Unavailable(format!("host kernels: {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating the cache", e))?;
    let pid = std::process::id();
    for (name, text) in RUNTIME {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.{pid}"));
        std::fs::write(&tmp, text).map_err(|e| io("writing the runtime", e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("writing the runtime", e))?;
    }
    let cpp = dir.join(format!("kernels.{pid}.cpp"));
    std::fs::write(&cpp, src).map_err(|e| io("writing the source", e))?;
    let tmp = dir.join(format!(".lib.{pid}.so"));
    let out = std::process::Command::new(cxx)
        .args(flags(act))
        .arg(format!("-I{}", dir.display()))
        .arg(&cpp)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| {
            CudaError::Unavailable(format!(
                "the host device compiles the kernels with a C++20 compiler: cannot run \
                 `{cxx}` ({e}); install g++ or set NCF_CXX"
            ))
        })?;
    let _ = std::fs::remove_file(&cpp);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(CudaError::Compile {
            what: format!(
                "the kernels for the host device ({cxx}, NCF_ACT={})",
                act.name()
            ),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::rename(&tmp, lib).map_err(|e| io("installing the library", e))
}

fn open(lib: &std::path::Path) -> Result<HostKernels, CudaError> {
    let opened = crate::libs::open_path(&lib.to_string_lossy()).ok_or_else(|| {
        CudaError::Unavailable(format!("cannot open the host kernels {}", lib.display()))
    })?;
    let sym = opened.symbol("ncf_host_launch").ok_or_else(|| {
        CudaError::Unavailable(format!("{} has no ncf_host_launch", lib.display()))
    })?;
    // SAFETY: the symbol is the generated entry point with exactly this signature.
    let launch = unsafe { std::mem::transmute::<*mut std::ffi::c_void, LaunchFn>(sym) };
    Ok(HostKernels {
        path: lib.to_path_buf(),
        launch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_shared_arrays_become_the_runtime_buffer() {
        assert_eq!(
            dynamic_shared("    extern __shared__ float sbias[];"),
            "    float* sbias = (float*)ncfhost::dyn_smem();"
        );
        assert_eq!(dynamic_shared("int x;"), "int x;");
    }

    #[test]
    fn the_dispatcher_has_a_branch_per_kernel_with_its_arguments() {
        let d = dispatcher();
        for def in crate::kdef::ALL {
            assert!(d.contains(&format!("\"{}\"", def.name)), "{}", def.name);
        }
        assert!(d.contains("ncf_adam((float*)(uintptr_t)a[0]"), "{d}");
        assert!(d.contains("ncfhost::f32(a[5])"), "{d}");
    }
}
