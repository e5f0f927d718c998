//! The session scheduler: an actor on the tokio runtime that runs leaf sessions concurrently,
//! up to `--max-parallel`, each under its timeout, and reports completions back to the script
//! thread over a channel.
//!
//! It owns concurrency (run-wide and per harness), timeouts, retries, worktrees, and validates
//! every output against its schema (see `leaf_task`). It must not decide anything about
//! routing, and must not touch the journal: the host records completions in the order the
//! script thread receives them, and results reach the script in handle order.

pub mod leaf_task;
pub mod run_clock;
pub mod run_event;

use crate::harness::Harness;
use crate::leaf::session::{LeafRequest, SessionResult, SessionStatus};
use leaf_task::{Breaker, LeafClock, LeafTask};
use run_clock::RunClock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

pub struct SpawnOrder {
    /// The leaf's request; its prompt is rendered here, by the dispatcher (below).
    pub request: LeafRequest,
    pub harness: Arc<dyn Harness>,
    pub validator: Arc<jsonschema::Validator>,
}

enum Command {
    Spawn(Box<SpawnOrder>),
    /// Kill every leaf still running (their process groups die with their futures).
    CancelAll,
    /// A leaf answered from the journal: its harness hears of it in spawn order.
    Replayed {
        harness: Arc<dyn Harness>,
        workflow: String,
        goal: String,
        inputs: serde_json::Value,
    },
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
    /// The stop is the script parking itself at a wait (`--park-after`), not a signal.
    parking: std::sync::atomic::AtomicBool,
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

    /// Stops the script where it waits, to park the run: the engine stops as for a signal, but
    /// no leaf is running (a run parks only then), so nothing is cancelled.
    pub fn park(&self) {
        use std::sync::atomic::Ordering;
        self.parking.store(true, Ordering::SeqCst);
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether the stop in progress is a park ([`Interrupt::park`]).
    pub fn is_parking(&self) -> bool {
        self.parking.load(std::sync::atomic::Ordering::SeqCst)
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
    /// Starts the dispatcher on `runtime`; `clock` times the leaves for the timeline.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        max_parallel: usize,
        interrupt: &Interrupt,
        clock: RunClock,
    ) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        interrupt.register(cmd_tx.clone());
        runtime.spawn(dispatch(cmd_rx, done_tx, max_parallel.max(1), clock));
        SchedulerClient { commands: cmd_tx, completions: done_rx }
    }

    pub fn spawn(&self, order: SpawnOrder) {
        // The dispatcher only stops when this client is dropped, so sending cannot fail.
        let _ = self.commands.send(Command::Spawn(Box::new(order)));
    }

    pub fn cancel_all(&self) {
        let _ = self.commands.send(Command::CancelAll);
    }

    /// Tells `harness`, in spawn order, of a leaf a resumed run took from its journal.
    pub fn replayed(&self, harness: Arc<dyn Harness>, workflow: &str, goal: &str, inputs: &serde_json::Value) {
        let (workflow, goal, inputs) = (workflow.to_owned(), goal.to_owned(), inputs.clone());
        let _ = self.commands.send(Command::Replayed { harness, workflow, goal, inputs });
    }

    /// Blocks the script thread until a session completes.
    pub fn next_completion(&self) -> Option<Completion> {
        self.completions.recv().ok()
    }

