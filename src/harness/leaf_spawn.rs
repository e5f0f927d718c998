//! How a leaf supervisor starts its leaf: without copying the supervisor's page tables
//! (docs/performance.md, "The leaf started without a fork (#23)").
//!
//! [`LeafSpawn`] holds everything the leaf's exec needs, prepared before the leaf's process
//! exists: its argv and envp as C strings, the paths to try (a program named without a slash
//! is searched in the leaf's `PATH`, as `execvp` searches it), its working directory and its
//! stdio. [`LeafSpawn::spawn`] starts the leaf with `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)`
//! on a stack of its own: the child shares the supervisor's memory, and the supervisor is
//! suspended until the child has exec'd or exited. In between the child makes only
//! async-signal-safe system calls on what was prepared: it restores the signals as coord was
//! given them (SIGPIPE to its default, as `std` does), sets the parent-death signal (SIGKILL)
//! and exits at once if its parent is already gone, leads a process group of its own, takes
//! its stdio and working directory, and execs. An exec that fails leaves its errno in the
//! shared memory; the supervisor reads it once the child has exited, reaps the child and
//! reports the errno.
//!
//! The child must never allocate, panic or take a lock: it runs on the supervisor's memory
//! while the supervisor is stopped in the middle of a call.

use super::leaf_supervisor::SignalsAsGiven;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's stack: far more than the few system calls it makes need. Only the pages it
/// touches are ever backed; the lowest page is a guard.
const CHILD_STACK: usize = 64 * 1024;

/// Where a program named without a slash is searched when the leaf has no `PATH`: `execvp`'s
/// default.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The shell that runs a file the kernel cannot exec (no `#!` line), as `execvp` does.
const SCRIPT_SHELL: &std::ffi::CStr = c"/bin/sh";

extern "C" {
    /// The supervisor's own environment, for a leaf that inherits it.
    static environ: *const *const libc::c_char;
}

/// A leaf to start, prepared for exec.
pub(super) struct LeafSpawn {
    program: CString,
    argv: Vec<CString>,
    /// `NAME=value` strings; `None` to inherit the supervisor's environment.
    env: Option<Vec<CString>>,
    cwd: Option<CString>,
    /// stdin, stdout, stderr; `None` to inherit the supervisor's.
    stdio: Option<[OwnedFd; 3]>,
    /// A string held a NUL byte, which exec cannot take (`std` fails the spawn the same way).
    saw_nul: bool,
}

impl LeafSpawn {
    pub(super) fn new(program: &OsStr, args: &[OsString]) -> LeafSpawn {
        let mut saw_nul = false;
        let mut c_string = |s: &[u8]| {
            CString::new(s).unwrap_or_else(|_| {
                saw_nul = true;
                CString::default()
            })
        };
        let program_c = c_string(program.as_bytes());
        let mut argv = vec![program_c.clone()];
        argv.extend(args.iter().map(|arg| c_string(arg.as_bytes())));
        LeafSpawn { program: program_c, argv, env: None, cwd: None, stdio: None, saw_nul }
    }

    /// The leaf's whole environment, instead of the supervisor's.
    pub(super) fn env(&mut self, vars: &[(OsString, OsString)]) -> &mut Self {
        let mut env = Vec::with_capacity(vars.len());
        for (name, value) in vars {
            let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
            entry.extend_from_slice(name.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            match CString::new(entry) {
                Ok(entry) => env.push(entry),
                Err(_) => self.saw_nul = true,
            }
        }
        self.env = Some(env);
        self
    }

    pub(super) fn cwd(&mut self, dir: &OsStr) -> &mut Self {
        match CString::new(dir.as_bytes()) {
            Ok(dir) => self.cwd = Some(dir),
            Err(_) => self.saw_nul = true,
        }
        self
    }

    /// The leaf's stdin, stdout and stderr, instead of the supervisor's. Closed here once the
    /// leaf has them.
    pub(super) fn stdio(&mut self, fds: [OwnedFd; 3]) -> &mut Self {
        self.stdio = Some(fds);
        self
    }

    /// Moves a stdio descriptor numbered 0 to 2 out of the way (as `std` does), so that the
    /// child's `dup2` of one stream cannot overwrite the source of another.
    fn stdio_above_standard(&mut self) -> io::Result<()> {
        for fd in self.stdio.iter_mut().flatten() {
            if fd.as_raw_fd() <= libc::STDERR_FILENO {
                *fd = fd.as_fd().try_clone_to_owned()?;
            }
        }
        Ok(())
    }

    /// The leaf's `PATH`: from its environment when it has one of its own.
    fn search_path(&self) -> Option<Vec<u8>> {
        match &self.env {
            Some(env) => env.iter().find_map(|entry| entry.as_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec)),
            None => std::env::var_os("PATH").map(|path| path.into_encoded_bytes()),
        }
    }

