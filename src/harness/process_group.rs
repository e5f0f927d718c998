//! Process-group ownership: a leaf process is started as the leader of its own group, and the
//! whole group is killed when the leaf ends, times out or is cancelled, so no grandchild
//! outlives it.

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
