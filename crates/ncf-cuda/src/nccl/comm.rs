//! One rank's NCCL communicator, owned by ncf (not cudarc's `Comm`, whose drop calls
//! `ncclCommAbort` with `expect`: a panic on an error, and an abort even on a normal exit).
//!
//! - Created non-blocking (`ncclCommInitRankConfig`, `blocking = 0`) and polled with
//!   `ncclCommGetAsyncError` up to a deadline, so a rank that never joins cannot hang the others
//!   in the init. `NCF_NCCL_BLOCKING=1` makes it blocking (`ncclCommInitRank`), to tell a
//!   non-blocking problem from another.
//! - A collective that answers `ncclInProgress` is polled the same way before the stream is used.
//! - [`Comm::finish`] (a normal end) finalizes and destroys; [`Comm::abort_within`] (an error)
//!   aborts on a helper thread with a time limit; dropping a live communicator aborts it the same
//!   way. Nothing panics: every failure is an error or a line of the message.

use super::ffi::{nccl, Code, Elem, Nccl, Op, RawComm, RawStream, Status};
use super::watch::{bounded, wait_for, Bounded, Look, Waited};
use crate::device::StreamHandle;
use crate::CudaError;
use cudarc::nccl::sys::ncclUniqueId;
use std::sync::Arc;
use std::time::Duration;

/// How long an abort may take before the process stops waiting for it.
pub const ABORT_LIMIT: Duration = Duration::from_secs(10);

/// A live NCCL communicator of one rank, on one stream.
pub struct Comm {
    lib: &'static Nccl,
    /// Null once finalized or aborted.
    raw: RawComm,
    stream: Arc<dyn StreamHandle>,
    pub rank: usize,
    pub world: usize,
    /// Created blocking (`NCF_NCCL_BLOCKING=1`, or no `ncclCommInitRankConfig`).
    pub blocking: bool,
}

// SAFETY: the handle is used by one thread at a time (moved, never shared); NCCL allows its
// calls, ncclCommAbort included, from any thread.
unsafe impl Send for Comm {}

/// `NCF_NCCL_BLOCKING=1` asks for a blocking communicator.
pub fn blocking_from_env() -> bool {
    std::env::var("NCF_NCCL_BLOCKING").is_ok_and(|v| v == "1")
}

impl Comm {
    /// Join the communicator of `world` ranks identified by `id` as `rank`, within `timeout`.
    pub fn init(
        stream: Arc<dyn StreamHandle>,
        rank: usize,
        world: usize,
        id: ncclUniqueId,
        timeout: Duration,
    ) -> Result<Comm, CudaError> {
        let lib = nccl()?;
        stream.bind()?;
        // SAFETY: the stream's context is current on this thread.
        let (raw, code, blocking) = unsafe { lib.init(world, id, rank, blocking_from_env()) };
        let what = format!(
            "{} (rank {rank} of {world})",
            if blocking {
                "ncclCommInitRank"
            } else {
                "ncclCommInitRankConfig"
            }
        );
        if raw.is_null() {
            return Err(CudaError::call(what, lib.describe(code, None)));
        }
        let comm = Comm {
            lib,
            raw,
            stream,
            rank,
            world,
            blocking,
        };
        let r = match code.status() {
            Status::Done => Ok(()),
            Status::Pending => comm.settle(&what, timeout),
            Status::Failed(c) => Err(CudaError::call(&what, lib.describe(c, Some(raw)))),
        };
        match r {
            Ok(()) => Ok(comm),
            Err(e) => {
                let how = comm.abort_within(ABORT_LIMIT);
                Err(CudaError::Invalid(format!("{e}; {how}")))
            }
        }
    }

    /// The communicator's asynchronous state as a [`Look`]: pending work is not an error.
    pub fn look(&self) -> Look {
        // SAFETY: live communicator.
        match unsafe { self.lib.async_error(self.raw) }.status() {
            Status::Done | Status::Pending => Look::Pending,
            Status::Failed(c) => Look::Failed(self.lib.describe(c, Some(self.raw))),
        }
    }

    /// Poll `ncclCommGetAsyncError` until the communicator is no longer in progress.
    fn settle(&self, what: &str, timeout: Duration) -> Result<(), CudaError> {
        // SAFETY: live communicator.
        let w = wait_for(timeout, || {
            match unsafe { self.lib.async_error(self.raw) }.status() {
                Status::Done => Look::Done,
                Status::Pending => Look::Pending,
                Status::Failed(c) => Look::Failed(self.lib.describe(c, Some(self.raw))),
            }
        });
        match w {
            Waited::Done => Ok(()),
            Waited::Failed(why) => Err(CudaError::call(what, why)),
            Waited::TimedOut(t) => Err(CudaError::Invalid(format!(
                "{what} was still in progress after {:.0} s (another rank did not join or \
                 stalled)",
                t.as_secs_f64()
            ))),
        }
    }

