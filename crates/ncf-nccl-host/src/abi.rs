//! The C ABI: every entry point ncf's `nccl/ffi.rs` loads, with nccl.h's signatures. Each one
//! catches panics (none may unwind into the caller) and answers `ncclInternalError` instead.
//! Communicator handles are keys into a table, never dereferenced: a stale or foreign handle is
//! `ncclInvalidArgument`, not a crash.

use crate::comm::{code::*, Comm, Failure};
use crate::id::{self, Rendezvous, UniqueId};
use crate::reduce::{self, DType, RedOp};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `ncclComm_t`.
pub type RawComm = *mut c_void;

/// What `ncclGetVersion` answers: 9.99.1 in `NCCL_VERSION` terms, a version NCCL never had, so
/// that ncf (`ncf-cuda-check --nccl-version`, the rank start-up line) shows the stand-in.
pub const VERSION: c_int = 99901;

/// Seconds a join, a collective or finalize may wait for another rank (default 60).
pub const TIMEOUT_VAR: &str = "NCF_NCCL_HOST_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
#[path = "abi_tests.rs"]
mod tests;

/// The head of `ncclConfig_t`, the fields every NCCL version starts with (the rest is ignored).
#[repr(C)]
pub struct ConfigHead {
    pub size: usize,
    pub magic: c_uint,
    pub version: c_uint,
    pub blocking: c_int,
}

/// `NCCL_CONFIG_INITIALIZER`'s magic.
const CONFIG_MAGIC: c_uint = 0xcafe_beef;

type Table = HashMap<usize, Arc<Comm>>;
static COMMS: Mutex<Option<Table>> = Mutex::new(None);
/// Handles look like aligned addresses (some callers test them for null only).
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x6e63_0000);
/// The last error of any call, for `ncclGetLastError(NULL)` and handles already gone.
static LAST: Mutex<String> = Mutex::new(String::new());

fn table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(COMMS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new))
}

fn register(c: Arc<Comm>) -> RawComm {
    let h = NEXT_HANDLE.fetch_add(16, Ordering::Relaxed);
    table(|t| t.insert(h, c));
    h as RawComm
}

fn find(raw: RawComm) -> Result<Arc<Comm>, Failure> {
    table(|t| t.get(&(raw as usize)).cloned()).ok_or_else(|| Failure {
        code: INVALID_ARGUMENT,
        message: format!("stand-in NCCL: {raw:?} is not a live communicator"),
    })
}

fn set_last(message: &str) {
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = message.to_string();
}

/// Run an entry point: its failure becomes the last error and its code; a panic becomes
/// `ncclInternalError`.
fn guarded(what: &str, f: impl FnOnce() -> Result<u32, Failure>) -> u32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(fail)) => {
            set_last(&fail.message);
            fail.code
        }
        Err(_) => {
            set_last(&format!(
                "stand-in NCCL: {what} panicked (a bug in ncf-nccl-host)"
            ));
            INTERNAL_ERROR
        }
    }
}

fn bad(message: String) -> Failure {
    Failure {
        code: INVALID_ARGUMENT,
        message: format!("stand-in NCCL: {message}"),
    }
}

/// A non-blocking communicator's join or finalize: `ncclInProgress` now, `work` on a thread
/// (its outcome, a panic included, becomes the state `ncclCommGetAsyncError` reports). Done
/// here and now when no thread can be started.
fn in_background(
    what: &'static str,
    c: Arc<Comm>,
    work: impl Fn(&Comm) -> Result<(), Failure> + Send + Clone + 'static,
) -> Result<u32, Failure> {
    let (comm, job) = (c.clone(), work.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("ncf-nccl-host-{what}"))
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(|| job(&comm))).unwrap_or_else(|_| {
                Err(comm.fail(Failure {
                    code: INTERNAL_ERROR,
                    message: format!("the {what} panicked (a bug in ncf-nccl-host)"),
                }))
            });
            if let Err(f) = r {
                set_last(&f.message);
            }
        });
    match spawned {
        Ok(_) => Ok(IN_PROGRESS),
        Err(_) => work(&c).map(|()| SUCCESS),
    }
}

/// `NCF_NCCL_HOST_TIMEOUT` (seconds, fractions allowed), else 60 s.
pub fn timeout_from_env() -> Result<Duration, String> {
    parse_timeout(std::env::var(TIMEOUT_VAR).ok().as_deref())
}

