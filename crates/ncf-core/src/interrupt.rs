//! SIGINT, SIGTERM and SIGHUP, handled alike by every tool: what a run was writing when a signal
//! ends it (temp files, its output locks) is removed, a line on stderr says what was left, and
//! the process then ends by the signal (so a shell sees 130/143/129 and stops its loop). A run
//! that can stop cleanly (ncf-train: at the next step, with a checkpoint) takes the first
//! signal itself ([`stop_gracefully`]); a second one ends it at once the same way, saying where
//! the last checkpoint is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Paths to remove if a signal ends the process, by registration id.
static REMOVE: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// Held while an output is moved into place or a temp file is created: a signal waits for the
/// renames to finish, so it never ends the process between moving the old version aside and
/// moving the new one in, nor while a temp file it must remove is being created.
static RENAMING: Mutex<()> = Mutex::new(());
/// The run's own handling of the first signal, if any.
static GRACEFUL: Mutex<Option<Graceful>> = Mutex::new(None);
static INSTALLED: OnceLock<()> = OnceLock::new();

struct Graceful {
    flag: Arc<AtomicBool>,
    /// What a second signal leaves behind, for its message ("; the last checkpoint …").
    left: Box<dyn Fn() -> String + Send>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A path removed if a signal ends the process before this guard is dropped (dropping it
/// removes the registration, not the path).
#[derive(Debug)]
pub struct RemoveOnSignal(u64);

/// Remove `path` (a file or a directory) if a signal ends the process while the returned guard
/// lives: a temp file being written, a lock file held for the run.
pub fn remove_on_signal(path: &Path) -> RemoveOnSignal {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock(&REMOVE).push((id, path.to_path_buf()));
    RemoveOnSignal(id)
}

/// Create `path` with `create` and register it with [`remove_on_signal`], both under the
/// [`RENAMING`] lock that a signal ending the process takes first and never releases: so the
/// signal removes the path if it was created, and it cannot be created after the removal (a
/// temp file left behind when a second signal lands while a checkpoint is being started).
pub fn create_removed_on_signal<T>(
    path: &Path,
    create: impl FnOnce(&Path) -> std::io::Result<T>,
) -> (RemoveOnSignal, std::io::Result<T>) {
    let _hold = renaming();
    let guard = remove_on_signal(path);
    (guard, create(path))
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        lock(&REMOVE).retain(|(id, _)| *id != self.0);
    }
}

/// Hold while moving outputs into place (see [`RENAMING`]).
pub fn renaming() -> MutexGuard<'static, ()> {
    lock(&RENAMING)
}

/// The first SIGINT/SIGTERM/SIGHUP raises `flag` (the run stops at its next safe point) with a
/// note on stderr; a second ends the process at once, and `left` says what it leaves (e.g.
/// where the last checkpoint is). Needs [`install`] (every tool's `main` calls it).
pub fn stop_gracefully(flag: Arc<AtomicBool>, left: impl Fn() -> String + Send + 'static) {
    *lock(&GRACEFUL) = Some(Graceful {
        flag,
        left: Box::new(left),
    });
}

fn name_of(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// A line on stderr that never fails the caller (after SIGHUP the terminal may be gone), in one
/// write: the lines of ranks that share a stderr (mpirun's) do not cut into each other.
pub fn note(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Handle SIGINT, SIGTERM and SIGHUP for `tool` from now on (a thread waits for them). Once per
/// process; later calls do nothing. Where handlers cannot be installed, the signals keep their
/// default action.
pub fn install(tool: &'static str) {
    if INSTALLED.set(()).is_err() {
        return;
    }
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("ncf-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if first_for_the_run(tool, sig) {
                    continue;
                }
                end_by(tool, sig);
            }
        });
    drop(spawned);
}

/// A first signal for a run that stops by itself: raise its flag and say so.
fn first_for_the_run(tool: &str, sig: i32) -> bool {
    let g = lock(&GRACEFUL);
    match g.as_ref() {
        Some(g) if !g.flag.swap(true, Ordering::SeqCst) => {
            note(&format!(
                "{tool}: {}: stopping after this step with a checkpoint (a second signal stops \
                 at once, without one)",
                name_of(sig)
            ));
            true
        }
        _ => false,
    }
}

/// Remove what the run was writing, say what is left, and end the process by `sig`.
fn end_by(tool: &str, sig: i32) -> ! {
    let left = lock(&GRACEFUL)
        .as_ref()
        .map(|g| (g.left)())
        .unwrap_or_default();
    // Never between the two renames of a replacement; never released (the process ends).
    let hold = renaming();
    std::mem::forget(hold);
    let paths: Vec<PathBuf> = lock(&REMOVE).iter().map(|(_, p)| p.clone()).collect();
    for p in paths {
        let _ = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => Ok(()),
        };
    }
    let left = if left.is_empty() {
        "; what it was writing was not written (previous versions are left as they were)"
            .to_string()
    } else {
        left
    };
    note(&format!("{tool}: stopped by {}{left}", name_of(sig)));
    let _ = signal_hook::low_level::emulate_default_handler(sig);
    std::process::exit(128 + sig);
}
