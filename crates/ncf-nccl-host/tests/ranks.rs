//! Rank processes that open the stand-in through ncf's own NCCL loader (`ncf_cuda::nccl::ffi`:
//! `$NCCL_HOME/lib/libnccl.so.2`, a link to the built library) and call it through ncf's
//! wrapper, as `Ranks` does: non-blocking init, the collectives self-test for 1, 2 and 3 ranks,
//! finalize and destroy; a killed rank, a stalled one and the watch; abort.
//!
//! Each rank is this test executable run again with `child --exact` and the scenario in its
//! environment (ncf's loader keeps the library for the life of a process).

use ncf_cuda::nccl::ffi::{self, Code, Nccl, Op, RawComm};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = "NCF_NCCL_HOST_TEST_SCENARIO";
const RANK: &str = "NCF_NCCL_HOST_TEST_RANK";
const WORLD: &str = "NCF_NCCL_HOST_TEST_WORLD";
const DIR: &str = "NCF_NCCL_HOST_TEST_DIR";
const REMOTE_ERROR: Code = Code(6);
const TIMEOUT: Code = Code(8);

// ---------------------------------------------------------------------------------------------
// The parent side: rank processes in a temporary directory.

struct Ranks {
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Ranks {
    /// `world` rank processes running `scenario`, with the stand-in as `$NCCL_HOME` and first
    /// on the loader's path (a real libnccl installed here must not answer instead).
    fn start(scenario: &str, world: usize, env: &[(&str, &str)]) -> Ranks {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("nccl");
        let lib_dir = ncf_nccl_host::nccl_home(&home).unwrap();
        let path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        let children = (0..world)
            .map(|r| {
                let mut cmd = child_command(scenario, dir.path(), r);
                cmd.env(WORLD, world.to_string())
                    .env("NCCL_HOME", &home)
                    .env("LD_LIBRARY_PATH", format!("{}:{path}", lib_dir.display()));
                for (k, v) in env {
                    cmd.env(k, v);
                }
                Some(cmd.spawn().unwrap())
            })
            .collect();
        Ranks { dir, children }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn output(&self, r: usize) -> String {
        let read =
            |s: &str| std::fs::read_to_string(self.path(&format!("{s}.{r}"))).unwrap_or_default();
        format!(
            "--- rank {r} stdout\n{}--- rank {r} stderr\n{}",
            read("out"),
            read("err")
        )
    }

    fn all_output(&self) -> String {
        (0..self.children.len()).map(|r| self.output(r)).collect()
    }

    /// Wait for `name` to appear; a rank that ends meanwhile fails the test.
    fn wait_file(&mut self, name: &str) {
        let t0 = Instant::now();
        while !self.path(name).exists() {
            for r in 0..self.children.len() {
                if let Some(c) = self.children[r].as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        panic!("rank {r} ended ({st}) before {name}\n{}", self.all_output());
                    }
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no {name}\n{}",
                self.all_output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self, r: usize) {
        let mut c = self.children[r].take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Every rank still running must end successfully within 20 s; their outputs.
    fn finish(mut self) -> Vec<String> {
        let t0 = Instant::now();
        for r in 0..self.children.len() {
            let Some(mut c) = self.children[r].take() else {
                continue;
            };
            let st = loop {
                if let Some(st) = c.try_wait().unwrap() {
                    break st;
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    panic!("rank {r} still running after 20 s\n{}", self.all_output());
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            assert!(st.success(), "rank {r}: {st}\n{}", self.all_output());
        }
        (0..self.children.len()).map(|r| self.output(r)).collect()
    }
}

fn child_command(scenario: &str, dir: &Path, r: usize) -> Command {
    let file = |s: &str| std::fs::File::create(dir.join(format!("{s}.{r}"))).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["child", "--exact", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(RANK, r.to_string())
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(file("out"))
        .stderr(file("err"));
    cmd
}

#[test]
fn ncf_opens_the_stand_in_from_nccl_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("nccl");
    ncf_nccl_host::nccl_home(&home).unwrap();
    let out = child_command("loader", dir.path(), 0)
        .env("NCCL_HOME", &home)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join("err.0")).unwrap();
    assert!(out.success(), "{text}");
    println!("{text}");
}

#[test]
fn one_rank_passes_the_self_test() {
    let out = Ranks::start("self-test", 1, &[]).finish();
    println!("{}", out[0]);
}

#[test]
fn two_ranks_pass_the_self_test() {
    Ranks::start("self-test", 2, &[]).finish();
}

#[test]
fn three_ranks_pass_the_self_test() {
    let out = Ranks::start("self-test", 3, &[]).finish();
    assert!(
        out[2].contains("rank 2 of 3: self-test passed"),
        "{}",
        out[2]
    );
}

#[test]
fn a_killed_rank_fails_the_next_collective_of_every_other_rank_naming_it() {
    let mut ranks = Ranks::start("killed", 3, &[]);
    for r in 0..3 {
        ranks.wait_file(&format!("ready.{r}"));
    }
    ranks.kill(1);
    std::fs::write(ranks.path("go"), "").unwrap();
    for out in ranks.finish() {
        println!("{out}");
    }
}

#[test]
fn the_watch_sees_a_killed_rank_between_collectives() {
    let mut ranks = Ranks::start("watched", 2, &[]);
    for r in 0..2 {
        ranks.wait_file(&format!("ready.{r}"));
    }
    ranks.kill(1);
    std::fs::write(ranks.path("go"), "").unwrap();
    println!("{}", ranks.finish()[0]);
}

#[test]
fn a_stalled_rank_is_named_after_the_timeout() {
    let out = Ranks::start("stalled", 2, &[(ncf_nccl_host::TIMEOUT_VAR, "2")]).finish();
    println!("{}", out.concat());
}

// ---------------------------------------------------------------------------------------------
// The rank side.

/// A rank process's entry point (a no-op in the parent's test run).
#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let dir = PathBuf::from(var(DIR));
    if scenario == "loader" {
        return loader();
    }
    let (rank, world) = (var(RANK).parse().unwrap(), var(WORLD).parse().unwrap());
    let me = Rank::join(dir, rank, world);
    match scenario.as_str() {
        "self-test" => me.self_test(),
        "killed" => me.killed(),
        "watched" => me.watched(),
        "stalled" => me.stalled(),
        s => panic!("no scenario {s}"),
    }
}

fn loader() {
    let lib = ffi::nccl().unwrap_or_else(|e| panic!("ncf's loader: {e}"));
    eprintln!(
        "ncf loaded NCCL {} (code {}) from {}",
        lib.version_string(),
        lib.version,
        lib.path
    );
    let home = PathBuf::from(std::env::var("NCCL_HOME").unwrap());
    if lib.version != ncf_nccl_host::VERSION && !lib.path.starts_with(home.to_str().unwrap()) {
        eprintln!("skipped: a libnccl on the loader's path comes before $NCCL_HOME here");
        return;
    }
    assert_eq!(lib.version, ncf_nccl_host::VERSION);
    assert_eq!(lib.version_string(), "9.99.1");
    assert_eq!(PathBuf::from(&lib.path), home.join("lib/libnccl.so.2"));
    assert!(ffi::present());
}

struct Rank {
    lib: &'static Nccl,
    comm: RawComm,
    rank: usize,
    world: usize,
    dir: PathBuf,
}

fn elapsed_under(t0: Instant, limit: Duration, what: &str) {
    assert!(t0.elapsed() < limit, "{what} took {:?}", t0.elapsed());
}

impl Rank {
    /// ncf's join: rank 0 makes the id and shares it (here through a file), every rank inits
    /// non-blocking and polls the communicator's state until every rank has joined.
    fn join(dir: PathBuf, rank: usize, world: usize) -> Rank {
        let lib = ffi::nccl().unwrap();
        assert_eq!(
            lib.version,
            ncf_nccl_host::VERSION,
            "not the stand-in: {}",
            lib.path
        );
        let id_file = dir.join("id");
        let id = if rank == 0 {
            lib.unique_id().unwrap()
        } else {
            let t0 = Instant::now();
            while !id_file.exists() {
                elapsed_under(t0, Duration::from_secs(10), "waiting for rank 0's id");
                std::thread::sleep(Duration::from_millis(5));
            }
            let b = std::fs::read(&id_file).unwrap();
            let mut id = cudarc::nccl::sys::ncclUniqueId { internal: [0; 128] };
            for (d, s) in id.internal.iter_mut().zip(b) {
                *d = s as std::ffi::c_char;
            }
            id
        };
        // SAFETY (of the wrapper's contract): the stand-in needs no CUDA context.
        let (comm, code, blocking) = unsafe { lib.init(world, id, rank, false) };
        assert!(!blocking, "ncf's wrapper found no ncclCommInitRankConfig");
        assert_eq!(
            code,
            Code::IN_PROGRESS,
            "{}",
            lib.describe(code, Some(comm))
        );
        let me = Rank {
            lib,
            comm,
            rank,
            world,
            dir,
        };
        if rank == 0 {
            // Nobody has the id yet: nobody can have joined.
            if world > 1 {
                assert_eq!(me.state(), Code::IN_PROGRESS);
            }
            let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
            std::fs::write(id_file.with_extension("tmp"), bytes).unwrap();
            std::fs::rename(id_file.with_extension("tmp"), &id_file).unwrap();
        }
        me.settle("init");
        me
    }

    fn state(&self) -> Code {
        // SAFETY: a live communicator.
        unsafe { self.lib.async_error(self.comm) }
    }

    /// Poll the state while it is in progress (as ncf's `Comm::settle`); it must end in success.
    fn settle(&self, what: &str) {
        let t0 = Instant::now();
        while self.state() == Code::IN_PROGRESS {
            elapsed_under(t0, Duration::from_secs(10), what);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            self.state(),
            Code::SUCCESS,
            "{what}: {}",
            self.describe(self.state())
        );
    }

    fn describe(&self, code: Code) -> String {
        self.lib.describe(code, Some(self.comm))
    }

    fn all_reduce<T: ffi::Elem>(&self, send: &[T], recv: &mut [T], op: Op) -> Code {
        assert!(recv.len() >= send.len());
        // SAFETY: host buffers of send.len() elements (the stand-in's "device" memory).
        unsafe {
            let (s, r) = (send.as_ptr() as u64, recv.as_mut_ptr() as u64);
            let null = std::ptr::null_mut();
            self.lib
                .all_reduce(s, r, send.len(), T::DTYPE, op, self.comm, null)
        }
    }

    fn broadcast<T: ffi::Elem>(&self, send: &[T], recv: &mut [T], root: usize) -> Code {
        // SAFETY: as all_reduce.
        unsafe {
            let (s, r) = (send.as_ptr() as u64, recv.as_mut_ptr() as u64);
            let null = std::ptr::null_mut();
            self.lib
                .broadcast(s, r, recv.len(), T::DTYPE, root, self.comm, null)
        }
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.dir.join(name), "").unwrap();
    }

    fn wait_for(&self, name: &str) {
        let t0 = Instant::now();
        while !self.dir.join(name).exists() {
            elapsed_under(t0, Duration::from_secs(15), &format!("waiting for {name}"));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn me(&self) -> String {
        format!("rank {} of {}", self.rank, self.world)
    }

    /// Finalize (non-blocking: in progress until every rank has finalized) and destroy.
    fn finish(self) {
        // SAFETY: a live communicator, not used after destroy.
        let code = unsafe { self.lib.finalize(self.comm) }.expect("ncclCommFinalize");
        assert!(
            code == Code::IN_PROGRESS || code == Code::SUCCESS,
            "{}",
            self.describe(code)
        );
        self.settle("finalize");
        // SAFETY: finalized; `self` is consumed.
        assert_eq!(unsafe { self.lib.destroy(self.comm) }, Code::SUCCESS);
    }

    /// After a failure: abort, which must return at once.
    fn abort(self) {
        let t0 = Instant::now();
        // SAFETY: a live communicator, not used afterwards.
        assert_eq!(unsafe { self.lib.abort(self.comm) }, Code::SUCCESS);
        elapsed_under(t0, Duration::from_millis(500), "ncclCommAbort");
    }

    /// `Ranks::self_test`'s collectives and values (crates/ncf-cuda/src/nccl/mod.rs), plus an
    /// in-place sum whose bits depend on the order of the ranks, and a broadcast from the last
    /// rank.
    fn self_test(self) {
        let n = 1027;
        let (f, d, u, b) = self_test_inputs(self.rank, n);
        let (mut fr, mut dr, mut ur, mut br) =
            (vec![0f32; n], vec![0f64; n], vec![0u64; n], vec![0f32; n]);
        for code in [
            self.all_reduce(&f, &mut fr, Op::Sum),
            self.all_reduce(&d, &mut dr, Op::Sum),
            self.all_reduce(&u, &mut ur, Op::Max),
            self.broadcast(&b, &mut br, 0),
        ] {
            assert_eq!(code, Code::SUCCESS, "{}", self.describe(code));
        }
        let (mut fe, mut de, mut ue, mut be) = self_test_inputs(0, n);
        for r in 1..self.world {
            let (fi, di, ui, _) = self_test_inputs(r, n);
            for i in 0..n {
                fe[i] += fi[i];
                de[i] += di[i];
                ue[i] = ue[i].max(ui[i]);
            }
        }
        be.truncate(n);
        assert_eq!(bits(&fr), bits(&fe), "{}: f32 sum", self.me());
        assert_eq!(dr, de, "{}: f64 sum", self.me());
        assert_eq!(ur, ue, "{}: u64 max", self.me());
        assert_eq!(bits(&br), bits(&be), "{}: broadcast", self.me());
        // In place; (1e16 + 1) - 1e16 = 0 only when added in rank order.
        let mine = [1e16, 1.0, -1e16][self.rank % 3];
        let mut x = vec![mine, mine * 0.5];
        let p = x.as_mut_ptr() as u64;
        // SAFETY: a host buffer of 2 f64, sent and received in place.
        let code = unsafe {
            self.lib
                .all_reduce(p, p, 2, 8, Op::Sum, self.comm, std::ptr::null_mut())
        };
        assert_eq!(code, Code::SUCCESS, "{}", self.describe(code));
        let (mut a, mut h) = (1e16f64, 0.5e16f64);
        for r in 1..self.world {
            let v = [1e16, 1.0, -1e16][r % 3];
            a += v;
            h += v * 0.5;
        }
        assert_eq!(x, vec![a, h], "{}: in-place sum", self.me());
        let last = self.world - 1;
        let src: Vec<u64> = (0..5).map(|i| (self.rank * 100 + i) as u64).collect();
        let mut got = vec![0u64; 5];
        let code = self.broadcast(&src, &mut got, last);
        assert_eq!(code, Code::SUCCESS, "{}", self.describe(code));
        assert_eq!(
            got,
            (0..5).map(|i| (last * 100 + i) as u64).collect::<Vec<_>>()
        );
        eprintln!("{}: self-test passed", self.me());
        self.finish();
    }

    /// Rank 1 is killed after one collective; the others' next one fails within seconds,
    /// naming it.
    fn killed(self) {
        let mut r = [0f32; 3];
        assert_eq!(
            self.all_reduce(&[1.0f32; 3], &mut r, Op::Sum),
            Code::SUCCESS
        );
        self.touch(&format!("ready.{}", self.rank));
        if self.rank == 1 {
            std::thread::sleep(Duration::from_secs(60));
            panic!("rank 1 was not killed");
        }
        self.wait_for("go");
        let t0 = Instant::now();
        let code = self.all_reduce(&[1.0f32; 3], &mut r, Op::Sum);
        elapsed_under(t0, Duration::from_secs(5), "the failing collective");
        assert_eq!(code, REMOTE_ERROR, "{}", self.describe(code));
        let why = self.describe(code);
        assert!(
            why.contains("rank 1 closed its connection during ncclAllReduce"),
            "{why}"
        );
        assert_eq!(self.state(), REMOTE_ERROR);
        eprintln!("{}: {why}", self.me());
        // Rank 0 stays until rank 2 has read the error it forwarded.
        if self.rank == 0 {
            self.wait_for("done.2");
        } else {
            self.touch("done.2");
        }
        self.abort();
    }

    /// Rank 1 is killed while no collective runs: rank 0's watch (`ncclCommGetAsyncError`, as
    /// `Ranks::wait` polls it) reports it; the next collective and finalize fail at once.
    fn watched(self) {
        let mut r = [0u64; 2];
        assert_eq!(self.all_reduce(&[1u64, 2], &mut r, Op::Max), Code::SUCCESS);
        self.touch(&format!("ready.{}", self.rank));
        if self.rank == 1 {
            std::thread::sleep(Duration::from_secs(60));
            panic!("rank 1 was not killed");
        }
        self.wait_for("go");
        let t0 = Instant::now();
        while self.state() == Code::SUCCESS {
            elapsed_under(t0, Duration::from_secs(5), "the watch");
            std::thread::sleep(Duration::from_millis(1));
        }
        let why = self.describe(self.state());
        assert_eq!(self.state(), REMOTE_ERROR, "{why}");
        assert!(
            why.contains("rank 1 closed its connection between collectives"),
            "{why}"
        );
        let t0 = Instant::now();
        assert_eq!(self.all_reduce(&[1u64, 2], &mut r, Op::Max), REMOTE_ERROR);
        // SAFETY: a live communicator.
        assert_eq!(unsafe { self.lib.finalize(self.comm) }, Some(REMOTE_ERROR));
        elapsed_under(
            t0,
            Duration::from_millis(100),
            "calls on a failed communicator",
        );
        eprintln!("{}: {why}", self.me());
        self.abort();
    }

    /// Rank 1 joins, then stalls 4 s before its collective: rank 0 gives up after
    /// NCF_NCCL_HOST_TIMEOUT (2 s) naming it, and rank 1 reads rank 0's error at once.
    fn stalled(self) {
        let mut r = [0f64; 4];
        if self.rank == 1 {
            std::thread::sleep(Duration::from_millis(4000));
        }
        let t0 = Instant::now();
        let code = self.all_reduce(&[1.0f64; 4], &mut r, Op::Sum);
        let dt = t0.elapsed();
        let why = self.describe(code);
        assert_eq!(code, TIMEOUT, "{why}");
        assert!(why.contains("rank 1 did not answer within 2 s"), "{why}");
        if self.rank == 0 {
            assert!(
                dt >= Duration::from_millis(1900) && dt < Duration::from_secs(4),
                "{dt:?}"
            );
            self.wait_for("done.1");
        } else {
            assert!(why.contains("reported by rank 0"), "{why}");
            assert!(dt < Duration::from_millis(500), "{dt:?}");
            self.touch("done.1");
        }
        eprintln!("{}: {why}", self.me());
        self.abort();
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `self_test_inputs` of crates/ncf-cuda/src/nccl/mod.rs (private there).
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
