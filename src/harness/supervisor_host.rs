//! The supervisor host: one small process per coord that forks the leaf supervisors, so that
//! starting a leaf costs a fork of a small single-threaded process instead of an exec of
//! coord's whole binary (docs/harnesses.md, "Leaf processes never outlive coord").
//!
//! coord starts it once, before `coord run` checks a live run or as a live run sets up
//! ([`start_early`]), else at its first leaf, as `coord __leaf-supervisor-host` with one end of
//! a unix stream socket at [`HOST_SOCKET_FD`] ([`send_request`] starts and keeps it). For each
//! leaf coord sends one frame: the leaf's program, arguments, whole environment and working
//! directory, with five descriptors attached by `SCM_RIGHTS`: the leaf's stdin, stdout and
//! stderr, the lifeline's read end and a report pipe's write end. The host writes
//! [`ACCEPTED`] on the report pipe, forks (without the fork handlers:
//! `fork_without_handlers`), and lets go of the descriptors; the child is exactly a per-leaf
//! supervisor ([`super::leaf_supervisor::supervise`]): it writes the start report on the same
//! pipe, and at the end the leaf's wait status ([`EXITED`]).
//!
//! A report pipe that ends before [`ACCEPTED`] means the host never forked for that leaf, so
//! coord may start it another way without starting it twice. The host reaps its children and
//! exits when coord's end of the socket hangs up (coord died, by any signal); the supervisors
//! it forked go on watching their own lifelines, which coord's death hangs up too.
//!
//! The host runs before coord parses its command line, like the per-leaf supervisor: no async
//! runtime, no logging, one thread. It must never read or write a leaf's stdio, and never
//! keep a descriptor of one leaf when it forks the supervisor of another.

use super::leaf_spawn::LeafSpawn;
use super::leaf_supervisor::{self, Descriptors, SignalsAsGiven, EXITED, NOT_STARTED};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

/// The hidden first argument that makes `coord` the supervisor host.
pub const SUBCOMMAND: &str = "__leaf-supervisor-host";

/// The host's end of its socket to coord.
pub const HOST_SOCKET_FD: i32 = 3;

/// The byte the host writes on a leaf's report pipe before it forks that leaf's supervisor.
pub const ACCEPTED: u8 = 0xac;

/// Descriptors each request carries: stdin, stdout, stderr, lifeline, report.
const REQUEST_FDS: usize = 5;

/// The largest request frame the host reads: more than any argv and environment exec takes.
const MAX_FRAME: usize = 64 << 20;

/// How long coord waits for the host to take a request off the socket before it gives up on
/// that host (a stopped or wedged host must not hang coord's leaves).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit status when started by hand, without the socket coord gives.
const EXIT_USAGE: u8 = 2;

/// True when this process was started as the supervisor host.
pub fn is_requested() -> bool {
    std::env::args_os().nth(1).is_some_and(|arg| arg == SUBCOMMAND)
}

/// One leaf to start, as coord sends it: everything but its descriptors.
#[derive(Clone, Debug, PartialEq)]
pub struct StartRequest {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The leaf's whole environment: it inherits none of the host's.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: OsString,
}

impl StartRequest {
    /// The frame: its body's length (`u32`, native order), then the body: program, working
    /// directory, the argument count and arguments, the variable count and `name`, `value`
    /// pairs, every string as its length (`u32`) and bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_string(&mut body, &self.program);
        put_string(&mut body, &self.cwd);
        body.extend_from_slice(&(self.args.len() as u32).to_ne_bytes());
        for arg in &self.args {
            put_string(&mut body, arg);
        }
        body.extend_from_slice(&(self.env.len() as u32).to_ne_bytes());
        for (name, value) in &self.env {
            put_string(&mut body, name);
            put_string(&mut body, value);
        }
        let mut frame = (body.len() as u32).to_ne_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    /// Reads a body [`encode`](Self::encode) made; `None` when it is malformed.
    pub fn decode(body: &[u8]) -> Option<StartRequest> {
        let mut rest = body;
        let program = take_string(&mut rest)?;
        let cwd = take_string(&mut rest)?;
        let args = (0..take_u32(&mut rest)?).map(|_| take_string(&mut rest)).collect::<Option<Vec<_>>>()?;
        let env = (0..take_u32(&mut rest)?)
            .map(|_| Some((take_string(&mut rest)?, take_string(&mut rest)?)))
            .collect::<Option<Vec<_>>>()?;
        rest.is_empty().then_some(StartRequest { program, args, env, cwd })
    }
}

