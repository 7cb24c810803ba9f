//! Data-parallel CUDA ranks: NCCL (through cudarc) all-reduces the gradients on the device, the
//! TCP group of [`ncf_core::dist`] bootstraps NCCL (rank 0's unique id is broadcast over it) and
//! sums the small host values (evaluation counts).
//!
//! Strong scaling as the CPU backend: every rank draws its share of the same global batch
//! (positions `len · r / R .. len · (r + 1) / R`; samples and dropout masks are functions of the
//! position, so the data seen does not depend on the rank count), scales its gradients by
//! 1 / global batch, and the sum over ranks is the 1-rank gradient up to float summation order.
//! A 1-rank communicator (`ncf-train --nccl` without a launcher) runs the same code path; its
//! all-reduce is the identity, so it must train like the non-NCCL run up to the run-to-run noise
//! of the atomically reduced gradients (the GPU check in scripts/device-check.sh).
//!
//! NCCL collectives have no timeout. A rank that never arrives or leaves between steps is caught
//! by the host collectives that bracket them (a ready check before the NCCL id is shared, and the
//! ranks' stop agreement before every step in `ncf_core::train::run`), which time out and name the
//! rank. A rank that dies in the middle of a step's device collectives would leave the others'
//! all-reduce spinning on the GPU forever: so the host never blocks on a stream holding NCCL work.
//! It records an event after the step and polls it ([`Ranks::wait`]) with the group's timeout;
//! past it (or on any error once a collective is queued) the step fails with an error saying
//! so, and the trainer drops the communicator (cudarc's `Comm` drop is `ncclCommAbort`, which ends
//! the spinning kernels; run on a helper thread given 10 s, as the abort can hang too) before
//! returning it. Still blocking: `ncclCommInitRank` itself and the connection set-up inside the
//! first collective (a peer dying in that window hangs the others; a non-blocking communicator
//! polled with `ncclCommGetAsyncError` would cover it). Written and compiled without a GPU: the
//! 1-rank GPU check runs the polling, not the abort.

use crate::CudaError;
use cudarc::driver::{sys::CUevent_flags, CudaSlice, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use cudarc::nccl::NcclType;
use ncf_core::dist::Group;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One rank's communicators.
pub struct Ranks {
    /// Host-side collectives and the bootstrap (a group of one when world = 1).
    pub group: Group,
    /// Device-side collectives on the trainer's stream.
    pub comm: Comm,
}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ranks(rank {} of {})", self.rank(), self.world())
    }
}

/// Whether libnccl can be loaded (cudarc panics on first use otherwise).
pub fn nccl_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

