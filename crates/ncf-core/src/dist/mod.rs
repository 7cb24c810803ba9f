//! Ranks of a data-parallel run and the engines that join them (issue 34).
//!
//! - [`RankInfo::from_env`] reads rank / world size / local rank from the environment of the
//!   common launchers: OpenMPI's `mpirun` (`OMPI_COMM_WORLD_*`), MPICH/Hydra (`PMI_*`), Slurm
//!   `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) and torchrun-style `RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`.
//! - [`Group`] is the one interface the trainers use (gradient sums, the initial broadcast,
//!   metric sums, NCCL's unique id), over one of three engines:
//!   - MPI ([`Group::mpi`], cargo feature `mpi`, module `mpi`): ranks that mpirun or srun started.
//!     Every collective is MPI's; the gradient sum keeps the bits of a rank-order sum (each rank
//!     sums its chunk over ranks 0..N-1 in order after an all-to-all, then an all-gather), so
//!     results do not depend on MPI's algorithms. The configuration check at start is an
//!     all-gather of the ranks' digests.
//!   - The TCP bootstrap ([`Group::connect`], module `tcp`): only for CUDA ranks that no MPI
//!     started (torchrun-style `RANK`/`WORLD_SIZE`), like PyTorch's TCPStore: the handshake,
//!     NCCL's unique id and the small host values that bracket NCCL's steps (the ready check, the
//!     stop agreement, evaluation counts), each with a timeout that names a missing or dead rank.
//!     It carries no gradients: CPU ranks without MPI are refused (use mpirun).
//!   - A group of one ([`Group::single`]): every collective is a no-op.

use crate::{Error, Result};
use std::time::Duration;

#[cfg(feature = "mpi")]
mod mpi;
mod tcp;

/// Default rendezvous port (the one torchrun uses).
pub const DEFAULT_PORT: u16 = 29500;

/// This process's place in a data-parallel run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankInfo {
    pub rank: usize,
    pub world: usize,
    /// Rank on this machine: picks the GPU.
    pub local_rank: usize,
    /// Which launcher's variables it came from.
    pub source: &'static str,
}

impl RankInfo {
    /// A single process (no launcher).
    pub fn single() -> RankInfo {
        RankInfo {
            rank: 0,
            world: 1,
            local_rank: 0,
            source: "single process",
        }
    }

    /// From the launcher's environment (`var` looks a variable up; `std::env::var(..).ok()` in
    /// the tools). None when no launcher variables are set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<RankInfo>> {
        const SCHEMES: [(&str, &str, &str, &str); 4] = [
            (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "mpirun (OpenMPI)",
            ),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "mpirun (MPICH)"),
            (
                "SLURM_PROCID",
                "SLURM_NTASKS",
                "SLURM_LOCALID",
                "srun (Slurm)",
            ),
            ("RANK", "WORLD_SIZE", "LOCAL_RANK", "RANK/WORLD_SIZE"),
        ];
        for (r, w, l, source) in SCHEMES {
            let Some(rank) = var(r) else { continue };
            let num = |name: &str, v: &str| -> Result<usize> {
                v.trim().parse().map_err(|_| {
                    Error::usage(format!("{name}={v:?}: expected a non-negative integer"))
                })
            };
            let rank = num(r, &rank)?;
            let world = match var(w) {
                Some(v) => num(w, &v)?,
                None => return Err(Error::usage(format!("{r} is set but {w} is not"))),
            };
            let local_rank = match var(l) {
                Some(v) => num(l, &v)?,
                None => rank,
            };
            return RankInfo::new(rank, world, local_rank, source).map(Some);
        }
        Ok(None)
    }

    /// Checked constructor.
    pub fn new(rank: usize, world: usize, local_rank: usize, source: &'static str) -> Result<Self> {
        if world == 0 || rank >= world {
            return Err(Error::usage(format!(
                "rank {rank} of world size {world} ({source}): need 0 <= rank < world size"
            )));
        }
        Ok(RankInfo {
            rank,
            world,
            local_rank,
            source,
        })
    }
}

/// `MASTER_ADDR:MASTER_PORT` from the environment (defaults 127.0.0.1 and [`DEFAULT_PORT`]).
pub fn rendezvous_from_env(var: impl Fn(&str) -> Option<String>) -> String {
    let host = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string());
    let port = var("MASTER_PORT").unwrap_or_else(|| DEFAULT_PORT.to_string());
    format!("{host}:{port}")
}

