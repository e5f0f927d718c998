//! The project's files and state as host calls: `read_file` and `state::get` are value calls
//! (journaled, so a replay answers them without touching the disk); `state::put` is journaled
//! as an intent before it writes and as a result after, like an effect, and a resume that
//! finds the intent without its result asks the store whether the write happened before
//! writing again.
//!
//! It must not write in a dry run, a replay or a what-if.

use super::replay_decision::{CallKind, CallPlan, Recorded};
use super::{Host, HostError};
use crate::journal::entry::{CallSite, Entry};
use serde_json::{json, Value};

const PUT: &str = "state.put";

fn store_error(e: crate::effects::project_store::StoreError) -> HostError {
    HostError::World(e.to_string())
}

impl Host {
    /// `read_file(path)`: a repository file's text, `()` when there is none.
    pub fn read_file(&mut self, site: &CallSite, path: &str) -> Result<Value, HostError> {
        let answer = self.value_call("read_file", json!([path]), site, |h| {
            Ok(h.store.read_file(path).map_err(store_error)?.map(Value::String).unwrap_or(Value::Null))
        })?;
        Ok(answer.into_json())
    }

    /// `state::get(key)`: the value a run of this pipeline last put, `()` when none.
    pub fn state_get(&mut self, site: &CallSite, key: &str) -> Result<Value, HostError> {
        let answer = self.value_call("state.get", json!([key]), site, |h| h.store.get(key).map_err(store_error))?;
        Ok(answer.into_json())
    }

    /// `state::put(key, value)`: written once, whatever stops the run around it.
    pub fn state_put(&mut self, site: &CallSite, key: &str, value: Value) -> Result<Value, HostError> {
        let args = json!({ "key": key, "value": value });
        let call = self.plan_call(PUT, None, &args, site, CallKind::Effect)?;
        let index = call.index;
        let result = match call.plan {
            CallPlan::Recorded { recorded, .. } => self.restore_put(key, &value, recorded),
            CallPlan::Rejournaled(recorded) => {
                let write_id = self.write_id(index, &recorded);
                self.journal.append(Entry::effect_intent(index, PUT, call.key, site, args.clone(), write_id))?;
                let result = self.restore_put(key, &value, recorded);
                self.journal.append(Entry::effect_result(index, PUT, result.clone()))?;
                result
            }
            CallPlan::Unfinished { recorded, rejournal } => {
                let write_id = self.write_id(index, &recorded);
                if rejournal {
                    self.journal.append(Entry::effect_intent(index, PUT, call.key, site, args, write_id.clone()))?;
                }
                if !self.store.already_put(key, &write_id).map_err(store_error)? {
                    self.store.put(key, &value, &write_id).map_err(store_error)?;
                }
                let answer = recorded.answer;
                // Matched at its own place, the result belongs beside its intent.
                let at = if answer.positional { answer.call.unwrap_or(index) } else { index };
                let result = json!({ "status": "ok" });
                self.journal.append(Entry::effect_result(at, PUT, result.clone()))?;
                self.journal.flush()?;
                result
            }
            CallPlan::Live => self.put_live(index, call.key, site, key, &value, args)?,
            CallPlan::NotRecorded { listed, .. } => {
                if listed {
                    self.note_unrecorded(index, PUT, &args, site);
                }
                json!({ "status": "not_recorded" })
            }
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        };
        Ok(result)
    }

    /// The id a put's value is kept with: the one its intent was journaled with, else this
    /// run's id and the call's index.
    fn write_id(&self, index: u64, recorded: &Recorded) -> String {
        recorded.answer.idempotency_key.clone().unwrap_or_else(|| format!("{}:{index}", self.run_id))
    }

    fn restore_put(&mut self, key: &str, value: &Value, recorded: Recorded) -> Value {
        self.store.restore_put(key, value);
        recorded.answer.effect_result.unwrap_or_else(|| json!({ "status": "ok" }))
    }

    /// A live put: its intent journaled (durably, when it goes to disk) before the store
    /// changes, then its result.
    fn put_live(
        &mut self,
        index: u64,
        call_key: crate::journal::CallKey,
        site: &CallSite,
        key: &str,
        value: &Value,
        args: Value,
    ) -> Result<Value, HostError> {
        let write_id = format!("{}:{index}", self.run_id);
        self.journal.append(Entry::effect_intent(index, PUT, call_key, site, args, write_id.clone()))?;
        let result = if self.dry_run {
            json!({ "status": "dry_run" })
        } else {
            let durable = self.store.is_on_disk();
            if durable {
                self.journal.sync()?;
            }
            self.store.put(key, value, &write_id).map_err(store_error)?;
            json!({ "status": "ok" })
        };
        self.journal.append(Entry::effect_result(index, PUT, result.clone()))?;
        if self.store.is_on_disk() {
            self.journal.flush()?;
        }
        Ok(result)
    }
}
