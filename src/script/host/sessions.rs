//! Leaf sessions: `spawn_session` as its [`CallPlan`] says (a recorded result reused, a leaf
//! started live, or a result that says nothing was recorded), the session table in spawn
//! order, and recording each session's end.
//!
//! It must not wait for leaves (awaiting does, in `awaits`) nor build script values.

use super::leaf_orders::{CheckedSpawn, LeafSetupError};
use super::payload_size::{fits_inline, text_start};
use super::replay_decision::{CallKind, CallPlan, Recorded};
use super::spawn_options::SpawnOptions;
use super::{Host, HostError, Outage};
use crate::journal::blob_store::INLINE_LIMIT;
use crate::journal::entry::{CallSite, Entry};
use crate::journal::RecordedSession;
use crate::leaf::session::{FinishedSession, SessionResult, SessionStatus};
use crate::scheduler::run_event::RunEvent;
use serde_json::{json, Value};
use std::sync::Arc;

/// A spawned session: what was asked for until it finishes, then what it gave.
#[derive(Debug)]
pub(super) enum Session {
    /// Boxed, so the table's slots are two words: a large run has hundreds of thousands.
    Pending(Box<SpawnOptions>),
    /// Shared with the script's result record: the one copy of the answer, its goal and its
    /// inputs a run keeps.
    Done(Arc<FinishedSession>),
}

/// Where session `id` sits in a table of `len` sessions: ids are `s1`, `s2`, ... in spawn order
/// (anything else, `s01` included, names no session).
pub(super) fn session_index(id: &str, len: usize) -> Option<usize> {
    let digits = id.strip_prefix('s')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (1..=len).contains(&n).then(|| n - 1)
}

impl Host {
    /// Starts a leaf session (or takes its recorded result) and returns its id at once.
    pub fn spawn_session(
        &mut self,
        site: &CallSite,
        workflow_name: &str,
        opts: Value,
        schema_override: Option<Value>,
    ) -> Result<String, HostError> {
        let (options, checked) = self.check_spawn(workflow_name, opts, schema_override)?;
        let call = self.plan_call("spawn_session", Some(workflow_name), options.args(), site, CallKind::Spawn)?;
        self.next_session += 1;
        let id = format!("s{}", self.next_session);
        let journal_spawn = |host: &mut Self, options: &SpawnOptions| {
            host.journal.append_call(call.index, "spawn_session", &call.key, site, options.args(), Some(&id))
        };
        match call.plan {
            CallPlan::Recorded { recorded, live_after } => {
                self.reuse_session(&id, workflow_name, options, recorded, live_after, false)?
            }
            CallPlan::Rejournaled(recorded) => {
                journal_spawn(self, &options)?;
                self.reuse_session(&id, workflow_name, options, recorded, true, true)?;
            }
            // Spawned but never finished: it was in flight when the run stopped, so it runs
            // again; a resume's journal holds its spawn already.
            CallPlan::Unfinished { rejournal, .. } => {
                if rejournal {
                    journal_spawn(self, &options)?;
                }
                self.start_leaf(&id, workflow_name, options, checked)?;
            }
            CallPlan::Live => {
                journal_spawn(self, &options)?;
                self.start_leaf(&id, workflow_name, options, checked)?;
            }
            CallPlan::NotRecorded { listed, started } => {
                if started {
                    self.unfinished_in_journal.insert(id.clone());
                }
                if listed {
                    self.note_unrecorded(call.index, "spawn_session", options.args(), site);
                }
                self.not_recorded_session(&id, workflow_name, options)?;
            }
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        }
        Ok(id)
    }