fn parse_timeout(value: Option<&str>) -> Result<Duration, String> {
    let Some(v) = value else {
        return Ok(DEFAULT_TIMEOUT);
    };
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{TIMEOUT_VAR}={v:?} is not a number of seconds > 0"))
}

/// # Safety
/// `version` is NULL or points to an `int`.
#[no_mangle]
pub unsafe extern "C" fn ncclGetVersion(version: *mut c_int) -> u32 {
    guarded("ncclGetVersion", || {
        if version.is_null() {
            return Err(bad("ncclGetVersion: version is NULL".into()));
        }
        // SAFETY: checked non-null; the caller's int.
        unsafe { version.write(VERSION) };
        Ok(SUCCESS)
    })
}

/// A new id: rank 0's listening socket on 127.0.0.1 (in this process) and a random tag.
///
/// # Safety
/// `out` is NULL or points to an `ncclUniqueId`.
#[no_mangle]
pub unsafe extern "C" fn ncclGetUniqueId(out: *mut UniqueId) -> u32 {
    guarded("ncclGetUniqueId", || {
        if out.is_null() {
            return Err(bad("ncclGetUniqueId: uniqueId is NULL".into()));
        }
        let rz = id::make().map_err(|e| Failure {
            code: SYSTEM_ERROR,
            message: format!("stand-in NCCL: cannot listen on 127.0.0.1 for the ranks: {e}"),
        })?;
        // SAFETY: checked non-null; the caller's ncclUniqueId.
        unsafe { out.write(rz.to_id()) };
        Ok(SUCCESS)
    })
}

/// Create rank `rank`'s communicator into `*out`. Any failure past a NULL `out` still gives a
/// handle, in the failed state, so that `ncclGetLastError(comm)` says why (abort or destroy it).
unsafe fn init(out: *mut RawComm, nranks: c_int, id: UniqueId, rank: c_int, blocking: bool) -> u32 {
    guarded("ncclCommInitRank", || {
        if out.is_null() {
            return Err(bad("ncclCommInitRank: comm is NULL".into()));
        }
        let (r, w) = (rank.max(0) as usize, nranks.max(1) as usize);
        let checked = timeout_from_env().and_then(|t| {
            if nranks < 1 || rank < 0 || rank >= nranks {
                return Err(format!("rank {rank} of {nranks} ranks is not a rank"));
            }
            Ok((t, Rendezvous::from_id(&id)?))
        });
        let (timeout, rz) = match checked {
            Ok(v) => v,
            Err(e) => {
                let f = Failure {
                    code: INVALID_ARGUMENT,
                    message: e,
                };
                let (c, f) = Comm::refused(r, w, blocking, f);
                // SAFETY: checked non-null; the caller's ncclComm_t.
                unsafe { out.write(register(Arc::new(c))) };
                return Err(f);
            }
        };
        let c = Arc::new(Comm::new(r, w, blocking, timeout));
        // SAFETY: checked non-null; the caller's ncclComm_t.
        unsafe { out.write(register(c.clone())) };
        if blocking {
            return c.join(rz).map(|()| SUCCESS);
        }
        in_background("join", c, move |c| c.join(rz))
    })
}

/// Blocking init: returns once every rank has joined (or the timeout has passed).
///
/// # Safety
/// `comm` is NULL or points to an `ncclComm_t`.
#[no_mangle]
pub unsafe extern "C" fn ncclCommInitRank(
    comm: *mut RawComm,
    nranks: c_int,
    id: UniqueId,
    rank: c_int,
) -> u32 {
    // SAFETY: the caller's pointer, as documented.
    unsafe { init(comm, nranks, id, rank, true) }
}

/// Init with a config: `blocking = 0` returns `ncclInProgress` at once and joins on a thread;
/// `ncclCommGetAsyncError` says when every rank has joined.
///
/// # Safety
/// `comm` as [`ncclCommInitRank`]; `config` NULL or an `ncclConfig_t` made by
/// `NCCL_CONFIG_INITIALIZER`.
#[no_mangle]
pub unsafe extern "C" fn ncclCommInitRankConfig(
    comm: *mut RawComm,
    nranks: c_int,
    id: UniqueId,
    rank: c_int,
    config: *mut ConfigHead,
) -> u32 {
    guarded("ncclCommInitRankConfig", || {
        let blocking = if config.is_null() {
            true
        } else {
            // SAFETY: non-null, and every ncclConfig_t starts with these fields.
            let (size, magic, blocking) =
                unsafe { ((*config).size, (*config).magic, (*config).blocking) };
            if magic != CONFIG_MAGIC || size < std::mem::size_of::<ConfigHead>() {
                return Err(bad(format!(
                    "ncclCommInitRankConfig: the config was not made by \
                     NCCL_CONFIG_INITIALIZER (size {size}, magic {magic:#x})"
                )));
            }
            // NCCL_CONFIG_UNDEF_INT (INT_MIN) and any other non-zero value: NCCL's default.
            blocking != 0
        };
        // SAFETY: the caller's pointer, as documented.
        Ok(unsafe { init(comm, nranks, id, rank, blocking) })
    })
}

