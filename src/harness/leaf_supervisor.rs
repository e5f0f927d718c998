//! The leaf supervisor: the small process coord puts between itself and every leaf process, so
//! that nothing a leaf starts outlives coord, nor the leaf.
//!
//! coord runs its own binary as `coord __leaf-supervisor -- PROGRAM ARGS...`
//! ([`super::process_group::spawn_leaf`]) with two pipes at fixed descriptors: the *lifeline*
//! ([`LIFELINE_FD`]), whose write end only coord holds, and the *start report*
//! ([`START_REPORT_FD`]). The supervisor makes itself a child subreaper, starts the leaf in a
//! process group of its own with the stdio it was given (without copying its own memory:
//! `leaf_spawn.rs`), reports the leaf's pid (or the errno it could not start with) and waits
//! for the first of: the leaf exits; the lifeline hangs up (coord died, by any signal, or
//! dropped the leaf: timeout, cancellation); SIGTERM, SIGINT or SIGHUP reaches the supervisor.
//! Then it SIGKILLs the leaf's group and every descendant left (an orphan reparents to the
//! subreaper, whatever session or group it moved to), reaps them, and exits as the leaf did:
//! with its exit code, or by its terminating signal.
//!
//! It runs before coord parses its command line: no async runtime, no config, no logging, one
//! thread. It must never outlive its leaf or its lifeline, and never read or write the leaf's
//! stdio (it hands it over, then lets go of its own copies).

use super::leaf_spawn::LeafSpawn;
use std::ffi::{OsStr, OsString};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The hidden first argument that makes `coord` a leaf supervisor (never shown by `--help`:
/// it is dispatched before the command line is parsed).
pub const SUBCOMMAND: &str = "__leaf-supervisor";

/// The binary coord starts as a leaf's supervisor: its own, by the kernel's link to it, which
/// stays right when the file on disk is replaced or deleted while coord runs (an upgrade under
/// a long-running daemon), where `current_exe()`'s path would start another binary, or none.
pub const SUPERVISOR_EXE: &str = "/proc/self/exe";

/// Read end of the lifeline: readable (hung up) once no process holds its write end.
pub const LIFELINE_FD: i32 = 3;
/// Write end of the start report: [`START_REPORT_LEN`] bytes, a tag then an `i32`.
pub const START_REPORT_FD: i32 = 4;
pub const START_REPORT_LEN: usize = 5;
/// Tag of a start report whose number is the leaf's pid (and process group).
pub const STARTED: u8 = 1;
/// Tag of a start report whose number is the errno the leaf could not start with.
pub const NOT_STARTED: u8 = 2;
/// Tag of the report a supervisor the host started ends with: its number is the leaf's wait
/// status (coord cannot wait for a leaf that is not its child's).
pub const EXITED: u8 = 3;

/// Exit status when the leaf could not start (as a shell's "command not found"); coord reads
/// the start report, not this.
const EXIT_NOT_STARTED: u8 = 127;
/// Exit status when started by hand, without the descriptors coord gives.
const EXIT_USAGE: u8 = 2;

/// How long the supervisor keeps killing and reaping before it gives up on a descendant stuck
/// in the kernel (uninterruptible sleep): that one dies when it wakes, its SIGKILL pending.
const CLEANUP_LIMIT: Duration = Duration::from_secs(5);
/// How often cleanup looks again for descendants, when no SIGCHLD wakes it sooner.
const CLEANUP_POLL: Duration = Duration::from_millis(10);

/// The environment variable that, set to `off`, starts leaves without a supervisor (the
/// parent-death signal alone). For measuring what the supervisor costs; nothing else.
pub const DISABLE_VARIABLE: &str = "COORD_LEAF_SUPERVISOR";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// True when this process was started as a leaf supervisor.
pub fn is_requested() -> bool {
    std::env::args_os().nth(1).is_some_and(|arg| arg == SUBCOMMAND)
}

/// Declares that this binary is coord's (it dispatches [`SUBCOMMAND`] in `main`), so leaves
/// it starts go through a supervisor. Without it (unit tests, where the running binary is a
/// test harness), leaves start directly with the parent-death signal alone.
pub fn enable() {
    let switched_off = std::env::var_os(DISABLE_VARIABLE).is_some_and(|v| v == "off");
    let self_exe_there = std::path::Path::new(SUPERVISOR_EXE).exists();
    ENABLED.store(!switched_off && self_exe_there, Ordering::Relaxed);
}

/// Whether leaves start under a supervisor.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The supervisor's arguments up to the leaf's own: `__leaf-supervisor -- PROGRAM`.
pub fn supervisor_args(program: &OsStr) -> [&OsStr; 3] {
    [OsStr::new(SUBCOMMAND), OsStr::new("--"), program]
}

/// The signal (SIGTERM, SIGINT, SIGHUP) that asked the supervisor to stop, or 0.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::Relaxed);
}

