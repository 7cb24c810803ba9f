//! Finding the CUDA shared libraries before cudarc does: cudarc's dynamic loading panics when a
//! library is missing, so every entry point calls [`require`] first and gets a typed error.
//!
//! cudarc opens libraries by file name (so the dynamic loader searches `LD_LIBRARY_PATH`, fixed at
//! process start). To also find libraries that are not on that path (`$NCF_NVRTC_HOME/lib`, the pip
//! NVRTC of CI; `$CUDA_HOME/lib64`; `/usr/local/cuda/lib64`), [`require`] opens them here by full
//! path first: glibc then resolves cudarc's later `dlopen("libnvrtc.so.13")` to the already loaded
//! object by its SONAME.

use crate::CudaError;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::PathBuf;
use std::sync::Mutex;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const RTLD_GLOBAL: c_int = 0x100;

/// A CUDA library ncf uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    Driver,
    Nvrtc,
    Cublas,
}

impl Lib {
    /// File names tried, most specific first (the CUDA 13 names, then unversioned).
    fn files(self) -> &'static [&'static str] {
        match self {
            Lib::Driver => &["libcuda.so.1", "libcuda.so"],
            Lib::Nvrtc => &["libnvrtc.so.13", "libnvrtc.so"],
            Lib::Cublas => &["libcublas.so.13", "libcublas.so"],
        }
    }
    /// Libraries that must be opened from the same directory first.
    fn companions(self) -> &'static [&'static str] {
        match self {
            Lib::Driver => &[],
            Lib::Nvrtc => &["libnvrtc-builtins.so.13.0"],
            Lib::Cublas => &["libcublasLt.so.13"],
        }
    }
    fn what(self) -> &'static str {
        match self {
            Lib::Driver => "the CUDA driver library libcuda.so.1 (is an NVIDIA driver installed?)",
            Lib::Nvrtc => "NVRTC (libnvrtc.so.13, CUDA 13.0)",
            Lib::Cublas => "cuBLAS (libcublas.so.13)",
        }
    }
}

/// Directories searched after the dynamic loader's own path.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Some(home) = std::env::var_os("NCF_NVRTC_HOME").filter(|s| !s.is_empty()) {
        dirs.push(PathBuf::from(home).join("lib"));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var).filter(|s| !s.is_empty()) {
            dirs.push(PathBuf::from(&home).join("lib64"));
            dirs.push(PathBuf::from(home).join("lib"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    dirs
}

fn open(path: &str) -> bool {
    let Ok(c) = CString::new(path) else {
        return false;
    };
    // Never closed: cudarc keeps using the library for the life of the process.
    !unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL) }.is_null()
}

fn load(lib: Lib) -> bool {
    if lib.files().iter().any(|f| open(f)) {
        return true;
    }
    for dir in search_dirs() {
        for f in lib.files() {
            let p = dir.join(f);
            if p.is_file() {
                for c in lib.companions() {
                    let cp = dir.join(c);
                    if cp.is_file() {
                        open(&cp.to_string_lossy());
                    }
                }
                if open(&p.to_string_lossy()) {
                    return true;
                }
            }
        }
    }
    false
}

static LOADED: Mutex<Vec<Lib>> = Mutex::new(Vec::new());

/// Make sure each library can be loaded (by cudarc); say exactly which one is missing otherwise.
pub fn require(libs: &[Lib]) -> Result<(), CudaError> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let mut missing = vec![];
    for &lib in libs {
        if loaded.contains(&lib) {
            continue;
        }
        let ok = load(lib)
            && unsafe {
                match lib {
                    Lib::Driver => cudarc::driver::sys::is_culib_present(),
                    Lib::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                    Lib::Cublas => cudarc::cublas::sys::is_culib_present(),
                }
            };
        if ok {
            loaded.push(lib);
        } else {
            missing.push(lib.what());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let dirs: Vec<String> = search_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Err(CudaError::Unavailable(format!(
        "cannot load {} (searched LD_LIBRARY_PATH={:?} and {})",
        missing.join(", "),
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default(),
        dirs.join(", ")
    )))
}

/// File names of NCCL, tried in this order on the loader's path and then in [`nccl_dirs`]: its
/// SONAME first (`libnccl.so.2`, the only file pip's `nvidia-nccl-cu13` wheel ships), then the
/// development link. cudarc's own loader tries `libnccl.so` and CUDA-versioned names only, never
/// `libnccl.so.2`, so ncf opens NCCL itself ([`crate::nccl`]) and never through cudarc.
pub const NCCL_FILES: [&str; 2] = ["libnccl.so.2", "libnccl.so"];

/// Directories searched for NCCL after the loader's path: `$NCCL_HOME/lib`, `$NCCL_HOME/lib64`,
/// the CUDA directories of [`search_dirs`], and the distribution's library directory (the
/// `libnccl2` package).
pub fn nccl_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Some(home) = std::env::var_os("NCCL_HOME").filter(|s| !s.is_empty()) {
        dirs.push(PathBuf::from(&home).join("lib"));
        dirs.push(PathBuf::from(home).join("lib64"));
    }
    dirs.extend(search_dirs());
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs
}

