//! A stand-in libnccl for ncf's host device (issue 32): the C ABI of every NCCL entry point ncf
//! calls (crates/ncf-cuda/src/nccl/ffi.rs), whose collectives move the bytes between rank
//! processes over TCP on 127.0.0.1. Tests point ncf at it with [`nccl_home`]; ncf opens it
//! exactly as it opens libnccl.so.2. docs/DISTRIBUTED.md, "The stand-in NCCL", says what it
//! checks and what it cannot.
//!
//! - **Id.** `ncclGetUniqueId` listens on 127.0.0.1 (a port the system picks) and writes that
//!   address and a random tag into the 128-byte id; rank 0 must join in the process that made it
//!   (ncf's rank 0 does).
//! - **Transport.** A star: every other rank connects to rank 0. A collective is a request from
//!   each rank (what it called, numbered, and its data) and one reply from rank 0 (the result or
//!   an error). Rank 0 folds the buffers in rank order 0, 1, ..., N-1, so every rank gets the
//!   same bits, and a rank calling another collective than rank 0 is an error naming both.
//! - **Completion.** Collectives complete (or fail) inside the call; the stream argument is not
//!   used (the host device's streams are synchronous), so a stream is idle once a call returns.
//!   Non-blocking init (`blocking = 0`) and finalize return `ncclInProgress` and finish on a
//!   thread; `ncclCommGetAsyncError` reports `ncclInProgress` until then.
//! - **Failures.** A peer's closed connection is `ncclRemoteError`, no answer within
//!   `NCF_NCCL_HOST_TIMEOUT` seconds (default 60) `ncclTimeout`; the first failure stays the
//!   communicator's state and `ncclGetLastError` names the rank. Rank 0 forwards its failure to
//!   every other rank. `ncclCommGetAsyncError` also looks for a peer connection closed between
//!   collectives. Abort and destroy shut every connection down and never wait.

pub mod abi;
pub mod comm;
pub mod id;
pub mod reduce;
pub mod wire;

pub use abi::{TIMEOUT_VAR, VERSION};
use std::path::{Path, PathBuf};

/// The file cargo builds (`target/<profile>/libncf_nccl_host.so`). Never named like NCCL itself,
/// so that it is found only where a test links it as libnccl.so.2.
pub const LIBRARY_FILE: &str = "libncf_nccl_host.so";

/// Where a test finds the built stand-in when it is not beside the test executable.
pub const LIBRARY_VAR: &str = "NCF_NCCL_HOST_LIB";

/// The built stand-in: `$NCF_NCCL_HOST_LIB`, else [`LIBRARY_FILE`] in the running executable's
/// directory or the one above it (a test runs from `target/<profile>/deps`).
pub fn built_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(LIBRARY_VAR).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{LIBRARY_VAR}={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("the running executable: {e}"))?;
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(2).collect();
    dirs.iter()
        .map(|d| d.join(LIBRARY_FILE))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{LIBRARY_FILE} is not in {} (build it: cargo build -p ncf-nccl-host; or set \
                 {LIBRARY_VAR})",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}

/// Make `dir` an `NCCL_HOME` holding the stand-in: `dir/lib/libnccl.so.2`, a link to
/// [`built_library`]. Returns `dir/lib` (also the directory to put first on `LD_LIBRARY_PATH`
/// where a real libnccl may be on the loader's path: ncf tries that path before `$NCCL_HOME`).
pub fn nccl_home(dir: &Path) -> Result<PathBuf, String> {
    let lib = built_library()?;
    let lib_dir = dir.join("lib");
    std::fs::create_dir_all(&lib_dir).map_err(|e| format!("{}: {e}", lib_dir.display()))?;
    let link = lib_dir.join("libnccl.so.2");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .map_err(|e| format!("linking {} to {}: {e}", link.display(), lib.display()))?;
    Ok(lib_dir)
}