    /// The files exec tries in turn: the program itself when its name has a slash, else the
    /// program in each directory of the search path (an empty one is the working directory).
    fn exec_paths(&self) -> Vec<CString> {
        let program = self.program.as_bytes();
        if program.contains(&b'/') {
            return vec![self.program.clone()];
        }
        if program.is_empty() {
            return Vec::new();
        }
        let search = self.search_path();
        let search = search.as_deref().unwrap_or(DEFAULT_PATH);
        search
            .split(|&b| b == b':')
            .filter_map(|dir| {
                let mut path = dir.to_vec();
                if !dir.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(program);
                CString::new(path).ok()
            })
            .collect()
    }

    /// Starts the leaf as described in the module header. Returns its pid, or the errno it
    /// could not start with. Either way the leaf's stdio is closed here on return.
    pub(super) fn spawn(mut self, as_given: &SignalsAsGiven) -> io::Result<libc::pid_t> {
        if self.saw_nul {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.stdio_above_standard()?;
        let paths = self.exec_paths();
        let path_ptrs: Vec<*const libc::c_char> = paths.iter().map(|p| p.as_ptr()).collect();
        let argv = null_terminated(&self.argv);
        // `/bin/sh PATH ARGS...` for a file without a `#!` line; PATH is filled in by the child.
        let mut script_argv = Vec::with_capacity(argv.len() + 1);
        script_argv.push(SCRIPT_SHELL.as_ptr());
        script_argv.push(std::ptr::null());
        script_argv.extend_from_slice(argv.get(1..).unwrap_or(&[]));
        let envp = match &self.env {
            Some(env) => null_terminated(env),
            None => Vec::new(),
        };
        let plan = ChildPlan {
            paths: path_ptrs.as_ptr(),
            paths_len: path_ptrs.len(),
            argv: argv.as_ptr(),
            script_argv: script_argv.as_mut_ptr(),
            // SAFETY: reads the pointer this single-threaded process's environment is at.
            envp: if self.env.is_some() { envp.as_ptr() } else { unsafe { environ } },
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |cwd| cwd.as_ptr()),
            stdio: self.stdio.as_ref().map_or([-1; 3], |fds| fds.each_ref().map(|fd| fd.as_raw_fd())),
            as_given: *as_given,
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            error: AtomicI32::new(0),
        };
        let stack = ChildStack::new()?;
        // SAFETY: the child runs `start_leaf` on its own stack, reading `plan` and the buffers
        // it points to, which all live until this function returns; CLONE_VFORK keeps this
        // thread stopped until the child has exec'd or exited, so nothing here changes under
        // it and nothing of it runs after.
        let pid = unsafe {
            libc::clone(
                start_leaf,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &plan as *const ChildPlan as *mut libc::c_void,
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        match plan.error.load(Ordering::Acquire) {
            0 => Ok(pid),
            errno => {
                reap(pid);
                Err(io::Error::from_raw_os_error(errno))
            }
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect()
}

/// Waits for the child that exited without exec'ing.
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid into a local, for a child of this process that has exited.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// What the child reads, all prepared by the parent, and where it leaves its errno.
struct ChildPlan {
    paths: *const *const libc::c_char,
    paths_len: usize,
    argv: *const *const libc::c_char,
    /// `[/bin/sh, (path), args..., null]`: the child writes the path in slot 1.
    script_argv: *mut *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Null to stay in the supervisor's working directory.
    cwd: *const libc::c_char,
    /// -1 to keep the supervisor's.
    stdio: [libc::c_int; 3],
    as_given: SignalsAsGiven,
    parent: libc::pid_t,
    error: AtomicI32,
}

/// The child's entry point: sets the leaf up and execs it; on failure, leaves the errno in the
/// plan and exits.
extern "C" fn start_leaf(plan: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `plan` is the parent's ChildPlan, alive and unchanging while the parent waits.
    let plan = unsafe { &*(plan as *const ChildPlan) };
    // SAFETY: async-signal-safe system calls on prepared memory (the module header).
    let errno = unsafe { set_up_and_exec(plan) };
    plan.error.store(if errno == 0 { libc::EINVAL } else { errno }, Ordering::Release);
    // SAFETY: ends the child without running anything of the parent's.
    unsafe { libc::_exit(127) }
}

/// Returns only on failure, with the errno.
///
/// # Safety
/// Only in the child `start_leaf` runs, with `plan` prepared by [`LeafSpawn::spawn`].
unsafe fn set_up_and_exec(plan: &ChildPlan) -> libc::c_int {
    // The supervisor's handlers for the watched signals must be gone before the mask lets any
    // through (they would run here, in shared memory): `restore` sets the actions first.
    let default: libc::sigaction = std::mem::zeroed();
    libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
    plan.as_given.restore();
    // Fires when the thread that started the leaf ends: the supervisor's only thread, so when
    // the supervisor dies.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    if libc::getppid() != plan.parent {
        // The supervisor died before the signal was set: nothing may start unsupervised.
        libc::_exit(127);
    }
    if libc::setpgid(0, 0) != 0 {
        return errno();
    }
    for (target, &fd) in (0..).zip(plan.stdio.iter()) {
        let failed = if fd < 0 {
            false
        } else if fd == target {
            // Already in place: only let it through exec.
            libc::fcntl(fd, libc::F_SETFD, 0) != 0
        } else {
            libc::dup2(fd, target) < 0
        };
        if failed {
            return errno();
        }
    }
    if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
        return errno();
    }
    exec_first(plan)
}

/// Execs the first of the plan's paths that can be: `execvp`'s search, errors included (a
/// file found but not executable is EACCES even if a later one is missing; an error other than
/// not-found stops the search).
///
/// # Safety
/// As [`set_up_and_exec`].
unsafe fn exec_first(plan: &ChildPlan) -> libc::c_int {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for i in 0..plan.paths_len {
        let path = *plan.paths.add(i);
        libc::execve(path, plan.argv, plan.envp);
        let mut error = errno();
        if error == libc::ENOEXEC {
            *plan.script_argv.add(1) = path;
            libc::execve(SCRIPT_SHELL.as_ptr(), plan.script_argv as *const *const libc::c_char, plan.envp);
            error = errno();
        }
        match error {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
            other => return other,
        }
        last = error;
    }
    if denied {
        libc::EACCES
    } else {
        last
    }
}

fn errno() -> libc::c_int {
    // SAFETY: reads this thread's errno (the child shares the parent's, which is stopped).
    unsafe { *libc::__errno_location() }
}

/// A stack mapped for the child alone, unmapped once the child no longer runs on it.
struct ChildStack {
    base: *mut libc::c_void,
}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        // SAFETY: a fresh private mapping; the lowest page is made inaccessible as a guard.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                CHILD_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            libc::mprotect(base, page_size(), libc::PROT_NONE);
            Ok(ChildStack { base })
        }
    }

    /// The stack's highest address, where a downward-growing stack starts (16-byte aligned).
    fn top(&self) -> *mut libc::c_void {
        self.base.wrapping_byte_add(CHILD_STACK)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made; the child has exec'd or exited (CLONE_VFORK).
        unsafe {
            libc::munmap(self.base, CHILD_STACK);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStringExt;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (std::fs::File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn null() -> OwnedFd {
        OwnedFd::from(std::fs::File::open("/dev/null").unwrap())
    }

    fn wait(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    fn leaf(program: &str, args: &[&str]) -> LeafSpawn {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        LeafSpawn::new(OsStr::new(program), &args)
    }

    fn start_error(spawn: LeafSpawn) -> Option<i32> {
        spawn.spawn(&SignalsAsGiven::current()).err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn a_leaf_starts_with_its_environment_directory_stdio_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, out_write) = pipe();
        let mut spawn = leaf("sh", &["-c", r#"echo "$A|$(pwd)|$(cut -d" " -f5 /proc/$$/stat)|$$|$B""#]);
        spawn.env(&[("A".into(), "one".into()), ("PATH".into(), "/usr/bin:/bin".into())]);
        spawn.cwd(dir.path().as_os_str()).stdio([null(), out_write, null()]);
        let pid = spawn.spawn(&SignalsAsGiven::current()).unwrap();
        let mut seen = String::new();
        out.read_to_string(&mut seen).unwrap();
        assert_eq!(wait(pid), 0);
        let dir = dir.path().canonicalize().unwrap();
        assert_eq!(seen.trim_end(), format!("one|{}|{pid}|{pid}|", dir.display()));
    }

    #[test]
    fn a_leaf_that_cannot_start_reports_the_errno_execvp_would() {
        let dir = tempfile::tempdir().unwrap();
        let not_executable = dir.path().join("not-executable.sh");
        std::fs::write(&not_executable, "#!/bin/sh\necho hi\n").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        assert_eq!(start_error(leaf("coord-no-such-program", &[])), Some(libc::ENOENT));
        assert_eq!(start_error(leaf(&path(&dir.path().join("not-here")), &[])), Some(libc::ENOENT));
        assert_eq!(start_error(leaf(&path(&not_executable), &[])), Some(libc::EACCES));
        assert_eq!(start_error(leaf("", &[])), Some(libc::ENOENT));
        assert_eq!(start_error(leaf("true", &["a\0b"])), Some(libc::EINVAL));
        // Searched in the leaf's PATH, not the supervisor's: found but not executable in the
        // first directory, missing from the second, is EACCES.
        let mut searched = leaf("not-executable.sh", &[]);
        searched.env(&[("PATH".into(), format!("{}:/nonexistent", path(dir.path())).into())]);
        assert_eq!(start_error(searched), Some(libc::EACCES));
        let mut nowhere = leaf("sh", &[]);
        nowhere.env(&[("PATH".into(), "/nonexistent".into())]);
        assert_eq!(start_error(nowhere), Some(libc::ENOENT));
        let mut no_dir = leaf("true", &[]);
        no_dir.cwd(dir.path().join("gone").as_os_str());
        assert_eq!(start_error(no_dir), Some(libc::ENOENT));
    }

    #[test]
    fn a_file_without_an_interpreter_line_runs_under_sh_as_execvp_runs_it() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("plain");
        std::fs::write(&script, "echo \"plain $1\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let (mut out, out_write) = pipe();
        let mut spawn = LeafSpawn::new(script.as_os_str(), &[OsString::from_vec(b"arg".to_vec())]);
        spawn.stdio([null(), out_write, null()]);
        let pid = spawn.spawn(&SignalsAsGiven::current()).unwrap();
        let mut seen = String::new();
        out.read_to_string(&mut seen).unwrap();
        assert_eq!(wait(pid), 0);
        assert_eq!(seen, "plain arg\n");
    }

    /// The parent-death signal is set: the leaf dies with the thread that started it (in the
    /// supervisor, its only thread).
    #[test]
    fn a_leaf_dies_with_its_parent() {
        let pid = std::thread::spawn(|| {
            let mut spawn = leaf("sleep", &["30"]);
            spawn.stdio([null(), null(), null()]);
            spawn.spawn(&SignalsAsGiven::current()).unwrap()
        })
        .join()
        .unwrap();
        let status = wait(pid);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "status {status:#x}");
    }
}