/// Bytes of `count` elements of `dtype`, or the reason there are none.
fn span(
    c: &Comm,
    what: &str,
    count: usize,
    dtype: DType,
    ptrs: &[*const c_void],
) -> Result<usize, Failure> {
    let bytes = count.checked_mul(dtype.size()).ok_or_else(|| {
        c.refuse(
            INVALID_ARGUMENT,
            format!("{what}: {count} elements overflow"),
        )
    })?;
    if bytes > 0 && ptrs.iter().any(|p| p.is_null()) {
        return Err(c.refuse(INVALID_ARGUMENT, format!("{what}: a NULL buffer")));
    }
    Ok(bytes)
}

/// Out-of-place or in-place all-reduce. The result is in `recvbuff` when the call returns
/// (the stream is not used: the host device's streams are synchronous).
///
/// # Safety
/// `sendbuff` and `recvbuff` hold `count` elements of `datatype` in this process's memory.
#[no_mangle]
pub unsafe extern "C" fn ncclAllReduce(
    sendbuff: *const c_void,
    recvbuff: *mut c_void,
    count: usize,
    datatype: u32,
    op: u32,
    comm: RawComm,
    _stream: *mut c_void,
) -> u32 {
    guarded("ncclAllReduce", || {
        let c = find(comm)?;
        let dtype = DType::from_code(datatype)
            .filter(|d| reduce::reducible(*d))
            .ok_or_else(|| {
                c.refuse(
                    INVALID_ARGUMENT,
                    format!("ncclAllReduce: data type {datatype} is not reduced by the stand-in"),
                )
            })?;
        let op = RedOp::from_code(op).ok_or_else(|| {
            c.refuse(
                INVALID_ARGUMENT,
                format!("ncclAllReduce: reduction {op} is not one the stand-in has"),
            )
        })?;
        let bytes = span(
            &c,
            "ncclAllReduce",
            count,
            dtype,
            &[sendbuff, recvbuff as *const c_void],
        )?;
        // SAFETY: the caller's buffer of `bytes` bytes (checked non-null when bytes > 0).
        let own = unsafe { bytes_at(sendbuff, bytes) };
        let out = c.all_reduce(own, dtype, op)?;
        // SAFETY: as above; `copy` allows recvbuff == sendbuff (in place).
        unsafe { std::ptr::copy(out.as_ptr(), recvbuff as *mut u8, out.len().min(bytes)) };
        Ok(SUCCESS)
    })
}

/// `root`'s `sendbuff` into every rank's `recvbuff` (complete when the call returns).
///
/// # Safety
/// `recvbuff` (and on the root `sendbuff`) hold `count` elements of `datatype`.
#[no_mangle]
pub unsafe extern "C" fn ncclBroadcast(
    sendbuff: *const c_void,
    recvbuff: *mut c_void,
    count: usize,
    datatype: u32,
    root: c_int,
    comm: RawComm,
    _stream: *mut c_void,
) -> u32 {
    guarded("ncclBroadcast", || {
        let c = find(comm)?;
        let dtype = DType::from_code(datatype).ok_or_else(|| {
            c.refuse(
                INVALID_ARGUMENT,
                format!("ncclBroadcast: data type {datatype} is unknown"),
            )
        })?;
        if root < 0 || root as usize >= c.world {
            return Err(c.refuse(
                INVALID_ARGUMENT,
                format!("ncclBroadcast: root {root} is not a rank"),
            ));
        }
        let root = root as usize;
        let own = if c.rank == root {
            let bytes = span(&c, "ncclBroadcast", count, dtype, &[sendbuff])?;
            // SAFETY: the root's buffer of `bytes` bytes (checked non-null when bytes > 0).
            unsafe { bytes_at(sendbuff, bytes) }
        } else {
            vec![]
        };
        let bytes = span(
            &c,
            "ncclBroadcast",
            count,
            dtype,
            &[recvbuff as *const c_void],
        )?;
        let out = c.broadcast(own, count, dtype, root)?;
        // SAFETY: the caller's buffer of `bytes` bytes; `copy` allows it to be sendbuff.
        unsafe { std::ptr::copy(out.as_ptr(), recvbuff as *mut u8, out.len().min(bytes)) };
        Ok(SUCCESS)
    })
}