/// An opened shared library: its `dlopen` handle and the file the process mapped.
pub struct Opened {
    handle: usize,
    pub path: String,
}

impl Opened {
    /// The address of `symbol`, or None when the library lacks it.
    pub fn symbol(&self, symbol: &str) -> Option<*mut c_void> {
        let c = CString::new(symbol).ok()?;
        // SAFETY: the handle came from dlopen and is never closed.
        let p = unsafe { dlsym(self.handle as *mut c_void, c.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

/// Open the shared library at `path` (never closed).
pub fn open_path(path: &str) -> Option<Opened> {
    open_handle(path).map(|handle| Opened {
        handle,
        path: path.to_string(),
    })
}

fn open_handle(path: &str) -> Option<usize> {
    let c = CString::new(path).ok()?;
    // Never closed: the function pointers taken from it live as long as the process.
    let h = unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
    (!h.is_null()).then_some(h as usize)
}

/// The mapped file whose name contains `needle` (from /proc/self/maps), else `fallback`.
fn mapped_path(needle: &str, fallback: &str) -> String {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| p.contains(needle))
                .map(str::to_string)
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// Open NCCL: [`NCCL_FILES`] on the loader's path, then in [`nccl_dirs`]. The error names every
/// place searched.
pub fn open_nccl() -> Result<Opened, CudaError> {
    for f in NCCL_FILES {
        if let Some(handle) = open_handle(f) {
            return Ok(Opened {
                handle,
                path: mapped_path("libnccl", f),
            });
        }
    }
    let dirs = nccl_dirs();
    for dir in &dirs {
        for f in NCCL_FILES {
            let p = dir.join(f);
            if p.is_file() {
                if let Some(handle) = open_handle(&p.to_string_lossy()) {
                    return Ok(Opened {
                        handle,
                        path: mapped_path("libnccl", &p.to_string_lossy()),
                    });
                }
            }
        }
    }
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(CudaError::Unavailable(format!(
        "cannot load NCCL ({}; searched LD_LIBRARY_PATH={:?} and {}): install NCCL (e.g. the \
         nvidia-nccl-cu13 wheel) and put the directory holding libnccl.so.2 on LD_LIBRARY_PATH \
         or in $NCCL_HOME/lib",
        NCCL_FILES.join(", "),
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default(),
        dirs.join(", ")
    )))
}

/// Where `cuda_fp16.h` / `cuda_bf16.h` are: `$NCF_NVRTC_HOME/include`, `$CUDA_HOME/include`,
/// `/usr/local/cuda/include`, or the pip `nvidia/cu13/include` of a loaded libnvrtc.
pub fn cuda_include_dir() -> Option<PathBuf> {
    let mut cands = vec![];
    if let Some(home) = std::env::var_os("NCF_NVRTC_HOME").filter(|s| !s.is_empty()) {
        cands.push(PathBuf::from(home).join("include"));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = std::env::var_os(var).filter(|s| !s.is_empty()) {
            cands.push(PathBuf::from(home).join("include"));
        }
    }
    cands.push(PathBuf::from("/usr/local/cuda/include"));
    // The directory of the libnvrtc the process loaded, from /proc/self/maps.
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
        for line in maps.lines() {
            if let Some(path) = line.split_whitespace().nth(5) {
                if path.contains("libnvrtc.so") {
                    if let Some(lib_dir) = std::path::Path::new(path).parent() {
                        if let Some(root) = lib_dir.parent() {
                            cands.push(root.join("include"));
                        }
                    }
                }
            }
        }
    }
    cands.into_iter().find(|d| d.join("cuda_fp16.h").is_file())
}
