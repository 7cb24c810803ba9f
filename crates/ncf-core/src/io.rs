//! Files in and out: `-` means stdin/stdout, and every output is written atomically (a temp
//! file or directory beside the target, fsync, rename), so a crash never leaves half a file.
//! An output is claimed for a whole run ([`claim_output`]: a lock beside it, and `--force`
//! replacing only what ncf wrote).

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// True for the path `-`, which the tools read as stdin or write as stdout.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Read a whole file (or stdin for `-`).
pub fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if is_stdio(path) {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("<stdin>", e))?;
    } else {
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(buf)
}

/// The name of the output `target` (its last component), or a usage error for a path that has
/// none (`.`, `..`, `/`): such an output cannot be replaced by a rename.
fn output_name(target: &Path) -> Result<String> {
    match target.file_name() {
        Some(n) => Ok(n.to_string_lossy().into_owned()),
        None => Err(Error::usage(format!(
            "`{}`: name the output (e.g. `-o NAME` or `-o ../NAME`), not the directory it would \
             go in",
            target.display()
        ))),
    }
}

/// What a run leaves beside an output while it writes it: `.NAME.tmp-PID` (the new version
/// being written) and `.NAME.old-PID` (the previous one moved aside at the rename).
const SIDE_KINDS: [&str; 2] = ["tmp", "old"];

/// `.NAME.KIND-PID` beside `target`, for this process ([`SIDE_KINDS`]).
fn side_name(target: &Path, kind: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{kind}-{}", std::process::id()))
}

fn temp_name(target: &Path) -> PathBuf {
    side_name(target, "tmp")
}

/// True when a process `pid` exists (ours to signal or not).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove what runs that died while writing `target` left beside it: `.NAME.tmp-PID` (a half
/// written file or directory) and `.NAME.old-PID` (the previous version moved aside), for every
/// PID that is not a live process. Returns the paths removed. Best effort: a failure to list
/// or remove leaves the entry and is not an error (it never held the user's data).
pub fn remove_stale_temps(target: &Path) -> Vec<PathBuf> {
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return vec![];
    };
    let Ok(entries) = fs::read_dir(parent_of(target)) else {
        return vec![];
    };
    let mut removed = vec![];
    for e in entries.flatten() {
        let entry = e.file_name().to_string_lossy().into_owned();
        let pid = SIDE_KINDS.iter().find_map(|kind| {
            let rest = entry.strip_prefix(&format!(".{name}.{kind}-"))?;
            rest.parse::<u32>().ok()
        });
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = e.path();
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The directory `target` is in (`.` for a bare name).
fn parent_of(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The path an output really is: `target` with a final symbolic link followed (every hop), so
/// that writing to a link updates what it points to and the link stays a link (as a shell's `>`
/// does). A link whose target's directory does not exist is refused, naming both.
pub fn resolve_output(target: &Path) -> Result<PathBuf> {
    let mut p = target.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).map_err(|e| Error::io(&p, e))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ if p != target && !parent_of(&p).is_dir() => {
                return Err(Error::usage(format!(
                    "{}: a symbolic link to {}, whose directory {} does not exist: create that \
                     directory, or remove the link and run again",
                    target.display(),
                    p.display(),
                    parent_of(&p).display()
                )))
            }
            _ => return Ok(p),
        }
    }
    Err(Error::usage(format!(
        "{}: too many levels of symbolic links",
        target.display()
    )))
}

/// Refuse an output that would put files inside a dataset directory (every tool refuses a
/// dataset holding files ncf-prep and ncf-negsample did not write, so it would ruin it): a file
/// or a new directory whose parent (or any directory above) is a dataset, or a directory written
/// into (a checkpoint directory) that is one.
fn refuse_inside_dataset(target: &Path, kind: &Output) -> Result<()> {
    let written_into = kind.dir && kind.reused;
    let receiving = if written_into {
        target
    } else {
        parent_of(target)
    };
    // The nearest directory that exists, as an absolute path.
    let Some(existing) = receiving.ancestors().find(|a| {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        a.is_dir()
    }) else {
        return Ok(());
    };
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    let Ok(abs) = fs::canonicalize(existing) else {
        return Ok(());
    };
    let Some(ds) = abs
        .ancestors()
        .find(|a| crate::data::dataset::looks_like_dataset(a))
    else {
        return Ok(());
    };
    let t = target.display();
    let beside = ds.parent().unwrap_or(ds).join(if written_into {
        kind.example.to_string()
    } else {
        output_name(target)?
    });
    if written_into && fs::canonicalize(target).ok().as_deref() == Some(ds) {
        return Err(Error::usage(format!(
            "{t}: is a dataset directory; give the {} a directory of its own (e.g. {}): files \
             written there would make every tool refuse the dataset",
            kind.what,
            shown(&beside).display()
        )));
    }
    Err(Error::usage(format!(
        "{t}: inside the dataset directory {} (a dataset holds only the files ncf-prep and \
         ncf-negsample write, and every tool refuses one holding anything else): write the {} \
         outside it (e.g. {})",
        shown(ds).display(),
        kind.what,
        shown(&beside).display()
    )))
}

