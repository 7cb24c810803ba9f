//! Ranks of a data-parallel run and the collectives between them, without MPI or NCCL: the CPU
//! path of multi-rank training (issue 5), and the bootstrap every launcher can use.
//!
//! - [`RankInfo::from_env`] reads rank / world size / local rank from the environment of the
//!   common launchers: OpenMPI's `mpirun` (`OMPI_COMM_WORLD_*`), MPICH/Hydra (`PMI_*`), Slurm
//!   `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) and torchrun-style `RANK`,
//!   `WORLD_SIZE`, `LOCAL_RANK`.
//! - [`Group::connect`]: rank 0 listens at `MASTER_ADDR:MASTER_PORT` (default 127.0.0.1:29500),
//!   the others connect (retrying until the timeout). Each rank sends a handshake digest (dataset
//!   fingerprint + training config): a rank with another one is refused at start, naming it.
//!   Ranks that never arrive are named when the timeout expires.
//! - Collectives ([`Group::allreduce_sum`], [`Group::broadcast`]) go through rank 0 (a star):
//!   rank 0 adds the ranks' buffers in rank order, so results are deterministic for a given world
//!   size. Every socket has the timeout too: a rank that dies makes the others fail within it
//!   with an error naming the rank.
//!
//! - A group of one joined with [`Group::connect`] (`ncf-train --nccl` on one rank, the check of
//!   the NCCL path on a single GPU) is a loopback: rank 0 listens at the rendezvous address and
//!   connects to itself, and every collective's frame goes out and comes back over that socket, so
//!   the handshake, the framing and the NCCL id exchange run as they do between real ranks (the
//!   values come back unchanged). [`Group::single`] has no socket at all.
//! - [`Group::dead_peers`] names the ranks whose connection has closed, without blocking: after a
//!   failed device collective it says which rank died.
//!
//! Wire format: frames of `u64` little-endian byte length, then the bytes.

use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

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

/// [`rendezvous_source`] of this process's environment.
fn source_of(addr: &str) -> &'static str {
    rendezvous_source(addr, |k: &str| std::env::var(k).ok())
}

/// The connections of one rank: rank 0 holds one per other rank, the others one to rank 0.
#[derive(Debug)]
pub struct Group {
    pub info: RankInfo,
    /// Rank 0: `peers[r]` is rank r's stream (None for itself). Others: `peers[0]`.
    peers: Vec<Option<TcpStream>>,
    timeout: Duration,
    scratch: Vec<u8>,
    /// A group of one joined through [`Group::connect`]: (sending end, receiving end) of its
    /// connection to itself.
    loopback: Option<(TcpStream, TcpStream)>,
}

/// Frames up to this size are echoed by one thread (they fit the socket buffers); larger ones
/// are sent by a helper thread while the caller reads.
const ECHO_INLINE: usize = 32 << 10;

/// Whether `s`'s peer has closed the connection (EOF or a reset), without blocking or reading.
fn closed(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let r = s.peek(&mut b);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

fn io_err(what: String) -> impl Fn(std::io::Error) -> Error {
    move |e| {
        let kind = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "timed out",
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "connection closed (did it die?)",
            _ => "failed",
        };
        Error::invalid(format!("{what}: {kind}: {e}"))
    }
}

fn send_frame(s: &mut TcpStream, bytes: &[u8], what: &str) -> Result<()> {
    s.write_all(&(bytes.len() as u64).to_le_bytes())
        .and_then(|_| s.write_all(bytes))
        .and_then(|_| s.flush())
        .map_err(io_err(what.to_string()))
}

fn recv_frame(s: &mut TcpStream, out: &mut Vec<u8>, max: u64, what: &str) -> Result<()> {
    let mut len = [0u8; 8];
    s.read_exact(&mut len).map_err(io_err(what.to_string()))?;
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(Error::invalid(format!(
            "{what}: a frame of {len} bytes, expected at most {max}"
        )));
    }
    out.resize(len as usize, 0);
    s.read_exact(out).map_err(io_err(what.to_string()))
}

