//! The TCP bootstrap: how ranks that no MPI started (torchrun-style `RANK`/`WORLD_SIZE`) find
//! each other, the way PyTorch's TCPStore bootstraps NCCL. It carries the handshake, NCCL's
//! unique id and the small host values that bracket NCCL's steps, never gradients or a model.
//!
//! - [`Star::connect`]: rank 0 listens at `MASTER_ADDR:MASTER_PORT` (default 127.0.0.1:29500),
//!   the others connect (retrying until the timeout). Each rank sends a handshake digest (dataset
//!   fingerprint + training config): a rank with another one is refused at start, naming it.
//!   Ranks that never arrive are named when the timeout expires.
//! - [`Star::broadcast`] (NCCL's id) and [`Star::allreduce_f64`] (the ready check, the stop
//!   agreement, evaluation counts) go through rank 0, which adds in rank order; at most
//!   [`BOOTSTRAP_MAX`] values. Every socket has the timeout: a rank that dies makes the others
//!   fail within it with an error naming the rank. Why these stay here and not on NCCL: NCCL's
//!   collectives have no timeout, and these host values are what catches a dead rank between
//!   steps (docs/DISTRIBUTED.md).
//! - A group of one (`ncf-train --nccl` on one rank, the check of the NCCL path on a single
//!   GPU) is a loopback: rank 0 listens at the rendezvous address and connects to itself, and
//!   every frame goes out and comes back over that socket, so the handshake, the framing and the
//!   NCCL id exchange run as they do between real ranks (the values come back unchanged).
//! - [`Star::dead_peers`] names the ranks whose connection has closed, without blocking: after a
//!   failed device collective it says which rank died.
//!
//! Wire format: frames of `u64` little-endian byte length, then the bytes.

use super::{rendezvous_source, RankInfo};
use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most values one bootstrap collective carries (NCCL's id is 32 words).
pub const BOOTSTRAP_MAX: usize = 4096;

/// [`rendezvous_source`] of this process's environment.
fn source_of(addr: &str) -> &'static str {
    rendezvous_source(addr, |k: &str| std::env::var(k).ok())
}

/// The connections of one rank: rank 0 holds one per other rank, the others one to rank 0.
pub struct Star {
    info: RankInfo,
    /// Rank 0: `peers[r]` is rank r's stream (None for itself). Others: `peers[0]`.
    peers: Vec<Option<TcpStream>>,
    scratch: Vec<u8>,
    /// A group of one joined through [`Star::connect`]: (sending end, receiving end) of its
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

impl Star {
    /// A group of one over a socket to itself at `addr` (see the module notes).
    fn loopback(info: RankInfo, addr: &str, timeout: Duration, digest: &str) -> Result<Star> {
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
        Ok(Star {
            info,
            peers: vec![None],
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
    pub fn connect(info: &RankInfo, addr: &str, timeout: Duration, digest: &str) -> Result<Star> {
        if info.world == 1 {
            // The timeout also bounds waits on this group's behalf (NCCL steps).
            return Star::loopback(info.clone(), addr, timeout, digest);
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
        Ok(Star {
            info: info.clone(),
            peers,
            scratch: Vec::new(),
            loopback: None,
        })
    }

    fn stream(&mut self, r: usize) -> Result<&mut TcpStream> {
        self.peers[r]
            .as_mut()
            .ok_or_else(|| Error::invalid(format!("no connection to rank {r}")))
    }

    /// Rank 0's `buf` copied into every rank's `buf`.
    pub fn broadcast(&mut self, buf: &mut [f32]) -> Result<()> {
        if buf.len() > BOOTSTRAP_MAX {
            return Err(Error::invalid(format!(
                "rank {}: a broadcast of {} values over the TCP bootstrap, which carries at most \
                 {BOOTSTRAP_MAX} (an id, not a model: CPU ranks need mpirun)",
                self.info.rank,
                buf.len()
            )));
        }
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
        if x.len() > BOOTSTRAP_MAX {
            return Err(Error::invalid(format!(
                "rank {}: a sum of {} values over the TCP bootstrap, which carries at most \
                 {BOOTSTRAP_MAX}",
                self.info.rank,
                x.len()
            )));
        }
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

impl Star {
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
    use crate::dist::{Group, RankInfo};
    use crate::Result;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

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
    fn the_bootstrap_broadcasts_and_sums_small_values_only() {
        let out = with_ranks(3, vec!["d"; 3], Duration::from_secs(20), |g| {
            let mut g = g.unwrap();
            let r = g.rank() as f32;
            let e = g.allreduce_sum(&mut [r]).unwrap_err().to_string();
            assert!(e.contains("carries no gradients"), "{e}");
            let mut b = vec![r + 7.0; 2];
            g.broadcast(&mut b).unwrap();
            let mut m = vec![g.rank() as f64 * 0.1, 1e-12];
            g.allreduce_f64(&mut m).unwrap();
            let e = g.broadcast(&mut vec![0.0; 5000]).unwrap_err().to_string();
            assert!(e.contains("carries at most 4096"), "{e}");
            (b, m)
        });
        for (b, m) in out {
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
            let e = g.allreduce_f64(&mut [1.0]).unwrap_err().to_string();
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
        assert_eq!(g.engine_name(), "tcp");
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
        g.broadcast(&mut x).unwrap();
        assert_eq!(x, vec![1.5, -2.0, 3.25]);
        let mut m = vec![0.1f64, 1e-300, -7.0];
        g.allreduce_f64(&mut m).unwrap();
        assert_eq!(m, vec![0.1, 1e-300, -7.0]);
        // The largest frame (4096 f64 values) comes back whole.
        let mut big: Vec<f64> = (0..4096).map(|i| i as f64).collect();
        g.allreduce_f64(&mut big).unwrap();
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as f64));
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