extern "C" fn on_child_signal(_: libc::c_int) {}

/// The supervisor's `main`. Returns only an exit status of its own making; a leaf ended by a
/// signal is relayed by raising that signal.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(2).collect();
    let (program, leaf_args) = match args.split_first() {
        Some((dashes, rest)) if dashes == "--" && !rest.is_empty() => (&rest[0], &rest[1..]),
        _ => {
            eprintln!("coord: `{SUBCOMMAND}` is started by coord for its leaves, not by hand");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Both descriptors are pipes coord made; neither may reach the leaf.
    for fd in [LIFELINE_FD, START_REPORT_FD] {
        if !is_pipe(fd) || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            eprintln!("coord: `{SUBCOMMAND}` is started by coord for its leaves, not by hand");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    // SAFETY: plain system calls on this single-threaded process.
    let as_given = unsafe {
        // Orphaned descendants reparent to this process instead of init, wherever they moved.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        take_signals()
    };
    // The leaf inherits the supervisor's stdio, environment and working directory: coord set
    // them for the leaf.
    let leaf = LeafSpawn::new(program, leaf_args);
    let descriptors = Descriptors { lifeline: LIFELINE_FD, report: START_REPORT_FD };
    match supervise(leaf, &as_given, descriptors) {
        None => ExitCode::from(EXIT_NOT_STARTED),
        Some(status) if libc::WIFSIGNALED(status) => die_by(libc::WTERMSIG(status)),
        Some(status) => ExitCode::from(libc::WEXITSTATUS(status) as u8),
    }
}

/// The descriptors a supervisor watches and reports on: the lifeline's read end and the
/// report pipe's write end, both close-on-exec.
#[derive(Clone, Copy)]
pub(super) struct Descriptors {
    pub lifeline: i32,
    pub report: i32,
}

/// The supervisor's work, once it is a child subreaper with its signals taken
/// ([`take_signals`]): starts `leaf` (a process group of its own, its signals restored to
/// `as_given`, the parent-death signal set: [`super::leaf_spawn`]), writes the start report,
/// waits for the leaf's end, its lifeline's hang-up or a stop signal, and kills everything.
/// Returns the wait status the leaf is reported with (a stop signal's, or SIGKILL's when it
/// was never reaped), or `None` when it could not start.
pub(super) fn supervise(leaf: LeafSpawn, as_given: &SignalsAsGiven, descriptors: Descriptors) -> Option<libc::c_int> {
    // Lets go of the leaf's stdio, when it was given as descriptors, either way.
    let leaf = match leaf.spawn(as_given) {
        Ok(pid) => pid,
        Err(e) => {
            write_report(descriptors.report, NOT_STARTED, e.raw_os_error().unwrap_or(libc::EINVAL));
            return None;
        }
    };
    write_report(descriptors.report, STARTED, leaf);
    let_go_of_stdio();

    let waiting_mask = as_given.mask_without_watched();
    let mut leaf_status = None;
    let stop_signal = loop {
        reap_exited(leaf, &mut leaf_status);
        if leaf_status.is_some() {
            break None;
        }
        let stop = STOP_SIGNAL.load(Ordering::Relaxed);
        if stop != 0 {
            break Some(stop);
        }
        if wait_for_event(&waiting_mask, Some(descriptors.lifeline), None) {
            // coord is gone, or has given up on the leaf.
            break None;
        }
    };
    kill_everything(leaf, &mut leaf_status, &waiting_mask);
    // A raw wait status of a death by signal is the signal's number.
    Some(match (stop_signal, leaf_status) {
        (Some(signal), _) => signal,
        (None, Some(status)) => status,
        // Never reaped within the cleanup limit: it was killed.
        (None, None) => libc::SIGKILL,
    })
}

/// The signals the supervisor waits on: a child's exit, and a request to stop.
const WATCHED_SIGNALS: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The signal mask and the watched signals' dispositions the supervisor was started with,
/// which the leaf gets back: it starts as it would have without a supervisor (std resets
/// neither the mask nor an ignored signal in a child; a caught one resets at exec).
#[derive(Clone, Copy)]
pub(super) struct SignalsAsGiven {
    mask: libc::sigset_t,
    actions: [libc::sigaction; WATCHED_SIGNALS.len()],
}

impl SignalsAsGiven {
    /// How this process has the watched signals now, changing nothing: what the supervisor
    /// host was started with, kept for the leaves of the supervisors it forks.
    pub(super) fn current() -> Self {
        // SAFETY: queries into locals; a null new set or action changes nothing.
        unsafe {
            let mut now: SignalsAsGiven = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut now.mask);
            for (signal, action) in WATCHED_SIGNALS.iter().zip(now.actions.iter_mut()) {
                libc::sigaction(*signal, std::ptr::null(), action);
            }
            now
        }
    }

    /// In the leaf's child before exec: async-signal-safe calls only.
    pub(super) unsafe fn restore(&self) {
        for (signal, action) in WATCHED_SIGNALS.iter().zip(&self.actions) {
            libc::sigaction(*signal, action, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
    }

    /// The mask to wait with: as given, but taking the watched signals.
    pub(super) fn mask_without_watched(&self) -> libc::sigset_t {
        let mut mask = self.mask;
        for signal in WATCHED_SIGNALS {
            // SAFETY: edits a local signal set.
            unsafe {
                libc::sigdelset(&mut mask, signal);
            }
        }
        mask
    }
}

fn is_pipe(fd: i32) -> bool {
    // SAFETY: fstat into a local.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFIFO
    }
}

/// Blocks the watched signals and handles them, returning how they were. They are taken only
/// inside `ppoll` ([`wait_for_event`]), so none is lost between a check and the wait.
pub(super) unsafe fn take_signals() -> SignalsAsGiven {
    let mut as_given: SignalsAsGiven = std::mem::zeroed();
    let mut blocked: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut blocked);
    for signal in WATCHED_SIGNALS {
        libc::sigaddset(&mut blocked, signal);
    }
    libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut as_given.mask);
    for (signal, old) in WATCHED_SIGNALS.iter().zip(as_given.actions.iter_mut()) {
        let handler = if *signal == libc::SIGCHLD {
            on_child_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
        } else {
            on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
        };
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = if *signal == libc::SIGCHLD { libc::SA_NOCLDSTOP } else { 0 };
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(*signal, &action, old);
    }
    as_given
}

