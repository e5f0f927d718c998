//! Leaf process ownership, on coord's side: how a leaf process is started and killed so that
//! nothing it starts outlives it, or coord (docs/harnesses.md, "Leaf processes never outlive
//! coord").
//!
//! A leaf starts under a supervisor ([`super::leaf_supervisor`], this same binary), as the
//! leader of a process group of its own. The supervisor is forked by coord's supervisor host
//! ([`super::supervisor_host`]); when the host cannot take a leaf (it could not start, or
//! died before accepting the leaf), the leaf starts the old way, under a supervisor of its own
//! started as `coord __leaf-supervisor`. coord holds the write end of the supervisor's
//! lifeline pipe and the leaf's process group id in a [`ProcessGroupGuard`]: killing the guard
//! (leaf done, timeout, cancellation: its drop) SIGKILLs the group at once, then hangs up the
//! lifeline, on which the supervisor kills whatever left the group (a `setsid`, a double fork)
//! and exits. coord's death, by any signal, hangs up every lifeline the same way.
//!
//! Without a supervisor (a binary that is not coord's: unit tests), a leaf starts directly as
//! a group leader with a parent-death signal, as before the supervisor existed.
//!
//! [`LeafCommand`] and [`LeafProcess`] are the harnesses' command and child: the same whichever
//! way the leaf started. It owns starting and killing only; it must not read or write a leaf's
//! stdio.

use super::leaf_supervisor::{self, EXITED, LIFELINE_FD, NOT_STARTED, STARTED, START_REPORT_FD, START_REPORT_LEN};
use super::supervisor_host::{self, StartRequest, ACCEPTED, HOST_SOCKET_FD};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// What a leaf runs, as the harnesses describe it. Its environment starts empty: a leaf
/// inherits nothing of coord's (`leaf_environment.rs`). Its stdout and stderr are always
/// piped to coord; its stdin is piped or `/dev/null`.
#[derive(Clone, Debug)]
pub struct LeafCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    stdin_piped: bool,
}

impl LeafCommand {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        LeafCommand {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin_piped: false,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets one variable; a later value for the same name replaces the earlier one.
    pub fn env(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        let name = name.as_ref().to_owned();
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (name, value) in vars {
            self.env(name, value);
        }
        self
    }

    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Pipes the leaf's stdin from coord ([`LeafProcess::stdin`]); otherwise it is /dev/null.
    pub fn stdin_piped(&mut self) -> &mut Self {
        self.stdin_piped = true;
        self
    }

    /// The same leaf as a `std` command, stdio left to the caller, started `through` another
    /// program first (the per-leaf supervisor) or not.
    fn std_command(&self, through: Option<(&str, [&OsStr; 3])>) -> std::process::Command {
        let mut command = match through {
            Some((exe, supervisor_args)) => {
                let mut command = std::process::Command::new(exe);
                std::os::unix::process::CommandExt::arg0(&mut command, "coord");
                command.args(supervisor_args);
                command
            }
            None => std::process::Command::new(&self.program),
        };
        command.args(&self.args).env_clear().envs(self.env.iter().map(|(n, v)| (n, v)));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// A started leaf: its stdio's coord ends, and its end (the [`ProcessGroupGuard`] kills it).
pub struct LeafProcess {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pid: u32,
    end: LeafEnd,
}

/// How coord learns a leaf's end: waiting for its child (the leaf itself, or its per-leaf
/// supervisor, whose exit status is the leaf's), or reading the status report of a supervisor
/// the host forked.
enum LeafEnd {
    Child(tokio::process::Child),
    Reported { report: pipe::Receiver, read: Vec<u8>, status: Option<ExitStatus> },
}

impl LeafProcess {
    /// The leaf's pid (and process group id).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the leaf's end. Cancel-safe, and may be called again once it returned.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.end {
            LeafEnd::Child(child) => child.wait().await,
            LeafEnd::Reported { report, read, status } => {
                if let Some(status) = status {
                    return Ok(*status);
                }
                let mut chunk = [0u8; START_REPORT_LEN];
                while read.len() < START_REPORT_LEN {
                    let n = report.read(&mut chunk[..START_REPORT_LEN - read.len()]).await?;
                    if n == 0 {
                        break;
                    }
                    read.extend_from_slice(&chunk[..n]);
                }
                // A supervisor that died without its report was killed, and its leaf with it
                // (the parent-death signal): as its own exit status said before the host.
                let raw = match read.split_first() {
                    Some((&EXITED, number)) if number.len() == 4 => {
                        i32::from_ne_bytes(number.try_into().expect("four bytes"))
                    }
                    _ => libc::SIGKILL,
                };
                Ok(*status.insert(ExitStatus::from_raw(raw)))
            }
        }
    }
}

/// The leaf's stdio: coord's ends, and the leaf's (given to the leaf, then dropped here so
/// that coord's reads end with the leaf's writes).
struct LeafStdio {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    leaf_ends: [OwnedFd; 3],
}

impl LeafStdio {
    fn new(stdin_piped: bool) -> io::Result<LeafStdio> {
        let (stdin, leaf_stdin) = if stdin_piped {
            let (read, write) = pipe_pair()?;
            (Some(write), read)
        } else {
            (None, OwnedFd::from(std::fs::File::open("/dev/null")?))
        };
        let (stdout, leaf_stdout) = pipe_pair()?;
        let (stderr, leaf_stderr) = pipe_pair()?;
        Ok(LeafStdio { stdin, stdout, stderr, leaf_ends: [leaf_stdin, leaf_stdout, leaf_stderr] })
    }