    fn enqueued(&self, code: Code, what: &str, timeout: Duration) -> Result<(), CudaError> {
        match code.status() {
            Status::Done => Ok(()),
            Status::Pending => self.settle(what, timeout),
            Status::Failed(c) => Err(CudaError::call(what, self.lib.describe(c, Some(self.raw)))),
        }
    }

    fn raw_stream(&self) -> RawStream {
        self.stream.raw()
    }

    /// Out-of-place all-reduce of `count` elements at device address `send` into `recv` on the
    /// communicator's stream (queued: wait on the stream for it).
    pub fn all_reduce<T: Elem>(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        op: Op,
        what: &str,
        timeout: Duration,
    ) -> Result<(), CudaError> {
        self.stream.bind()?;
        let what = format!("ncclAllReduce ({op:?}) of {what} ({count} {})", T::NAME);
        // SAFETY: the caller's buffers hold `count` elements of T on this communicator's device.
        let code = unsafe {
            self.lib
                .all_reduce(send, recv, count, T::DTYPE, op, self.raw, self.raw_stream())
        };
        self.enqueued(code, &what, timeout)
    }

    /// Out-of-place broadcast of rank 0's `send` into every rank's `recv`.
    pub fn broadcast<T: Elem>(
        &self,
        send: u64,
        recv: u64,
        count: usize,
        what: &str,
        timeout: Duration,
    ) -> Result<(), CudaError> {
        self.stream.bind()?;
        let what = format!("ncclBroadcast of {what} ({count} {})", T::NAME);
        // SAFETY: as all_reduce.
        let code = unsafe {
            self.lib
                .broadcast(send, recv, count, T::DTYPE, 0, self.raw, self.raw_stream())
        };
        self.enqueued(code, &what, timeout)
    }

    /// A normal end: `ncclCommFinalize` (polled up to `timeout`), then `ncclCommDestroy`. If
    /// finalizing fails or times out, the communicator is aborted instead and the error says so.
    pub fn finish(mut self, timeout: Duration) -> Result<(), CudaError> {
        self.stream.bind()?;
        let what = format!("ncclCommFinalize (rank {} of {})", self.rank, self.world);
        // SAFETY: live communicator.
        let fin = match unsafe { self.lib.finalize(self.raw) } {
            Some(code) => self.enqueued(code, &what, timeout),
            None => Ok(()),
        };
        if let Err(e) = fin {
            let how = self.abort_within(ABORT_LIMIT);
            return Err(CudaError::Invalid(format!("{e}; {how}")));
        }
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: finalized; not used afterwards.
        match unsafe { self.lib.destroy(raw) } {
            Code::SUCCESS => Ok(()),
            c => Err(CudaError::call(
                format!("ncclCommDestroy (rank {} of {})", self.rank, self.world),
                self.lib.describe(c, None),
            )),
        }
    }

    /// After an error: `ncclCommAbort` (which ends kernels spinning on a dead peer) on a helper
    /// thread given `limit`, since an abort can hang too. Says how it went, for the error message.
    /// Past the limit a watchdog ends the process 10 s later (exit 1) unless it has ended by
    /// then: a GPU still running a collective could block the context's teardown forever.
    pub fn abort_within(mut self, limit: Duration) -> String {
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        abort_raw(self.lib, raw, self.stream.clone(), limit)
    }
}

fn abort_raw(
    lib: &'static Nccl,
    raw: RawComm,
    stream: Arc<dyn StreamHandle>,
    limit: Duration,
) -> String {
    if raw.is_null() {
        return "the NCCL communicator was already closed".into();
    }
    let handle = raw as usize;
    let r = bounded("nccl-abort", limit, move || {
        let _ = stream.bind();
        // SAFETY: the handle is live and used by no other thread from now on.
        match unsafe { lib.abort(handle as RawComm) } {
            Code::SUCCESS => Ok(()),
            c => Err(lib.describe(c, None)),
        }
    });
    match r {
        Bounded::Finished(Ok(())) => "the NCCL communicator was aborted".into(),
        Bounded::Finished(Err(e)) => format!("aborting the NCCL communicator failed too ({e})"),
        Bounded::Panicked => "aborting the NCCL communicator failed too (it panicked)".into(),
        Bounded::NoThread => "no thread could be started to abort the NCCL communicator".into(),
        Bounded::TimedOut => {
            let _ = std::thread::Builder::new()
                .name("nccl-watchdog".into())
                .spawn(|| {
                    std::thread::sleep(ABORT_LIMIT);
                    eprintln!(
                        "ncf-cuda: the NCCL abort did not finish and the process did not end \
                         within {} s after it: exiting (1)",
                        ABORT_LIMIT.as_secs()
                    );
                    std::process::exit(1);
                });
            format!(
                "aborting the NCCL communicator did not finish within {:.0} s",
                limit.as_secs_f64()
            )
        }
    }
}

impl Drop for Comm {
    /// A communicator still live here was not finished: an error path. Abort it, never panic.
    fn drop(&mut self) {
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        if !raw.is_null() {
            let _ = abort_raw(self.lib, raw, self.stream.clone(), ABORT_LIMIT);
        }
    }
}
