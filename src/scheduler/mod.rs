//! The session scheduler: an actor on the tokio runtime that runs leaf sessions concurrently,
//! up to `--max-parallel`, each under its timeout, and reports completions back to the script
//! thread over a channel.
//!
//! It owns concurrency and timeouts and validates every output against its schema. It must not
//! decide anything about routing, and must not touch the journal: the host records completions
//! in the order the script thread receives them, and results reach the script in handle order.

pub mod session;

use crate::harness::Harness;
use crate::workflow;
use session::{LeafRequest, SessionResult, SessionStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// Extra time a harness gets past its own timeout before the scheduler gives up on it.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

pub struct SpawnOrder {
    pub request: LeafRequest,
    pub harness: Arc<dyn Harness>,
    pub validator: Arc<jsonschema::Validator>,
}

enum Command {
    Spawn(Box<SpawnOrder>),
    /// Kill every leaf still running (their process groups die with their futures).
    CancelAll,
}

pub struct Completion {
    pub result: SessionResult,
}

/// A graceful stop in progress: set by a signal handler, read by the host and the engine.
/// Triggering it cancels every running leaf (killing their process groups).
#[derive(Default)]
pub struct Interrupt {
    flag: std::sync::atomic::AtomicBool,
    signal: std::sync::atomic::AtomicI32,
    cancellers: std::sync::Mutex<Vec<mpsc::UnboundedSender<Command>>>,
}

impl Interrupt {
    pub fn trigger(&self, signal: i32) {
        use std::sync::atomic::Ordering;
        self.signal.store(signal, Ordering::SeqCst);
        self.flag.store(true, Ordering::SeqCst);
        for c in self.cancellers.lock().expect("interrupt poisoned").iter() {
            let _ = c.send(Command::CancelAll);
        }
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The signal that stopped the run (SIGINT, SIGTERM), or 0.
    pub fn signal(&self) -> i32 {
        self.signal.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn register(&self, sender: mpsc::UnboundedSender<Command>) {
        if self.is_set() {
            let _ = sender.send(Command::CancelAll);
        }
        self.cancellers.lock().expect("interrupt poisoned").push(sender);
    }
}

/// The script thread's end of the scheduler.
pub struct SchedulerClient {
    commands: mpsc::UnboundedSender<Command>,
    completions: std::sync::mpsc::Receiver<Completion>,
}

impl SchedulerClient {
    /// Starts the dispatcher on `runtime`.
    pub fn start(runtime: &tokio::runtime::Handle, max_parallel: usize, interrupt: &Interrupt) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        interrupt.register(cmd_tx.clone());
        runtime.spawn(dispatch(cmd_rx, done_tx, max_parallel.max(1)));
        SchedulerClient { commands: cmd_tx, completions: done_rx }
    }

    pub fn spawn(&self, order: SpawnOrder) {
        // The dispatcher only stops when this client is dropped, so sending cannot fail.
        let _ = self.commands.send(Command::Spawn(Box::new(order)));
    }

    pub fn cancel_all(&self) {
        let _ = self.commands.send(Command::CancelAll);
    }

    /// Blocks the script thread until a session completes.
    pub fn next_completion(&self) -> Option<Completion> {
        self.completions.recv().ok()
    }

    /// A completion if one is already waiting.
    pub fn try_completion(&self) -> Option<Completion> {
        self.completions.try_recv().ok()
    }
}

async fn dispatch(
    mut commands: mpsc::UnboundedReceiver<Command>,
    done: std::sync::mpsc::Sender<Completion>,
    max_parallel: usize,
) {
    let permits = Arc::new(Semaphore::new(max_parallel));
    let mut running = JoinSet::new();
    // Which session each task runs, so a cancellation can report every one of them.
    let mut sessions: std::collections::HashMap<tokio::task::Id, (String, String)> = Default::default();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Spawn(order)) => {
                    let SpawnOrder { request, harness, validator } = *order;
                    let id = request.session_id.clone();
                    let wf = request.workflow.name.clone();
                    let model = request.model.clone();
                    let limit = request.timeout + TIMEOUT_GRACE;
                    let timeout = request.timeout;
                    let harness_name = harness.name();
                    // `start` runs here, in spawn order; its future runs once a permit is free.
                    let leaf = harness.start(request);
                    let permits = permits.clone();
                    let done = done.clone();
                    let task_session = (id.clone(), wf.clone());
                    let handle = running.spawn(async move {
                        let _permit = permits.acquire_owned().await.expect("semaphore never closes");
                        let started = Instant::now();
                        let mut result = match tokio::time::timeout(limit, leaf).await {
                            Ok(r) => r,
                            Err(_) => SessionResult::failed(&id, &wf, SessionStatus::Timeout, format!(
                                "timed out after {}", humantime::format_duration(timeout))),
                        };
                        result.id = id;
                        result.workflow = wf;
                        result.harness.get_or_insert_with(|| harness_name.to_owned());
                        if result.model.is_none() { result.model = model; }
                        if result.duration_ms == 0 {
                            result.duration_ms = started.elapsed().as_millis() as u64;
                        }
                        if result.status == SessionStatus::Ok {
                            if let Err(violation) = workflow::validate(&validator, &result.output) {
                                result.status = SessionStatus::Failed;
                                result.error = Some(violation);
                            }
                        }
                        let _ = done.send(Completion { result });
                    });
                    sessions.insert(handle.id(), task_session);
                }
                Some(Command::CancelAll) => {
                    running.abort_all();
                    for (_, (id, wf)) in sessions.drain() {
                        let _ = done.send(Completion {
                            result: SessionResult::failed(&id, &wf, SessionStatus::Cancelled, "cancelled: the run is stopping"),
                        });
                    }
                }
                None => break,
            },
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &joined { Ok((id, _)) => *id, Err(e) => e.id() };
                sessions.remove(&id);
            }
        }
    }
    // The run is over: dropping the tasks kills any leaf still running.
    running.abort_all();
}
