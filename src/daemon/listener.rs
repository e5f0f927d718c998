//! The webhook listener's connections: accepting them, serving each with hyper's HTTP/1.1
//! connection under a header read timeout, and capping how many are open at once.
//!
//! Owns what a flood of connections can cost the daemon: a connection that has not sent a
//! whole request head within the header timeout is closed (the same timer closes a keep-alive
//! connection idle that long), at most `max_connections` are open, and at the cap the oldest
//! connection with no request in progress is closed to make room for the new one (only when
//! every open connection is inside a request is the new one closed at once). It also raises the
//! process's soft open-file limit to its hard limit, so the cap, not file descriptors, is what
//! runs out. It must not know routes, signatures or pipelines: `webhook` does.

use super::announce;
use axum::body::Body;
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// A request head (request line and headers) larger than this is refused (431). GitHub's are
/// about 1 KiB; a small buffer keeps what thousands of half-sent heads hold in memory small.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// File descriptors kept for runs (journals, blobs, leaf processes' pipes, HTTP clients) when
/// the open-file limit, not `max_connections`, bounds the connections.
const FDS_KEPT_FOR_RUNS: u64 = 256;
/// The fewest connections the listener serves, however low the open-file limit.
const FEWEST_CONNECTIONS: usize = 16;
/// How long the accept loop waits after accepting fails (no file descriptor left, a
/// connection reset before it was accepted), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);
/// Connections the kernel completes before the daemon accepts them. Past it the kernel drops
/// new connections' first packet and the client retries a second later, so a burst of
/// connections must not fill it (the usual 128 did); Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// The cap's log line is written at most this often during a flood.
const CAP_NOTICE_EVERY: Duration = Duration::from_secs(60);

/// How connections are limited (defaults: `coord daemon`'s flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// A connection must send a whole request head within this (also: keep-alive idle time).
    pub header_timeout: Duration,
    /// Most connections open at once (lowered to what the open-file limit allows).
    pub max_connections: usize,
}

/// Binds the webhook address with a backlog of [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std and tokio do: a restarted daemon binds again while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force after.
/// Leaves the limit as it was when it cannot be read or raised.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return u64::MAX;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// The connection cap that fits in `open_file_limit`, keeping [`FDS_KEPT_FOR_RUNS`] for runs.
pub fn connection_cap(wanted: usize, open_file_limit: u64) -> usize {
    let room = open_file_limit.saturating_sub(FDS_KEPT_FOR_RUNS);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    wanted.min(room).max(FEWEST_CONNECTIONS)
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish the request it is in, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES);
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let (stop_connections, stopping) = watch::channel(false);
    // Aborting `serve` drops this set, which aborts every connection with it.
    let mut connections = JoinSet::new();
    let mut cap_notice = CapNotice::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    // Out of file descriptors despite the cap: free one an idle connection holds.
                    open.lock().expect("never poisoned").close_oldest_idle();
                }
                // Pause rather than spin on a connection the system cannot hand over (a reset
                // before it was accepted costs only this pause).
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let admitted = open.lock().expect("never poisoned").admit(limits.max_connections);
        let Some(admitted) = admitted else {
            cap_notice.refused(limits.max_connections);
            // Dropping the stream closes it at once: every open connection is in a request.
            continue;
        };
        if admitted.closed_idle {
            cap_notice.closed_idle(limits.max_connections);
        }
        let in_request = admitted.in_request.clone();
        let inner = TowerToHyperService::new(router.clone());
        let service = hyper::service::service_fn(move |request| {
            let busy = InRequest::enter(&in_request);
            let response = hyper::service::Service::call(&inner, request);
            async move {
                // Inside a request until hyper is done with the response's body, so a full
                // listener never closes a connection whose answer is on its way out.
                let response: Response = response.await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _busy = &busy;
                        frame
                    }))
                }))
            }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        let open = open.clone();
        connections.spawn(async move {
            let _registered = Registered { open, id: admitted.id };
            let mut closed = admitted.closed;
            tokio::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    // A connection's errors (a timeout, a malformed request, a reset) only
                    // end that connection.
                    _ = connection.as_mut() => break,
                    // Dropping the connection closes its socket.
                    Ok(()) = &mut closed => break,
                    _ = stopping.changed(), if !draining => {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_connections.send(true);
    while connections.join_next().await.is_some() {}
}

/// Every open connection, by the order it was accepted in.
#[derive(Default)]
struct OpenConnections {
    next_id: u64,
    by_age: BTreeMap<u64, OpenConnection>,
}

struct OpenConnection {
    in_request: Arc<AtomicBool>,
    close: oneshot::Sender<()>,
}

/// A connection let in: its id, its in-request flag, the signal that closes it, and whether
/// an idle connection was closed to make room for it.
struct Admitted {
    id: u64,
    in_request: Arc<AtomicBool>,
    closed: oneshot::Receiver<()>,
    closed_idle: bool,
}

impl OpenConnections {
    /// Registers a new connection. At `cap` it first closes the oldest idle connection; when
    /// every open connection is inside a request it registers nothing (`None`).
    fn admit(&mut self, cap: usize) -> Option<Admitted> {
        let closed_idle = self.by_age.len() >= cap;
        if closed_idle && !self.close_oldest_idle() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let in_request = Arc::new(AtomicBool::new(false));
        let (close, closed) = oneshot::channel();
        self.by_age.insert(id, OpenConnection { in_request: in_request.clone(), close });
        Some(Admitted { id, in_request, closed, closed_idle })
    }

    /// Closes the longest-open connection that is not inside a request; false when every one is.
    fn close_oldest_idle(&mut self) -> bool {
        let oldest_idle = self.by_age.iter().find(|(_, c)| !c.in_request.load(Ordering::Acquire)).map(|(id, _)| *id);
        match oldest_idle.and_then(|id| self.by_age.remove(&id)) {
            Some(connection) => {
                let _ = connection.close.send(());
                true
            }
            None => false,
        }
    }
}

/// Takes a connection out of [`OpenConnections`] when its task ends, however it ends.
struct Registered {
    open: Arc<Mutex<OpenConnections>>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            open.by_age.remove(&self.id);
        }
    }
}