fn put_string(body: &mut Vec<u8>, s: &OsStr) {
    body.extend_from_slice(&(s.len() as u32).to_ne_bytes());
    body.extend_from_slice(s.as_bytes());
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (number, after) = rest.split_first_chunk::<4>()?;
    *rest = after;
    Some(u32::from_ne_bytes(*number))
}

fn take_string(rest: &mut &[u8]) -> Option<OsString> {
    let len = take_u32(rest)? as usize;
    if rest.len() < len {
        return None;
    }
    let (bytes, after) = rest.split_at(len);
    *rest = after;
    Some(OsString::from_vec(bytes.to_vec()))
}

// ---- coord's side ----

/// coord's link to its host: the socket, and the host process (to notice it died).
struct HostLink {
    socket: UnixStream,
    host: tokio::process::Child,
}

/// The host of this coord process: none until the first leaf, or since it died; `broken` once
/// it could not be started, after which leaves start the old way.
struct HostState {
    link: Option<HostLink>,
    broken: bool,
}

static HOST: Mutex<HostState> = Mutex::new(HostState { link: None, broken: false });

/// Sends one leaf's request with its descriptors to the host, starting the host first when
/// there is none (or it died). Returns whether the whole frame went out: if not, the host
/// never forks for it and the caller starts the leaf another way. Must run inside the tokio
/// runtime (the host is a tokio child, reaped by it).
pub fn send_request(frame: &[u8], fds: &[RawFd; REQUEST_FDS]) -> bool {
    let mut state = HOST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(link) = state.started() else {
        return false;
    };
    if send_frame(&link.socket, frame, fds).is_err() {
        // A partial frame is never acted on: the host reads EOF in its middle and exits.
        state.link = None;
        return false;
    }
    true
}

/// Starts the host now rather than at the first leaf, so that its start overlaps the run's own
/// (a live run whose leaves run here). Must run inside the tokio runtime; blocks briefly.
pub fn start_early() {
    if leaf_supervisor::enabled() {
        HOST.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).started();
    }
}

impl HostState {
    /// The live host, started if there is none (or it died); `None` once it cannot start.
    fn started(&mut self) -> Option<&mut HostLink> {
        if self.broken {
            return None;
        }
        if self.link.as_mut().is_some_and(|link| !matches!(link.host.try_wait(), Ok(None))) {
            self.link = None;
        }
        if self.link.is_none() {
            match HostLink::start() {
                Ok(link) => self.link = Some(link),
                Err(_) => {
                    self.broken = true;
                    return None;
                }
            }
        }
        self.link.as_mut()
    }
}

/// Forgets the host if it has died, so the next leaf starts a new one.
pub fn forget_if_dead() {
    let mut state = HOST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if state.link.as_mut().is_some_and(|link| !matches!(link.host.try_wait(), Ok(None))) {
        state.link = None;
    }
}

impl HostLink {
    fn start() -> io::Result<HostLink> {
        let (socket, host_end) = UnixStream::pair()?;
        let host_end = super::process_group::above_fixed_fds(OwnedFd::from(host_end))?;
        let host_fd = host_end.as_raw_fd();
        let mut command = tokio::process::Command::new(leaf_supervisor::SUPERVISOR_EXE);
        command
            .arg0("coord")
            .arg(SUBCOMMAND)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own group: a terminal's Ctrl-C reaches coord, whose death hangs up the socket.
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: dup2 is async-signal-safe; the source is above the fixed descriptor, and the
        // copy stays open across exec.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(host_fd, HOST_SOCKET_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let host = command.spawn()?;
        // Only the host may hold its end: its death must make coord's sends fail.
        drop(host_end);
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(HostLink { socket, host })
    }
}