/// Writes one report (a tag, then a number) to coord: the start report, and for a supervisor
/// the host started, the leaf's wait status at the end.
pub(super) fn write_report(fd: i32, tag: u8, number: i32) {
    let mut report = [0u8; START_REPORT_LEN];
    report[0] = tag;
    report[1..].copy_from_slice(&number.to_ne_bytes());
    // SAFETY: writes a local buffer to a descriptor this process owns. Shorter than PIPE_BUF,
    // so written whole or not at all; a coord that is gone makes it fail, which is fine.
    unsafe {
        libc::write(fd, report.as_ptr().cast(), report.len());
    }
}

/// Points the supervisor's own stdin, stdout and stderr at /dev/null, so the leaf's pipes end
/// exactly when the leaf and its descendants let go of them.
fn let_go_of_stdio() {
    // SAFETY: descriptor juggling on this process's own table.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for fd in 0..=2 {
            if null >= 0 {
                libc::dup2(null, fd);
            } else {
                libc::close(fd);
            }
        }
        if null > 2 {
            libc::close(null);
        }
    }
}

/// Reaps every child that has exited, keeping the leaf's wait status. Returns whether any
/// child is left.
fn reap_exited(leaf: libc::pid_t, leaf_status: &mut Option<libc::c_int>) -> bool {
    loop {
        let mut status = 0;
        // __WALL: children made by clone without SIGCHLD count too.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        match pid {
            0 => return true,
            p if p > 0 => {
                if p == leaf {
                    *leaf_status = Some(status);
                }
            }
            _ => return std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR),
        }
    }
}

/// Waits for a watched signal (taken only here, under `mask`), the timeout, or `fd` to be
/// readable or hung up. Returns whether `fd` is.
fn wait_for_event(mask: &libc::sigset_t, fd: Option<i32>, timeout: Option<Duration>) -> bool {
    let mut poll_fd = libc::pollfd { fd: fd.unwrap_or(-1), events: libc::POLLIN, revents: 0 };
    let timeout = timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
    // SAFETY: ppoll with pointers to locals; a negative fd is ignored by the kernel.
    unsafe {
        let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        let ready = libc::ppoll(&mut poll_fd, 1, timeout_ptr, mask);
        ready > 0 && poll_fd.revents != 0
    }
}

