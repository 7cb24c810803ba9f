//! The C entry points called as ncf calls them, in one process: version, codes and texts, the
//! layouts against cudarc's bindings, refusals that say which argument, and a world of one
//! through init, collectives, finalize and destroy, blocking and not.

use super::*;
use cudarc::nccl::sys::{ncclConfig_t, ncclUniqueId};
use std::mem::{offset_of, size_of};
use std::ptr::null_mut;

/// The last error is process-wide: the tests that read it take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(p: *const c_char) -> String {
    // SAFETY: the stand-in returns NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into()
}

fn new_id() -> UniqueId {
    let mut id = UniqueId { internal: [0; 128] };
    // SAFETY: a valid ncclUniqueId.
    assert_eq!(unsafe { ncclGetUniqueId(&mut id) }, SUCCESS);
    id
}

fn state(comm: RawComm) -> u32 {
    let mut s = u32::MAX;
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { ncclCommGetAsyncError(comm, &mut s) }, SUCCESS);
    s
}

fn settle(comm: RawComm) -> u32 {
    let t0 = std::time::Instant::now();
    while state(comm) == IN_PROGRESS && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    state(comm)
}

#[test]
fn layouts_match_cudarcs_bindings() {
    assert_eq!(size_of::<UniqueId>(), size_of::<ncclUniqueId>());
    assert_eq!(offset_of!(ConfigHead, size), offset_of!(ncclConfig_t, size));
    assert_eq!(
        offset_of!(ConfigHead, magic),
        offset_of!(ncclConfig_t, magic)
    );
    assert_eq!(
        offset_of!(ConfigHead, version),
        offset_of!(ncclConfig_t, version)
    );
    assert_eq!(
        offset_of!(ConfigHead, blocking),
        offset_of!(ncclConfig_t, blocking)
    );
    assert!(size_of::<ConfigHead>() <= size_of::<ncclConfig_t>());
}

#[test]
fn version_codes_and_texts() {
    let mut v = 0;
    // SAFETY: a valid out-pointer, then NULL (refused).
    unsafe {
        assert_eq!(ncclGetVersion(&mut v), SUCCESS);
        assert_eq!(v, 99901);
        let _g = serial();
        assert_eq!(ncclGetVersion(null_mut()), INVALID_ARGUMENT);
        assert!(text(ncclGetLastError(null_mut())).contains("version is NULL"));
    }
    assert_eq!(ncf_cuda::nccl::ffi::version_string(v), "9.99.1");
    assert_eq!(
        text(ncclGetErrorString(6)),
        "remote process exited or there was a network error"
    );
    assert_eq!(text(ncclGetErrorString(7)), "NCCL operation in progress");
    assert_eq!(text(ncclGetErrorString(99)), "unknown result code");
}

#[test]
fn timeouts_are_seconds() {
    assert_eq!(parse_timeout(None), Ok(Duration::from_secs(60)));
    assert_eq!(parse_timeout(Some(" 0.5")), Ok(Duration::from_millis(500)));
    for bad in ["", "abc", "0", "-1", "inf", "NaN"] {
        let e = parse_timeout(Some(bad)).unwrap_err();
        assert!(e.starts_with("NCF_NCCL_HOST_TIMEOUT="), "{e}");
    }
}

