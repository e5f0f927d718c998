//! Value calls: `now`, `input`, `inputs`, `item_outcome` and the GitHub reads (the project's
//! files and state are in `project_calls`). Each is answered as its
//! [`CallPlan`] says, and a live answer is journaled (a large one as a blob) before the
//! script sees it.
//!
//! It must not act on the world: reads only.

use super::payload_size::fits_within;
use super::replay_decision::{CallKind, CallPlan, Recorded};
use super::{Clock, Host, HostError};
use crate::effects::GithubRead;
use crate::journal::blob_store::{self, ANSWER_INLINE_LIMIT};
use crate::journal::entry::{CallEntry, CallSite, Entry};
use crate::journal::CallKey;
use serde_json::{json, Value};

/// The calls whose recorded answers a replay's journal-reading thread parses while the script
/// runs: the GitHub reads, the only large answers that reach a script as values.
pub const PARSED_AHEAD: crate::journal::ParseAhead = &["github."];

/// A value call's answer: live, or parsed ahead by the journal's reading thread, a JSON value;
/// otherwise the journal's JSON text, parsed by whoever takes it.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    Recorded(String),
}

impl Answer {
    /// A recorded answer that is not JSON (a corrupt journal line) reads as null.
    pub fn into_json(self) -> Value {
        match self {
            Answer::Json(v) => v,
            Answer::Recorded(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }
}

impl Host {
    /// A call whose live answer is computed by `live`; journaled, or answered from the journal.
    pub(super) fn value_call(
        &mut self,
        function: &str,
        args: Value,
        site: &CallSite,
        live: impl FnOnce(&mut Self) -> Result<Value, HostError>,
    ) -> Result<Answer, HostError> {
        let call = self.plan_call(function, None, &args, site, CallKind::Value)?;
        let index = call.index;
        match call.plan {
            CallPlan::Recorded { recorded, .. } => self.recorded_answer(recorded),
            CallPlan::Rejournaled(recorded) => {
                let value = self.recorded_answer(recorded)?.into_json();
                self.journal.append(Entry::call(index, function, call.key, site, args, value.clone(), None))?;
                Ok(Answer::Json(value))
            }
            CallPlan::NotRecorded { .. } => {
                self.note_unrecorded(index, function, &args, site);
                Ok(Answer::Json(Value::Null))
            }
            CallPlan::Live => {
                let result = live(self)?;
                self.journal_live_answer(index, function, call.key, site, args, result)
            }
            CallPlan::Unfinished { .. } => unreachable!("a value call's recorded answer is whole"),
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        }
    }

    /// Journals a live answer (a large one as a blob) and hands it to the script.
    fn journal_live_answer(
        &mut self,
        index: u64,
        function: &str,
        key: CallKey,
        site: &CallSite,
        args: Value,
        result: Value,
    ) -> Result<Answer, HostError> {
        if !fits_within(&result, ANSWER_INLINE_LIMIT) {
            let hash = self.blobs.put(result.to_string().as_bytes())?;
            let marker = blob_store::marker(&hash);
            self.journal.append(Entry::call(index, function, key, site, args, marker, None))?;
            return Ok(Answer::Json(result));
        }
        let entry = CallEntry::new(index, function, key, site, args, result, None);
        self.journal.append_call_entry(&entry)?;
        Ok(Answer::Json(entry.result))
    }

    /// A recorded value call's answer: as the journal's reading thread parsed it, else its
    /// text (read back from its blob when the journal holds only a marker).
    pub(super) fn recorded_answer(&self, recorded: Recorded) -> Result<Answer, HostError> {
        let answer = recorded.answer;
        if let Some(value) = answer.parsed {
            return match blob_store::marked_hash_of(&value) {
                Some(hash) => Ok(Answer::Recorded(self.blob_text(hash)?)),
                None => Ok(Answer::Json(value)),
            };
        }
        let text = answer.result.unwrap_or_else(|| "null".into());
        match blob_store::marked_hash(&text) {
            Some(hash) => Ok(Answer::Recorded(self.blob_text(hash)?)),
            None => Ok(Answer::Recorded(text)),
        }
    }

    /// The text of a blob this run's journal names.
    pub(super) fn blob_text(&self, hash: &str) -> Result<String, HostError> {
        let bytes = self.blobs.get(hash)?;
        String::from_utf8(bytes).map_err(|e| HostError::Script(format!("journal: blob {hash} is not text: {e}")))
    }

    pub fn now(&mut self, site: &CallSite) -> Result<i64, HostError> {
        let v = self.value_call("now", json!([]), site, |h| {
            Ok(json!(match h.clock {
                Clock::Fixed(ms) => ms.div_euclid(1000),
                Clock::System => chrono::Utc::now().timestamp(),
            }))
        })?;
        Ok(v.into_json().as_i64().unwrap_or(0))
    }

    pub fn input(&mut self, site: &CallSite, name: &str) -> Result<Value, HostError> {
        self.value_call("input", json!([name]), site, |h| Ok(h.inputs.get(name).cloned().unwrap_or(Value::Null)))
            .map(Answer::into_json)
    }

    pub fn inputs(&mut self, site: &CallSite) -> Result<Value, HostError> {
        self.value_call("inputs", json!([]), site, |h| {
            Ok(Value::Object(h.inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        })
        .map(Answer::into_json)
    }

    /// `run_info()`: the run's id and its report's address (`[run] url`), journaled so a
    /// replay names the run it replays.
    pub fn run_info(&mut self, site: &CallSite) -> Result<Value, HostError> {
        self.value_call("run_info", json!([]), site, |h| Ok(h.run_info.clone())).map(Answer::into_json)
    }

    /// `item_outcome(item, outcome, reason)`: what the script decided about one item. It acts
    /// on nothing; it is journaled (and answered from the journal on replay) so views can show
    /// every item's outcome, a PR left waiting included.
    pub fn item_outcome(&mut self, site: &CallSite, item: &str, outcome: &str, reason: Value) -> Result<(), HostError> {
        let mut args = json!({ "item": item, "outcome": outcome });
        if !reason.is_null() {
            args["reason"] = reason;
        }
        self.value_call("item_outcome", args, site, |_| Ok(Value::Null)).map(|_| ())
    }

    pub fn github_read(&mut self, site: &CallSite, read: GithubRead) -> Result<Answer, HostError> {
        let function = read.function();
        self.value_call(function, read.args(), site, |h| {
            let answer = h.world.github_read(&read).map_err(|e| HostError::World(e.to_string()));
            h.log_world_notes();
            answer
        })
    }
}
