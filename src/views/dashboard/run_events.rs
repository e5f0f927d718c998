//! The server-sent events of one run page: a snapshot of the run, then, as its journal grows,
//! each new entry's activity line and an update of what changed.
//!
//! Events (every payload masked):
//! - `snapshot`: `{"header": ..., "nodes": [every node]}` ([`super::live_view`]); sent first,
//!   and again when the journal was cut or replaced (the page starts over from it).
//! - `entry`: `{"seq", "type", "fn", "session", "call", "line"}` for each appended entry, its
//!   id the byte offset just past it. A reconnecting page (`Last-Event-ID`) gets the entries
//!   after that offset, a new one the last few.
//! - `update`: `{"header": ..., "nodes": [new or changed nodes]}`.
//! - `problem`: the journal became unreadable; the stream ends.
//!
//! One blocking thread per page follows the journal ([`JournalFollower`]), looking every
//! [`LOOK_EVERY`]; it ends when the page goes away or the server stops. Rebuilding the graph
//! costs time in proportion to the run, so updates of a large, busy run come at most every
//! few times that cost apart; entries are never held back.

use super::journal_follower::{Growth, JournalFollower};
use super::live_view::{self, RunView, SentNodes};
use crate::journal::entry::{Line, ParentRun, RunStatus};
use crate::journal::run_dir::{redos_of, RunStore};
use crate::redaction::Redactor;
use crate::views::run_graph::{observed_status, RunGraph};
use axum::response::sse::Event;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often the journal is looked at.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often a run without an end is checked for a dead owner (its status turns `interrupted`).
const OWNER_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Entries a new page is sent of what happened before it connected.
const RECENT_ENTRIES: usize = 30;

/// Where a page's events come from.
pub struct RunEvents {
    pub dir: PathBuf,
    pub store: RunStore,
    pub redactor: Arc<Redactor>,
    /// The offset of the last entry the page had, when it reconnects.
    pub last_event: Option<u64>,
    pub stopping: watch::Receiver<bool>,
}

impl RunEvents {
    /// Follows the run until the page or the server goes away. Blocking.
    pub fn follow(self, events: mpsc::Sender<Event>) {
        let send = |event: Event| events.blocking_send(event).is_ok();
        let redactor = &self.redactor;
        let mut follower = match JournalFollower::open(&self.dir, redactor) {
            Ok(f) => f,
            Err(e) => {
                send(problem(redactor, &e.to_string()));
                return;
            }
        };
        let redos = redos_of(&self.store, &follower.run().header.run_id);
        let mut sent = SentNodes::default();
        let mut view = build(&follower, redactor, &redos).0;
        if !send(snapshot(redactor, &view, &mut sent)) {
            return;
        }
        let run = follower.run();
        let first_recent = run.entries.len().saturating_sub(RECENT_ENTRIES);
        for (i, entry) in run.entries.iter().enumerate() {
            let end = run.offsets.get(i + 1).copied().unwrap_or(run.valid_len);
            let wanted = match self.last_event {
                Some(had) => end > had,
                None => i >= first_recent,
            };
            if wanted && !send(entry_event(redactor, run, entry, end)) {
                return;
            }
        }
        let mut dirty = false;
        let mut next_build = Instant::now();
        let mut next_owner_check = Instant::now() + OWNER_CHECK_EVERY;
        loop {
            std::thread::sleep(LOOK_EVERY);
            if events.is_closed() || *self.stopping.borrow() {
                return;
            }
            match follower.look(redactor) {
                Ok(Growth::Nothing) => {}
                Ok(Growth::Appended(entries)) => {
                    for (end, entry) in &entries {
                        if !send(entry_event(redactor, follower.run(), entry, *end)) {
                            return;
                        }
                    }
                    dirty = true;
                }
                Ok(Growth::Reread) => {
                    sent.clear();
                    view = build(&follower, redactor, &redos).0;
                    if !send(snapshot(redactor, &view, &mut sent)) {
                        return;
                    }
                    dirty = false;
                }
                Err(e) => {
                    send(problem(redactor, &e.to_string()));
                    return;
                }
            }
            let now = Instant::now();
            if !dirty && view.header.status == RunStatus::Running.as_str() && now >= next_owner_check {
                next_owner_check = now + OWNER_CHECK_EVERY;
                dirty = observed_status(follower.run()) != RunStatus::Running;
            }
            if dirty && now >= next_build {
                let (fresh, took) = build(&follower, redactor, &redos);
                view = fresh;
                next_build = Instant::now() + (took * 4).max(LOOK_EVERY);
                dirty = false;
                let changed = sent.changed(&view);
                let body = live_view::payload(&view.header, &changed);
                if !send(Event::default().event("update").data(redactor.mask_json_text(&body))) {
                    return;
                }
            }
        }
    }
}

/// The page's model of the run as followed so far, and how long making it took.
fn build(follower: &JournalFollower, redactor: &Redactor, redos: &[(String, ParentRun)]) -> (RunView, Duration) {
    let started = Instant::now();
    let run = follower.run();
    let graph = RunGraph::build_with_redos(run, redactor, redos.to_vec());
    let view = live_view::run_view(&graph, live_view::max_parallel(run));
    (view, started.elapsed())
}

fn snapshot(redactor: &Redactor, view: &RunView, sent: &mut SentNodes) -> Event {
    let nodes = sent.changed(view);
    let body = live_view::payload(&view.header, &nodes);
    Event::default().event("snapshot").data(redactor.mask_json_text(&body))
}

fn entry_event(redactor: &Redactor, run: &crate::journal::RecordedRun, line: &Line, end: u64) -> Event {
    let entry = &line.entry;
    let body = json!({
        "seq": line.seq,
        "type": entry.kind(),
        "fn": entry.function(),
        "session": entry.session_id(),
        "call": entry.call_number(),
        "line": live_view::activity_line(run, entry),
    });
    Event::default().event("entry").id(end.to_string()).data(redactor.mask_json_text(&body.to_string()))
}

fn problem(redactor: &Redactor, message: &str) -> Event {
    Event::default().event("problem").data(redactor.mask(message).replace('\n', " "))
}