/// Where the rendezvous address `addr` came from, for messages: `--rendezvous`, unless it is the
/// address `MASTER_ADDR`/`MASTER_PORT` (or their defaults) give (`var` looks a variable up).
pub fn rendezvous_source(addr: &str, var: impl Fn(&str) -> Option<String>) -> &'static str {
    if addr != rendezvous_from_env(&var) {
        return "from --rendezvous";
    }
    match (var("MASTER_ADDR").is_some(), var("MASTER_PORT").is_some()) {
        (true, true) => "from MASTER_ADDR and MASTER_PORT",
        (true, false) => "from MASTER_ADDR and the default port",
        (false, true) => "from MASTER_PORT and the default host",
        (false, false) => "the default: MASTER_ADDR, MASTER_PORT and --rendezvous are not set",
    }
}

/// The end of a process that may have joined an MPI group: finalise MPI (a no-op otherwise). The
/// tools call it last, after their error message (`ncf_tool::main_with`).
pub fn finish() {
    #[cfg(feature = "mpi")]
    mpi::finish();
}

/// Whether this build carries the MPI engine (cargo feature `mpi`).
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

impl RankInfo {
    /// Whether an MPI launcher (mpirun, srun with PMI) started this rank: its collectives go over
    /// MPI ([`Group::mpi`]).
    pub fn launched_by_mpi(&self) -> bool {
        self.source.starts_with("mpirun") || self.source.starts_with("srun")
    }
}

/// The collectives of one rank, over the engine that joined the ranks (see the module notes).
pub struct Group {
    pub info: RankInfo,
    timeout: Duration,
    engine: Engine,
}

enum Engine {
    Single,
    Tcp(tcp::Star),
    #[cfg(feature = "mpi")]
    Mpi(mpi::World),
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Group {{ rank {} of {}, {} }}",
            self.info.rank,
            self.info.world,
            self.engine_name()
        )
    }
}

impl Group {
    /// A group of one: every collective is a no-op.
    pub fn single() -> Group {
        Group {
            info: RankInfo::single(),
            timeout: Duration::from_secs(1),
            engine: Engine::Single,
        }
    }

    /// Join the other ranks over MPI (they were started by mpirun or srun). `digest` identifies
    /// what the run computes (dataset fingerprint, training config): a rank with another one is
    /// refused at start, naming it, on every rank. `timeout` is kept for the waits on this
    /// group's behalf (NCCL steps); MPI's own collectives have none: the launcher ends the job
    /// when a rank dies (docs/DISTRIBUTED.md).
    pub fn mpi(info: RankInfo, timeout: Duration, digest: &str) -> Result<Group> {
        #[cfg(feature = "mpi")]
        {
            let world = mpi::World::join(&info, digest)?;
            Ok(Group {
                info,
                timeout,
                engine: Engine::Mpi(world),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = (timeout, digest);
            Err(Error::usage(format!(
                "rank {} of {} was started by {}, but this build has no MPI: rebuild with \
                 `make build` (it turns the cargo feature `mpi` on when Open MPI is installed: \
                 apt-get install libopenmpi-dev openmpi-bin libclang-dev) or \
                 `cargo build --features ncf-cli/mpi`",
                info.rank, info.world, info.source
            )))
        }
    }

    /// Join the group over the TCP bootstrap at rendezvous `addr` within `timeout` (ranks no
    /// MPI started: CUDA ranks, whose NCCL it bootstraps). `digest` as for [`Group::mpi`]. A
    /// group of one listens at `addr` and talks to itself over a socket (`--nccl` on one rank).
    pub fn connect(info: RankInfo, addr: &str, timeout: Duration, digest: &str) -> Result<Group> {
        let star = tcp::Star::connect(&info, addr, timeout, digest)?;
        Ok(Group {
            info,
            timeout,
            engine: Engine::Tcp(star),
        })
    }

    /// Which engine carries this group's collectives: "mpi", "tcp" or "single".
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Single => "single",
            Engine::Tcp(_) => "tcp",
            #[cfg(feature = "mpi")]
            Engine::Mpi(_) => "mpi",
        }
    }

