//! Data-parallel CUDA ranks: NCCL all-reduces the gradients on the device, the group of
//! [`ncf_core::dist`] bootstraps NCCL (rank 0's unique id is broadcast over it: MPI under mpirun /
//! srun, the TCP bootstrap for torchrun-style ranks) and sums the small host values (evaluation
//! counts).
//!
//! Strong scaling as the CPU backend: every rank draws its share of the same global batch
//! (positions `len · r / R .. len · (r + 1) / R`; samples and dropout masks are functions of the
//! position, so the data seen does not depend on the rank count), scales its gradients by
//! 1 / global batch, and the sum over ranks is the 1-rank gradient up to float summation order.
//!
//! NCCL is opened by ncf ([`ffi`]: `libnccl.so.2` or `libnccl.so`, on the loader's path or in
//! `$NCCL_HOME/lib`), never through cudarc's loader or its `Comm` ([`comm`] says why).
//!
//! A 1-rank communicator (`ncf-train --nccl` without a launcher) runs every part of the path and
//! proves it: the host group is a loopback whose frames really cross a socket (the ready check, the
//! NCCL id), the communicator is a real one, [`Ranks::new`] checks out-of-place collectives of
//! every type ncf uses against values computed on the host, and training reduces out of place (the
//! gradients into another buffer that Adam reads), so a wrong count, type, pointer or stream order
//! changes the trained model, which the GPU check compares with the plain run's.
//!
//! NCCL collectives have no timeout. A rank that never arrives or leaves between steps is caught
//! by the host collectives that bracket them (a ready check before the NCCL id is shared, and the
//! ranks' stop agreement before every step in `ncf_core::train::run`), which time out and name the
//! rank. Inside a step, the host never blocks on a stream holding NCCL work: [`Ranks::wait`] polls
//! an event recorded after the step and NCCL's asynchronous error with the group's timeout. A peer
//! killed mid-collective shows there as an asynchronous error (socket transport) or as the
//! deadline (intra-node transports report nothing); either way the step fails naming the rank
//! ([`watch::failure`]: the rank whose host connection closed) and the trainer aborts the
//! communicator ([`comm::Comm::abort_within`]) before returning the error. Init is non-blocking
//! and polled with the same deadline. A normal end finalizes the communicator
//! ([`Ranks::finish`]).
//!
//! Several ranks on one GPU (a test set-up: NCCL refuses two ranks of one host on one device):
//! [`share_gpu_env`] gives each rank its own `NCCL_HOSTID`, so NCCL sees one rank per "host" and
//! connects them over its socket transport on the loopback interface (`ncf-train --share-gpu`).

pub mod comm;
pub mod ffi;
pub mod watch;

pub use watch::poll_until;

use crate::device::{Buf, Device, DeviceExt, Pod, StreamHandle};
use crate::CudaError;
use comm::Comm;
use cudarc::nccl::sys::ncclUniqueId;
use ffi::{Elem, Op};
use ncf_core::dist::Group;
use std::sync::Arc;
use watch::{Look, Waited};

/// Whether libnccl can be loaded.
pub fn nccl_present() -> bool {
    ffi::present()
}

/// One rank's communicators.
pub struct Ranks {
    /// Host-side collectives and the bootstrap (a loopback group of one when world = 1).
    pub group: Group,
    /// Device-side collectives on the trainer's stream.
    comm: Comm,
    stream: Arc<dyn StreamHandle>,
}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ranks(rank {} of {})", self.rank(), self.world())
    }
}

/// The environment that lets `rank` share one GPU with the other ranks (`--share-gpu`): its own
/// `NCCL_HOSTID` (the user's value, or `ncf-share-gpu`, plus `-rank<r>`), so that NCCL's
/// duplicate-GPU check (same host hash and device) cannot fire and the ranks connect through the
/// socket transport over the loopback interface; the variables the user did not set are added
/// (`var` looks one up). Every rank must get it before its first NCCL call (rank 0's unique id
/// already carries the loopback bootstrap address).
pub fn share_gpu_env(
    rank: usize,
    var: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let base = var("NCCL_HOSTID")
        .filter(|v| !v.is_empty())
        .map(|v| v.trim_end_matches(&format!("-rank{rank}")).to_string())
        .unwrap_or_else(|| "ncf-share-gpu".into());
    let mut env = vec![("NCCL_HOSTID", format!("{base}-rank{rank}"))];
    for (k, v) in [
        ("NCCL_SOCKET_IFNAME", "lo"),
        ("NCCL_NET", "Socket"),
        ("NCCL_IB_DISABLE", "1"),
        ("NCCL_P2P_DISABLE", "1"),
        ("NCCL_SHM_DISABLE", "1"),
        ("NCCL_MNNVL_ENABLE", "0"),
        ("NCCL_NVLS_ENABLE", "0"),
        ("NCCL_RAS_ENABLE", "0"),
        // NCCL 2.30+: allows several ranks on one device outright (ignored by older versions).
        ("NCCL_MULTI_RANK_GPU_ENABLE", "1"),
    ] {
        if var(k).is_none() {
            env.push((k, v.to_string()));
        }
    }
    env
}

