//! libnccl, opened by ncf ([`crate::libs::open_nccl`]: `libnccl.so.2` included, which cudarc's
//! loader never tries) and called through the few entry points ncf uses. The struct layouts
//! (`ncclUniqueId`, `ncclConfig_t`) are cudarc's bindings (NCCL 2.30 headers); results, data
//! types and operations cross as plain integers, so a code a newer library adds is never an
//! invalid Rust enum. Nothing here panics: a missing symbol is an error naming it.

use crate::CudaError;
use cudarc::nccl::sys::{ncclConfig_t, ncclUniqueId};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// `ncclComm_t` (opaque).
pub type RawComm = *mut c_void;
/// `cudaStream_t` (a `CUstream`; null is the legacy default stream).
pub type RawStream = *mut c_void;

/// An `ncclResult_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    pub const SUCCESS: Code = Code(0);
    pub const IN_PROGRESS: Code = Code(7);

    /// NCCL's name of the code (`ncclRemoteError`, ...).
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "ncclSuccess",
            1 => "ncclUnhandledCudaError",
            2 => "ncclSystemError",
            3 => "ncclInternalError",
            4 => "ncclInvalidArgument",
            5 => "ncclInvalidUsage",
            6 => "ncclRemoteError",
            7 => "ncclInProgress",
            8 => "ncclTimeout",
            _ => "an unknown NCCL result",
        }
    }

    /// What a call's result means to a caller that polls: done, still running, or failed.
    pub fn status(self) -> Status {
        match self {
            Code::SUCCESS => Status::Done,
            Code::IN_PROGRESS => Status::Pending,
            c => Status::Failed(c),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A call's result as [`Code::status`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Done,
    Pending,
    Failed(Code),
}

/// `ncclDataType_t` of the element types ncf reduces.
pub trait Elem: cudarc::driver::DeviceRepr {
    const DTYPE: u32;
    const NAME: &'static str;
}
impl Elem for f32 {
    const DTYPE: u32 = 7;
    const NAME: &'static str = "f32";
}
impl Elem for f64 {
    const DTYPE: u32 = 8;
    const NAME: &'static str = "f64";
}
impl Elem for u64 {
    const DTYPE: u32 = 5;
    const NAME: &'static str = "u64";
}

/// `ncclRedOp_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Sum = 0,
    Max = 2,
}

type GetVersion = unsafe extern "C" fn(*mut c_int) -> u32;
type GetUniqueId = unsafe extern "C" fn(*mut ncclUniqueId) -> u32;
type InitRank = unsafe extern "C" fn(*mut RawComm, c_int, ncclUniqueId, c_int) -> u32;
type InitRankConfig =
    unsafe extern "C" fn(*mut RawComm, c_int, ncclUniqueId, c_int, *mut ncclConfig_t) -> u32;
type AllReduce =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, u32, u32, RawComm, RawStream) -> u32;
type Broadcast =
    unsafe extern "C" fn(*const c_void, *mut c_void, usize, u32, c_int, RawComm, RawStream) -> u32;
type AsyncError = unsafe extern "C" fn(RawComm, *mut u32) -> u32;
type CommCall = unsafe extern "C" fn(RawComm) -> u32;
type ErrorString = unsafe extern "C" fn(u32) -> *const c_char;
type LastError = unsafe extern "C" fn(RawComm) -> *const c_char;

/// The opened library and its entry points.
pub struct Nccl {
    /// The file the process mapped.
    pub path: String,
    /// `ncclGetVersion`'s code (e.g. 22707 for 2.27.7).
    pub version: i32,
    get_unique_id: GetUniqueId,
    init_rank: InitRank,
    init_rank_config: Option<InitRankConfig>,
    all_reduce: AllReduce,
    broadcast: Broadcast,
    async_error: AsyncError,
    abort: CommCall,
    finalize: Option<CommCall>,
    destroy: CommCall,
    error_string: Option<ErrorString>,
    last_error: Option<LastError>,
}

// SAFETY: plain function pointers into a library that stays loaded.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

/// "2.27.7" from `ncclGetVersion`'s code (`NCCL_VERSION(X,Y,Z)`: X·1000 + Y·100 + Z up to
/// 2.8, X·10000 + Y·100 + Z after).
pub fn version_string(code: i32) -> String {
    if code >= 10000 {
        format!("{}.{}.{}", code / 10000, code / 100 % 100, code % 100)
    } else {
        format!("{}.{}.{}", code / 1000, code / 100 % 10, code % 100)
    }
}

/// The library, opened once per process.
pub fn nccl() -> Result<&'static Nccl, CudaError> {
    static LIB: OnceLock<Result<Nccl, String>> = OnceLock::new();
    LIB.get_or_init(|| load().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| CudaError::Unavailable(e.trim_start_matches("CUDA unavailable: ").into()))
}