/// SIGKILLs the leaf's process group and every descendant of this process, over and over
/// until none is left: one that forks while being killed leaves an orphan, which reparents
/// here and is found on the next pass.
fn kill_everything(leaf: libc::pid_t, leaf_status: &mut Option<libc::c_int>, waiting_mask: &libc::sigset_t) {
    // The group, while the leaf's pid still names it (before or just after the leaf's reaping).
    unsafe {
        libc::kill(-leaf, libc::SIGKILL);
    }
    let me = unsafe { libc::getpid() };
    let give_up = Instant::now() + CLEANUP_LIMIT;
    // No child left means no descendant left: the usual case, a leaf that left nothing behind.
    while reap_exited(leaf, leaf_status) && Instant::now() < give_up {
        for pid in descendants(me) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        wait_for_event(waiting_mask, None, Some(CLEANUP_POLL));
    }
}

/// Every descendant of `root`, zombies included, parents before their children.
fn descendants(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut found: Vec<libc::pid_t> = Vec::new();
    let by_children_files = std::path::Path::new(&format!("/proc/{root}/task/{root}/children")).exists();
    let parents = if by_children_files { Vec::new() } else { parents_by_scan() };
    let mut next = 0;
    let mut parent = root;
    loop {
        let children = if by_children_files { children_of(parent) } else { children_in(&parents, parent) };
        for child in children {
            // A pid reused within the walk must not loop it.
            if child != root && !found.contains(&child) {
                found.push(child);
            }
        }
        let Some(&following) = found.get(next) else { return found };
        parent = following;
        next += 1;
    }
}

/// `pid`'s children, from every one of its threads' `children` file (a child belongs to the
/// thread that forked it).
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(list.split_ascii_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()));
        }
    }
    children
}

/// (pid, parent pid) of every process, from `/proc/*/stat`: for kernels built without the
/// `children` files (CONFIG_PROC_CHILDREN).
fn parents_by_scan() -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<libc::pid_t>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // After the command name's closing parenthesis: state, then the parent's pid.
            let parent = stat.rsplit_once(')')?.1.split_ascii_whitespace().nth(1)?.parse().ok()?;
            Some((pid, parent))
        })
        .collect()
}

fn children_in(parents: &[(libc::pid_t, libc::pid_t)], parent: libc::pid_t) -> Vec<libc::pid_t> {
    parents.iter().filter(|&&(_, p)| p == parent).map(|&(pid, _)| pid).collect()
}

/// Ends this process by `signal`, as the leaf ended, so coord reads the same `ExitStatus`.
fn die_by(signal: libc::c_int) -> ExitCode {
    // SAFETY: plain system calls; the process is about to end.
    unsafe {
        // The leaf already dumped its core, if it was going to.
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::raise(signal);
    }
    // A signal whose default is not to terminate: the shell's convention.
    ExitCode::from(128u8.wrapping_add(signal as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_of_a_process_tree_are_found_parents_first() {
        let mut shell = std::process::Command::new("sh").args(["-c", "sleep 30 & sleep 30 & wait"]).spawn().unwrap();
        let shell_pid = shell.id() as libc::pid_t;
        let me = unsafe { libc::getpid() };
        let until = Instant::now() + Duration::from_secs(10);
        let found = loop {
            if children_of(shell_pid).len() >= 2 || Instant::now() > until {
                break descendants(me);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let by_scan = {
            let parents = parents_by_scan();
            children_in(&parents, shell_pid)
        };
        let shell_at = found.iter().position(|&p| p == shell_pid).expect("the shell is a descendant");
        let sleeps: Vec<_> = children_of(shell_pid);
        assert_eq!(sleeps.len(), 2, "{found:?}");
        let mut scanned = by_scan.clone();
        scanned.sort();
        let mut listed = sleeps.clone();
        listed.sort();
        assert_eq!(scanned, listed);
        for sleep in sleeps {
            assert!(found.iter().position(|&p| p == sleep).unwrap() > shell_at);
        }
        // Only what this test started: the shell's sleeps, then the shell.
        for pid in children_of(shell_pid).into_iter().chain([shell_pid]) {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = shell.wait();
    }
}
