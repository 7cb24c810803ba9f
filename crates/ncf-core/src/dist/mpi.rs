//! The MPI engine (cargo feature `mpi`): ranks that mpirun or srun started, joined through the
//! `mpi` crate (rsmpi) over the system's MPI (Open MPI 4.1 on Debian).
//!
//! rsmpi initialises MPI and gives the bindings (`mpi::ffi`). MPI is finalised by [`finish`], which
//! the tools call last, after their error message is out (`ncf_tool::main_with`): a rank that
//! exited would make mpirun end the others, maybe before they said why they stop; the collectives are called through those bindings directly because
//! rsmpi's safe calls drop MPI's return codes: here the communicator (a duplicate of
//! `MPI_COMM_WORLD`) has `MPI_ERRORS_RETURN`, and every code is checked and turned into an error
//! that says which collective on which rank failed. Under Open MPI a dead rank never reaches
//! that path: mpirun ends the whole job first (docs/DISTRIBUTED.md).
//!
//! The gradient sum keeps the bits of the rank-order sum for any world size: the buffer is cut
//! into one chunk per rank; an all-to-all gives rank j every rank's chunk j, which it sums over
//! ranks 0..N-1 in order (`c₀ + c₁ + …`, left to right); an all-gather puts the chunks back
//! together on every rank. Each rank sends and receives about 2 · (N-1)/N of the buffer, where
//! a star's root carries N - 1 buffers each way. The f64 sums (loss, metrics, the stop agreement:
//! a few values) are an all-gather, summed in rank order by every rank.

use super::RankInfo;
use crate::{Error, Result};
use ::mpi::ffi;
use std::ffi::{c_char, c_int, c_void};

/// One rank's MPI: its own communicator.
pub struct World {
    comm: ffi::MPI_Comm,
    rank: usize,
    size: usize,
    /// The gradient sum's buffers: every rank's chunk of this rank, then the summed chunk.
    chunks: Vec<f32>,
    sum: Vec<f32>,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED; the communicator handle is only used
// through `&mut self` (one thread at a time), which is what that level allows.
unsafe impl Send for World {}

impl Drop for World {
    fn drop(&mut self) {
        // SAFETY: reading MPI's null-communicator constant.
        let null = unsafe { ffi::RSMPI_COMM_NULL };
        if self.comm != null && !finalized() {
            // SAFETY: the communicator was created by MPI_Comm_dup and is freed once.
            unsafe {
                ffi::MPI_Comm_free(&mut self.comm);
            }
        }
    }
}

fn finalized() -> bool {
    let mut done: c_int = 0;
    // SAFETY: MPI_Finalized may be called at any time.
    unsafe { ffi::MPI_Finalized(&mut done) };
    done != 0
}

/// Finalise MPI if this process initialised it (and has not finalised it yet).
pub fn finish() {
    let mut init: c_int = 0;
    // SAFETY: MPI_Initialized and MPI_Finalized may be called at any time.
    unsafe { ffi::MPI_Initialized(&mut init) };
    if init != 0 && !finalized() {
        // SAFETY: initialised, not finalised; every group's communicator is gone or unused.
        unsafe { ffi::MPI_Finalize() };
    }
}

/// MPI's text for an error code.
fn describe(code: c_int) -> String {
    let mut buf = vec![0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters, as the call requires.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    if rc != ffi::MPI_SUCCESS as c_int {
        return format!("MPI error {code}");
    }
    let bytes: Vec<u8> = buf[..len.max(0) as usize]
        .iter()
        .map(|&c| c as u8)
        .collect();
    format!("{} (MPI error {code})", String::from_utf8_lossy(&bytes))
}

/// The bounds of rank `i`'s chunk of `n` values among `world` ranks.
pub(crate) fn chunk(n: usize, world: usize, i: usize) -> std::ops::Range<usize> {
    let at = |k: usize| ((n as u128 * k as u128) / world as u128) as usize;
    at(i)..at(i + 1)
}

/// `parts` (every rank's chunk, rank by rank, each `len` long) summed in rank order into `out`.
pub(crate) fn sum_in_rank_order(parts: &[f32], len: usize, out: &mut [f32]) {
    out.copy_from_slice(&parts[..len]);
    for p in parts.chunks_exact(len.max(1)).skip(1) {
        for (o, v) in out.iter_mut().zip(p) {
            *o += *v;
        }
    }
}

fn count(n: usize, what: &str) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| {
        Error::invalid(format!(
            "{what}: {n} values, more than one MPI call carries ({})",
            c_int::MAX
        ))
    })
}