/// Whether libnccl can be opened.
pub fn present() -> bool {
    nccl().is_ok()
}

fn load() -> Result<Nccl, CudaError> {
    let lib = crate::libs::open_nccl()?;
    let path = lib.path.clone();
    let need = |name: &str| {
        lib.symbol(name).ok_or_else(|| {
            CudaError::Unavailable(format!("{path} has no symbol {name} (NCCL too old?)"))
        })
    };
    // SAFETY: each symbol is cast to the C signature of nccl.h (2.27 .. 2.32).
    unsafe {
        let get_version: GetVersion = std::mem::transmute(need("ncclGetVersion")?);
        let mut version = 0;
        let code = Code(get_version(&mut version));
        if code != Code::SUCCESS {
            return Err(CudaError::Unavailable(format!(
                "{path}: ncclGetVersion failed: {code}"
            )));
        }
        let opt = |name: &str| lib.symbol(name);
        Ok(Nccl {
            path: path.clone(),
            version,
            get_unique_id: std::mem::transmute::<*mut c_void, GetUniqueId>(need(
                "ncclGetUniqueId",
            )?),
            init_rank: std::mem::transmute::<*mut c_void, InitRank>(need("ncclCommInitRank")?),
            init_rank_config: opt("ncclCommInitRankConfig")
                .map(|p| std::mem::transmute::<*mut c_void, InitRankConfig>(p)),
            all_reduce: std::mem::transmute::<*mut c_void, AllReduce>(need("ncclAllReduce")?),
            broadcast: std::mem::transmute::<*mut c_void, Broadcast>(need("ncclBroadcast")?),
            async_error: std::mem::transmute::<*mut c_void, AsyncError>(need(
                "ncclCommGetAsyncError",
            )?),
            abort: std::mem::transmute::<*mut c_void, CommCall>(need("ncclCommAbort")?),
            finalize: opt("ncclCommFinalize")
                .map(|p| std::mem::transmute::<*mut c_void, CommCall>(p)),
            destroy: std::mem::transmute::<*mut c_void, CommCall>(need("ncclCommDestroy")?),
            error_string: opt("ncclGetErrorString")
                .map(|p| std::mem::transmute::<*mut c_void, ErrorString>(p)),
            last_error: opt("ncclGetLastError")
                .map(|p| std::mem::transmute::<*mut c_void, LastError>(p)),
        })
    }
}

fn c_text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: NCCL returns NUL-terminated static or per-communicator strings.
    let s = unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// The `ncclConfig_t` of `NCCL_CONFIG_INITIALIZER` (every field undefined: NCCL's defaults) with
/// `blocking` set. `version` is the loaded library's: NCCL copies at most its own struct size
/// and reads the fields that version knows.
pub fn config(version: i32, blocking: bool) -> ncclConfig_t {
    const UNDEF: c_int = c_int::MIN;
    ncclConfig_t {
        size: std::mem::size_of::<ncclConfig_t>(),
        magic: 0xcafe_beef,
        version: version as u32,
        blocking: blocking as c_int,
        cgaClusterSize: UNDEF,
        minCTAs: UNDEF,
        maxCTAs: UNDEF,
        netName: std::ptr::null(),
        splitShare: UNDEF,
        trafficClass: UNDEF,
        commName: std::ptr::null(),
        collnetEnable: UNDEF,
        CTAPolicy: UNDEF,
        shrinkShare: UNDEF,
        nvlsCTAs: UNDEF,
        nChannelsPerNetPeer: UNDEF,
        nvlinkCentricSched: UNDEF,
        graphUsageMode: UNDEF,
        numRmaCtx: UNDEF,
        maxP2pPeers: UNDEF,
    }
}

impl Nccl {
    pub fn version_string(&self) -> String {
        version_string(self.version)
    }

    /// `code` with NCCL's own words for it and, given a communicator, its last error message.
    pub fn describe(&self, code: Code, comm: Option<RawComm>) -> String {
        let mut s = code.to_string();
        if let Some(t) = self.error_string.and_then(|f| c_text(unsafe { f(code.0) })) {
            s += &format!(": {t}");
        }
        if let (Some(f), Some(c)) = (self.last_error, comm) {
            if let Some(t) = c_text(unsafe { f(c) }) {
                s += &format!(" (last error: {t})");
            }
        }
        s
    }

    pub fn unique_id(&self) -> Result<ncclUniqueId, Code> {
        let mut id = ncclUniqueId { internal: [0; 128] };
        match Code(unsafe { (self.get_unique_id)(&mut id) }) {
            Code::SUCCESS => Ok(id),
            c => Err(c),
        }
    }

