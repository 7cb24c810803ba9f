//! One rank's communicator: joining (rank 0 accepts every other rank's connection, the others
//! connect to it), the collectives (a star through rank 0, which folds the ranks' buffers in rank
//! order and sends every rank the same bytes), the dead-peer watch, finalize and abort.

use crate::id::{self, Rendezvous};
use crate::reduce::{self, DType, RedOp};
use crate::wire::{self, Call, Hello, Kind, WireError};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

/// `ncclResult_t` codes the stand-in returns.
pub mod code {
    pub const SUCCESS: u32 = 0;
    pub const SYSTEM_ERROR: u32 = 2;
    pub const INTERNAL_ERROR: u32 = 3;
    pub const INVALID_ARGUMENT: u32 = 4;
    pub const INVALID_USAGE: u32 = 5;
    pub const REMOTE_ERROR: u32 = 6;
    pub const IN_PROGRESS: u32 = 7;
    pub const TIMEOUT: u32 = 8;
}
use code::*;

/// Rank 0's diagnosis should reach the other ranks before their own wait for it ends.
const REPLY_MARGIN: Duration = Duration::from_secs(2);

/// An NCCL error code and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: u32,
    pub message: String,
}

fn failure(code: u32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Joining,
    Ready,
    Finalizing,
    Finalized,
    /// A collective, the join or the watch failed: every later call returns that failure.
    Failed,
    /// Aborted or destroyed.
    Closed,
}

struct State {
    phase: Phase,
    /// The failure's code (phase Failed).
    code: u32,
    /// The communicator's last error message, as `ncclGetLastError` returns it.
    last: String,
}

/// The connections: rank 0 holds one to each other rank (in rank order), the others one to
/// rank 0.
struct Links {
    to: Vec<(usize, TcpStream)>,
    /// Collectives called so far (each request carries it: a rank that skipped one is caught).
    seq: u64,
}

/// One rank's communicator.
pub struct Comm {
    pub rank: usize,
    pub world: usize,
    /// Created blocking: init and finalize complete inside the call.
    pub blocking: bool,
    timeout: Duration,
    state: Mutex<State>,
    /// Held for the length of a collective (and by the join while it connects).
    links: Mutex<Links>,
    /// A clone of every socket, so that abort can shut them down under a running call.
    sockets: Mutex<Vec<TcpStream>>,
    closing: AtomicBool,
    /// Rank 0 after a failure: other ranks' data is read and dropped, so that their sends end
    /// and they read the error rank 0 sent them.
    draining: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes rank `r` sends for `call`: all-reduce: its buffer; broadcast: the root's buffer.
fn payload_len(call: &Call, r: usize) -> u64 {
    let size = DType::from_code(call.dtype).map_or(0, DType::size) as u64;
    match call.kind {
        Kind::AllReduce => call.count * size,
        Kind::Broadcast if call.root as usize == r => call.count * size,
        Kind::Broadcast | Kind::Finalize => 0,
    }
}

/// Bytes every rank gets back.
fn result_len(call: &Call) -> u64 {
    payload_len(call, call.root as usize)
}

impl Comm {
    /// A communicator about to join (`timeout`: for the join and for each collective).
    pub fn new(rank: usize, world: usize, blocking: bool, timeout: Duration) -> Comm {
        Comm {
            rank,
            world,
            blocking,
            timeout,
            state: Mutex::new(State {
                phase: Phase::Joining,
                code: SUCCESS,
                last: String::new(),
            }),
            links: Mutex::new(Links { to: vec![], seq: 0 }),
            sockets: Mutex::new(vec![]),
            closing: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    fn me(&self) -> String {
        format!("stand-in NCCL, rank {} of {}", self.rank, self.world)
    }

    /// A failure that ends the communicator: kept (the first one) for every later call and
    /// `ncclCommGetAsyncError`; returned with this rank's name in front.
    fn record(&self, f: Failure) -> Failure {
        let message = format!("{}: {}", self.me(), f.message);
        let mut st = lock(&self.state);
        if matches!(st.phase, Phase::Failed | Phase::Closed) {
            return failure(st.code, st.last.clone());
        }
        st.phase = Phase::Failed;
        st.code = f.code;
        st.last = message.clone();
        failure(f.code, message)
    }

    /// A call refused (a bad argument, a call out of order): the communicator stays as it was.
    pub fn refuse(&self, code: u32, what: String) -> Failure {
        let message = format!("{}: {what}", self.me());
        lock(&self.state).last = message.clone();
        failure(code, message)
    }

    /// A communicator that cannot even start (bad arguments): failed from the outset.
    pub fn refused(rank: usize, world: usize, blocking: bool, f: Failure) -> (Comm, Failure) {
        let c = Comm::new(rank, world, blocking, Duration::ZERO);
        let f = c.record(f);
        (c, f)
    }

    fn usage(&self, what: String) -> Failure {
        self.refuse(INVALID_USAGE, what)
    }

    /// What `ncclGetLastError` says for this communicator (empty when nothing went wrong).
    pub fn last_error(&self) -> String {
        lock(&self.state).last.clone()
    }

    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            if self.closing.load(Ordering::SeqCst) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
            lock(&self.sockets).push(c);
        }
    }