/// `path` (absolute) as the user would write it: relative to the current directory when it is
/// below it.
fn shown(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
}

/// An output claimed by this run: an exclusive `flock` on `.NAME.lock` beside it, which holds
/// the pid of the run. Dropping it removes the file and releases the lock; if the process dies,
/// the kernel releases the lock and the next run takes over the file.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: File,
    _remove: crate::interrupt::RemoveOnSignal,
}

impl OutputLock {
    /// Lock `target` for this run, creating the directory it is in when missing. Fails at once,
    /// naming the holder's pid, when another run holds it.
    pub fn acquire(target: &Path) -> Result<OutputLock> {
        let target = &resolve_output(target)?;
        let name = output_name(target)?;
        let path = target.with_file_name(format!(".{name}.lock"));
        let parent = parent_of(target);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        loop {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => return Err(held_by_another(target, &path)),
                    // A file system without locks (some network mounts): run unlocked.
                    Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS) => {}
                    _ => return Err(Error::io(&path, e)),
                }
            }
            // The previous holder removes the file when it is done; if it did so after we opened
            // it, our lock is on a file nobody else will open: take the one at `path` instead.
            let ours = file.metadata().map(|m| (m.dev(), m.ino())).ok();
            if fs::metadata(&path).map(|m| (m.dev(), m.ino())).ok() != ours {
                continue;
            }
            // Best effort: the pid is for the message of a run that finds the output taken.
            let _ = file
                .set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| writeln!(file, "{}", std::process::id()));
            let _remove = crate::interrupt::remove_on_signal(&path);
            return Ok(OutputLock {
                path,
                _file: file,
                _remove,
            });
        }
    }
}

/// The error for `target` whose lock file `lock` another run holds.
fn held_by_another(target: &Path, lock: &Path) -> Error {
    let pid = fs::read_to_string(lock)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let who = match pid {
        Some(p) if p == std::process::id() => {
            return Error::usage(format!(
                "{}: given twice as an output of this run (the lock {} is held already)",
                target.display(),
                lock.display()
            ))
        }
        Some(p) => format!("pid {p}"),
        None => "pid unknown".to_string(),
    };
    Error::usage(format!(
        "{}: in use by another run ({who}, holding {}): wait for it to end, or write to another \
         path",
        target.display(),
        lock.display()
    ))
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still locked, so no other run can be holding this file.
        let _ = fs::remove_file(&self.path);
    }
}

/// Why an existing path is not an output ncf wrote (so it must not be replaced), or `Ok`.
pub type Recognise = fn(&Path) -> std::result::Result<(), String>;

/// A kind of output a tool writes: what it is called, whether it is a directory, and how an
/// existing one is recognised as ncf's own (`--force` replaces nothing else).
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// "dataset directory", "model file", ...
    pub what: &'static str,
    /// A name for one, for messages (`model.safetensors`).
    pub example: &'static str,
    pub dir: bool,
    /// Written into rather than replaced (a checkpoint directory): an existing one is expected,
    /// and `ours` checks what ncf would overwrite inside it.
    pub reused: bool,
    pub ours: Recognise,
}

/// Claim `target` for this run, before any work: lock it ([`OutputLock`]), refuse a directory
/// where a file is written (and the reverse), refuse an existing output unless `force` (or
/// `kind.reused`), and one ncf did not write even then. Hold the lock until the run ends.
pub fn claim_output(target: &Path, kind: &Output, force: bool) -> Result<OutputLock> {
    let resolved = resolve_output(target)?;
    output_name(&resolved)?;
    refuse_inside_dataset(&resolved, kind)?;
    let lock = OutputLock::acquire(&resolved)?;
    check_replaceable(target, kind, force)?;
    Ok(lock)
}

