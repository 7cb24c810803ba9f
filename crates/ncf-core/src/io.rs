//! Files in and out: `-` means stdin/stdout, and every output is written atomically (a temp
//! file or directory beside the target, fsync, rename), so a crash never leaves half a file.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
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

fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = format!(".{name}.tmp-{}", std::process::id());
    target.with_file_name(tmp)
}

fn sync_parent(target: &Path) {
    if let Some(parent) = target.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
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
    let tmp = temp_name(path);
    let result = (|| {
        let f = create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let mut f = w
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        f.sync().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
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
pub struct AtomicDir {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
    force: bool,
}

impl AtomicDir {
    /// Start writing `target`. Refuses an existing target unless `force`.
    pub fn new(target: &Path, force: bool) -> Result<AtomicDir> {
        if target.exists() && !force {
            return Err(Error::usage(format!(
                "{}: output already exists (use --force to replace it)",
                target.display()
            )));
        }
        let tmp = temp_name(target);
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicDir {
            target: target.to_path_buf(),
            tmp,
            committed: false,
            force,
        })
    }

    /// Path of a file inside the temp directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Copy the files of an existing directory into this one (for updating a dataset in place).
    pub fn copy_from(&self, dir: &Path, skip: &[&str]) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) || !entry.path().is_file() {
                continue;
            }
            fs::copy(entry.path(), self.path(&name)).map_err(|e| Error::io(entry.path(), e))?;
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
        if self.target.exists() {
            if !self.force {
                return Err(Error::usage(format!(
                    "{}: output appeared while writing",
                    self.target.display()
                )));
            }
            // Move the old one aside first so that a failure leaves one complete copy.
            let old = self.target.with_file_name(format!(
                ".{}.old-{}",
                self.target
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy(),
                std::process::id()
            ));
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

    #[test]
    fn atomic_dir_refuses_existing_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("out");
        {
            let a = AtomicDir::new(&t, false).unwrap();
            fs::write(a.path("x"), b"1").unwrap();
        } // dropped: nothing left
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        let a = AtomicDir::new(&t, false).unwrap();
        fs::write(a.path("x"), b"1").unwrap();
        a.commit().unwrap();
        assert!(AtomicDir::new(&t, false).is_err());
        let a = AtomicDir::new(&t, true).unwrap();
        fs::write(a.path("y"), b"2").unwrap();
        a.commit().unwrap();
        assert!(t.join("y").exists() && !t.join("x").exists());
    }
}
