//! Ranks as threads of one process (the protocol is the same; tests/ranks.rs runs processes
//! through ncf's own loader): joins, rank-order folds, mismatches, timeouts, abort, the watch.

use super::code::*;
use super::*;
use crate::id;
use crate::reduce::{DType, RedOp};
use std::sync::Arc;
use std::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Run `body(rank, comm, rendezvous)` for every rank of `world` on its own thread.
fn ranks<T: Send + 'static>(
    world: usize,
    timeout: Duration,
    body: impl Fn(usize, &Comm, id::Rendezvous) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let rz = id::make().unwrap();
    let body = Arc::new(body);
    let threads: Vec<_> = (0..world)
        .map(|r| {
            let body = body.clone();
            std::thread::spawn(move || body(r, &Comm::new(r, world, true, timeout), rz))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn three_ranks_fold_in_rank_order_broadcast_and_finalize() {
    let out = ranks(3, 10 * SECOND, |r, c, rz| {
        c.join(rz).unwrap();
        // (1e16 + 1) - 1e16 is 0 in rank order, 1 in any order that adds 1 last.
        let mine = [[1e16, 0.5], [1.0, 0.25], [-1e16, 0.125]][r];
        let sum = c.all_reduce(f64s(&mine), DType::F64, RedOp::Sum).unwrap();
        let max = c.all_reduce(f64s(&mine), DType::F64, RedOp::Max).unwrap();
        let b = c
            .broadcast(f64s(&[r as f64, 7.0]), 2, DType::F64, 2)
            .unwrap();
        assert_eq!(c.async_state(), SUCCESS);
        c.begin_finalize().unwrap();
        assert_eq!(c.async_state(), IN_PROGRESS);
        c.finalize().unwrap();
        assert_eq!(c.async_state(), SUCCESS);
        (sum, max, b)
    });
    for (sum, max, b) in &out {
        assert_eq!(sum, &f64s(&[0.0, 0.875]));
        assert_eq!(max, &f64s(&[1e16, 0.5]));
        assert_eq!(b, &f64s(&[2.0, 7.0]));
    }
}

#[test]
fn a_rank_calling_another_collective_is_named_on_every_rank() {
    let out = ranks(2, 10 * SECOND, |r, c, rz| {
        c.join(rz).unwrap();
        let e = if r == 0 {
            c.all_reduce(f64s(&[1.0; 4]), DType::F64, RedOp::Sum)
        } else {
            c.broadcast(vec![], 4, DType::F64, 0)
        }
        .unwrap_err();
        // The failure stays: the next call and the watch report it.
        let again = c
            .all_reduce(f64s(&[1.0]), DType::F64, RedOp::Sum)
            .unwrap_err();
        assert_eq!(again, e);
        assert_eq!(c.async_state(), INVALID_USAGE);
        e
    });
    for (r, e) in out.iter().enumerate() {
        assert_eq!(e.code, INVALID_USAGE, "{e:?}");
        assert!(
            e.message
                .starts_with(&format!("stand-in NCCL, rank {r} of 2: ")),
            "{e:?}"
        );
        assert!(
            e.message.contains(
                "rank 1 called ncclBroadcast from rank 0 of 4 f64 (collective 1) where rank 0 \
                 called ncclAllReduce (sum) of 4 f64 (collective 1)"
            ),
            "{e:?}"
        );
    }
    assert!(out[1].message.ends_with("(reported by rank 0)"));
}

#[test]
fn a_rank_that_never_joins_is_named_when_the_time_is_up() {
    let t0 = Instant::now();
    let out = ranks(3, Duration::from_millis(300), |r, c, rz| match r {
        2 => Ok(()),
        _ => c.join(rz),
    });
    assert!(t0.elapsed() < 5 * SECOND, "{:?}", t0.elapsed());
    let e0 = out[0].clone().unwrap_err();
    assert_eq!(e0.code, TIMEOUT);
    assert!(
        e0.message.contains("rank 2 did not join within 0.3 s"),
        "{e0:?}"
    );
    // The rank that joined hears why the others cannot go on.
    let e1 = out[1].clone().unwrap_err();
    assert_eq!(e1.code, TIMEOUT);
    assert!(e1.message.contains("rank 2 did not join"), "{e1:?}");
    assert!(e1.message.contains("reported by rank 0"), "{e1:?}");
}

#[test]
fn a_stalled_rank_is_named_after_the_timeout_and_hears_it_later() {
    let out = ranks(2, Duration::from_millis(400), |r, c, rz| {
        c.join(rz).unwrap();
        if r == 1 {
            std::thread::sleep(Duration::from_millis(1200));
        }
        let t0 = Instant::now();
        let e = c
            .all_reduce(f64s(&[1.0]), DType::F64, RedOp::Sum)
            .unwrap_err();
        (e, t0.elapsed())
    });
    let (e0, dt) = &out[0];
    assert_eq!(e0.code, TIMEOUT, "{e0:?}");
    assert!(
        e0.message.contains("rank 1 did not answer within 0.4 s"),
        "{e0:?}"
    );
    assert!(*dt < 3 * SECOND, "{dt:?}");
    let (e1, dt) = &out[1];
    assert_eq!(e1.code, TIMEOUT, "{e1:?}");
    assert!(e1.message.contains("rank 1 did not answer"), "{e1:?}");
    assert!(*dt < SECOND, "rank 1 read rank 0's error at once: {dt:?}");
}

#[test]
fn abort_ends_a_join_at_once() {
    let rz = id::make().unwrap();
    let c = Arc::new(Comm::new(0, 2, false, 60 * SECOND));
    let joining = c.clone();
    let t = std::thread::spawn(move || joining.join(rz));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.async_state(), IN_PROGRESS);
    let t0 = Instant::now();
    c.close();
    assert!(t.join().unwrap().is_err());
    assert!(t0.elapsed() < SECOND, "{:?}", t0.elapsed());
    // A peer blocked waiting for rank 0's go-ahead is released by abort too.
    let rz = id::make().unwrap();
    let c = Arc::new(Comm::new(1, 3, false, 60 * SECOND));
    let joining = c.clone();
    let root = Comm::new(0, 3, false, 60 * SECOND);
    let r = std::thread::spawn(move || root.join(rz));
    let t = std::thread::spawn(move || joining.join(rz));
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    c.close();
    assert!(t.join().unwrap().is_err());
    assert!(t0.elapsed() < SECOND, "{:?}", t0.elapsed());
    drop(r);
}

#[test]
fn a_peer_gone_between_collectives_is_seen_by_the_watch() {
    let out = ranks(2, 10 * SECOND, |r, c, rz| {
        c.join(rz).unwrap();
        c.all_reduce(f64s(&[1.0]), DType::F64, RedOp::Sum).unwrap();
        if r == 1 {
            c.close();
            return None;
        }
        let t0 = Instant::now();
        while c.async_state() == SUCCESS && t0.elapsed() < 5 * SECOND {
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = c
            .all_reduce(f64s(&[1.0]), DType::F64, RedOp::Sum)
            .unwrap_err();
        Some((c.async_state(), e, c.last_error()))
    });
    let (state, e, last) = out[0].clone().unwrap();
    assert_eq!(state, REMOTE_ERROR);
    assert_eq!(e.code, REMOTE_ERROR);
    assert!(
        last.contains("rank 1 closed its connection between collectives"),
        "{last}"
    );
}

#[test]
fn calls_out_of_order_are_refused_and_leave_the_communicator_as_it_was() {
    let c = Comm::new(0, 1, true, SECOND);
    let e = c
        .all_reduce(f64s(&[1.0]), DType::F64, RedOp::Sum)
        .unwrap_err();
    assert_eq!(e.code, INVALID_USAGE);
    assert!(e.message.contains("still joining"), "{e:?}");
    assert_eq!(c.async_state(), IN_PROGRESS);
    c.join(id::make().unwrap()).unwrap();
    let got = c.all_reduce(f64s(&[2.5]), DType::F64, RedOp::Sum).unwrap();
    assert_eq!(got, f64s(&[2.5]));
    c.begin_finalize().unwrap();
    c.finalize().unwrap();
    let e = c.broadcast(vec![], 1, DType::F64, 0).unwrap_err();
    assert!(e.message.contains("was finalized"), "{e:?}");
    assert_eq!(c.async_state(), SUCCESS);
    // Rank 0 joins where the id was made, once.
    let rz = id::make().unwrap();
    assert!(id::take_listener(&rz).is_some());
    let e = Comm::new(0, 1, true, SECOND).join(rz).unwrap_err();
    assert!(
        e.message.contains("process that called ncclGetUniqueId"),
        "{e:?}"
    );
}
