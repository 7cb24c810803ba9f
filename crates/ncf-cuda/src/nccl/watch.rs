//! The deadline and abort logic of the NCCL path, kept apart from NCCL so that it is tested
//! without a GPU (with fakes): waiting for device work with a deadline while watching for an
//! asynchronous error ([`wait_for`]), running a call that may hang on a helper thread with a
//! time limit ([`bounded`]), and the message that names the rank that died ([`failure`]).

use std::time::{Duration, Instant};

/// One look at an operation being waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Look {
    Done,
    Pending,
    /// It can never finish (an asynchronous NCCL error, a CUDA error): why.
    Failed(String),
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    Done,
    Failed(String),
    /// Still pending after this long.
    TimedOut(Duration),
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

/// Look at an operation until it is done, has failed, or `timeout` has passed.
pub fn wait_for(timeout: Duration, mut look: impl FnMut() -> Look) -> Waited {
    let r = poll_until(timeout, || match look() {
        Look::Done => Ok(true),
        Look::Pending => Ok(false),
        Look::Failed(why) => Err(why),
    });
    match r {
        Ok(true) => Waited::Done,
        Ok(false) => Waited::TimedOut(timeout),
        Err(why) => Waited::Failed(why),
    }
}

/// How a call run by [`bounded`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bounded {
    Finished(Result<(), String>),
    Panicked,
    /// Still running when the time was up (the thread is left to finish or to die with the
    /// process).
    TimedOut,
    /// No thread could be started (the call did not run).
    NoThread,
}

/// Run `f` on a thread named `name` and wait at most `timeout` for it.
pub fn bounded(
    name: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Bounded {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r.ok());
        });
    if spawned.is_err() {
        return Bounded::NoThread;
    }
    match rx.recv_timeout(timeout) {
        Ok(Some(r)) => Bounded::Finished(r),
        Ok(None) => Bounded::Panicked,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Bounded::TimedOut,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Bounded::Panicked,
    }
}

/// The error of rank `rank` of `world` when `what` (e.g. "epoch 1 step 37") ended as `how`;
/// `dead` are the ranks whose host connection has closed (`Group::dead_peers`). Names the rank
/// that died when it is known: from the closed connections, or the other rank of a world of 2.
pub fn failure(rank: usize, world: usize, what: &str, how: &Waited, dead: &[usize]) -> String {
    let me = format!("rank {rank} of {world}");
    let cause = match how {
        Waited::Done => return format!("{me}: {what} finished"),
        Waited::Failed(why) => format!("failed: {why}"),
        Waited::TimedOut(t) => format!("did not finish within {:.0} s", t.as_secs_f64()),
    };
    let list = |v: &[usize]| {
        v.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let who = match dead {
        [r] => format!("rank {r} died (its connection to rank {rank} closed)"),
        [_, ..] => format!("ranks {} died (their connections closed)", list(dead)),
        [] if world == 2 => format!(
            "rank {} (the other rank) died or stalled (its log says why)",
            1 - rank
        ),
        [] if world == 1 => "this rank's own NCCL communicator failed".to_string(),
        [] => "another rank died or stalled (no connection has closed yet; their logs say why)"
            .to_string(),
    };
    format!("{me}: {what} {cause}: {who}, in the middle of the step's NCCL collectives")
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

    /// A fake step: pending for `n` looks, then done or failed (an asynchronous NCCL error).
    fn fake(n: usize, end: Look) -> impl FnMut() -> Look {
        let mut k = 0;
        move || {
            k += 1;
            if k <= n {
                Look::Pending
            } else {
                end.clone()
            }
        }
    }

    #[test]
    fn a_wait_ends_done_failed_at_once_or_at_the_deadline() {
        assert_eq!(
            wait_for(Duration::from_secs(5), fake(300, Look::Done)),
            Waited::Done
        );
        // An asynchronous error ends the wait at once, not at the deadline.
        let t0 = Instant::now();
        let w = wait_for(
            Duration::from_secs(30),
            fake(10, Look::Failed("ncclRemoteError".into())),
        );
        assert_eq!(w, Waited::Failed("ncclRemoteError".into()));
        assert!(t0.elapsed() < Duration::from_secs(2));
        // A peer that stalls: the deadline.
        let t0 = Instant::now();
        let w = wait_for(Duration::from_millis(200), fake(usize::MAX, Look::Done));
        assert_eq!(w, Waited::TimedOut(Duration::from_millis(200)));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn bounded_calls_finish_fail_panic_or_time_out() {
        let s = Duration::from_secs(5);
        assert_eq!(bounded("t", s, || Ok(())), Bounded::Finished(Ok(())));
        assert_eq!(
            bounded("t", s, || Err("ncclInternalError".into())),
            Bounded::Finished(Err("ncclInternalError".into()))
        );
        assert_eq!(
            bounded("t", s, || panic!("abort panicked")),
            Bounded::Panicked
        );
        // An abort that hangs: given up on after the limit, the caller goes on.
        let t0 = Instant::now();
        let r = bounded("t", Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        });
        assert_eq!(r, Bounded::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn the_failure_names_the_rank_that_died() {
        let t = Waited::TimedOut(Duration::from_secs(10));
        let m = failure(0, 2, "epoch 1 step 37", &t, &[1]);
        assert!(
            m.starts_with("rank 0 of 2: epoch 1 step 37 did not finish within 10 s"),
            "{m}"
        );
        assert!(
            m.contains("rank 1 died (its connection to rank 0 closed)"),
            "{m}"
        );
        let e = Waited::Failed("ncclRemoteError (6)".into());
        let m = failure(1, 2, "epoch 0 step 3", &e, &[]);
        assert!(m.contains("failed: ncclRemoteError (6)"), "{m}");
        assert!(m.contains("rank 0 (the other rank) died or stalled"), "{m}");
        let m = failure(0, 4, "x", &e, &[2, 3]);
        assert!(m.contains("ranks 2, 3 died"), "{m}");
        let m = failure(2, 4, "x", &t, &[]);
        assert!(m.contains("another rank died or stalled"), "{m}");
        let m = failure(0, 1, "x", &e, &[]);
        assert!(m.contains("own NCCL communicator"), "{m}");
    }
}