/// Writes `frame` to the socket, `fds` attached to its first bytes.
fn send_frame(socket: &UnixStream, frame: &[u8], fds: &[RawFd; REQUEST_FDS]) -> io::Result<()> {
    let mut control = ControlBuffer::new();
    let mut iov = libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
    // SAFETY: msghdr built from locals that outlive the call; CMSG_* walk the control buffer
    // sized by CMSG_SPACE for exactly these descriptors.
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.bytes.as_mut_ptr().cast();
        message.msg_controllen = ControlBuffer::space() as _;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(header).cast::<RawFd>(), fds.len());
        loop {
            let sent = libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL);
            if sent >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break sent;
            }
        }
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut rest = &frame[sent as usize..];
    while !rest.is_empty() {
        // SAFETY: sends from a live slice.
        let sent = unsafe { libc::send(socket.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        rest = &rest[sent as usize..];
    }
    Ok(())
}

/// Room for one `SCM_RIGHTS` message of [`REQUEST_FDS`] descriptors, aligned for `cmsghdr`.
struct ControlBuffer {
    bytes: [u64; 16],
}

impl ControlBuffer {
    fn new() -> Self {
        ControlBuffer { bytes: [0; 16] }
    }

    fn space() -> usize {
        // SAFETY: pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE((REQUEST_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
        assert!(space <= std::mem::size_of::<[u64; 16]>());
        space
    }
}

// ---- the host's side ----

/// The host's `main`.
pub fn main() -> ExitCode {
    if !is_socket(HOST_SOCKET_FD) || unsafe { libc::fcntl(HOST_SOCKET_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        eprintln!("coord: `{SUBCOMMAND}` is started by coord for its leaves, not by hand");
        return ExitCode::from(EXIT_USAGE);
    }
    // What the leaves' signals are restored to: as coord started the host, before the host
    // takes SIGCHLD for itself.
    let as_given = SignalsAsGiven::current();
    let waiting_mask = take_child_signal(&as_given);
    loop {
        reap_children();
        if !wait_for_request(&waiting_mask) {
            continue;
        }
        match receive_request(HOST_SOCKET_FD) {
            Ok(Some((request, fds))) => start_supervisor(request, fds, &as_given),
            // coord hung up, or broke the protocol: nothing more will come.
            Ok(None) | Err(_) => return ExitCode::SUCCESS,
        }
    }
}

fn is_socket(fd: i32) -> bool {
    // SAFETY: fstat into a local.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
    }
}

extern "C" fn on_child_signal(_: libc::c_int) {}

/// Blocks SIGCHLD and handles it, so that it is taken only inside `ppoll` and a child's exit
/// wakes the host to reap it. Returns the mask to wait with.
fn take_child_signal(as_given: &SignalsAsGiven) -> libc::sigset_t {
    // SAFETY: sigaction and sigprocmask on this single-threaded process, with locals.
    unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        libc::sigaddset(&mut blocked, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_child_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
        let mut waiting = as_given.mask_without_watched();
        libc::sigdelset(&mut waiting, libc::SIGCHLD);
        waiting
    }
}

fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid into a local.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// Waits for the socket to be readable or hung up (true), or a SIGCHLD (false).
fn wait_for_request(mask: &libc::sigset_t) -> bool {
    let mut poll_fd = libc::pollfd { fd: HOST_SOCKET_FD, events: libc::POLLIN, revents: 0 };
    // SAFETY: ppoll with pointers to locals.
    let ready = unsafe { libc::ppoll(&mut poll_fd, 1, std::ptr::null(), mask) };
    ready > 0 && poll_fd.revents != 0
}

/// Reads one request and its descriptors (close-on-exec). `None` at the socket's end.
fn receive_request(socket: RawFd) -> io::Result<Option<(StartRequest, [OwnedFd; REQUEST_FDS])>> {
    let mut length = [0u8; 4];
    let (received, fds) = receive_with_fds(socket, &mut length)?;
    if received == 0 {
        return Ok(None);
    }
    // SAFETY: the socket stays open for the host's whole life; this borrows it for reads.
    let mut stream = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(socket) });
    stream.read_exact(&mut length[received..])?;
    let length = u32::from_ne_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(io::Error::other("request too long"));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    let request = StartRequest::decode(&body).ok_or_else(|| io::Error::other("malformed request"))?;
    let fds: [OwnedFd; REQUEST_FDS] = fds.try_into().map_err(|_| io::Error::other("wrong descriptors"))?;
    Ok(Some((request, fds)))
}