impl Group {
    /// A group of one: every collective is a no-op.
    pub fn single() -> Group {
        Group {
            info: RankInfo::single(),
            peers: vec![],
            timeout: Duration::from_secs(1),
            scratch: vec![],
            loopback: None,
        }
    }

    /// A group of one over a socket to itself at `addr` (see the module notes).
    fn loopback(info: RankInfo, addr: &str, timeout: Duration, digest: &str) -> Result<Group> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::invalid(format!(
                "rank 0 (a group of one): cannot listen at {addr} ({}): {e}",
                source_of(addr)
            ))
        })?;
        let at = listener
            .local_addr()
            .map_err(io_err(format!("rendezvous at {addr}")))?;
        let what = format!("rank 0: connecting to itself at {addr}");
        let mut tx = TcpStream::connect_timeout(&at, timeout).map_err(io_err(what.clone()))?;
        let (mut rx, _) = listener.accept().map_err(io_err(what.clone()))?;
        for s in [&tx, &rx] {
            s.set_read_timeout(Some(timeout))
                .and_then(|_| s.set_write_timeout(Some(timeout)))
                .and_then(|_| s.set_nodelay(true))
                .map_err(io_err("rendezvous".into()))?;
        }
        let hello = format!("ncf 0 1 {digest}");
        send_frame(&mut tx, hello.as_bytes(), &what)?;
        let mut buf = Vec::new();
        recv_frame(&mut rx, &mut buf, 4096, &what)?;
        if buf != hello.as_bytes() {
            return Err(Error::invalid(format!(
                "{what}: the handshake came back changed"
            )));
        }
        send_frame(&mut rx, b"ok", &what)?;
        recv_frame(&mut tx, &mut buf, 4096, &what)?;
        if buf != b"ok" {
            return Err(Error::invalid(format!(
                "{what}: no answer to the handshake"
            )));
        }
        Ok(Group {
            info,
            peers: vec![None],
            timeout,
            scratch: vec![],
            loopback: Some((tx, rx)),
        })
    }

    /// A group of one: send `bytes` to itself and read them back into `out`.
    fn echo(&mut self, bytes: &[u8], out: &mut Vec<u8>, what: &str) -> Result<()> {
        let Some((tx, rx)) = self.loopback.as_mut() else {
            return Err(Error::invalid(format!("{what}: not a loopback group")));
        };
        let max = bytes.len() as u64;
        if bytes.len() <= ECHO_INLINE {
            send_frame(tx, bytes, what)?;
            return recv_frame(rx, out, max, what);
        }
        std::thread::scope(|s| {
            let sender = s.spawn(|| send_frame(tx, bytes, what));
            let got = recv_frame(rx, out, max, what);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(Error::invalid(format!("{what}: the sender panicked"))));
            sent.and(got)
        })
    }

    /// The ranks whose connection to this one has closed (rank 0 sees every rank, the others
    /// rank 0 only): after a collective failed, the ranks that died. Never blocks.
    pub fn dead_peers(&self) -> Vec<usize> {
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(r, s)| s.as_ref().filter(|s| closed(s)).map(|_| r))
            .collect()
    }

    /// Join the group at rendezvous `addr` within `timeout`. `digest` identifies what the run
    /// computes (dataset fingerprint, training config): every rank must send the same.
    pub fn connect(info: RankInfo, addr: &str, timeout: Duration, digest: &str) -> Result<Group> {
        if info.world == 1 {
            // The timeout also bounds waits on this group's behalf (NCCL steps).
            return Group::loopback(info, addr, timeout, digest);
        }
        let deadline = Instant::now() + timeout;
        let hello = format!("ncf {} {} {digest}", info.rank, info.world);
        let mut peers: Vec<Option<TcpStream>> = (0..info.world).map(|_| None).collect();
        if info.rank == 0 {
            let listener = TcpListener::bind(addr).map_err(|e| {
                Error::invalid(format!(
                    "rank 0: cannot listen at {addr} ({}): {e}",
                    source_of(addr)
                ))
            })?;
            listener
                .set_nonblocking(true)
                .map_err(io_err("rendezvous".into()))?;
            let mut arrived = 1;
            let mut buf = Vec::new();
            while arrived < info.world {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() >= deadline {
                            let missing: Vec<String> = (1..info.world)
                                .filter(|&r| peers[r].is_none())
                                .map(|r| r.to_string())
                                .collect();
                            return Err(Error::invalid(format!(
                                "rank 0: rank(s) {} never arrived at {addr} within {:.0} s",
                                missing.join(", "),
                                timeout.as_secs_f64()
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => return Err(io_err(format!("rank 0: accepting at {addr}"))(e)),
                };
                s.set_nonblocking(false)
                    .and_then(|_| s.set_read_timeout(Some(timeout)))
                    .and_then(|_| s.set_write_timeout(Some(timeout)))
                    .and_then(|_| s.set_nodelay(true))
                    .map_err(io_err("rendezvous".into()))?;
                recv_frame(&mut s, &mut buf, 4096, "rank 0: reading a handshake")?;
                let text = String::from_utf8_lossy(&buf).into_owned();
                let parts: Vec<&str> = text.splitn(4, ' ').collect();
                let (rank, world) = match parts.as_slice() {
                    ["ncf", r, w, _] => (r.parse::<usize>().ok(), w.parse::<usize>().ok()),
                    _ => (None, None),
                };
                let theirs = parts.get(3).copied().unwrap_or("");
                let refuse = match (rank, world) {
                    (Some(r), Some(w)) if w != info.world => Some(format!(
                        "rank {r} says the world size is {w}, rank 0 says {}",
                        info.world
                    )),
                    (Some(r), Some(_)) if r == 0 || r >= info.world || peers[r].is_some() => {
                        Some(format!("rank {r} is out of range or arrived twice"))
                    }
                    (Some(r), Some(_)) if theirs != digest => Some(format!(
                        "rank {r} runs another configuration (dataset or training flags differ \
                         from rank 0's)"
                    )),
                    (Some(_), Some(_)) => None,
                    _ => Some(format!("not an ncf rank (handshake {text:?})")),
                };
                if let Some(why) = refuse {
                    let _ = send_frame(&mut s, format!("refused: {why}").as_bytes(), "reply");
                    return Err(Error::invalid(format!("rank 0: {why}")));
                }
                send_frame(&mut s, b"ok", "rank 0: answering a handshake")?;
                peers[rank.unwrap_or(0)] = Some(s);
                arrived += 1;
            }
        } else {
            let target = addr
                .to_socket_addrs()
                .map_err(|e| {
                    Error::invalid(format!(
                        "rendezvous address {addr} ({}): {e}",
                        source_of(addr)
                    ))
                })?
                .next()
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "rendezvous address {addr} ({}): no address",
                        source_of(addr)
                    ))
                })?;
            let mut s = loop {
                match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(Error::invalid(format!(
                            "rank {}: rank 0 is not listening at {addr} ({}) after {:.0} s: {e}",
                            info.rank,
                            source_of(addr),
                            timeout.as_secs_f64()
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            s.set_read_timeout(Some(timeout))
                .and_then(|_| s.set_write_timeout(Some(timeout)))
                .and_then(|_| s.set_nodelay(true))
                .map_err(io_err("rendezvous".into()))?;
            let me = format!("rank {}", info.rank);
            send_frame(&mut s, hello.as_bytes(), &format!("{me}: handshake"))?;
            let mut buf = Vec::new();
            recv_frame(&mut s, &mut buf, 4096, &format!("{me}: waiting for rank 0"))?;
            if buf != b"ok" {
                return Err(Error::invalid(format!(
                    "{me}: rank 0 {}",
                    String::from_utf8_lossy(&buf)
                )));
            }
            peers[0] = Some(s);
        }
        Ok(Group {
            info,
            peers,
            timeout,
            scratch: Vec::new(),
            loopback: None,
        })
    }

    /// How long a collective waits for the other ranks before it fails.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn rank(&self) -> usize {
        self.info.rank
    }

    pub fn world(&self) -> usize {
        self.info.world
    }

    fn stream(&mut self, r: usize) -> Result<&mut TcpStream> {
        self.peers[r]
            .as_mut()
            .ok_or_else(|| Error::invalid(format!("no connection to rank {r}")))
    }

    /// Element-wise sum of `buf` over all ranks, left in every rank's `buf`. Rank 0 adds the
    /// other ranks' buffers to its own in rank order.
    pub fn allreduce_sum(&mut self, buf: &mut [f32]) -> Result<()> {
        if self.loopback.is_some() {
            return self.echo_f32(buf, "rank 0: the sum of a group of one");
        }
        if self.info.world == 1 {
            return Ok(());
        }
        let max = buf.len() as u64 * 4;
        let mut scratch = std::mem::take(&mut self.scratch);
        let t = self.timeout.as_secs_f64();
        let result = (|| {
            if self.info.rank == 0 {
                for r in 1..self.info.world {
                    let what = format!("rank 0: receiving rank {r}'s gradients (timeout {t:.0} s)");
                    recv_frame(self.stream(r)?, &mut scratch, max, &what)?;
                    if scratch.len() != buf.len() * 4 {
                        return Err(Error::invalid(format!(
                            "rank {r} sent {} values, rank 0 has {}",
                            scratch.len() / 4,
                            buf.len()
                        )));
                    }
                    for (x, b) in buf.iter_mut().zip(scratch.chunks_exact(4)) {
                        *x += f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                encode(buf, &mut scratch);
                for r in 1..self.info.world {
                    let what = format!("rank 0: sending the sum to rank {r}");
                    send_frame(self.stream(r)?, &scratch, &what)?;
                }
            } else {
                let me = self.info.rank;
                encode(buf, &mut scratch);
                send_frame(
                    self.stream(0)?,
                    &scratch,
                    &format!("rank {me}: sending gradients to rank 0"),
                )?;
                let what = format!("rank {me}: waiting for the sum from rank 0 (timeout {t:.0} s)");
                recv_frame(self.stream(0)?, &mut scratch, max, &what)?;
                decode(&scratch, buf, &what)?;
            }
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    /// Rank 0's `buf` copied into every rank's `buf`.
    pub fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        if self.loopback.is_some() {
            return self.echo_f32(buf, "rank 0: the broadcast of a group of one");
        }
        if self.info.world == 1 {
            return Ok(());
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = (|| {
            if self.info.rank == 0 {
                encode(buf, &mut scratch);
                for r in 1..self.info.world {
                    send_frame(
                        self.stream(r)?,
                        &scratch,
                        &format!("rank 0: broadcast to rank {r}"),
                    )?;
                }
            } else {
                let what = format!("rank {}: waiting for rank 0's broadcast", self.info.rank);
                recv_frame(self.stream(0)?, &mut scratch, buf.len() as u64 * 4, &what)?;
                decode(&scratch, buf, &what)?;
            }
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    /// Sum of `x` over all ranks (f64, for loss and metric sums), in rank order.
    pub fn allreduce_f64(&mut self, x: &mut [f64]) -> Result<()> {
        let to_bytes = |x: &[f64]| -> Vec<u8> { x.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let from_bytes = |b: &[u8], out: &mut [f64], what: &str| -> Result<()> {
            if b.len() != out.len() * 8 {
                return Err(Error::invalid(format!(
                    "{what}: {} bytes for {} values",
                    b.len(),
                    out.len()
                )));
            }
            for (o, c) in out.iter_mut().zip(b.chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().expect("8 bytes"));
            }
            Ok(())
        };
        if self.loopback.is_some() {
            let what = "rank 0: the sums of a group of one";
            let mut back = Vec::new();
            self.echo(&to_bytes(x), &mut back, what)?;
            return from_bytes(&back, x, what);
        }
        if self.info.world == 1 {
            return Ok(());
        }
        let max = x.len() as u64 * 8;
        let mut buf = Vec::new();
        if self.info.rank == 0 {
            let mut theirs = vec![0f64; x.len()];
            for r in 1..self.info.world {
                let what = format!("rank 0: receiving rank {r}'s sums");
                recv_frame(self.stream(r)?, &mut buf, max, &what)?;
                from_bytes(&buf, &mut theirs, &what)?;
                for (t, v) in x.iter_mut().zip(&theirs) {
                    *t += v;
                }
            }
            let sum = to_bytes(x);
            for r in 1..self.info.world {
                send_frame(
                    self.stream(r)?,
                    &sum,
                    &format!("rank 0: sending sums to rank {r}"),
                )?;
            }
        } else {
            let me = self.info.rank;
            send_frame(
                self.stream(0)?,
                &to_bytes(x),
                &format!("rank {me}: sending sums"),
            )?;
            let what = format!("rank {me}: waiting for the sums from rank 0");
            recv_frame(self.stream(0)?, &mut buf, max, &what)?;
            from_bytes(&buf, x, &what)?;
        }
        Ok(())
    }
}

impl Group {
    fn echo_f32(&mut self, buf: &mut [f32], what: &str) -> Result<()> {
        let mut out = std::mem::take(&mut self.scratch);
        let mut back = Vec::new();
        encode(buf, &mut out);
        let r = self
            .echo(&out, &mut back, what)
            .and_then(|_| decode(&back, buf, what));
        self.scratch = out;
        r
    }
}

fn encode(x: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(x.len() * 4);
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn decode(bytes: &[u8], out: &mut [f32], what: &str) -> Result<()> {
    if bytes.len() != out.len() * 4 {
        return Err(Error::invalid(format!(
            "{what}: {} bytes for {} values",
            bytes.len(),
            out.len()
        )));
    }
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
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

    fn free_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    }

    /// Run `f(group)` on `world` ranks (threads) joined at a fresh address.
    fn with_ranks<T: Send + 'static>(
        world: usize,
        digests: Vec<&'static str>,
        timeout: Duration,
        f: impl Fn(Result<Group>) -> T + Send + Sync + Copy + 'static,
    ) -> Vec<T> {
        let addr = free_addr();
        let handles: Vec<_> = (0..world)
            .map(|r| {
                let (addr, digest) = (addr.clone(), digests[r]);
                std::thread::spawn(move || {
                    let info = RankInfo::new(r, world, r, "test").unwrap();
                    f(Group::connect(info, &addr, timeout, digest))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn allreduce_broadcast_and_metric_sums() {
        let out = with_ranks(3, vec!["d"; 3], Duration::from_secs(20), |g| {
            let mut g = g.unwrap();
            let r = g.rank() as f32;
            let mut x = vec![r, 10.0 * r, 0.5];
            g.allreduce_sum(&mut x).unwrap();
            let mut b = vec![r + 7.0; 2];
            g.broadcast(&mut b).unwrap();
            let mut m = vec![g.rank() as f64 * 0.1, 1e-12];
            g.allreduce_f64(&mut m).unwrap();
            (x, b, m)
        });
        for (x, b, m) in out {
            assert_eq!(x, vec![3.0, 30.0, 1.5]);
            assert_eq!(b, vec![7.0, 7.0]);
            assert_eq!(m, vec![0.0 + 0.1 + 0.2, 3e-12]);
        }
    }

    #[test]
    fn a_rank_with_another_config_is_refused() {
        let out = with_ranks(2, vec!["a", "b"], Duration::from_secs(20), |g| {
            g.map(|_| ()).map_err(|e| e.to_string())
        });
        let e0 = out[0].clone().unwrap_err();
        assert!(e0.contains("rank 1 runs another configuration"), "{e0}");
        let e1 = out[1].clone().unwrap_err();
        assert!(e1.contains("refused"), "{e1}");
    }

    #[test]
    fn missing_and_dead_ranks_are_named_within_the_timeout() {
        // World 3, only ranks 0 and 2 come: rank 0 names rank 1.
        let addr = free_addr();
        let t0 = Instant::now();
        let a2 = addr.clone();
        let late = std::thread::spawn(move || {
            let info = RankInfo::new(2, 3, 0, "test").unwrap();
            Group::connect(info, &a2, Duration::from_secs(2), "d").map(|_| ())
        });
        let info = RankInfo::new(0, 3, 0, "test").unwrap();
        let e = Group::connect(info, &addr, Duration::from_secs(2), "d").unwrap_err();
        assert!(e.to_string().contains("rank(s) 1 never arrived"), "{e}");
        let _ = late.join();
        assert!(t0.elapsed() < Duration::from_secs(15));
        // A rank that dies mid-run: the survivor's allreduce fails, naming it.
        let out = with_ranks(2, vec!["d"; 2], Duration::from_secs(2), |g| {
            let mut g = g.unwrap();
            if g.rank() == 1 {
                drop(g); // dies
                return String::new();
            }
            let t0 = Instant::now();
            let e = g.allreduce_sum(&mut [1.0]).unwrap_err().to_string();
            assert!(t0.elapsed() < Duration::from_secs(10));
            e
        });
        assert!(out[0].contains("rank 1"), "{}", out[0]);
    }

    #[test]
    fn a_group_of_one_echoes_its_collectives_over_a_socket() {
        let addr = free_addr();
        let info = RankInfo::new(0, 1, 0, "test").unwrap();
        let mut g = Group::connect(info, &addr, Duration::from_secs(10), "d").unwrap();
        assert!(g.loopback.is_some());
        assert_eq!((g.rank(), g.world()), (0, 1));
        // It really listens at the rendezvous address: one that is taken is an error.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        let info = RankInfo::new(0, 1, 0, "test").unwrap();
        let e = Group::connect(info, &busy, Duration::from_secs(1), "d").unwrap_err();
        assert!(
            e.to_string().contains(&format!("cannot listen at {busy}")),
            "{e}"
        );
        let mut x = vec![1.5f32, -2.0, 3.25];
        g.allreduce_sum(&mut x).unwrap();
        assert_eq!(x, vec![1.5, -2.0, 3.25]);
        let mut m = vec![0.1f64, 1e-300, -7.0];
        g.allreduce_f64(&mut m).unwrap();
        assert_eq!(m, vec![0.1, 1e-300, -7.0]);
        // Larger than the socket buffers: sent by a helper thread, no deadlock.
        let mut big: Vec<f32> = (0..(1 << 20)).map(|i| i as f32).collect();
        g.broadcast(&mut big).unwrap();
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as f32));
        assert!(g.dead_peers().is_empty());
        // Group::single has no socket and still sums over its one rank.
        let mut s = Group::single();
        let mut y = vec![4.0f32];
        s.allreduce_sum(&mut y).unwrap();
        assert_eq!(y, vec![4.0]);
    }

    #[test]
    fn dead_peers_names_the_rank_whose_connection_closed() {
        let addr = free_addr();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let a1 = addr.clone();
        let one = std::thread::spawn(move || {
            let info = RankInfo::new(1, 2, 1, "test").unwrap();
            let mut g = Group::connect(info, &a1, Duration::from_secs(20), "d").unwrap();
            g.allreduce_f64(&mut [1.0]).unwrap();
            assert!(g.dead_peers().is_empty(), "rank 0 is alive");
            rx.recv().unwrap();
            drop(g); // dies
        });
        let info = RankInfo::new(0, 2, 0, "test").unwrap();
        let mut g = Group::connect(info, &addr, Duration::from_secs(20), "d").unwrap();
        g.allreduce_f64(&mut [1.0]).unwrap();
        assert!(g.dead_peers().is_empty(), "{:?}", g.dead_peers());
        tx.send(()).unwrap();
        one.join().unwrap();
        let t0 = Instant::now();
        while g.dead_peers().is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(g.dead_peers(), vec![1]);
        // Still usable as a group: the next collective fails, naming the rank.
        let e = g.allreduce_f64(&mut [1.0]).unwrap_err().to_string();
        assert!(e.contains("rank 1"), "{e}");
    }
}
