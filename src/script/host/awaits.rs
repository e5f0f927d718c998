//! Waiting for leaves: `await_sessions` (journaled as a call, answered as its [`CallPlan`]
//! says) and journaling completions as they arrive, in the order the script thread receives
//! them.
//!
//! It must not start leaves nor build script values; it is the one place the host blocks on
//! the scheduler.

use super::replay_decision::{CallKind, CallPlan};
use super::sessions::Session;
use super::{Host, HostError};
use crate::journal::entry::{CallSite, Entry};
use crate::leaf::session::{FinishedSession, SessionResult};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

impl Host {
    /// Journals every completion that has already arrived, without waiting.
    pub(super) fn drain_completions(&mut self) -> Result<(), HostError> {
        let mut any = false;
        while let Some(c) = self.scheduler.try_completion() {
            self.finish_session(Box::new(c.result), true)?;
            any = true;
        }
        if any {
            // Group commit: completions arriving while the script routes are handed to the OS
            // at most every few milliseconds, not once per host call.
            self.journal.flush_if_older_than(Duration::from_millis(5))?;
        }
        Ok(())
    }

    /// Blocks until every listed session is done (the journaled `await_sessions` call).
    pub fn wait_for(&mut self, site: &CallSite, ids: &[String]) -> Result<(), HostError> {
        for id in ids {
            if self.session(id).is_none() {
                return Err(HostError::Script(format!("await_sessions: no session `{id}` was spawned in this run")));
            }
        }
        let args = json!({ "sessions": ids });
        let awaits_unfinished =
            !self.unfinished_in_journal.is_empty() && ids.iter().any(|id| self.unfinished_in_journal.contains(id));
        let kind = CallKind::Await { awaits_unfinished };
        let call = self.plan_call("await_sessions", None, &args, site, kind)?;
        // Live sessions are waited for whatever the plan; recorded ones are done already.
        self.wait_until_done(ids)?;
        let journal_it = match call.plan {
            CallPlan::Live | CallPlan::Rejournaled(_) => true,
            CallPlan::Recorded { .. } | CallPlan::NotRecorded { .. } => false,
            CallPlan::Unfinished { .. } => unreachable!("an await's recorded answer is whole"),
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        };
        if journal_it {
            let statuses: Vec<&str> = ids.iter().map(|id| self.finished(id).status.as_str()).collect();
            let entry = Entry::call(call.index, "await_sessions", call.key, site, args, json!(statuses), None);
            self.journal.append(entry)?;
            // An await boundary: make everything so far durable, in one fsync.
            self.journal.sync()?;
        }
        Ok(())
    }

    fn wait_until_done(&mut self, ids: &[String]) -> Result<(), HostError> {
        loop {
            // Before the answer, even one that is complete: a stopping run cancels its leaves,
            // and those results (not journaled) must not reach the script as answers.
            self.check_interrupt()?;
            let pending = ids.iter().any(|id| matches!(self.session(id), Some(Session::Pending(_))));
            if !pending {
                return Ok(());
            }
            // What the script did before it waits (its spawns) reaches the OS before the wait,
            // not with the first completion: a run's journal shows its leaves while they run
            // (`coord serve`). A no-op once the buffer is empty.
            self.journal.flush()?;
            let Some(c) = self.scheduler.next_completion() else { return Err(HostError::Interrupted) };
            self.finish_session(Box::new(c.result), true)?;
            // Drain whatever else finished meanwhile, then hand it all to the OS at once: a
            // leaf recorded here is never run again, even after a kill -9.
            while let Some(c) = self.scheduler.try_completion() {
                self.finish_session(Box::new(c.result), true)?;
            }
            self.journal.flush()?;
        }
    }

    /// Blocks until every listed session is done; returns them in the order given.
    pub fn await_sessions(&mut self, site: &CallSite, ids: &[String]) -> Result<Vec<Arc<FinishedSession>>, HostError> {
        self.wait_for(site, ids)?;
        Ok(ids.iter().map(|id| self.finished_session(id).clone()).collect())
    }

    /// A session [`Host::wait_for`] has seen finish.
    pub fn finished_session(&self, id: &str) -> &Arc<FinishedSession> {
        match self.session(id) {
            Some(Session::Done(done)) => done,
            _ => unreachable!("only sessions waited for are asked for"),
        }
    }

    /// The result of a session [`Host::wait_for`] has seen finish.
    pub fn finished(&self, id: &str) -> &SessionResult {
        &self.finished_session(id).result
    }
}