/// Marks a connection as inside a request while a response is being made.
struct InRequest(Arc<AtomicBool>);

impl InRequest {
    fn enter(flag: &Arc<AtomicBool>) -> Self {
        flag.store(true, Ordering::Release);
        InRequest(flag.clone())
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The log line a full listener writes, at most once per [`CAP_NOTICE_EVERY`] with counts.
#[derive(Default)]
struct CapNotice {
    last: Option<Instant>,
    closed_idle: u64,
    refused: u64,
}

impl CapNotice {
    fn closed_idle(&mut self, cap: usize) {
        self.closed_idle += 1;
        self.maybe_announce(cap);
    }

    fn refused(&mut self, cap: usize) {
        self.refused += 1;
        self.maybe_announce(cap);
    }

    fn maybe_announce(&mut self, cap: usize) {
        if self.last.is_some_and(|at| at.elapsed() < CAP_NOTICE_EVERY) {
            return;
        }
        announce(format_args!(
            "webhook: {cap} connections open (the cap): closed {} idle connection(s), refused {} new one(s)",
            self.closed_idle, self.refused
        ));
        self.last = Some(Instant::now());
        self.closed_idle = 0;
        self.refused = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let mut open = OpenConnections::default();
        let mut first = open.admit(2).unwrap();
        let second = open.admit(2).unwrap();
        assert!(!first.closed_idle && !second.closed_idle);
        // The first is inside a request: the second, idle, is the one closed.
        first.in_request.store(true, Ordering::Release);
        let mut second_closed = second.closed;
        let third = open.admit(2).unwrap();
        assert!(third.closed_idle);
        assert_eq!(second_closed.try_recv(), Ok(()));
        assert_eq!(first.closed.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        // Every open connection inside a request: a new one is refused.
        third.in_request.store(true, Ordering::Release);
        assert!(open.admit(2).is_none());
        assert_eq!(open.by_age.len(), 2);
    }

    #[test]
    fn the_cap_fits_in_the_open_file_limit() {
        assert_eq!(connection_cap(4096, 1_048_576), 4096);
        assert_eq!(connection_cap(4096, 1024), 1024 - FDS_KEPT_FOR_RUNS as usize);
        assert_eq!(connection_cap(4096, 100), FEWEST_CONNECTIONS);
    }
}
