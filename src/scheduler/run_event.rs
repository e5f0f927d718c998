//! Run events: what a live run reports while it works (a session queued, started, finished; an
//! effect done), for the progress display of `coord run`.
//!
//! It owns the event type and the sender the host holds. It must not influence the run:
//! sending never blocks, a receiver that went away is ignored, and nothing here is journaled
//! (the journal stays the only record; events are a courtesy to the person watching).

use crate::harness::{Harness, LeafFuture};
use crate::leaf::session::{LeafRequest, SessionResult, SessionStatus, Usage};
use serde_json::Value;
use std::sync::mpsc;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// Handed to the scheduler; waits for a free slot.
    SessionQueued { id: String, workflow: String, goal: String },
    /// Its leaf started running (a `--max-parallel` slot was free).
    SessionStarted { id: String },
    /// Finished, failed, timed out or was taken from the journal.
    SessionFinished {
        id: String,
        workflow: String,
        status: SessionStatus,
        usage: Usage,
        duration_ms: u64,
        error: Option<String>,
    },
    /// An effect acted (or was skipped in a dry run); `status` is its result's status.
    EffectDone { function: String, target: Option<String>, status: String },
}

impl RunEvent {
    pub fn finished(result: &SessionResult) -> Self {
        RunEvent::SessionFinished {
            id: result.id.clone(),
            workflow: result.workflow.clone(),
            status: result.status,
            usage: result.usage.clone(),
            duration_ms: result.duration_ms,
            error: result.error.clone(),
        }
    }

    /// `target` is the PR, issue, channel or branch the effect acted on.
    pub fn effect_done(function: &str, args: &Value, result: &Value) -> Self {
        let target = ["pr", "number", "channel", "branch"]
            .iter()
            .find_map(|f| args.get(*f))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        let status = result.get("status").and_then(Value::as_str).unwrap_or("?");
        RunEvent::EffectDone { function: function.to_owned(), target, status: status.to_owned() }
    }
}

/// The sending end the host holds. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RunEvents {
    sender: mpsc::Sender<RunEvent>,
}

impl RunEvents {
    pub fn channel() -> (RunEvents, mpsc::Receiver<RunEvent>) {
        let (sender, receiver) = mpsc::channel();
        (RunEvents { sender }, receiver)
    }

    pub fn send(&self, event: RunEvent) {
        // Nobody watching is fine: the run does not depend on its display.
        let _ = self.sender.send(event);
    }

    /// Wraps a harness so each leaf it starts reports [`RunEvent::SessionStarted`] when it
    /// first runs, which is after the scheduler gave it a slot.
    pub fn report_starts(&self, harness: Arc<dyn Harness>) -> Arc<dyn Harness> {
        Arc::new(StartReportingHarness { inner: harness, events: self.clone() })
    }
}

struct StartReportingHarness {
    inner: Arc<dyn Harness>,
    events: RunEvents,
}

impl Harness for StartReportingHarness {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        self.inner.repair(request, previous, feedback)
    }

    fn limits(&self) -> crate::harness::HarnessLimits {
        self.inner.limits()
    }

    fn replayed(&self, workflow: &str, goal: &str, inputs: &serde_json::Value) {
        self.inner.replayed(workflow, goal, inputs)
    }

    fn runs_in_workdir(&self) -> bool {
        self.inner.runs_in_workdir()
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        let id = request.session_id.clone();
        let leaf = self.inner.start(request);
        let events = self.events.clone();
        Box::pin(async move {
            events.send(RunEvent::SessionStarted { id });
            leaf.await
        })
    }
}