/// The checks of [`claim_output`] after the lock: may `target` be written as a `kind`?
pub fn check_replaceable(target: &Path, kind: &Output, force: bool) -> Result<()> {
    let t = target.display();
    let target = &resolve_output(target)?;
    output_name(target)?;
    let Ok(meta) = fs::metadata(target) else {
        return Ok(());
    };
    match (kind.dir, meta.is_dir()) {
        (false, true) => {
            return Err(Error::usage(format!(
                "{t}: is a directory; -o names the {} to write (e.g. {})",
                kind.what,
                target.join(kind.example).display()
            )))
        }
        (true, false) => {
            return Err(Error::usage(format!(
                "{t}: is a file, not a {} (give a new path, or move the file away)",
                kind.what
            )))
        }
        _ => {}
    }
    if !force && !kind.reused {
        return Err(Error::usage(format!(
            "{t}: output already exists (use --force to replace it)"
        )));
    }
    (kind.ours)(target).map_err(|why| {
        let rule = match (kind.dir, kind.reused) {
            // Appended to, not replaced (a --log file): --force plays no part.
            (false, true) => "so",
            _ => "--force replaces only what ncf wrote, so",
        };
        Error::usage(format!(
            "{t}: {why}; {rule} it is left as it is: move it away or choose another output"
        ))
    })
}

fn sync_parent(target: &Path) {
    if let Ok(d) = File::open(parent_of(target)) {
        let _ = d.sync_all();
    }
}

/// True when `e` says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
        || e.to_string().contains("No space left on device")
}

/// Say plainly that the disk filled up while `target` was written and that the previous
/// `target` (if any) is intact; other errors pass unchanged.
pub fn explain_disk_full(err: Error, target: &Path) -> Error {
    let full = match &err {
        Error::Io { error, .. } => is_disk_full(error),
        Error::Parse { what, .. } => what.contains("No space left on device"),
        Error::Invalid(m) | Error::Usage(m) => m.contains("No space left on device"),
    };
    if !full {
        return err;
    }
    let previous = if target.exists() {
        "the previous version is left intact"
    } else {
        "nothing was written"
    };
    Error::io(
        target,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "no space left on device while writing it ({previous}; free some space and \
                 run again)"
            ),
        ),
    )
}

/// A file being written that can be flushed to the disk: `File`, or a test double.
trait SyncFile: Write {
    fn sync(&mut self) -> std::io::Result<()>;
}

impl SyncFile for File {
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_all()
    }
}

/// Write `path` atomically: `fill` writes into a temp file beside it, which is fsynced and
/// renamed over `path` only when `fill` succeeds. On error the temp file is removed and any
/// previous `path` is left untouched; a full disk is reported as such ([`explain_disk_full`]).
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<()>,
{
    write_atomic_via(path, |p: &Path| File::create(p), fill)
}