    /// The leaf's ends as `std` stdio, for a leaf (or supervisor) coord starts itself.
    fn set_on(&self, command: &mut std::process::Command) -> io::Result<()> {
        let [stdin, stdout, stderr] = &self.leaf_ends;
        command.stdin(Stdio::from(stdin.try_clone()?));
        command.stdout(Stdio::from(stdout.try_clone()?));
        command.stderr(Stdio::from(stderr.try_clone()?));
        Ok(())
    }

    /// Lets go of the leaf's ends and makes coord's async.
    fn into_process(self, pid: u32, end: LeafEnd) -> io::Result<LeafProcess> {
        drop(self.leaf_ends);
        Ok(LeafProcess {
            stdin: self.stdin.map(pipe::Sender::from_owned_fd).transpose()?,
            stdout: Some(pipe::Receiver::from_owned_fd(self.stdout)?),
            stderr: Some(pipe::Receiver::from_owned_fd(self.stderr)?),
            pid,
            end,
        })
    }
}

/// Starts a leaf. Returns once the leaf itself has started (or failed to: the same
/// `io::Error` a direct spawn would give, `NotFound` for a missing program).
pub async fn spawn_leaf(command: &LeafCommand) -> io::Result<(LeafProcess, ProcessGroupGuard)> {
    let stdio = LeafStdio::new(command.stdin_piped)?;
    if !leaf_supervisor::enabled() {
        return spawn_directly(command, stdio);
    }
    if let Some((pid, end, group)) = spawn_through_host(command, &stdio).await? {
        return Ok((stdio.into_process(pid, end)?, group));
    }
    spawn_under_own_supervisor(command, stdio).await
}

/// Without a supervisor: the leaf leads a new process group, so a timeout or cancellation can
/// kill its whole tree, and gets a parent-death signal, so a coord killed outright does not
/// leave it running (its own children still can: the supervisor is what catches those).
fn spawn_directly(command: &LeafCommand, stdio: LeafStdio) -> io::Result<(LeafProcess, ProcessGroupGuard)> {
    let mut std_command = command.std_command(None);
    stdio.set_on(&mut std_command)?;
    std::os::unix::process::CommandExt::process_group(&mut std_command, 0);
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut std_command, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut tokio_command = tokio::process::Command::from(std_command);
    tokio_command.kill_on_drop(true);
    let child = tokio_command.spawn()?;
    let pid = child.id().unwrap_or(0);
    let group = ProcessGroupGuard { pgid: Some(pid as i32), lifeline: None };
    Ok((stdio.into_process(pid, LeafEnd::Child(child))?, group))
}

/// Through the supervisor host. `Ok(None)` when the host never took the leaf (it could not
/// start, or died first): nothing of the leaf ran, and it may start another way.
async fn spawn_through_host(
    command: &LeafCommand,
    stdio: &LeafStdio,
) -> io::Result<Option<(u32, LeafEnd, ProcessGroupGuard)>> {
    let cwd = match &command.cwd {
        Some(cwd) => cwd.clone().into_os_string(),
        None => std::env::current_dir()?.into_os_string(),
    };
    let request =
        StartRequest { program: command.program.clone(), args: command.args.clone(), env: command.env.clone(), cwd };
    let (lifeline_read, lifeline) = pipe_pair()?;
    let (report, report_write) = pipe_pair()?;
    let [stdin, stdout, stderr] = &stdio.leaf_ends;
    let fds = [stdin, stdout, stderr, &lifeline_read, &report_write].map(|fd| fd.as_raw_fd());
    let sent = supervisor_host::send_request(&request.encode(), &fds);
    // Only the host (and then the leaf's supervisor) may hold these: the report ends when
    // the supervisor is gone, and the lifeline's read end must not keep it from hanging up.
    drop((lifeline_read, report_write));
    if !sent {
        return Ok(None);
    }
    // Dropping this future from here on drops `lifeline`: the supervisor then kills the leaf.
    let mut report = pipe::Receiver::from_owned_fd(report)?;
    let mut bytes = [0u8; 1 + START_REPORT_LEN];
    let mut read = 0;
    while read < bytes.len() {
        match report.read(&mut bytes[read..]).await? {
            0 => break,
            n => read += n,
        }
    }
    if read == 0 {
        // The host died with the request unread, or before forking for it.
        supervisor_host::forget_if_dead();
        return Ok(None);
    }
    let number = i32::from_ne_bytes(bytes[2..].try_into().expect("four bytes"));
    match (read == bytes.len(), bytes[0], bytes[1]) {
        (true, ACCEPTED, STARTED) => {
            let group = ProcessGroupGuard { pgid: Some(number), lifeline: Some(lifeline) };
            let end = LeafEnd::Reported { report, read: Vec::new(), status: None };
            Ok(Some((number as u32, end, group)))
        }
        (true, ACCEPTED, NOT_STARTED) => Err(io::Error::from_raw_os_error(number)),
        (false, ..) => Err(io::Error::other("the leaf supervisor ended before starting the leaf")),
        (true, accepted, tag) => {
            Err(io::Error::other(format!("the leaf supervisor sent an unknown start report ({accepted}, {tag})")))
        }
    }
}

/// The old way: under a supervisor of its own, `coord __leaf-supervisor -- PROGRAM ARGS`.
async fn spawn_under_own_supervisor(
    command: &LeafCommand,
    stdio: LeafStdio,
) -> io::Result<(LeafProcess, ProcessGroupGuard)> {
    let through = (leaf_supervisor::SUPERVISOR_EXE, leaf_supervisor::supervisor_args(&command.program));
    let mut std_command = command.std_command(Some(through));
    stdio.set_on(&mut std_command)?;
    let (lifeline_read, lifeline) = pipe_pair()?;
    let (report, report_write) = pipe_pair()?;
    let (lifeline_read, report_write) = (above_fixed_fds(lifeline_read)?, above_fixed_fds(report_write)?);
    let (lifeline_fd, report_fd) = (lifeline_read.as_raw_fd(), report_write.as_raw_fd());
    // The supervisor gets its group (so coord's own group's signals do not reach it); killing
    // it would stop it cleaning up, so dropping the child must not: the guard's hang-up does.
    std::os::unix::process::CommandExt::process_group(&mut std_command, 0);
    // SAFETY: dup2 is async-signal-safe. Both sources are above the fixed descriptors, so
    // neither dup2 overwrites the other's source; dup2 leaves the copies open across exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut std_command, move || {
            if libc::dup2(lifeline_fd, LIFELINE_FD) < 0 || libc::dup2(report_fd, START_REPORT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut tokio_command = tokio::process::Command::from(std_command);
    tokio_command.kill_on_drop(false);
    let spawned = tokio_command.spawn();
    drop(tokio_command);
    // Only the supervisor may hold these now: the report ends when it closes its copy.
    drop((lifeline_read, report_write));
    // A failure here is one the leaf would have met too (its working directory, a descriptor
    // limit): `/proc/self/exe` was there when coord started.
    let mut child = spawned?;
    let mut report_bytes = [0u8; START_REPORT_LEN];
    let mut report = pipe::Receiver::from_owned_fd(report)?;
    if let Err(e) = report.read_exact(&mut report_bytes).await {
        let _ = child.wait().await;
        return Err(io::Error::other(format!("the leaf supervisor ended before starting the leaf ({e})")));
    }
    let number = i32::from_ne_bytes(report_bytes[1..].try_into().expect("four bytes"));
    match report_bytes[0] {
        STARTED => {
            let group = ProcessGroupGuard { pgid: Some(number), lifeline: Some(lifeline) };
            Ok((stdio.into_process(number as u32, LeafEnd::Child(child))?, group))
        }
        NOT_STARTED => {
            let _ = child.wait().await;
            Err(io::Error::from_raw_os_error(number))
        }
        tag => Err(io::Error::other(format!("the leaf supervisor sent an unknown start report ({tag})"))),
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors this function then owns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec copy of `fd` numbered above the supervisor's fixed descriptors, so that
/// setting those up in the child cannot overwrite it first (or be overwritten by stdio).
pub(super) fn above_fixed_fds(fd: OwnedFd) -> io::Result<OwnedFd> {
    let lowest = LIFELINE_FD.max(START_REPORT_FD).max(HOST_SOCKET_FD) + 1;
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