    /// Takes a session's recorded result as this spawn's. `tell_harness` when leaves run after
    /// it (its harness hears of it in spawn order); `rejournal` when this run's journal must
    /// hold it again (a redo).
    fn reuse_session(
        &mut self,
        id: &str,
        workflow_name: &str,
        options: SpawnOptions,
        recorded: Recorded,
        tell_harness: bool,
        rejournal: bool,
    ) -> Result<(), HostError> {
        let Some(session) = recorded.session else { unreachable!("a spawn is whole only with its session") };
        let RecordedSession { mut result } =
            session.map_err(|e| HostError::Script(format!("journal: unreadable session result: {e}")))?;
        if rejournal {
            // Journaled again as the leaf gave it (a large output goes to this run's blobs):
            // the parent's blob marker is resolved first.
            self.resolve_blob(&mut result)?;
        }
        result.id = id.to_owned();
        if tell_harness {
            self.note_replayed(workflow_name, &options);
        }
        self.record_spawn(id, options);
        self.finish_session(result, rejournal)
    }

    /// A leaf a replay does not run: its result says no result was recorded.
    fn not_recorded_session(&mut self, id: &str, workflow_name: &str, options: SpawnOptions) -> Result<(), HostError> {
        let mut result = SessionResult::failed(
            id,
            workflow_name,
            SessionStatus::NotRecorded,
            "no recorded result for this leaf: replay runs nothing",
        );
        result.harness = Some("replay".into());
        self.record_spawn(id, options);
        self.finish_session(Box::new(result), false)
    }

    /// Hands a live leaf to the scheduler, unless the budget is spent or a dry run holds it
    /// back (then it finishes at once, skipped).
    fn start_leaf(
        &mut self,
        id: &str,
        workflow_name: &str,
        options: SpawnOptions,
        checked: CheckedSpawn,
    ) -> Result<(), HostError> {
        if let Some(budget) = self.budget_usd.filter(|b| self.usage.cost_usd >= *b) {
            let result = SessionResult::failed(
                id,
                workflow_name,
                SessionStatus::SkippedBudget,
                format!("not run: the run's budget of ${budget:.2} is spent (${:.4} so far)", self.usage.cost_usd),
            );
            self.record_spawn(id, options);
            return self.finish_session(Box::new(result), true);
        }
        if let Some(why) = self.held_back_by_dry_run(workflow_name, &options) {
            let result = SessionResult::failed(id, workflow_name, SessionStatus::SkippedDryRun, why);
            self.record_spawn(id, options);
            return self.finish_session(Box::new(result), true);
        }
        let prepared = self.prepare_leaf(id, workflow_name, &options, checked);
        self.record_spawn(id, options);
        match prepared {
            Ok(mut order) => {
                if let Some(events) = &self.events {
                    let goal = order.request.goal.clone();
                    events.send(RunEvent::SessionQueued {
                        id: id.to_owned(),
                        workflow: workflow_name.to_owned(),
                        goal,
                    });
                    order.harness = events.report_starts(order.harness);
                }
                self.scheduler.spawn(order);
                Ok(())
            }
            // `check_spawn` refused every script error before the call was journaled; should one
            // still get here, the session fails rather than staying pending for ever.
            Err(LeafSetupError::Script(msg) | LeafSetupError::Leaf(msg)) => {
                let result = SessionResult::failed(id, workflow_name, SessionStatus::Failed, msg);
                self.finish_session(Box::new(result), true)
            }
        }
    }

    /// Adds session `id` to the table, pending until [`Host::finish_session`] records its end.
    fn record_spawn(&mut self, id: &str, options: SpawnOptions) {
        debug_assert_eq!(session_index(id, self.sessions.len() + 1), Some(self.sessions.len()));
        self.sessions.push(Session::Pending(Box::new(options)));
    }

    pub(super) fn session(&self, id: &str) -> Option<&Session> {
        session_index(id, self.sessions.len()).map(|i| &self.sessions[i])
    }

