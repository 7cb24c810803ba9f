//! One rank's communicator: joining (rank 0 accepts every other rank's connection, the others
//! connect to it), the collectives (a star through rank 0, which folds the ranks' buffers in rank
//! order and sends every rank the same bytes), the dead-peer watch, finalize and abort.

mod collective;
mod join;
#[cfg(test)]
mod tests;

use crate::wire::WireError;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

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
    pub fn fail(&self, f: Failure) -> Failure {
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
        let f = c.fail(f);
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
