//! The collectives: each rank sends rank 0 what it called (numbered) and its data; rank 0 checks
//! that every rank called the same, folds the buffers in rank order and sends every rank the
//! same result, or its failure.

use super::code::*;
use super::{
    drain, failure, lock, peek, phase_name, reported, Comm, Failure, Links, Peeked, Phase,
    REPLY_MARGIN,
};
use crate::reduce::{self, DType, RedOp};
use crate::wire::{self, Call, Kind, WireError};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Bytes rank `r` sends for `call`: all-reduce: its buffer; broadcast: the root's buffer.
fn payload_len(call: &Call, r: usize) -> u64 {
    let size = DType::from_code(call.dtype).map_or(0, DType::size) as u64;
    match call.kind {
        Kind::AllReduce => call.count.saturating_mul(size),
        Kind::Broadcast if call.root as usize == r => call.count.saturating_mul(size),
        Kind::Broadcast | Kind::Finalize => 0,
    }
}

/// Bytes every rank gets back.
fn result_len(call: &Call) -> u64 {
    payload_len(call, call.root as usize)
}

impl Comm {
    /// Element-wise `op` over the ranks' `own` buffers, folded in rank order.
    pub fn all_reduce(&self, own: Vec<u8>, dtype: DType, op: RedOp) -> Result<Vec<u8>, Failure> {
        let call = Call {
            kind: Kind::AllReduce,
            dtype: dtype as u32,
            op: op as u32,
            root: 0,
            count: (own.len() / dtype.size()) as u64,
            seq: 0,
        };
        self.run(call, own)
    }

    /// `root`'s `count` elements to every rank (`own` is read on the root only).
    pub fn broadcast(
        &self,
        own: Vec<u8>,
        count: usize,
        dtype: DType,
        root: usize,
    ) -> Result<Vec<u8>, Failure> {
        let call = Call {
            kind: Kind::Broadcast,
            dtype: dtype as u32,
            op: 0,
            root: root as u32,
            count: count as u64,
            seq: 0,
        };
        let own = if root == self.rank { own } else { vec![] };
        self.run(call, own)
    }

    /// Start `ncclCommFinalize`: from now on the communicator reports in progress until
    /// [`Comm::finalize`] has run.
    pub fn begin_finalize(&self) -> Result<(), Failure> {
        let mut st = lock(&self.state);
        match st.phase {
            Phase::Ready => {
                st.phase = Phase::Finalizing;
                Ok(())
            }
            Phase::Failed => Err(failure(st.code, st.last.clone())),
            p => {
                drop(st);
                Err(self.usage(format!("ncclCommFinalize called while {}", phase_name(p))))
            }
        }
    }

    /// The finalize barrier: every rank has finalized (no rank closes a connection another
    /// still reads).
    pub fn finalize(&self) -> Result<(), Failure> {
        let call = Call {
            kind: Kind::Finalize,
            dtype: 0,
            op: 0,
            root: 0,
            count: 0,
            seq: 0,
        };
        self.run(call, vec![])?;
        let mut st = lock(&self.state);
        if st.phase == Phase::Finalizing {
            st.phase = Phase::Finalized;
        }
        Ok(())
    }

    fn run(&self, mut call: Call, own: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let mut links = lock(&self.links);
        {
            let st = lock(&self.state);
            let ok = match st.phase {
                Phase::Ready => call.kind != Kind::Finalize,
                Phase::Finalizing => call.kind == Kind::Finalize,
                Phase::Failed => return Err(failure(st.code, st.last.clone())),
                _ => false,
            };
            if !ok {
                let p = st.phase;
                drop(st);
                let what = Call {
                    seq: links.seq + 1,
                    ..call
                }
                .describe();
                return Err(self.usage(format!("{what} called while {}", phase_name(p))));
            }
        }
        links.seq += 1;
        call.seq = links.seq;
        let r = if self.world == 1 {
            Ok(match call.kind {
                Kind::Finalize => vec![],
                _ => own,
            })
        } else if self.rank == 0 {
            self.run_as_root(&mut links, call, own)
        } else {
            self.run_as_peer(&mut links, call, own)
        };
        r.map_err(|f| self.fatal(&mut links, f))
    }