fn write_atomic_via<S: SyncFile, F>(
    path: &Path,
    create: impl FnOnce(&Path) -> std::io::Result<S>,
    fill: F,
) -> Result<()>
where
    F: FnOnce(&mut BufWriter<S>) -> Result<()>,
{
    let path = &resolve_output(path)?;
    remove_stale_temps(path);
    let tmp = temp_name(path);
    let (_remove, created) = crate::interrupt::create_removed_on_signal(&tmp, create);
    let result = (|| {
        let f = created.map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let mut f = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.sync().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        let _renaming = crate::interrupt::renaming();
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    } else {
        sync_parent(path);
    }
    result.map_err(|e| explain_disk_full(e, path))
}

/// A directory being written: files go into a hidden temp directory beside the target, which is
/// renamed into place by [`AtomicDir::commit`]. Dropped without commit, it is removed.
#[derive(Debug)]
pub struct AtomicDir {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
    kind: Output,
    force: bool,
    _remove: crate::interrupt::RemoveOnSignal,
}

impl AtomicDir {
    /// Start writing `target`, a `kind` of directory. Refuses an existing target unless `force`,
    /// and one that `kind` does not recognise as ncf's even then ([`check_replaceable`]).
    pub fn new(target: &Path, kind: &Output, force: bool) -> Result<AtomicDir> {
        check_replaceable(target, kind, force)?;
        let target = &resolve_output(target)?;
        remove_stale_temps(target);
        let tmp = temp_name(target);
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        let (_remove, made) =
            crate::interrupt::create_removed_on_signal(&tmp, |p| fs::create_dir_all(p));
        made.map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicDir {
            target: target.to_path_buf(),
            tmp,
            committed: false,
            kind: *kind,
            force,
            _remove,
        })
    }

    /// Path of a file inside the temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Copy the files of an existing directory into this one (for updating a dataset in place):
    /// hard links where the file system allows (a dataset's files are never rewritten in place,
    /// only replaced, so sharing them is safe, and a 12 GB train table is not copied to replace
    /// its test negatives), else copies.
    pub fn copy_from(&self, dir: &Path, skip: &[&str]) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) || !entry.path().is_file() {
                continue;
            }
            let to = self.path(&name);
            if fs::hard_link(entry.path(), &to).is_err() {
                fs::copy(entry.path(), &to).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// fsync every file and move the directory into place (replacing the old one when forced).
    pub fn commit(self) -> Result<()> {
        let target = self.target.clone();
        self.commit_inner()
            .map_err(|e| explain_disk_full(e, &target))
    }

    fn commit_inner(mut self) -> Result<()> {
        for entry in fs::read_dir(&self.tmp).map_err(|e| Error::io(&self.tmp, e))? {
            let p = entry.map_err(|e| Error::io(&self.tmp, e))?.path();
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&p, e))?;
        }
        // A signal waits for the renames below: never the old version moved aside and the
        // new one not yet in place.
        let _renaming = crate::interrupt::renaming();
        if self.target.exists() {
            if !self.force {
                return Err(Error::usage(format!(
                    "{}: output appeared while writing",
                    self.target.display()
                )));
            }
            // Checked again: what is replaced now must still be ncf's.
            check_replaceable(&self.target, &self.kind, true)?;
            // One atomic swap where the file system has it: the target is never missing.
            if exchange(&self.tmp, &self.target).is_ok() {
                let _ = fs::remove_dir_all(&self.tmp);
                sync_parent(&self.target);
                self.committed = true;
                return Ok(());
            }
            // Else move the old one aside first so that a failure leaves one complete copy.
            let old = side_name(&self.target, "old");
            fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
            fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
            let _ = if old.is_dir() {
                fs::remove_dir_all(&old)
            } else {
                fs::remove_file(&old)
            };
        } else {
            fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        sync_parent(&self.target);
        self.committed = true;
        Ok(())
    }
}

