//! Joining: rank 0 accepts a connection from every other rank (each says which rank it is and
//! which communicator it joins), then tells them all that every rank is there, or why not.

use super::code::*;
use super::{failure, lock, reported, secs, Comm, Failure, Phase, REPLY_MARGIN};
use crate::id::{self, Rendezvous};
use crate::wire::{self, Hello};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

impl Comm {
    /// Join the communicator `rz` names; the result is also the state `ncclCommGetAsyncError`
    /// reports from now on.
    pub fn join(&self, rz: Rendezvous) -> Result<(), Failure> {
        // The links are not held while connecting: a collective called meanwhile is refused
        // (still joining) instead of waiting.
        let joined = if self.rank == 0 {
            self.join_as_root(rz)
        } else {
            self.join_as_peer(rz)
        };
        match joined {
            Ok(to) => {
                lock(&self.links).to = to;
                let mut st = lock(&self.state);
                if st.phase == Phase::Joining {
                    st.phase = Phase::Ready;
                }
                Ok(())
            }
            Err(f) => Err(self.fail(f)),
        }
    }

    fn join_as_root(&self, rz: Rendezvous) -> Result<Vec<(usize, TcpStream)>, Failure> {
        let listener = id::take_listener(&rz).ok_or_else(|| {
            failure(
                INVALID_USAGE,
                format!(
                    "rank 0 must join in the process that called ncclGetUniqueId, once per id \
                     (this process does not listen at {})",
                    rz.addr
                ),
            )
        })?;
        let deadline = Instant::now() + self.timeout;
        let mut joined: Vec<Option<TcpStream>> = (0..self.world).map(|_| None).collect();
        let r = self.accept_ranks(&listener, &rz, deadline, &mut joined);
        let mut to: Vec<(usize, TcpStream)> = joined
            .into_iter()
            .enumerate()
            .filter_map(|(r, s)| s.map(|s| (r, s)))
            .collect();
        // Every rank that joined learns the outcome: all joined, or why the join failed.
        let (status, body) = match &r {
            Ok(()) => (SUCCESS, String::new()),
            Err(f) => (f.code, f.message.clone()),
        };
        let reply = wire::encode_reply(status, body.as_bytes());
        let until = Instant::now() + self.timeout;
        for (peer, s) in &mut to {
            if let (Err(e), Ok(())) = (wire::write_full(s, &reply, until), &r) {
                return Err(self.lost(*peer, e, "while every rank joined"));
            }
        }
        r.map(|()| to)
    }

    fn accept_ranks(
        &self,
        listener: &std::net::TcpListener,
        rz: &Rendezvous,
        deadline: Instant,
        joined: &mut [Option<TcpStream>],
    ) -> Result<(), Failure> {
        let sys = |e: std::io::Error| {
            failure(
                SYSTEM_ERROR,
                format!("accepting connections at {}: {e}", rz.addr),
            )
        };
        listener.set_nonblocking(true).map_err(sys)?;
        while joined.iter().skip(1).any(Option::is_none) {
            if let Some(f) = self.aborted() {
                return Err(f);
            }
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<String> = (1..self.world)
                            .filter(|&r| joined[r].is_none())
                            .map(|r| r.to_string())
                            .collect();
                        return Err(failure(
                            TIMEOUT,
                            format!(
                                "rank{} {} did not join within {} (NCF_NCCL_HOST_TIMEOUT)",
                                if missing.len() > 1 { "s" } else { "" },
                                missing.join(", "),
                                secs(self.timeout)
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(sys(e)),
            };
            s.set_nonblocking(false).map_err(sys)?;
            let _ = s.set_nodelay(true);
            self.keep(&s);
            // A joining rank sends its hello at once; a stray connection is dropped.
            let mut b = [0u8; Hello::LEN];
            let hello_by = deadline.min(Instant::now() + Duration::from_secs(5));
            if wire::read_full(&mut s, &mut b, hello_by).is_err() {
                continue;
            }
            let Some(h) = Hello::decode(&b).filter(|h| h.tag == rz.tag) else {
                continue;
            };
            let r = h.rank as usize;
            let why = if h.world as usize != self.world {
                Some(format!(
                    "rank {r} joined a world of {} ranks, rank 0 one of {}",
                    h.world, self.world
                ))
            } else if r == 0 || r >= self.world {
                Some(format!("a process joined as rank {r} of {}", self.world))
            } else if joined[r].is_some() {
                Some(format!("two processes joined as rank {r}"))
            } else {
                None
            };
            if let Some(why) = why {
                let until = Instant::now() + Duration::from_secs(1);
                let _ = wire::write_full(
                    &mut s,
                    &wire::encode_reply(INVALID_USAGE, why.as_bytes()),
                    until,
                );
                return Err(failure(INVALID_USAGE, why));
            }
            joined[r] = Some(s);
        }
        Ok(())
    }

    fn join_as_peer(&self, rz: Rendezvous) -> Result<Vec<(usize, TcpStream)>, Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut s = loop {
            if let Some(f) = self.aborted() {
                return Err(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(
                &rz.addr.into(),
                left.clamp(Duration::from_millis(1), Duration::from_secs(1)),
            ) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(failure(
                        TIMEOUT,
                        format!(
                            "could not reach rank 0 at {} within {} ({e})",
                            rz.addr,
                            secs(self.timeout)
                        ),
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let _ = s.set_nodelay(true);
        self.keep(&s);
        if let Some(f) = self.aborted() {
            return Err(f);
        }
        let hello = Hello {
            tag: rz.tag,
            rank: self.rank as u32,
            world: self.world as u32,
        };
        let what = "while every rank joined";
        wire::write_full(&mut s, &hello.encode(), deadline).map_err(|e| self.lost(0, e, what))?;
        // Rank 0 answers once every rank has joined, or with the reason the join failed.
        match wire::read_reply(&mut s, 0, deadline + REPLY_MARGIN) {
            Ok((SUCCESS, _)) => Ok(vec![(0, s)]),
            Ok((code, msg)) => Err(reported(code, &msg)),
            Err(e) => Err(self.lost(0, e, what)),
        }
    }
}