    fn run_as_root(&self, links: &mut Links, call: Call, own: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let what = call.describe();
        let during = format!("during {what}");
        let deadline = Instant::now() + self.timeout;
        let mut acc = match call.kind {
            Kind::AllReduce => own,
            Kind::Broadcast if call.root == 0 => own,
            Kind::Broadcast | Kind::Finalize => vec![],
        };
        let mut part = vec![];
        for (r, s) in links.to.iter_mut() {
            let r = *r;
            let mut head = [0u8; Call::LEN];
            wire::read_full(s, &mut head, deadline).map_err(|e| self.lost(r, e, &during))?;
            let Some((theirs, len)) = Call::decode(&head) else {
                return Err(failure(
                    INTERNAL_ERROR,
                    format!("rank {r} sent a garbled request {during}"),
                ));
            };
            if theirs != call {
                return Err(failure(
                    INVALID_USAGE,
                    format!(
                        "rank {r} called {} where rank 0 called {what}",
                        theirs.describe()
                    ),
                ));
            }
            if len != payload_len(&call, r) {
                return Err(failure(
                    INTERNAL_ERROR,
                    format!("rank {r} sent {len} bytes {during}"),
                ));
            }
            part.resize(len as usize, 0);
            wire::read_full(s, &mut part, deadline).map_err(|e| self.lost(r, e, &during))?;
            match call.kind {
                Kind::AllReduce => {
                    let (dtype, op) = (DType::from_code(call.dtype), RedOp::from_code(call.op));
                    let (Some(dtype), Some(op)) = (dtype, op) else {
                        return Err(failure(INTERNAL_ERROR, format!("{what}: unknown type")));
                    };
                    reduce::fold(&mut acc, &part, dtype, op)
                        .map_err(|e| failure(INTERNAL_ERROR, format!("{what}: {e}")))?;
                }
                Kind::Broadcast if call.root as usize == r => acc = std::mem::take(&mut part),
                Kind::Broadcast | Kind::Finalize => {}
            }
        }
        let head = wire::reply_head(SUCCESS, acc.len() as u64);
        let deadline = Instant::now() + self.timeout;
        for (r, s) in links.to.iter_mut() {
            wire::write_full(s, &head, deadline)
                .and_then(|()| wire::write_full(s, &acc, deadline))
                .map_err(|e| self.lost(*r, e, &format!("before it had the result of {what}")))?;
        }
        Ok(acc)
    }

    fn run_as_peer(&self, links: &mut Links, call: Call, own: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let what = call.describe();
        let during = format!("during {what}");
        let s = &mut links.to[0].1;
        // An error rank 0 sent between collectives is reported, not sent into.
        if let Some(f) = self.waiting_error(s, &during) {
            return Err(f);
        }
        let deadline = Instant::now() + self.timeout;
        let sent = wire::write_full(s, &call.encode(own.len() as u64), deadline)
            .and_then(|()| wire::write_full(s, &own, deadline));
        // Whatever happened to the send, rank 0's reply (or the error it sent) says the most.
        let by = match sent {
            Ok(()) => Instant::now() + self.timeout + REPLY_MARGIN,
            Err(_) => Instant::now() + Duration::from_millis(500),
        };
        let want = result_len(&call);
        match (wire::read_reply(s, want, by), sent) {
            (Ok((SUCCESS, body)), _) if body.len() as u64 == want => Ok(body),
            (Ok((SUCCESS, body)), _) => Err(failure(
                INTERNAL_ERROR,
                format!(
                    "rank 0 sent {} bytes as the result of {what}, not {want}",
                    body.len()
                ),
            )),
            (Ok((code, msg)), _) => Err(reported(code, &msg)),
            (Err(_), Err(e)) | (Err(e), Ok(())) => Err(self.lost(0, e, &during)),
        }
    }

    /// On a rank other than 0: rank 0's error (or its closed connection) waiting on `s`.
    pub(super) fn waiting_error(&self, s: &mut TcpStream, during: &str) -> Option<Failure> {
        match peek(s) {
            Peeked::Nothing => None,
            Peeked::Closed => Some(self.lost(0, WireError::Closed, during)),
            Peeked::Data => {
                let by = Instant::now() + Duration::from_secs(1);
                Some(match wire::read_reply(s, 0, by) {
                    Ok((SUCCESS, _)) => failure(
                        INTERNAL_ERROR,
                        format!("rank 0 sent a result outside a collective ({during})"),
                    ),
                    Ok((code, msg)) => reported(code, &msg),
                    Err(e) => self.lost(0, e, during),
                })
            }
        }
    }

    /// Record `f`; on rank 0 also send it to every other rank, and drop what they still send.
    pub(super) fn fatal(&self, links: &mut Links, f: Failure) -> Failure {
        if self.rank == 0 && !self.draining.swap(true, Ordering::SeqCst) {
            let reply = wire::encode_reply(f.code, f.message.as_bytes());
            let until = Instant::now() + Duration::from_secs(1);
            for (_, s) in links.to.iter_mut() {
                let _ = wire::write_full(s, &reply, until);
                if let Ok(mut c) = s.try_clone() {
                    let _ = std::thread::Builder::new()
                        .name("ncf-nccl-host-drain".into())
                        .spawn(move || drain(&mut c));
                }
            }
        }
        self.fail(f)
    }
}