/// The unique id as 32 f32 words for the host group's broadcast (bit patterns travel unchanged).
pub fn id_to_words(id: &ncclUniqueId) -> Vec<f32> {
    id.internal
        .chunks_exact(4)
        .map(|c| {
            f32::from_bits(u32::from_le_bytes([
                c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8,
            ]))
        })
        .collect()
}

/// The inverse of [`id_to_words`].
pub fn id_from_words(words: &[f32]) -> Result<ncclUniqueId, CudaError> {
    if words.len() != 32 {
        return Err(CudaError::Invalid(format!(
            "the NCCL id arrived as {} words, not 32",
            words.len()
        )));
    }
    let mut id = ncclUniqueId { internal: [0; 128] };
    for (k, w) in words.iter().enumerate() {
        for (j, b) in w.to_bits().to_le_bytes().into_iter().enumerate() {
            id.internal[4 * k + j] = b as std::ffi::c_char;
        }
    }
    Ok(id)
}

/// The values of the collectives self-test for rank `r`: f32 and f64 all-reduce inputs, u64
/// max inputs, and rank 0's broadcast source (exact in floating point for any world up to 2^10).
fn self_test_inputs(r: usize, n: usize) -> (Vec<f32>, Vec<f64>, Vec<u64>, Vec<f32>) {
    let k = (r + 1) as f64;
    let f: Vec<f32> = (0..n)
        .map(|i| (k * ((i % 97) as f64 + 1.0) / 8.0) as f32)
        .collect();
    let d: Vec<f64> = (0..n).map(|i| k * (i as f64 + 0.5)).collect();
    let u: Vec<u64> = (0..n)
        .map(|i| (r as u64 + 1) * i as u64 + ((i as u64) << 40))
        .collect();
    let b: Vec<f32> = (0..n)
        .map(|i| if r == 0 { 3.0 * i as f32 + 0.25 } else { -1.0 })
        .collect();
    (f, d, u, b)
}

/// What the self-test must read back on every rank of `world`.
fn self_test_expected(world: usize, n: usize) -> (Vec<f32>, Vec<f64>, Vec<u64>, Vec<f32>) {
    let (mut f, mut d, mut u, mut b) = (vec![0f32; n], vec![0f64; n], vec![0u64; n], vec![]);
    for r in 0..world {
        let (fr, dr, ur, br) = self_test_inputs(r, n);
        for i in 0..n {
            f[i] += fr[i];
            d[i] += dr[i];
            u[i] = u[i].max(ur[i]);
        }
        if r == 0 {
            b = br;
        }
    }
    (f, d, u, b)
}

/// The first element of `got` that differs from `want`, as a message.
fn first_difference<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: &[T],
    want: &[T],
) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{what}: {} values back, expected {}",
            got.len(),
            want.len()
        ));
    }
    got.iter().zip(want).position(|(a, b)| a != b).map(|i| {
        format!(
            "{what}: element {i} is {:?}, expected {:?}",
            got[i], want[i]
        )
    })
}

impl Ranks {
    /// Create the NCCL communicator of `group`'s ranks on the device's stream: every rank
    /// reports ready, rank 0 makes the unique id and broadcasts it over the group, every rank
    /// joins (non-blocking, within the group's timeout), then the collectives are checked
    /// ([`Ranks::self_test`]).
    pub fn new(mut group: Group, dev: &dyn Device) -> Result<Ranks, CudaError> {
        let stream = dev.stream();
        let lib = ffi::nccl()?;
        let (rank, world) = (group.rank(), group.world());
        // Every rank is ready (its GPU and NCCL opened) before rank 0 shares the id: a rank that
        // failed to start is reported here (timeout or closed connection), not as a hang in
        // the NCCL init.
        group
            .allreduce_f64(&mut [1.0])
            .map_err(|e| CudaError::Invalid(format!("waiting for every rank's GPU: {e}")))?;
        let id = if rank == 0 {
            lib.unique_id()
                .map_err(|c| CudaError::call("ncclGetUniqueId", lib.describe(c, None)))?
        } else {
            ncclUniqueId { internal: [0; 128] }
        };
        let mut words = id_to_words(&id);
        group
            .broadcast(&mut words)
            .map_err(|e| CudaError::Invalid(format!("sharing the NCCL id: {e}")))?;
        let id = id_from_words(&words)?;
        let timeout = group.timeout();
        let comm = Comm::init(stream.clone(), rank, world, id, timeout)?;
        let ranks = Ranks {
            group,
            comm,
            stream,
        };
        if let Err(e) = ranks.self_test(dev) {
            let how = ranks.abort();
            return Err(CudaError::Invalid(format!("{e}; {how}")));
        }
        ncf_core::interrupt::note(&format!(
            "ncf-cuda: rank {rank} of {world}: NCCL {} ({}), {} communicator, the id over {}; \
             collectives self-test passed",
            lib.version_string(),
            lib.path,
            if ranks.comm.blocking {
                "blocking"
            } else {
                "non-blocking"
            },
            ranks.group.engine_name()
        ));
        Ok(ranks)
    }

