//! Effects (merges, comments, labels, notifications) as their [`CallPlan`] says: a recorded
//! result restored, an interrupted one finished (asking the world first whether it happened),
//! or a live one journaled as an intent before it acts and as a result after.
//!
//! It must not retry an effect on its own, and must not act in a dry run or a replay.

use super::replay_decision::{CallKind, CallPlan, Recorded};
use super::{EffectRecord, Host, HostError};
use crate::effects::{EffectKind, EffectRequest};
use crate::journal::entry::{CallSite, Entry};
use crate::journal::CallKey;
use crate::scheduler::run_event::RunEvent;
use serde_json::{json, Value};

impl Host {
    /// Journals the intent, acts (unless dry-run or replaying), journals the result.
    pub fn effect(&mut self, site: &CallSite, kind: EffectKind, args: Value) -> Result<Value, HostError> {
        let function = kind.function();
        let call = self.plan_call(function, None, &args, site, CallKind::Effect)?;
        let index = call.index;
        let request = EffectRequest { kind, args: args.clone() };
        let result = match call.plan {
            CallPlan::Recorded { recorded, .. } => self.restore_effect(&request, recorded),
            CallPlan::Rejournaled(recorded) => {
                let key = self.idempotency_key(index, &recorded);
                self.journal.append(Entry::effect_intent(index, function, call.key, site, args.clone(), key))?;
                let result = self.restore_effect(&request, recorded);
                self.journal.append(Entry::effect_result(index, function, result.clone()))?;
                result
            }
            CallPlan::Unfinished { recorded, rejournal } => {
                let key = self.idempotency_key(index, &recorded);
                if rejournal {
                    let intent = Entry::effect_intent(index, function, call.key, site, args.clone(), key.clone());
                    self.journal.append(intent)?;
                }
                self.finish_unfinished_effect(index, &request, recorded, &key)?
            }
            CallPlan::Live => self.act_live(index, call.key, site, &request)?,
            CallPlan::NotRecorded { listed, .. } => {
                if listed {
                    self.note_unrecorded(index, function, &args, site);
                }
                json!({"status": "not_recorded"})
            }
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        };
        if let Some(events) = &self.events {
            events.send(RunEvent::effect_done(function, &args, &result));
        }
        self.effects.push(EffectRecord::new(index, kind, args, result.clone(), site.clone()));
        Ok(result)
    }

    /// The key the world dedupes an effect by: the one its intent was journaled with, else
    /// this run's id and the call's index.
    fn idempotency_key(&self, index: u64, recorded: &Recorded) -> String {
        recorded.answer.idempotency_key.clone().unwrap_or_else(|| format!("{}:{index}", self.run_id))
    }

    /// A recorded result, handed back to the world so what it knows matches what happened.
    fn restore_effect(&mut self, request: &EffectRequest, recorded: Recorded) -> Value {
        let Some(result) = recorded.answer.effect_result else { unreachable!("an effect is whole with its result") };
        self.world.restore(request, &result);
        result
    }

    /// An intent without a result: the run stopped around this effect. The world is asked
    /// before anything acts again.
    fn finish_unfinished_effect(
        &mut self,
        index: u64,
        request: &EffectRequest,
        recorded: Recorded,
        key: &str,
    ) -> Result<Value, HostError> {
        let done = self.world.already_done(request, key).map_err(|e| HostError::World(e.to_string()))?;
        let result = match done {
            Some(r) => r,
            None => self.act(request, key)?,
        };
        let answer = recorded.answer;
        // Matched at its own place, the result belongs beside its intent.
        let at = if answer.positional { answer.call.unwrap_or(index) } else { index };
        self.journal.append(Entry::effect_result(at, request.kind.function(), result.clone()))?;
        self.journal.flush()?;
        Ok(result)
    }

    /// A live effect: its intent journaled first (durably, before the world changes), then
    /// acted on (or held back by a dry run), then its result journaled.
    fn act_live(
        &mut self,
        index: u64,
        call_key: CallKey,
        site: &CallSite,
        request: &EffectRequest,
    ) -> Result<Value, HostError> {
        let function = request.kind.function();
        let key = format!("{}:{index}", self.run_id);
        let intent = Entry::effect_intent(index, function, call_key, site, request.args.clone(), key.clone());
        self.journal.append(intent)?;
        let result = if self.dry_run {
            json!({"status": "dry_run"})
        } else {
            if self.world.is_external() {
                // The intent must survive anything, power loss included, before the world
                // changes.
                self.journal.sync()?;
            }
            self.act(request, &key)?
        };
        self.journal.append(Entry::effect_result(index, function, result.clone()))?;
        if self.world.is_external() {
            self.journal.flush()?;
        }
        Ok(result)
    }

    fn act(&mut self, request: &EffectRequest, idempotency_key: &str) -> Result<Value, HostError> {
        // A world error is a failed effect the script can route on, not a crash.
        let result = match self.world.act(request, idempotency_key) {
            Ok(v) => v,
            Err(e) => json!({"status": "failed", "error": e.to_string()}),
        };
        self.log_world_notes();
        Ok(result)
    }
}