    fn aborted(&self) -> Option<Failure> {
        self.closing
            .load(Ordering::SeqCst)
            .then(|| failure(INVALID_USAGE, "the communicator was aborted while joining"))
    }

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
            Err(f) => Err(self.record(f)),
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

    /// The failure of a transfer with rank `r` `during` something.
    fn lost(&self, r: usize, e: WireError, during: &str) -> Failure {
        match e {
            WireError::Closed => failure(
                REMOTE_ERROR,
                format!("rank {r} closed its connection {during} (its process ended or aborted)"),
            ),
            WireError::TimedOut => failure(
                TIMEOUT,
                format!(
                    "rank {r} did not answer within {} {during} (stalled? NCF_NCCL_HOST_TIMEOUT)",
                    secs(self.timeout)
                ),
            ),
            WireError::Other(e) => failure(
                SYSTEM_ERROR,
                format!("the connection to rank {r} failed {during}: {e}"),
            ),
        }
    }

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
    fn waiting_error(&self, s: &mut TcpStream, during: &str) -> Option<Failure> {
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
    fn fatal(&self, links: &mut Links, f: Failure) -> Failure {
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
        self.record(f)
    }

    /// `ncclCommGetAsyncError`: in progress while joining or finalizing, the failure once one
    /// happened, else success, after a look at the connections: a peer whose connection closed
    /// between collectives fails the communicator now (the dead-rank watch).
    pub fn async_state(&self) -> u32 {
        {
            let st = lock(&self.state);
            match st.phase {
                Phase::Joining | Phase::Finalizing => return IN_PROGRESS,
                Phase::Finalized => return SUCCESS,
                Phase::Failed => return st.code,
                Phase::Closed => return INVALID_USAGE,
                Phase::Ready => {}
            }
        }
        // A collective running on another thread watches for itself.
        let mut links = match self.links.try_lock() {
            Ok(l) => l,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return SUCCESS,
        };
        if lock(&self.state).phase != Phase::Ready {
            return self.async_state_now();
        }
        let during = "between collectives";
        let mut found = None;
        for (r, s) in links.to.iter_mut() {
            found = if self.rank == 0 {
                match peek(s) {
                    Peeked::Closed => Some(self.lost(*r, WireError::Closed, during)),
                    // A rank's next request, already sent: it is alive.
                    Peeked::Data | Peeked::Nothing => None,
                }
            } else {
                self.waiting_error(s, during)
            };
            if found.is_some() {
                break;
            }
        }
        match found {
            Some(f) => self.fatal(&mut links, f).code,
            None => SUCCESS,
        }
    }

    fn async_state_now(&self) -> u32 {
        let st = lock(&self.state);
        match st.phase {
            Phase::Joining | Phase::Finalizing => IN_PROGRESS,
            Phase::Ready | Phase::Finalized => SUCCESS,
            Phase::Failed => st.code,
            Phase::Closed => INVALID_USAGE,
        }
    }

    /// `ncclCommAbort` / `ncclCommDestroy`: shut every connection down (a call blocked on one
    /// returns at once; the other ranks see it closed). Never blocks.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for s in lock(&self.sockets).iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        lock(&self.state).phase = Phase::Closed;
    }
}

/// An error rank 0 sent (its message already names the rank that failed).
fn reported(code: u32, msg: &[u8]) -> Failure {
    failure(
        if code == SUCCESS {
            INTERNAL_ERROR
        } else {
            code
        },
        format!("{} (reported by rank 0)", String::from_utf8_lossy(msg)),
    )
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Joining => {
            "the communicator was still joining (poll ncclCommGetAsyncError until \
                           ncclSuccess first)"
        }
        Phase::Ready => "the communicator was ready",
        Phase::Finalizing => "the communicator was finalizing",
        Phase::Finalized => "the communicator was finalized",
        Phase::Failed => "the communicator had failed",
        Phase::Closed => "the communicator was aborted or destroyed",
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

enum Peeked {
    Nothing,
    Data,
    Closed,
}

/// Whether bytes, an end of stream or nothing wait on `s`, without waiting.
fn peek(s: &TcpStream) -> Peeked {
    if s.set_nonblocking(true).is_err() {
        return Peeked::Closed;
    }
    let r = s.peek(&mut [0u8; 1]);
    let _ = s.set_nonblocking(false);
    match r {
        Ok(0) => Peeked::Closed,
        Ok(_) => Peeked::Data,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            Peeked::Nothing
        }
        Err(_) => Peeked::Closed,
    }
}

/// Read and drop everything until the connection closes (or is shut down).
fn drain(s: &mut TcpStream) {
    use std::io::Read;
    let _ = s.set_read_timeout(None);
    let mut buf = vec![0u8; 1 << 16];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}