    /// Out-of-place all-reduces (f32 and f64 sums, u64 max) and a broadcast of odd-sized buffers,
    /// each read back and compared with the values computed on the host: on one rank too, where
    /// an in-place all-reduce would be the identity and prove nothing.
    pub fn self_test(&self, d: &dyn Device) -> Result<(), CudaError> {
        let n = 1027;
        let (f, dd, u, b) = self_test_inputs(self.rank(), n);
        let fs = d.upload(&f, "NCCL self-test f32")?;
        let ds = d.upload(&dd, "NCCL self-test f64")?;
        let us = d.upload(&u, "NCCL self-test u64")?;
        let bs = d.upload(&b, "NCCL self-test broadcast")?;
        let fr = d.alloc::<f32>(n, "NCCL self-test f32 result")?;
        let dr = d.alloc::<f64>(n, "NCCL self-test f64 result")?;
        let ur = d.alloc::<u64>(n, "NCCL self-test u64 result")?;
        let br = d.alloc::<f32>(n, "NCCL self-test broadcast result")?;
        self.all_reduce(d, &fs, &fr, Op::Sum, "the self-test")?;
        self.all_reduce(d, &ds, &dr, Op::Sum, "the self-test")?;
        self.all_reduce(d, &us, &ur, Op::Max, "the self-test")?;
        self.broadcast(d, &bs, &br, "the self-test")?;
        self.wait(d, "the NCCL self-test")?;
        let fb = d.download(&fr, n, "NCCL self-test f32 result")?;
        let db = d.download(&dr, n, "NCCL self-test f64 result")?;
        let ub = d.download(&ur, n, "NCCL self-test u64 result")?;
        let bb = d.download(&br, n, "NCCL self-test broadcast result")?;
        let (fe, de, ue, be) = self_test_expected(self.world(), n);
        let bad = first_difference("all-reduce (sum) of f32", &fb, &fe)
            .or_else(|| first_difference("all-reduce (sum) of f64", &db, &de))
            .or_else(|| first_difference("all-reduce (max) of u64", &ub, &ue))
            .or_else(|| first_difference("broadcast of f32", &bb, &be));
        match bad {
            None => Ok(()),
            Some(why) => Err(CudaError::Invalid(format!(
                "NCCL self-test on rank {} of {}: {why}",
                self.rank(),
                self.world()
            ))),
        }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world()
    }

    /// Element-wise `op` of `send` over the ranks into `recv` (out of place), on the stream.
    pub fn all_reduce<T: Elem + Pod>(
        &self,
        _d: &dyn Device,
        send: &Buf<T>,
        recv: &Buf<T>,
        op: Op,
        what: &str,
    ) -> Result<(), CudaError> {
        if recv.len() < send.len() {
            return Err(CudaError::Invalid(format!(
                "all-reduce of {what}: {} values into {}",
                send.len(),
                recv.len()
            )));
        }
        self.comm.all_reduce::<T>(
            send.addr(),
            recv.addr(),
            send.len(),
            op,
            what,
            self.group.timeout(),
        )
    }

    /// Rank 0's `send` into every rank's `recv` (out of place).
    pub fn broadcast<T: Elem + Pod>(
        &self,
        _d: &dyn Device,
        send: &Buf<T>,
        recv: &Buf<T>,
        what: &str,
    ) -> Result<(), CudaError> {
        if recv.len() < send.len() {
            return Err(CudaError::Invalid(format!(
                "broadcast of {what}: {} values into {}",
                send.len(),
                recv.len()
            )));
        }
        self.comm.broadcast::<T>(
            send.addr(),
            recv.addr(),
            send.len(),
            what,
            self.group.timeout(),
        )
    }