/// Swap the directory entries `a` and `b` in one step (Linux `renameat2` with
/// `RENAME_EXCHANGE`); an error where the file system does not support it.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Stdout for data: a BrokenPipe error (`ncf-topk | head`) is reported as [`is_broken_pipe`] so
/// that binaries can exit 0 quietly.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<Error>(), Some(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Write bytes to stdout or a file (atomically).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdio(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)
            .and_then(|_| out.flush())
            .map_err(|e| Error::io("<stdout>", e))
    } else {
        write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, |w| w.write_all(b"one").map_err(|e| Error::io("x", e))).unwrap();
        let r = write_atomic(&p, |w| {
            w.write_all(b"two").unwrap();
            Err(Error::invalid("boom"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }

    /// A file on a disk that fills up after `room` bytes.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SyncFile for FullDisk {
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn disk_full_keeps_the_old_file_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.safetensors");
        write_atomic(&p, |w| w.write_all(b"old").map_err(|e| Error::io("x", e))).unwrap();
        // The temp file really exists (so its removal is tested) but writes go to a full disk.
        let create = |tmp: &Path| {
            File::create(tmp)?;
            Ok(FullDisk { room: 1000 })
        };
        let big = vec![7u8; 3 << 20];
        let err = write_atomic_via(&p, create, |w| {
            w.write_all(&big).map_err(|e| Error::io("tmp", e))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no space left on device"), "{err}");
        assert!(err.contains("previous version is left intact"), "{err}");
        assert!(err.contains("model.safetensors"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "temp file left");
        // A new file on a full disk: nothing appears.
        let q = d.path().join("new.bin");
        let err = write_atomic_via(&q, create, |w| {
            w.write_all(&big).map_err(|e| Error::io("tmp", e))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("nothing was written"), "{err}");
        assert!(!q.exists());
        // Other errors are not called a full disk.
        let e = explain_disk_full(Error::invalid("boom"), &p).to_string();
        assert_eq!(e, "boom");
    }

    /// A file that records whether it was synced.
    struct Recorder(std::rc::Rc<std::cell::Cell<bool>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SyncFile for Recorder {
        fn sync(&mut self) -> std::io::Result<()> {
            self.0.set(true);
            Ok(())
        }
    }

    #[test]
    fn the_temp_file_is_synced_before_the_rename() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let synced = std::rc::Rc::new(std::cell::Cell::new(false));
        let s2 = synced.clone();
        write_atomic_via(
            &p,
            |tmp| {
                File::create(tmp)?;
                Ok(Recorder(s2))
            },
            |w| {
                w.write_all(b"abc").map_err(|e| Error::io("tmp", e))?;
                assert!(!w.get_ref().0.get(), "synced before the data was written");
                Ok(())
            },
        )
        .unwrap();
        assert!(synced.get());
        assert!(p.exists());
    }

    /// A directory of files named `x` or `y`: what the tests below write.
    const XY: Output = Output {
        what: "test directory",
        example: "out",
        dir: true,
        reused: false,
        ours: |p| match fs::read_dir(p)
            .map_err(|e| e.to_string())?
            .flatten()
            .all(|e| matches!(e.file_name().to_str(), Some("x" | "y")))
        {
            true => Ok(()),
            false => Err("not ours".into()),
        },
    };

    #[test]
    fn atomic_dir_refuses_existing_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("out");
        {
            let a = AtomicDir::new(&t, &XY, false).unwrap();
            fs::write(a.path("x"), b"1").unwrap();
        } // dropped: nothing left
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        let a = AtomicDir::new(&t, &XY, false).unwrap();
        fs::write(a.path("x"), b"1").unwrap();
        a.commit().unwrap();
        assert!(AtomicDir::new(&t, &XY, false).is_err());
        let a = AtomicDir::new(&t, &XY, true).unwrap();
        fs::write(a.path("y"), b"2").unwrap();
        a.commit().unwrap();
        assert!(t.join("y").exists() && !t.join("x").exists());
        // --force replaces only what `ours` recognises, checked again at the commit
        fs::write(t.join("thesis.txt"), b"mine").unwrap();
        let e = AtomicDir::new(&t, &XY, true).unwrap_err().to_string();
        assert!(e.contains("not ours") && e.contains("out"), "{e}");
        fs::remove_file(t.join("thesis.txt")).unwrap();
        let a = AtomicDir::new(&t, &XY, true).unwrap();
        fs::write(t.join("thesis.txt"), b"mine").unwrap();
        assert!(a.commit().is_err());
        assert_eq!(fs::read(t.join("thesis.txt")).unwrap(), b"mine");
        let e = AtomicDir::new(Path::new("."), &XY, true).unwrap_err();
        assert!(e.to_string().contains("name the output"), "{e}");
    }

    #[test]
    fn temps_of_dead_runs_are_removed_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("ds");
        // A pid that is not running: one past the largest the kernel hands out.
        let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
            .map_or(4_194_304, |s| s.trim().parse().unwrap());
        let dead = max + 1;
        let live = std::process::id();
        for n in [format!(".ds.tmp-{dead}"), format!(".ds.old-{dead}")] {
            fs::create_dir_all(d.path().join(&n).join("sub")).unwrap();
        }
        fs::write(d.path().join(format!(".ds.tmp-{live}")), b"x").unwrap();
        for keep in [".ds.tmp-x", ".dss.tmp-1", "notes.txt"] {
            fs::write(d.path().join(keep), b"x").unwrap();
        }
        let mut gone = remove_stale_temps(&t);
        gone.sort();
        let want = [format!(".ds.old-{dead}"), format!(".ds.tmp-{dead}")];
        assert_eq!(gone, want.map(|n| d.path().join(n)));
        let mut left: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let live = format!(".ds.tmp-{live}");
        assert_eq!(left, [&live, ".ds.tmp-x", ".dss.tmp-1", "notes.txt"]);
    }

    #[test]
    fn a_lock_is_exclusive_and_removed_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("sub/m.st");
        let lock = OutputLock::acquire(&t).unwrap();
        let file = d.path().join("sub/.m.st.lock");
        let pid = std::process::id().to_string();
        assert_eq!(fs::read_to_string(&file).unwrap().trim(), pid);
        // Another open file description conflicts even in the same process.
        let e = OutputLock::acquire(&t).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
        drop(lock);
        assert!(!file.exists());
        let _again = OutputLock::acquire(&t).unwrap();
    }
}
