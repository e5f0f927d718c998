//! Leaf process ownership, on coord's side: how a leaf process is started and killed so that
//! nothing it starts outlives it, or coord (docs/harnesses.md, "Leaf processes never outlive
//! coord").
//!
//! A leaf starts under a supervisor ([`super::leaf_supervisor`], this same binary), as the
//! leader of a process group of its own. coord holds the write end of the supervisor's
//! lifeline pipe and the leaf's process group id in a [`ProcessGroupGuard`]: killing the guard
//! (leaf done, timeout, cancellation: its drop) SIGKILLs the group at once, then hangs up the
//! lifeline, on which the supervisor kills whatever left the group (a `setsid`, a double fork)
//! and exits. coord's death, by any signal, hangs up every lifeline the same way.
//!
//! Without a supervisor (a binary that is not coord's: unit tests), a leaf starts directly as
//! a group leader with a parent-death signal, as before the supervisor existed.
//!
//! It owns starting and killing only; it must not read or write a leaf's stdio.

use super::leaf_supervisor::{self, LIFELINE_FD, NOT_STARTED, STARTED, START_REPORT_FD, START_REPORT_LEN};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::AsyncReadExt;

/// The command that starts a leaf running `program`; the caller adds the leaf's arguments,
/// environment, working directory and stdio as for the program itself (they pass through the
/// supervisor untouched), then starts it with [`spawn_leaf`].
pub fn leaf_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    if !leaf_supervisor::enabled() {
        return tokio::process::Command::new(program);
    }
    let mut command = tokio::process::Command::new(leaf_supervisor::SUPERVISOR_EXE);
    command.arg0("coord").args(leaf_supervisor::supervisor_args(program.as_ref()));
    command
}

/// Starts a leaf made by [`leaf_command`]. Returns once the leaf itself has started (or
/// failed to: the same `io::Error` a direct spawn would give, `NotFound` for a missing
/// program). The child is the supervisor, whose exit status is the leaf's.
pub async fn spawn_leaf(
    command: &mut tokio::process::Command,
) -> io::Result<(tokio::process::Child, ProcessGroupGuard)> {
    if !leaf_supervisor::enabled() {
        own_process_group(command);
        command.kill_on_drop(true);
        let child = command.spawn()?;
        let group = ProcessGroupGuard { pgid: child.id().map(|p| p as i32), lifeline: None };
        return Ok((child, group));
    }
    let (lifeline_read, lifeline) = pipe()?;
    let (report, report_write) = pipe()?;
    let (lifeline_read, report_write) = (above_fixed_fds(lifeline_read)?, above_fixed_fds(report_write)?);
    let (lifeline_fd, report_fd) = (lifeline_read.as_raw_fd(), report_write.as_raw_fd());
    // The supervisor gets its group (so coord's own group's signals do not reach it); killing
    // it would stop it cleaning up, so dropping the child must not: the guard's hang-up does.
    command.process_group(0).kill_on_drop(false);
    // SAFETY: dup2 is async-signal-safe. Both sources are above the fixed descriptors, so
    // neither dup2 overwrites the other's source; dup2 leaves the copies open across exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(lifeline_fd, LIFELINE_FD) < 0 || libc::dup2(report_fd, START_REPORT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    // Only the supervisor may hold these now: the report ends when it closes its copy.
    drop((lifeline_read, report_write));
    // A failure here is one the leaf would have met too (its working directory, a descriptor
    // limit): `/proc/self/exe` was there when coord started.
    let mut child = spawned?;
    // Dropping this future from here on drops `lifeline`: the supervisor then kills the leaf.
    let mut report_bytes = [0u8; START_REPORT_LEN];
    let mut report = tokio::net::unix::pipe::Receiver::from_owned_fd(report)?;
    if let Err(e) = report.read_exact(&mut report_bytes).await {
        let _ = child.wait().await;
        return Err(io::Error::other(format!("the leaf supervisor ended before starting the leaf ({e})")));
    }
    let number = i32::from_ne_bytes(report_bytes[1..].try_into().expect("four bytes"));
    match report_bytes[0] {
        STARTED => Ok((child, ProcessGroupGuard { pgid: Some(number), lifeline: Some(lifeline) })),
        NOT_STARTED => {
            let _ = child.wait().await;
            Err(io::Error::from_raw_os_error(number))
        }
        tag => Err(io::Error::other(format!("the leaf supervisor sent an unknown start report ({tag})"))),
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors this function then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec copy of `fd` numbered above the supervisor's fixed descriptors, so that
/// setting those up in the child cannot overwrite it first (or be overwritten by stdio).
fn above_fixed_fds(fd: OwnedFd) -> io::Result<OwnedFd> {
    let lowest = LIFELINE_FD.max(START_REPORT_FD) + 1;
    if fd.as_raw_fd() >= lowest {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor this function then owns.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Without a supervisor: the leaf leads a new process group, so a timeout or cancellation can
/// kill its whole tree, and gets a parent-death signal, so a coord killed outright does not
/// leave it running (its own children still can: the supervisor is what catches those).
fn own_process_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Kills the leaf's process group, and has its supervisor kill every other descendant, on
/// [`ProcessGroupGuard::kill`] or drop.
pub struct ProcessGroupGuard {
    pgid: Option<i32>,
    /// coord's end of the supervisor's lifeline; closing it is the supervisor's cue.
    lifeline: Option<OwnedFd>,
}

impl ProcessGroupGuard {
    /// Sends SIGKILL to every process in the leaf's group, then hangs up on the supervisor,
    /// which kills the rest (processes that left the group) and exits as the leaf did.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
        self.lifeline.take();
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn kill_group(pgid: i32) {
    if pgid > 0 {
        // A negative pid addresses the whole group; ESRCH (already gone) is fine.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}