    /// How long a wait on this group's behalf may last before it fails (the TCP bootstrap's
    /// every collective; NCCL steps on any engine).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn rank(&self) -> usize {
        self.info.rank
    }

    pub fn world(&self) -> usize {
        self.info.world
    }

    /// Element-wise sum of `buf` over all ranks, left in every rank's `buf`, with the bits of
    /// the sum in rank order (`buf₀ + buf₁ + … + buf_{N-1}`, left to right) for any world size.
    /// MPI only: the TCP bootstrap carries no gradients.
    pub fn allreduce_sum(&mut self, buf: &mut [f32]) -> Result<()> {
        #[cfg(not(feature = "mpi"))]
        let _ = &buf;
        match &mut self.engine {
            Engine::Single => Ok(()),
            Engine::Tcp(_) => Err(Error::usage(format!(
                "rank {}: the TCP bootstrap carries no gradients: CPU ranks exchange them over \
                 MPI (launch with mpirun -np N)",
                self.info.rank
            ))),
            #[cfg(feature = "mpi")]
            Engine::Mpi(w) => w.allreduce_sum(buf),
        }
    }

    /// Rank 0's `buf` copied into every rank's `buf` (the initial parameters over MPI; NCCL's
    /// unique id over either engine: the TCP bootstrap takes small buffers only).
    pub fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        match &mut self.engine {
            Engine::Single => Ok(()),
            Engine::Tcp(s) => s.broadcast(buf),
            #[cfg(feature = "mpi")]
            Engine::Mpi(w) => w.broadcast(buf),
        }
    }

    /// Sum of `x` over all ranks (f64, for loss and metric sums, the stop agreement), in rank
    /// order on every engine.
    pub fn allreduce_f64(&mut self, x: &mut [f64]) -> Result<()> {
        match &mut self.engine {
            Engine::Single => Ok(()),
            Engine::Tcp(s) => s.allreduce_f64(x),
            #[cfg(feature = "mpi")]
            Engine::Mpi(w) => w.allreduce_f64(x),
        }
    }

    /// The ranks whose connection has closed, without blocking: after a failed device collective,
    /// the ranks that died. TCP bootstrap only (rank 0 sees every rank, the others rank 0); under
    /// MPI the launcher names a dead rank and ends the job, so this is empty.
    pub fn dead_peers(&self) -> Vec<usize> {
        match &self.engine {
            Engine::Tcp(s) => s.dead_peers(),
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn ranks_come_from_each_launcher() {
        assert_eq!(RankInfo::from_env(env(&[])).unwrap(), None);
        let ompi = env(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("RANK", "3"),
        ]);
        let r = RankInfo::from_env(ompi).unwrap().unwrap();
        assert_eq!((r.rank, r.world, r.local_rank), (1, 4, 1));
        assert_eq!(r.source, "mpirun (OpenMPI)");
        let slurm = env(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
        ]);
        let r = RankInfo::from_env(slurm).unwrap().unwrap();
        assert_eq!((r.rank, r.world, r.local_rank), (5, 8, 1));
        let torch = env(&[("RANK", "2"), ("WORLD_SIZE", "3")]);
        let r = RankInfo::from_env(torch).unwrap().unwrap();
        assert_eq!((r.rank, r.world, r.local_rank), (2, 3, 2));
        let e = RankInfo::from_env(env(&[("RANK", "3"), ("WORLD_SIZE", "3")])).unwrap_err();
        assert!(e.to_string().contains("rank 3 of world size 3"), "{e}");
        let e = RankInfo::from_env(env(&[("RANK", "x"), ("WORLD_SIZE", "3")])).unwrap_err();
        assert!(e.to_string().contains("RANK=\"x\""), "{e}");
        let e = RankInfo::from_env(env(&[("RANK", "0")])).unwrap_err();
        assert!(e.to_string().contains("WORLD_SIZE is not"), "{e}");
        assert_eq!(
            rendezvous_from_env(env(&[("MASTER_PORT", "1234")])),
            "127.0.0.1:1234"
        );
    }

    #[test]
    fn the_rendezvous_address_says_where_it_came_from() {
        let both = env(&[("MASTER_ADDR", "h"), ("MASTER_PORT", "7")]);
        assert_eq!(
            rendezvous_source("h:7", &both),
            "from MASTER_ADDR and MASTER_PORT"
        );
        assert_eq!(
            rendezvous_source("notahost:99999", &both),
            "from --rendezvous"
        );
        let port = env(&[("MASTER_PORT", "7")]);
        assert_eq!(
            rendezvous_source("127.0.0.1:7", &port),
            "from MASTER_PORT and the default host"
        );
        let none = env(&[]);
        assert!(rendezvous_source("127.0.0.1:29500", &none).starts_with("the default"));
        assert_eq!(rendezvous_source("127.0.0.1:1", &none), "from --rendezvous");
    }
}
