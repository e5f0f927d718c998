//! The webhook listener under a flood, through the binary: slow and idle connections do not
//! keep a signed ping from being answered, the header and body timeouts close slow clients,
//! and at the connection cap the oldest idle connection makes room.
//!
//! Each daemon is a child process on 127.0.0.1, started with a soft open-file limit of 1,024
//! (a service manager's usual default) that it must raise itself. Timing bounds waits only,
//! generously for a loaded machine; the ping latencies under a flood are printed
//! (`--nocapture`) and recorded in docs/performance.md, not asserted to the millisecond.

use crate::support;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestProject;

/// Long enough for a loaded machine; waits end as soon as what they wait for happens.
const PATIENCE: Duration = Duration::from_secs(90);
/// The acceptance bound is 1 s; a 2-core CI machine running the other tests alongside gets room.
const PING_BOUND: Duration = Duration::from_secs(5);
const SLOW_CONNECTIONS: usize = 1_100;
const SECRET: &str = "test-hook-secret";
/// The soft open-file limit the daemon starts with.
const DAEMON_SOFT_NOFILE: u64 = 1024;

fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        "workflows/work.toml",
        "harness = \"command\"\ncommand = [\"true\"]\ntimeout = \"10m\"\nprompt = \"{{ goal }}\"\nschema = { type = \"object\" }\n",
    );
    p.write("hook.rhai", "let r = await_sessions([spawn_session(\"work\", #{ goal: \"work\" })])[0];\nr.status\n");
    p.write("hook.toml", "[[leaf]]\nworkflow = \"work\"\noutput = { done = true }\n");
    p.write(
        "coord.toml",
        "[[pipeline]]\nname = \"hook\"\nscript = \"hook.rhai\"\nscenario = \"hook.toml\"\nwebhook = { secret_env = \"TEST_HOOK_SECRET\" }\n",
    );
    p
}

/// Raises this test process's soft open-file limit to its hard limit: it opens 1,100 sockets.
fn raise_own_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(limit.rlim_cur >= 2 * SLOW_CONNECTIONS as u64 + 256, "the hard open-file limit is {}", limit.rlim_max);
}