    /// Whether a spawned leaf has not finished yet (a run with one must not park: the leaf
    /// would be lost with the process, and run again, spending again, on resume).
    pub(super) fn has_running_leaves(&self) -> bool {
        self.sessions.iter().any(|s| matches!(s, Session::Pending(_)))
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every finished session, in spawn order.
    pub fn finished_sessions(&self) -> Vec<Arc<FinishedSession>> {
        let finished = |s: &Session| match s {
            Session::Done(done) => Some(done.clone()),
            Session::Pending(_) => None,
        };
        self.sessions.iter().filter_map(finished).collect()
    }

    /// Records a finished session. `journal` is false for results taken from the journal.
    pub(super) fn finish_session(&mut self, mut result: Box<SessionResult>, journal: bool) -> Result<(), HostError> {
        // A leaf cancelled because the run is stopping was in flight, not finished: it is not
        // journaled, so `coord resume` runs it again.
        let stopping = self.interrupt.is_set() && result.status == SessionStatus::Cancelled;
        if journal && result.is_outage() {
            return Err(self.stop_on_outage(&result));
        }
        if journal && !stopping {
            self.journal_session(&result)?;
        } else {
            self.resolve_blob(&mut result)?;
        }
        self.usage.add(&result.usage);
        if let Some(events) = &self.events {
            events.send(RunEvent::finished(&result));
        }
        let Some(slot) = session_index(&result.id, self.sessions.len()).map(|i| &mut self.sessions[i]) else {
            unreachable!("a session finishes only after its spawn is recorded")
        };
        let Session::Pending(options) = slot else { unreachable!("a session finishes once") };
        let (goal, inputs) = options.take_goal_and_inputs();
        *slot = Session::Done(Arc::new(FinishedSession { result: *result, goal, inputs }));
        Ok(())
    }

    /// An outage is no answer to route on: the run stops, nothing acts on it, and the leaf is
    /// not journaled, so `coord resume` runs it again once the set-up is fixed.
    fn stop_on_outage(&mut self, result: &SessionResult) -> HostError {
        if self.outage.is_none() && result.status == SessionStatus::Failed {
            self.outage = Some(Outage {
                harness: result.harness.clone().unwrap_or_default(),
                session: result.id.clone(),
                workflow: result.workflow.clone(),
                error: result.error.clone().unwrap_or_default(),
            });
        }
        // No other leaf starts, and the script stops at its next step even inside `try`.
        self.interrupt.trigger(0);
        self.usage.add(&result.usage);
        if let Some(events) = &self.events {
            events.send(RunEvent::finished(result));
        }
        match self.outage.clone() {
            Some(o) => HostError::Outage(Box::new(o)),
            None => HostError::Interrupted,
        }
    }

    /// Journals a session's end; large payloads go to blobs, so no journal line grows with a
    /// leaf's answer.
    fn journal_session(&mut self, result: &SessionResult) -> Result<(), HostError> {
        let output_fits = fits_inline(&result.output);
        if output_fits && result.text.len() <= INLINE_LIMIT {
            self.journal.append_session(&result.id, result)?;
            return Ok(());
        }
        let mut record = serde_json::to_value(result).expect("session results serialize");
        if !output_fits {
            let hash = self.blobs.put(result.output.to_string().as_bytes())?;
            record["output"] = json!({ "$blob": hash });
        }
        if result.text.len() > INLINE_LIMIT {
            let hash = self.blobs.put(result.text.as_bytes())?;
            record["text"] = json!(text_start(&result.text));
            record["text_blob"] = json!(hash);
        }
        self.journal.append(Entry::session(&result.id, record))?;
        Ok(())
    }

    /// A recorded result's output and text, read back from their blobs when the journal holds
    /// only a marker or the text's start.
    pub(super) fn resolve_blob(&self, result: &mut SessionResult) -> Result<(), HostError> {
        if let Some(hash) = result.output.get("$blob").and_then(Value::as_str) {
            let bytes = self.blobs.get(hash)?;
            result.output = serde_json::from_slice(&bytes)
                .map_err(|e| HostError::Script(format!("journal: blob {hash} is not JSON: {e}")))?;
        }
        if let Some(hash) = result.text_blob.take() {
            result.text = self.blob_text(&hash)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::session_index;

    #[test]
    fn session_ids_name_their_place_in_spawn_order() {
        assert_eq!(session_index("s1", 3), Some(0));
        assert_eq!(session_index("s3", 3), Some(2));
        for id in ["s4", "s0", "s01", "s", "s+1", "s-1", "1", "x1", "s1 ", "s99999999999999999999999"] {
            assert_eq!(session_index(id, 3), None, "{id}");
        }
        assert_eq!(session_index("s1", 0), None);
    }
}