#[test]
fn one_rank_non_blocking_as_ncfs_wrapper_configures_it() {
    let _g = serial();
    let mut cfg = ncf_cuda::nccl::ffi::config(VERSION, false);
    let mut comm = null_mut();
    let cfg_ptr = &mut cfg as *mut ncclConfig_t as *mut ConfigHead;
    // SAFETY: valid pointers; the config is NCCL_CONFIG_INITIALIZER's.
    let code = unsafe { ncclCommInitRankConfig(&mut comm, 1, new_id(), 0, cfg_ptr) };
    assert_eq!(code, IN_PROGRESS);
    assert!(!comm.is_null());
    assert_eq!(settle(comm), SUCCESS);

    let send = [1.5f32, -2.0, 3.25];
    let mut recv = [0f32; 3];
    let (s, r) = (
        send.as_ptr() as *const c_void,
        recv.as_mut_ptr() as *mut c_void,
    );
    // SAFETY: buffers of 3 f32 (and of 6 bytes for the f16 broadcast).
    unsafe {
        assert_eq!(ncclAllReduce(s, r, 3, 7, 0, comm, null_mut()), SUCCESS);
        assert_eq!(recv, send);
        recv = [0.0; 3];
        assert_eq!(ncclBroadcast(s, r, 3, 6, 0, comm, null_mut()), SUCCESS);
        assert_eq!(recv[..1], send[..1], "6 bytes of f16 moved");
        // Refusals name the argument and leave the communicator usable.
        let null = std::ptr::null();
        let cases: [(&str, &dyn Fn() -> u32); 6] = [
            ("data type 6", &|| {
                ncclAllReduce(s, r, 3, 6, 0, comm, null_mut())
            }),
            ("reduction 4", &|| {
                ncclAllReduce(s, r, 3, 7, 4, comm, null_mut())
            }),
            ("NULL buffer", &|| {
                ncclAllReduce(null, r, 3, 7, 0, comm, null_mut())
            }),
            ("overflow", &|| {
                ncclAllReduce(s, r, usize::MAX, 8, 0, comm, null_mut())
            }),
            ("root 1 is not a rank", &|| {
                ncclBroadcast(s, r, 3, 7, 1, comm, null_mut())
            }),
            ("data type 11", &|| {
                ncclBroadcast(s, r, 3, 11, 0, comm, null_mut())
            }),
        ];
        for (why, call) in cases {
            assert_eq!(call(), INVALID_ARGUMENT, "{why}");
            let last = text(ncclGetLastError(comm));
            assert!(last.contains(why), "{why}: {last}");
            assert!(last.starts_with("stand-in NCCL, rank 0 of 1: "), "{last}");
        }
        assert_eq!(state(comm), SUCCESS);
        // Nothing to send: no pointer is read.
        assert_eq!(
            ncclAllReduce(null, null_mut(), 0, 7, 0, comm, null_mut()),
            SUCCESS
        );
        assert_eq!(ncclCommFinalize(comm), IN_PROGRESS);
        assert_eq!(settle(comm), SUCCESS);
        assert_eq!(
            ncclAllReduce(s, r, 3, 7, 0, comm, null_mut()),
            INVALID_USAGE
        );
        assert_eq!(ncclCommDestroy(comm), SUCCESS);
        // The handle is gone: refused, never dereferenced.
        assert_eq!(ncclCommDestroy(comm), INVALID_ARGUMENT);
        let mut st = 0;
        assert_eq!(ncclCommGetAsyncError(comm, &mut st), INVALID_ARGUMENT);
        assert_eq!(
            ncclAllReduce(s, r, 3, 7, 0, 0x1234 as RawComm, null_mut()),
            INVALID_ARGUMENT
        );
        assert!(text(ncclGetLastError(comm)).contains("is not a live communicator"));
        assert_eq!(ncclCommAbort(null_mut()), SUCCESS);
        assert_eq!(ncclCommDestroy(null_mut()), SUCCESS);
    }
}

#[test]
fn one_rank_blocking() {
    let mut comm = null_mut();
    let x = [2.0f64, 4.0];
    let mut y = [0.0f64; 2];
    // SAFETY: valid pointers; buffers of 2 f64.
    unsafe {
        assert_eq!(ncclCommInitRank(&mut comm, 1, new_id(), 0), SUCCESS);
        assert_eq!(state(comm), SUCCESS);
        let (s, r) = (x.as_ptr() as *const c_void, y.as_mut_ptr() as *mut c_void);
        assert_eq!(ncclAllReduce(s, r, 2, 8, 2, comm, null_mut()), SUCCESS);
        assert_eq!(y, x);
        assert_eq!(ncclCommFinalize(comm), SUCCESS);
        assert_eq!(ncclCommDestroy(comm), SUCCESS);
    }
}

#[test]
fn bad_init_arguments_give_a_failed_handle_that_says_why() {
    let _g = serial();
    let zero = UniqueId { internal: [0; 128] };
    for (world, rank, id, why) in [
        (2, 5, new_id(), "rank 5 of 2 ranks is not a rank"),
        (0, 0, new_id(), "rank 0 of 0 ranks is not a rank"),
        (1, 0, zero, "not made by this stand-in"),
    ] {
        let mut comm = null_mut();
        // SAFETY: a valid out-pointer; the handle is aborted below.
        unsafe {
            assert_eq!(
                ncclCommInitRank(&mut comm, world, id, rank),
                INVALID_ARGUMENT
            );
            assert!(!comm.is_null());
            assert_eq!(state(comm), INVALID_ARGUMENT);
            let last = text(ncclGetLastError(comm));
            assert!(last.contains(why), "{why}: {last}");
            assert_eq!(ncclCommAbort(comm), SUCCESS);
        }
    }
    let mut cfg = ncf_cuda::nccl::ffi::config(VERSION, false);
    cfg.magic = 0;
    let mut comm = null_mut();
    let cfg_ptr = &mut cfg as *mut ncclConfig_t as *mut ConfigHead;
    // SAFETY: valid pointers (the config's magic is wrong on purpose).
    unsafe {
        let code = ncclCommInitRankConfig(&mut comm, 1, new_id(), 0, cfg_ptr);
        assert_eq!(code, INVALID_ARGUMENT);
        assert!(text(ncclGetLastError(null_mut())).contains("NCCL_CONFIG_INITIALIZER"));
        assert_eq!(
            ncclCommInitRank(null_mut(), 1, new_id(), 0),
            INVALID_ARGUMENT
        );
    }
}