/// One `recvmsg` into `buffer`, keeping whatever descriptors came with it.
fn receive_with_fds(socket: RawFd, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = ControlBuffer::new();
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    // SAFETY: msghdr built from locals; the received descriptors are new and owned here;
    // CMSG_* walk only the control bytes the kernel reported.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.bytes.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control.bytes) as _;
        let received = loop {
            let received = libc::recvmsg(socket, &mut message, libc::MSG_CMSG_CLOEXEC);
            if received >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break received;
            }
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds = Vec::new();
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                for i in 0..data_len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
        if message.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other("descriptors truncated"));
        }
        Ok((received as usize, fds))
    }
}

/// Accepts a request and forks its supervisor; the host keeps none of its descriptors.
fn start_supervisor(request: StartRequest, fds: [OwnedFd; REQUEST_FDS], as_given: &SignalsAsGiven) {
    let report = fds[4].as_raw_fd();
    // SAFETY: writes one byte from a constant to a descriptor owned here.
    unsafe {
        libc::write(report, [ACCEPTED].as_ptr().cast(), 1);
    }
    match fork_without_handlers() {
        0 => run_supervisor(request, fds, as_given),
        -1 => leaf_supervisor::write_report(
            report,
            NOT_STARTED,
            io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN),
        ),
        _ => {}
    }
    // The descriptors close here, in the host: only the child holds them now.
}

/// `fork` without the fork handlers, by glibc's `_Fork` (2.34 on; plain `fork` where it is
/// missing). jemalloc's handlers lock every one of its mutexes before each fork and unlock or
/// re-create them after it, in the host and again in the child (about a tenth of the host's
/// CPU, docs/performance.md), for nothing here: the host has one thread and forks from its own
/// loop, never inside an allocation, so the child's allocator is consistent as it is.
fn fork_without_handlers() -> libc::pid_t {
    type Fork = unsafe extern "C" fn() -> libc::pid_t;
    static FORK: std::sync::OnceLock<Fork> = std::sync::OnceLock::new();
    let fork = FORK.get_or_init(|| {
        // SAFETY: looks a symbol up; `_Fork` has `fork`'s signature.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Fork".as_ptr()) };
        if found.is_null() {
            libc::fork as Fork
        } else {
            // SAFETY: a non-null address of the function `_Fork`, as above.
            unsafe { std::mem::transmute::<*mut libc::c_void, Fork>(found) }
        }
    });
    // SAFETY: fork of a single-threaded process holding no lock: the child may run any code.
    unsafe { fork() }
}

/// In the forked child: becomes the leaf's supervisor, reports the leaf's wait status, exits.
fn run_supervisor(request: StartRequest, fds: [OwnedFd; REQUEST_FDS], as_given: &SignalsAsGiven) -> ! {
    // SAFETY: plain system calls in this single-threaded child.
    unsafe {
        // coord must see the host's death through this socket: no child may keep it.
        libc::close(HOST_SOCKET_FD);
        libc::prctl(libc::PR_SET_NAME, c"leaf-supervisor".as_ptr());
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        leaf_supervisor::take_signals();
    }
    let [stdin, stdout, stderr, lifeline, report] = fds;
    let descriptors = Descriptors { lifeline: lifeline.as_raw_fd(), report: report.as_raw_fd() };
    let mut leaf = LeafSpawn::new(&request.program, &request.args);
    leaf.env(&request.env).cwd(&request.cwd).stdio([stdin, stdout, stderr]);
    if let Some(status) = leaf_supervisor::supervise(leaf, as_given, descriptors) {
        leaf_supervisor::write_report(descriptors.report, EXITED, status);
    }
    // SAFETY: ends the child without running the host's exit handlers.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_it_was_written() {
        let request = StartRequest {
            program: "sh".into(),
            args: vec!["-c".into(), "echo 'é'".into(), "".into()],
            env: vec![("PATH".into(), "/bin".into()), ("EMPTY".into(), "".into())],
            cwd: "/tmp".into(),
        };
        let frame = request.encode();
        let (length, body) = frame.split_at(4);
        assert_eq!(u32::from_ne_bytes(length.try_into().unwrap()) as usize, body.len());
        assert_eq!(StartRequest::decode(body), Some(request));
        assert_eq!(StartRequest::decode(&body[..body.len() - 1]), None);
    }
}