    /// A completion if one arrives within `wait`; `Err` once the dispatcher is gone.
    pub fn completion_within(&self, wait: std::time::Duration) -> Result<Option<Completion>, ()> {
        match self.completions.recv_timeout(wait) {
            Ok(c) => Ok(Some(c)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
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
    clock: RunClock,
) {
    let permits = Arc::new(Semaphore::new(max_parallel));
    let breaker = Arc::new(Breaker::default());
    // Per-harness limits, made the first time a harness is seen.
    let mut harness_limits: HashMap<String, Option<Arc<Semaphore>>> = HashMap::new();
    let mut running = JoinSet::new();
    // Which session each task runs, so a cancellation can report every one of them.
    let mut sessions: HashMap<tokio::task::Id, (String, String, LeafClock)> = Default::default();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Spawn(order)) => {
                    let SpawnOrder { mut request, harness, validator } = *order;
                    let leaf_clock = LeafClock::queued_now(clock);
                    // The prompt is rendered here rather than on the script thread, which
                    // spawns thousands of leaves at a time; a template that fails to render
                    // fails its session, as a leaf's failure does.
                    match request.workflow.render_prompt(&request.goal, &request.inputs) {
                        Ok(prompt) => request.prompt = prompt,
                        Err(msg) => {
                            let (id, wf) = (&request.session_id, &request.workflow.name);
                            let mut result = SessionResult::failed(id, wf, SessionStatus::Failed, msg);
                            result.timing = Some(leaf_clock.ended_now(Vec::new()));
                            let _ = done.send(Completion { result });
                            continue;
                        }
                    }
                    let task_session = (request.session_id.clone(), request.workflow.name.clone(), leaf_clock.clone());
                    let span = tracing::info_span!(
                        "leaf",
                        session = %request.session_id,
                        workflow = %request.workflow.name,
                        harness = %harness.name(),
                    );
                    // `start` runs here, in spawn order; its future runs once permits are free.
                    let first = span.in_scope(|| harness.start(request.clone()));
                    let harness_permits = harness_limits
                        .entry(harness.name().to_owned())
                        .or_insert_with(|| harness.limits().concurrency.map(|n| Arc::new(Semaphore::new(n.max(1)))))
                        .clone();
                    let task = LeafTask {
                        request,
                        harness,
                        validator,
                        first,
                        run_permits: permits.clone(),
                        harness_permits,
                        breaker: breaker.clone(),
                        clock: leaf_clock,
                    };
                    let done = done.clone();
                    let handle = running.spawn(
                        async move {
                            let result = task.run().await;
                            let _ = done.send(Completion { result });
                        }
                        .instrument(span),
                    );
                    sessions.insert(handle.id(), task_session);
                }
                Some(Command::Replayed { harness, workflow, goal, inputs }) => {
                    harness.replayed(&workflow, &goal, &inputs);
                }
                Some(Command::CancelAll) => {
                    running.abort_all();
                    for (_, (id, wf, leaf_clock)) in sessions.drain() {
                        let _ = done.send(Completion { result: cancelled(&id, &wf, &leaf_clock) });
                    }
                }
                None => break,
            },
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &joined { Ok((id, _)) => *id, Err(e) => e.id() };
                let session = sessions.remove(&id);
                // A task that panicked sent no completion, and the script would wait for it
                // forever: its leaf fails instead. (A cancelled one was reported as it was
                // cancelled, and is no longer in `sessions`.)
                if let (Err(e), Some((id, wf, leaf_clock))) = (&joined, session) {
                    if e.is_panic() {
                        let error = format!("coord: the leaf's {e} (a bug in coord)");
                        let mut result = SessionResult::failed(&id, &wf, SessionStatus::Failed, error);
                        result.timing = Some(leaf_clock.ended_now(Vec::new()));
                        let _ = done.send(Completion { result });
                    }
                }
            }
        }
    }
    // The run is over: dropping the tasks kills any leaf still running.
    running.abort_all();
}

/// A leaf stopped with the run: it took as long as it had been queued and running, as a leaf
/// that finished does (its `duration_ms` counts from its spawn).
fn cancelled(id: &str, workflow: &str, clock: &LeafClock) -> SessionResult {
    let mut result = SessionResult::failed(id, workflow, SessionStatus::Cancelled, "cancelled: the run is stopping");
    let timing = clock.ended_now(Vec::new());
    result.duration_ms = timing.ended_ms.saturating_sub(timing.queued_ms);
    result.timing = Some(timing);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::LeafFuture;
    use crate::workflow::Workflow;
    use std::time::Duration;

    /// A harness with a bug: its leaf panics.
    struct PanickingHarness;

    impl Harness for PanickingHarness {
        fn name(&self) -> &str {
            "panicking"
        }
        fn start(&self, _request: LeafRequest) -> LeafFuture {
            Box::pin(async { panic!("a bug in a harness") })
        }
    }

    #[test]
    fn a_leaf_whose_task_panics_fails_rather_than_leaving_the_script_waiting() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let scheduler = SchedulerClient::start(runtime.handle(), 2, &Interrupt::default(), RunClock::default());
        let workflow = Workflow::new("review", "panicking", "", serde_json::json!({"type": "object"})).unwrap();
        let request = LeafRequest::sample(workflow, Duration::from_secs(5));
        let validator = Arc::new(crate::workflow::compile_schema(&request.schema).unwrap());
        scheduler.spawn(SpawnOrder { request, harness: Arc::new(PanickingHarness), validator });
        let completion = scheduler.next_completion().expect("a completion, not a hang");
        assert_eq!(completion.result.status, SessionStatus::Failed);
        assert!(completion.result.error.unwrap().contains("panicked"));
    }
}