/// A copy of `bytes` bytes at `p`.
///
/// # Safety
/// `p` is readable for `bytes` bytes (or `bytes` is 0).
unsafe fn bytes_at(p: *const c_void, bytes: usize) -> Vec<u8> {
    if bytes == 0 {
        return vec![];
    }
    // SAFETY: as the function's contract.
    unsafe { std::slice::from_raw_parts(p as *const u8, bytes) }.to_vec()
}

/// The communicator's state into `*state`: `ncclInProgress` while joining or finalizing, the
/// error that ended it, or `ncclSuccess` (after a look for closed peer connections).
///
/// # Safety
/// `state` is NULL or points to an `ncclResult_t`.
#[no_mangle]
pub unsafe extern "C" fn ncclCommGetAsyncError(comm: RawComm, state: *mut u32) -> u32 {
    guarded("ncclCommGetAsyncError", || {
        let c = find(comm)?;
        if state.is_null() {
            return Err(c.refuse(
                INVALID_ARGUMENT,
                "ncclCommGetAsyncError: asyncError is NULL".into(),
            ));
        }
        let s = c.async_state();
        // SAFETY: checked non-null; the caller's ncclResult_t.
        unsafe { state.write(s) };
        Ok(SUCCESS)
    })
}

/// Close the connections at once (the other ranks see this rank gone) and free the handle.
#[no_mangle]
pub extern "C" fn ncclCommAbort(comm: RawComm) -> u32 {
    close("ncclCommAbort", comm)
}

/// Free the handle (after finalize, or instead of it: the connections close either way).
#[no_mangle]
pub extern "C" fn ncclCommDestroy(comm: RawComm) -> u32 {
    close("ncclCommDestroy", comm)
}

fn close(what: &str, comm: RawComm) -> u32 {
    guarded(what, || {
        if comm.is_null() {
            return Ok(SUCCESS);
        }
        let c = table(|t| t.remove(&(comm as usize)))
            .ok_or_else(|| bad(format!("{what}: {comm:?} is not a live communicator")))?;
        c.close();
        Ok(SUCCESS)
    })
}

/// The finalize barrier: blocking communicators wait for every rank inside the call;
/// non-blocking ones return `ncclInProgress` (poll `ncclCommGetAsyncError`).
#[no_mangle]
pub extern "C" fn ncclCommFinalize(comm: RawComm) -> u32 {
    guarded("ncclCommFinalize", || {
        let c = find(comm)?;
        c.begin_finalize()?;
        if c.blocking {
            return c.finalize().map(|()| SUCCESS);
        }
        in_background("finalize", c, Comm::finalize)
    })
}

/// NCCL's own words for each result.
#[no_mangle]
pub extern "C" fn ncclGetErrorString(result: u32) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"no error",
        1 => c"unhandled cuda error",
        2 => c"unhandled system error",
        3 => c"internal error - please report this issue to the NCCL developers",
        4 => c"invalid argument",
        5 => c"invalid usage",
        6 => c"remote process exited or there was a network error",
        7 => c"NCCL operation in progress",
        8 => c"timeout",
        _ => c"unknown result code",
    };
    s.as_ptr()
}

thread_local! {
    /// The text `ncclGetLastError` last handed to this thread (valid until its next call).
    static HANDED_OUT: RefCell<CString> = RefCell::new(CString::default());
}

/// What went wrong last on `comm` (its failure, naming the rank at fault), else in any call.
#[no_mangle]
pub extern "C" fn ncclGetLastError(comm: RawComm) -> *const c_char {
    catch_unwind(|| {
        let own = find(comm).map(|c| c.last_error()).unwrap_or_default();
        let text = if own.is_empty() {
            LAST.lock().unwrap_or_else(|e| e.into_inner()).clone()
        } else {
            own
        };
        let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
        HANDED_OUT.with(|b| {
            *b.borrow_mut() = text;
            b.borrow().as_ptr()
        })
    })
    .unwrap_or(c"stand-in NCCL: ncclGetLastError panicked".as_ptr())
}