impl Ranks {
    /// Create the NCCL communicator of `group`'s ranks on `stream`: rank 0 makes the unique id
    /// and broadcasts it over the group.
    pub fn new(mut group: Group, stream: Arc<CudaStream>) -> Result<Ranks, CudaError> {
        if !nccl_present() {
            return Err(CudaError::Unavailable(
                "the NCCL library (libnccl.so) was not found: install NCCL (e.g. the \
                 nvidia-nccl-cu13 wheel) and put the directory holding libnccl.so on \
                 LD_LIBRARY_PATH (pip's wheel ships libnccl.so.2 only: add a libnccl.so link \
                 to it)"
                    .into(),
            ));
        }
        let (rank, world) = (group.rank(), group.world());
        // Every rank is ready (its GPU and NCCL opened) before rank 0 shares the id: a rank that
        // failed to start is reported here (timeout or closed connection), not as a hang in
        // ncclCommInitRank.
        group
            .allreduce_f64(&mut [1.0])
            .map_err(|e| CudaError::Invalid(format!("waiting for every rank's GPU: {e}")))?;
        let id = if rank == 0 {
            Id::new().map_err(|e| CudaError::call("ncclGetUniqueId", e))?
        } else {
            Id::uninit([0; 128])
        };
        // 128 bytes as 32 f32 words (bit patterns travel unchanged).
        let mut words: Vec<f32> = id
            .internal()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]))
            .collect();
        group
            .broadcast(&mut words)
            .map_err(|e| CudaError::Invalid(format!("sharing the NCCL id: {e}")))?;
        let mut internal = [0 as std::ffi::c_char; 128];
        for (k, w) in words.iter().enumerate() {
            for (j, b) in w.to_le_bytes().into_iter().enumerate() {
                internal[4 * k + j] = b as std::ffi::c_char;
            }
        }
        let comm = Comm::from_rank(stream, rank, world, Id::uninit(internal)).map_err(|e| {
            CudaError::call(format!("ncclCommInitRank (rank {rank} of {world})"), e)
        })?;
        Ok(Ranks { group, comm })
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world()
    }

    /// Element-wise `op` of `buf` over the ranks, in place, on the communicator's stream.
    pub fn all_reduce<T: NcclType>(
        &self,
        buf: &mut CudaSlice<T>,
        op: ReduceOp,
        what: &str,
    ) -> Result<(), CudaError> {
        self.comm
            .all_reduce_in_place(buf, &op)
            .map(|_| ())
            .map_err(|e| CudaError::call(format!("ncclAllReduce of {what}"), e))
    }

    /// Wait for the work queued on `stream` so far (the step's collectives included), at most
    /// the group's timeout. Never blocks inside the driver: an event is polled, so a peer that
    /// died in the middle of a collective turns into an error here instead of a hang.
    pub fn wait(&self, stream: &CudaStream, what: &str) -> Result<(), CudaError> {
        let event = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .map_err(|e| CudaError::call(format!("recording an event after {what}"), e))?;
        let timeout = self.group.timeout();
        let done = poll_until(timeout, || {
            event
                .try_is_complete()
                .map_err(|e| CudaError::call(format!("waiting for {what}"), e))
        })?;
        if done {
            return Ok(());
        }
        Err(CudaError::Invalid(format!(
            "rank {} of {}: {what} did not finish within {:.0} s: another rank died or stalled \
             in the middle of the step's NCCL collectives (its own log says why)",
            self.rank(),
            self.world(),
            timeout.as_secs_f64()
        )))
    }

    /// Rank 0's `buf` into every rank's.
    pub fn broadcast<T: NcclType>(
        &self,
        buf: &mut CudaSlice<T>,
        what: &str,
    ) -> Result<(), CudaError> {
        self.comm
            .broadcast_in_place(buf, 0)
            .map(|_| ())
            .map_err(|e| CudaError::call(format!("ncclBroadcast of {what}"), e))
    }
}

/// Call `done` until it says true or `timeout` has passed (then false). For the first 100 ms it
/// polls back to back (yielding the core), as the driver's default synchronisation spins, so a
/// step of a millisecond is not lengthened; after that it sleeps 1 ms between calls.
pub fn poll_until<E>(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, E>,
) -> Result<bool, E> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(true);
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Ok(false);
        }
        if waited < Duration::from_millis(100) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Rank `rank`'s share of the global batch `positions` (contiguous, sizes differ by ≤ 1).
pub fn local_positions(
    positions: std::ops::Range<u64>,
    rank: usize,
    world: usize,
) -> std::ops::Range<u64> {
    let n = positions.end - positions.start;
    let at = |r: usize| positions.start + (n as u128 * r as u128 / world as u128) as u64;
    at(rank)..at(rank + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_when_done_and_gives_up_after_the_timeout() {
        let mut n = 0;
        let r: Result<bool, ()> = poll_until(Duration::from_secs(5), || {
            n += 1;
            Ok(n == 500)
        });
        assert_eq!(r, Ok(true));
        assert_eq!(n, 500);
        let t0 = Instant::now();
        let r: Result<bool, ()> = poll_until(Duration::from_millis(50), || Ok(false));
        assert_eq!(r, Ok(false));
        let dt = t0.elapsed();
        assert!(
            dt >= Duration::from_millis(50) && dt < Duration::from_secs(2),
            "{dt:?}"
        );
        let r: Result<bool, &str> = poll_until(Duration::from_secs(5), || Err("device error"));
        assert_eq!(r, Err("device error"));
    }

    #[test]
    fn local_positions_tile_the_batch() {
        for world in 1..9 {
            let mut next = 1000;
            for r in 0..world {
                let p = local_positions(1000..1000 + 1_048_577, r, world);
                assert_eq!(p.start, next);
                let len = p.end - p.start;
                assert!(len == 1_048_577 / world as u64 || len == 1_048_577 / world as u64 + 1);
                next = p.end;
            }
            assert_eq!(next, 1000 + 1_048_577);
        }
        // Fewer samples than ranks: some ranks get none.
        let lens: Vec<u64> = (0..4)
            .map(|r| local_positions(0..2, r, 4))
            .map(|p| p.end - p.start)
            .collect();
        assert_eq!(lens.iter().sum::<u64>(), 2);
    }
}