impl World {
    fn check(&self, rc: c_int, what: &str) -> Result<()> {
        if rc == ffi::MPI_SUCCESS as c_int {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "rank {} of {} (MPI): {what} failed: {}",
            self.rank,
            self.size,
            describe(rc)
        )))
    }

    /// Initialise MPI (serialized threads), check that MPI's rank and size are the launcher's,
    /// and compare every rank's `digest` with rank 0's: a rank with another one is named on
    /// every rank, and every rank fails.
    pub fn join(info: &RankInfo, digest: &str) -> Result<World> {
        let (universe, _level) = ::mpi::initialize_with_threading(::mpi::Threading::Serialized)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "rank {}: MPI is already initialised in this process (one group per process)",
                    info.rank
                ))
            })?;
        // Its drop would finalise MPI: [`finish`] does, after the tool's last word.
        std::mem::forget(universe);
        let mut comm: ffi::MPI_Comm = unsafe { ffi::RSMPI_COMM_NULL };
        let (mut rank, mut size): (c_int, c_int) = (0, 0);
        // SAFETY: MPI is initialised; the handles are MPI's constants and out-parameters.
        let rcs = unsafe {
            [
                ffi::MPI_Comm_dup(ffi::RSMPI_COMM_WORLD, &mut comm),
                ffi::MPI_Comm_set_errhandler(comm, ffi::RSMPI_ERRORS_RETURN),
                ffi::MPI_Comm_rank(comm, &mut rank),
                ffi::MPI_Comm_size(comm, &mut size),
            ]
        };
        let mut w = World {
            comm,
            rank: rank as usize,
            size: size as usize,
            chunks: vec![],
            sum: vec![],
        };
        for (rc, what) in rcs.into_iter().zip([
            "MPI_Comm_dup",
            "MPI_Comm_set_errhandler",
            "MPI_Comm_rank",
            "MPI_Comm_size",
        ]) {
            w.check(rc, what)?;
        }
        if (w.rank, w.size) != (info.rank, info.world) {
            return Err(Error::invalid(format!(
                "MPI says rank {} of {}, {} says rank {} of {}: launch ncf-train with mpirun \
                 (or srun) alone, without --rank/--world-size",
                w.rank, w.size, info.source, info.rank, info.world
            )));
        }
        w.compare_digests(digest)?;
        Ok(w)
    }

    /// Every rank's digest (all-gather of lengths, then of the bytes); refuse a rank whose
    /// digest is not rank 0's.
    fn compare_digests(&mut self, digest: &str) -> Result<()> {
        let n = self.size;
        let mine = digest.as_bytes();
        let len = count(mine.len(), "the configuration digest")?;
        let mut lens = vec![0 as c_int; n];
        // SAFETY: one int sent, one int per rank received into `lens`.
        let rc = unsafe {
            ffi::MPI_Allgather(
                &len as *const c_int as *const c_void,
                1,
                ffi::RSMPI_INT32_T,
                lens.as_mut_ptr() as *mut c_void,
                1,
                ffi::RSMPI_INT32_T,
                self.comm,
            )
        };
        self.check(rc, "comparing configurations (lengths)")?;
        let mut displs = Vec::with_capacity(n);
        let mut total: usize = 0;
        for &l in &lens {
            displs.push(count(total, "the configuration digests")?);
            total += l.max(0) as usize;
        }
        let mut all = vec![0u8; total];
        // SAFETY: `all` holds the sum of `lens` bytes at `displs`; ours is `len` bytes.
        let rc = unsafe {
            ffi::MPI_Allgatherv(
                mine.as_ptr() as *const c_void,
                len,
                ffi::RSMPI_UINT8_T,
                all.as_mut_ptr() as *mut c_void,
                lens.as_ptr(),
                displs.as_ptr(),
                ffi::RSMPI_UINT8_T,
                self.comm,
            )
        };
        self.check(rc, "comparing configurations")?;
        let of = |r: usize| {
            let at = displs[r] as usize;
            &all[at..at + lens[r].max(0) as usize]
        };
        let differ: Vec<String> = (1..n)
            .filter(|&r| of(r) != of(0))
            .map(|r| r.to_string())
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        let who = match differ.len() {
            1 => format!("rank {}", differ[0]),
            _ => format!("ranks {}", differ.join(", ")),
        };
        let why = format!(
            "{who} runs another configuration (dataset or training flags differ from rank 0's)"
        );
        Err(Error::invalid(if self.rank == 0 {
            format!("rank 0: {why}")
        } else if of(self.rank) != of(0) {
            format!("rank {}: refused by rank 0: {why}", self.rank)
        } else {
            format!("rank {}: stopping: {why}", self.rank)
        }))
    }

    /// See [`super::Group::allreduce_sum`] and the module notes.
    pub fn allreduce_sum(&mut self, buf: &mut [f32]) -> Result<()> {
        let (n, world, me) = (buf.len(), self.size, self.rank);
        if world == 1 {
            return Ok(());
        }
        let what = "the gradient sum";
        let mut counts = Vec::with_capacity(world);
        let mut displs = Vec::with_capacity(world);
        for i in 0..world {
            let c = chunk(n, world, i);
            counts.push(count(c.len(), what)?);
            displs.push(count(c.start, what)?);
        }
        let mine = chunk(n, world, me).len();
        self.chunks.resize(mine * world, 0.0);
        self.sum.resize(mine, 0.0);
        let rcounts = vec![count(mine, what)?; world];
        let rdispls: Vec<c_int> = (0..world)
            .map(|i| count(i * mine, what))
            .collect::<Result<_>>()?;
        // SAFETY: rank j's chunk of `buf` goes to rank j; `chunks` holds `mine` values from each
        // rank at `i · mine`; every rank computes the same bounds from the same `n`.
        let rc = unsafe {
            ffi::MPI_Alltoallv(
                buf.as_ptr() as *const c_void,
                counts.as_ptr(),
                displs.as_ptr(),
                ffi::RSMPI_FLOAT,
                self.chunks.as_mut_ptr() as *mut c_void,
                rcounts.as_ptr(),
                rdispls.as_ptr(),
                ffi::RSMPI_FLOAT,
                self.comm,
            )
        };
        self.check(rc, "the gradient sum's all-to-all")?;
        sum_in_rank_order(&self.chunks, mine, &mut self.sum);
        // SAFETY: our summed chunk goes to every rank, rank i's lands at `displs[i]` of `buf`.
        let rc = unsafe {
            ffi::MPI_Allgatherv(
                self.sum.as_ptr() as *const c_void,
                rcounts[0],
                ffi::RSMPI_FLOAT,
                buf.as_mut_ptr() as *mut c_void,
                counts.as_ptr(),
                displs.as_ptr(),
                ffi::RSMPI_FLOAT,
                self.comm,
            )
        };
        self.check(rc, "the gradient sum's all-gather")
    }

    /// Rank 0's `buf` into every rank's.
    pub fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        let n = count(buf.len(), "the broadcast")?;
        // SAFETY: every rank passes a buffer of the same `n` values.
        let rc = unsafe {
            ffi::MPI_Bcast(
                buf.as_mut_ptr() as *mut c_void,
                n,
                ffi::RSMPI_FLOAT,
                0,
                self.comm,
            )
        };
        self.check(rc, "the broadcast from rank 0")
    }

    /// Sum of `x` over the ranks, in rank order on every rank.
    pub fn allreduce_f64(&mut self, x: &mut [f64]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let n = count(x.len(), "a sum")?;
        let mut all = vec![0f64; x.len() * self.size];
        // SAFETY: `n` values from each rank into `all`, rank by rank.
        let rc = unsafe {
            ffi::MPI_Allgather(
                x.as_ptr() as *const c_void,
                n,
                ffi::RSMPI_DOUBLE,
                all.as_mut_ptr() as *mut c_void,
                n,
                ffi::RSMPI_DOUBLE,
                self.comm,
            )
        };
        self.check(rc, "a sum over the ranks")?;
        x.copy_from_slice(&all[..x.len()]);
        for part in all.chunks_exact(x.len().max(1)).skip(1) {
            for (t, v) in x.iter_mut().zip(part) {
                *t += v;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_buffer_and_sum_in_rank_order() {
        for (n, world) in [(0, 3), (1, 3), (7, 2), (10, 3), (1000, 7)] {
            let mut at = 0;
            for i in 0..world {
                let c = chunk(n, world, i);
                assert_eq!(c.start, at);
                at = c.end;
            }
            assert_eq!(at, n);
        }
        // The same bits as ((a + b) + c), not a + (b + c).
        let (a, b, c) = (1e8f32, -1e8f32, 1.0f32);
        let mut out = [0.0];
        sum_in_rank_order(&[a, b, c], 1, &mut out);
        assert_eq!(out[0], (a + b) + c);
        assert_ne!(out[0], a + (b + c));
    }
}