    /// Start `ncclCommInitRankConfig` (or `ncclCommInitRank` when `blocking` or the library has
    /// no config entry point). Non-blocking: the result may be [`Code::IN_PROGRESS`]; poll
    /// [`Nccl::async_error`] on the returned handle.
    ///
    /// # Safety
    /// The calling thread must have the rank's CUDA context current.
    pub unsafe fn init(
        &self,
        world: usize,
        id: ncclUniqueId,
        rank: usize,
        blocking: bool,
    ) -> (RawComm, Code, bool) {
        let mut comm: RawComm = std::ptr::null_mut();
        let (w, r) = (world as c_int, rank as c_int);
        match (self.init_rank_config, blocking) {
            (Some(f), false) => {
                let mut cfg = config(self.version, false);
                let code = Code(f(&mut comm, w, id, r, &mut cfg));
                (comm, code, false)
            }
            _ => (comm, Code((self.init_rank)(&mut comm, w, id, r)), true),
        }
    }

    /// # Safety
    /// Valid device pointers of `count` elements of `dtype`, a live communicator, its stream.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn all_reduce(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        dtype: u32,
        op: Op,
        comm: RawComm,
        stream: RawStream,
    ) -> Code {
        Code((self.all_reduce)(
            send as *const c_void,
            recv as *mut c_void,
            count,
            dtype,
            op as u32,
            comm,
            stream,
        ))
    }

    /// # Safety
    /// As [`Nccl::all_reduce`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn broadcast(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        dtype: u32,
        root: usize,
        comm: RawComm,
        stream: RawStream,
    ) -> Code {
        Code((self.broadcast)(
            send as *const c_void,
            recv as *mut c_void,
            count,
            dtype,
            root as c_int,
            comm,
            stream,
        ))
    }

    /// `ncclCommGetAsyncError`: the communicator's state (success, in progress, or the error
    /// that stopped it); a failing call itself reads as its code.
    ///
    /// # Safety
    /// A communicator not yet aborted or destroyed.
    pub unsafe fn async_error(&self, comm: RawComm) -> Code {
        let mut state = 0u32;
        match Code((self.async_error)(comm, &mut state)) {
            Code::SUCCESS => Code(state),
            c => c,
        }
    }

    /// # Safety
    /// A communicator not yet aborted or destroyed; it is gone afterwards.
    pub unsafe fn abort(&self, comm: RawComm) -> Code {
        Code((self.abort)(comm))
    }

    /// `ncclCommFinalize` (None when the library has none: destroy alone then).
    ///
    /// # Safety
    /// A live communicator.
    pub unsafe fn finalize(&self, comm: RawComm) -> Option<Code> {
        self.finalize.map(|f| Code(f(comm)))
    }

    /// # Safety
    /// A finalized (or never used) communicator; it is gone afterwards.
    pub unsafe fn destroy(&self, comm: RawComm) -> Code {
        Code((self.destroy)(comm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::nccl::NcclType;

    #[test]
    fn codes_and_types_match_cudarcs_bindings() {
        use cudarc::nccl::sys::{ncclRedOp_t, ncclResult_t};
        assert_eq!(f32::DTYPE, f32::as_nccl_type() as u32);
        assert_eq!(f64::DTYPE, f64::as_nccl_type() as u32);
        assert_eq!(u64::DTYPE, u64::as_nccl_type() as u32);
        assert_eq!(Op::Sum as u32, ncclRedOp_t::ncclSum as u32);
        assert_eq!(Op::Max as u32, ncclRedOp_t::ncclMax as u32);
        assert_eq!(Code::IN_PROGRESS.0, ncclResult_t::ncclInProgress as u32);
        assert_eq!(Code(6).name(), "ncclRemoteError");
        assert_eq!(Code(6).status(), Status::Failed(Code(6)));
        assert_eq!(Code(7).status(), Status::Pending);
        assert_eq!(Code(0).status(), Status::Done);
        assert_eq!(Code(99).name(), "an unknown NCCL result");
    }

    #[test]
    fn version_codes_decode() {
        assert_eq!(version_string(22707), "2.27.7");
        assert_eq!(version_string(23007), "2.30.7");
        assert_eq!(version_string(2804), "2.8.4");
    }

    #[test]
    fn config_is_the_initializer_with_blocking_set() {
        let c = config(22707, false);
        assert_eq!(c.size, std::mem::size_of::<ncclConfig_t>());
        assert_eq!(c.magic, 0xcafebeef);
        assert_eq!(c.version, 22707);
        assert_eq!(c.blocking, 0);
        assert_eq!(c.minCTAs, i32::MIN);
        assert!(c.netName.is_null());
        assert_eq!(config(22707, true).blocking, 1);
    }

    #[test]
    fn without_the_library_the_error_names_the_places_searched() {
        if present() {
            eprintln!("skipped: libnccl is installed here");
            return;
        }
        let e = nccl().err().expect("no libnccl").to_string();
        assert!(e.starts_with("CUDA unavailable: cannot load NCCL"), "{e}");
        assert!(e.contains("libnccl.so.2"), "{e}");
    }
}
