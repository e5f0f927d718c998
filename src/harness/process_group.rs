//! Process-group ownership: a leaf process is started as the leader of its own group, and the
//! whole group is killed when the leaf ends, times out or is cancelled, so no grandchild
//! outlives it.

/// Makes `cmd` start as the leader of a new process group that dies with coord: the group so
/// a timeout or cancellation can kill the leaf's whole tree, and the parent-death signal so a
/// coord killed outright (kill -9) does not leave the leaf running and spending.
pub fn own_process_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Kills the process group on drop unless disarmed.
pub struct ProcessGroupGuard {
    pgid: Option<i32>,
}

impl ProcessGroupGuard {
    pub fn new(pid: Option<u32>) -> Self {
        ProcessGroupGuard { pgid: pid.map(|p| p as i32) }
    }

    /// Sends SIGKILL to every process in the group.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
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