/// A `coord daemon --listen 127.0.0.1:0` child process and what it has printed so far.
struct Daemon {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Daemon {
    fn start(p: &TestProject, args: &[&str]) -> Daemon {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coord"));
        cmd.current_dir(p.path())
            .env_remove("COORD_RUNS_DIR")
            .env_remove("COORD_PATH")
            .env_remove("CI")
            .env("NO_COLOR", "1")
            .env("TEST_HOOK_SECRET", SECRET)
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                    limit.rlim_cur = limit.rlim_max.min(DAEMON_SOFT_NOFILE);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("coord starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut daemon = Daemon { child, stdout, addr: String::new() };
        let listening = daemon.wait_for(|l| l.starts_with("daemon: listening on "));
        daemon.addr = listening.trim_start_matches("daemon: listening on ").to_owned();
        daemon.wait_for(|l| l.starts_with("daemon: ready"));
        daemon
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_for(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(Instant::now() < deadline, "timed out waiting for a line\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many file descriptors the daemon holds (Linux).
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    fn stop(&mut self) {
        // SAFETY: signalling a child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop after SIGTERM\n{}", self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A signed GitHub ping's request, with `Connection: close` unless `keep_alive`.
fn ping_request(addr: &str, keep_alive: bool) -> Vec<u8> {
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut request = format!(
        "POST /hooks/hook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-GitHub-Event: ping\r\n\
         X-GitHub-Delivery: ping-1\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        sign(body),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Sends a signed ping on a new connection; returns the response and how long it took from
/// connecting to the last byte of the answer.
fn ping(addr: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("the daemon listens");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(&ping_request(addr, false)).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    (String::from_utf8_lossy(&response).into_owned(), started.elapsed())
}

#[track_caller]
fn assert_pong(response: &str) {
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(response.contains("\"pong\""), "{response:?}");
}

/// `n` connections that each sent the start of a request head and nothing more yet.
fn open_slow_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("the daemon listens");
            stream.write_all(b"POST /hooks/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            stream
        })
        .collect()
}

/// Sends one more byte of the head on every connection every `every`, until dropped.
struct Trickle {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<TcpStream>>>,
}

impl Trickle {
    fn start(mut streams: Vec<TcpStream>, every: Duration) -> Trickle {
        let running = Arc::new(AtomicBool::new(true));
        let keep_going = running.clone();
        let thread = std::thread::spawn(move || {
            while keep_going.load(Ordering::Relaxed) {
                for stream in &mut streams {
                    let _ = stream.write_all(b"x");
                }
                let until = Instant::now() + every;
                while keep_going.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            streams
        });
        Trickle { running, thread: Some(thread) }
    }

    fn stop(mut self) -> Vec<TcpStream> {
        self.running.store(false, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Whether the server has closed `stream` (EOF or a reset), looking without waiting.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let mut reader = stream;
    let closed = loop {
        match reader.read(&mut buf) {
            Ok(0) => break true,
            // A 408 or 431 the server wrote before closing; read on to see the close.
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Reads until the server closes `stream`; returns what it sent and when it closed.
fn read_until_closed(stream: &mut TcpStream, started: Instant) -> (String, Duration) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&response).into_owned(), started.elapsed())
}

#[test]
fn a_signed_ping_is_answered_while_1100_slow_connections_are_open() {
    raise_own_open_file_limit();
    let p = project();
    // A header timeout longer than the test, so every slow connection stays open throughout.
    let mut daemon = Daemon::start(&p, &["--header-timeout", "300s"]);
    let (response, unloaded) = ping(&daemon.addr);
    assert_pong(&response);

    let flood_started = Instant::now();
    let slow = open_slow_connections(&daemon.addr, SLOW_CONNECTIONS);
    let trickle = Trickle::start(slow, Duration::from_secs(2));
    // The daemon has accepted them all: it holds a descriptor for each, past its starting
    // soft limit of 1,024.
    let deadline = Instant::now() + PATIENCE;
    while daemon.open_fds() < SLOW_CONNECTIONS {
        assert!(Instant::now() < deadline, "the daemon holds {} descriptors", daemon.open_fds());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("opened {SLOW_CONNECTIONS} slow connections in {:?}", flood_started.elapsed());

    let latencies: Vec<Duration> = (0..10)
        .map(|_| {
            let (response, took) = ping(&daemon.addr);
            assert_pong(&response);
            took
        })
        .collect();
    let worst = *latencies.iter().max().unwrap();
    eprintln!(
        "ping latency: unloaded {unloaded:?}; under {SLOW_CONNECTIONS} slow connections {latencies:?}, worst {worst:?}"
    );
    assert!(worst < PING_BOUND, "{latencies:?}");

    let slow = trickle.stop();
    let still_open = slow.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(still_open, SLOW_CONNECTIONS, "the slow connections were open while the pings were answered");
    assert!(!daemon.lines().iter().any(|l| l.contains("(the cap)")), "{}", daemon.lines().join("\n"));
    daemon.stop();
}

#[test]
fn slow_heads_slow_bodies_and_idle_keep_alive_connections_are_closed() {
    let p = project();
    let mut daemon = Daemon::start(&p, &["--header-timeout", "2s", "--body-timeout", "2s"]);
    let addr = daemon.addr.clone();

    // A head that trickles in a byte every half second is cut off at the header timeout,
    // however long it keeps trickling.
    let slow_head = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream.write_all(b"POST /hooks/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            while started.elapsed() < PATIENCE {
                if closed_by_server(&stream) {
                    return Some(started.elapsed());
                }
                let _ = stream.write_all(b"x");
                std::thread::sleep(Duration::from_millis(500));
            }
            None
        }
    });

    // A body that trickles in is answered 408 at the body timeout.
    let slow_body = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).unwrap();
            let head = format!(
                "POST /hooks/hook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 X-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n{{"
            );
            stream.write_all(head.as_bytes()).unwrap();
            let writer = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut writer = writer;
                while writer.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
            read_until_closed(&mut stream, started)
        }
    });

    // A keep-alive connection idle after its answer is closed at the header timeout too.
    let started = Instant::now();
    let mut keep_alive = TcpStream::connect(&addr).unwrap();
    keep_alive.write_all(&ping_request(&addr, true)).unwrap();
    let (answer, idle_closed_after) = read_until_closed(&mut keep_alive, started);
    assert_pong(&answer);
    assert!(!answer.to_ascii_lowercase().contains("connection: close"), "kept alive: {answer}");
    eprintln!("idle keep-alive connection closed after {idle_closed_after:?}");

    let slow_head_closed_after = slow_head.join().unwrap().expect("the slow head was cut off");
    eprintln!("slow head closed after {slow_head_closed_after:?}");
    let (answer, slow_body_answered_after) = slow_body.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("the body did not arrive in time"), "{answer:?}");
    eprintln!("slow body answered 408 after {slow_body_answered_after:?}");
    // The connections were closed by their timeouts, not by the wait running out.
    for took in [idle_closed_after, slow_head_closed_after, slow_body_answered_after] {
        assert!(took >= Duration::from_millis(1500) && took < PATIENCE, "{took:?}");
    }

    // A head over 16 KiB is refused outright.
    let mut big = TcpStream::connect(&addr).unwrap();
    let head = format!("POST /hooks/hook HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let _ = big.write_all(head.as_bytes());
    let (answer, _) = read_until_closed(&mut big, Instant::now());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let (response, _) = ping(&addr);
    assert_pong(&response);
    daemon.wait_for(|l| l.starts_with("webhook: POST /hooks/hook: 408 "));
    daemon.stop();
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    raise_own_open_file_limit();
    let p = project();
    let cap = 50;
    let mut daemon = Daemon::start(&p, &["--header-timeout", "300s", "--max-connections", &cap.to_string()]);
    let slow = open_slow_connections(&daemon.addr, 4 * cap);
    let (response, took) = ping(&daemon.addr);
    assert_pong(&response);
    eprintln!("ping latency with {} slow connections against a cap of {cap}: {took:?}", 4 * cap);
    daemon.wait_for(|l| l.starts_with(&format!("webhook: {cap} connections open (the cap): closed ")));

    // The oldest went first, the newest are open.
    let deadline = Instant::now() + PATIENCE;
    while !closed_by_server(&slow[0]) {
        assert!(Instant::now() < deadline, "the oldest connection is still open");
        std::thread::sleep(Duration::from_millis(50));
    }
    // All but the newest (fewer than `cap`) are closed, each shortly after it was pushed out.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let closed = slow.iter().filter(|s| closed_by_server(s)).count();
        if closed >= 3 * cap {
            break;
        }
        assert!(Instant::now() < deadline, "{closed} closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let newest_open = slow.iter().rev().take(cap / 2).filter(|s| !closed_by_server(s)).count();
    assert_eq!(newest_open, cap / 2);
    assert!(daemon.open_fds() < 4 * cap, "the daemon holds {} descriptors", daemon.open_fds());
    daemon.stop();
}