    /// Wait for the work queued on the device's stream so far (the step's collectives
    /// included), at most the group's timeout, watching NCCL's asynchronous error. Never blocks
    /// inside the driver: a peer that died in the middle of a collective turns into an error
    /// here, naming it.
    pub fn wait(&self, _d: &dyn Device, what: &str) -> Result<(), CudaError> {
        let marker = self.stream.marker(what)?;
        let w = watch::wait_for(self.group.timeout(), || {
            if let Look::Failed(why) = self.comm.look() {
                return Look::Failed(format!("NCCL reported {why}"));
            }
            match marker.is_complete() {
                Ok(true) => Look::Done,
                Ok(false) => Look::Pending,
                Err(e) => Look::Failed(e.to_string()),
            }
        });
        match w {
            Waited::Done => Ok(()),
            how => {
                let dead = self.group.dead_peers();
                Err(CudaError::Invalid(watch::failure(
                    self.rank(),
                    self.world(),
                    what,
                    &how,
                    &dead,
                )))
            }
        }
    }

    /// After an error: abort the communicator (bounded, see [`Comm::abort_within`]); says how.
    pub fn abort(self) -> String {
        self.comm.abort_within(comm::ABORT_LIMIT)
    }

    /// A normal end: finalize and destroy the communicator (within the group's timeout; aborted
    /// instead if that fails).
    pub fn finish(self) -> Result<(), CudaError> {
        let t = self.group.timeout();
        self.comm.finish(t)
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
    use std::collections::HashMap;

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

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn ranks_sharing_a_gpu_get_their_own_host_id_and_loopback_sockets() {
        let e0: HashMap<_, _> = share_gpu_env(0, env(&[])).into_iter().collect();
        let e1: HashMap<_, _> = share_gpu_env(1, env(&[])).into_iter().collect();
        assert_eq!(e0["NCCL_HOSTID"], "ncf-share-gpu-rank0");
        assert_eq!(e1["NCCL_HOSTID"], "ncf-share-gpu-rank1");
        for e in [&e0, &e1] {
            assert_eq!(e["NCCL_SOCKET_IFNAME"], "lo");
            assert_eq!(e["NCCL_NET"], "Socket");
            assert_eq!(e["NCCL_P2P_DISABLE"], "1");
            assert_eq!(e["NCCL_SHM_DISABLE"], "1");
            assert_eq!(e["NCCL_IB_DISABLE"], "1");
        }
        // The user's settings stay; a user host id still differs per rank (also when the rank's
        // own suffix is already there, e.g. from a wrapper that exported it).
        let user = env(&[("NCCL_SOCKET_IFNAME", "eth0"), ("NCCL_HOSTID", "box")]);
        let e: HashMap<_, _> = share_gpu_env(3, user).into_iter().collect();
        assert_eq!(e["NCCL_HOSTID"], "box-rank3");
        assert!(!e.contains_key("NCCL_SOCKET_IFNAME"));
        let again = env(&[("NCCL_HOSTID", "box-rank3")]);
        assert_eq!(share_gpu_env(3, again)[0].1, "box-rank3");
    }

    #[test]
    fn the_unique_id_survives_the_host_broadcast_words() {
        let mut id = ncclUniqueId { internal: [0; 128] };
        for (i, b) in id.internal.iter_mut().enumerate() {
            // Every byte value, NaN bit patterns included.
            *b = (i as u8).wrapping_mul(37).wrapping_add(0xff) as std::ffi::c_char;
        }
        id.internal[0..4].copy_from_slice(&[0, 0, 0xc0u8 as i8 as _, 0x7f]);
        let w = id_to_words(&id);
        assert_eq!(w.len(), 32);
        assert!(w[0].is_nan());
        assert_eq!(id_from_words(&w).unwrap().internal, id.internal);
        assert!(id_from_words(&w[..31]).is_err());
    }

    #[test]
    fn the_self_test_expects_sums_maxima_and_rank_0s_broadcast() {
        let n = 1027;
        let (f1, d1, u1, b1) = self_test_expected(1, n);
        let (f0, d0, u0, b0) = self_test_inputs(0, n);
        assert_eq!((f1.clone(), d1, u1, b1.clone()), (f0.clone(), d0, u0, b0));
        let (f2, d2, u2, b2) = self_test_expected(2, n);
        for i in [0, 5, 96, 97, 1026] {
            assert_eq!(f2[i], 3.0 * f1[i], "{i}");
            assert_eq!(d2[i], 3.0 * (i as f64 + 0.5));
            assert_eq!(u2[i], 2 * i as u64 + ((i as u64) << 40));
            assert_eq!(b2[i], b1[i]);
        }
        // Rank 1's broadcast source is not what anyone must read.
        assert_ne!(self_test_inputs(1, n).3, b2);
        assert!(first_difference("x", &[1, 2, 3], &[1, 2, 3]).is_none());
        let m = first_difference("all-reduce", &[1.0f32, 2.0], &[1.0, 2.5]).unwrap();
        assert!(m.contains("element 1 is 2.0, expected 2.5"), "{m}");
        assert!(first_difference("x", &[1], &[1, 2])
            .unwrap()
            .contains("1 values back"));
    }
}
