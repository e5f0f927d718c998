//! Exclusive run locks: `flock` on `<coord dir>/locks/<name>.lock`, holding the holder's pid.
//!
//! Owns taking, reporting and releasing a lock. The kernel releases a `flock` when its holder
//! dies, so a dead holder never blocks anyone; its pid, left in the file, is reported as stale.
//! A lock is never waited for: a held lock is an answer (exit 75, a skipped fire), not a queue.
//! It must not create anything but the lock file: a refused run touches nothing else.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock `{name}` is held by {}; another run is in progress, nothing was done", holder(*.pid))]
    Held { name: String, path: PathBuf, pid: Option<u32> },
    #[error("`{0}` cannot name a lock: use letters, digits, `-`, `_` and `.` (not first)")]
    BadName(String),
    #[error("lock {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".into(),
    }
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The pid a dead holder left in the file, when the lock was taken over from one.
    pub stale_pid: Option<u32>,
}

/// True when `name` can be a lock's (and a pipeline's) file name and URL segment.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl RunLock {
    /// Takes `<dir>/<name>.lock` without waiting.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, LockError> {
        if !valid_name(name) {
            return Err(LockError::BadName(name.to_owned()));
        }
        let path = dir.join(format!("{name}.lock"));
        let io = |source| LockError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Never truncate on open: the file may be another holder's, naming its pid.
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // SAFETY: flock on a descriptor this function owns; it has no memory effects.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { name: name.to_owned(), path, pid: read_pid(&mut file) });
            }
            return Err(io(err));
        }
        // A clean release empties the file, so a pid here is one of a holder that died.
        let stale_pid = read_pid(&mut file).filter(|pid| *pid != std::process::id());
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunLock { file, path, stale_pid })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Empty the file while still holding the lock; closing the file releases it. The file
        // stays: removing it would race with a process that opened it and waits to lock it.
        let _ = self.file.set_len(0);
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "groom").unwrap();
        assert_eq!(first.stale_pid, None);
        let text = std::fs::read_to_string(dir.path().join("groom.lock")).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        match RunLock::acquire(dir.path(), "groom") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected a held lock, got {other:?}"),
        }
        drop(first);
        assert_eq!(std::fs::read_to_string(dir.path().join("groom.lock")).unwrap(), "");
        let again = RunLock::acquire(dir.path(), "groom").unwrap();
        assert_eq!(again.stale_pid, None);
    }

    #[test]
    fn a_dead_holders_pid_is_reported_as_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.lock"), "4194999\n").unwrap();
        let lock = RunLock::acquire(dir.path(), "x").unwrap();
        assert_eq!(lock.stale_pid, Some(4194999));
    }

    #[test]
    fn names_are_file_names() {
        for ok in ["groom", "groom-prs", "a.b_c"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(RunLock::acquire(dir.path(), "../x"), Err(LockError::BadName(_))));
    }
}
