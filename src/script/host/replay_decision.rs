//! The replay decision: for each host call, once, whether it is answered from the recording,
//! journaled again, run live, answered as not recorded, or stopped at the journal's end.
//!
//! [`decide`] is the only place that looks at the run's [`ReplayMode`] per call; the executors
//! (reads, sessions, effects) act on its [`CallPlan`] and never ask the mode again. It must not
//! act, journal or build answers itself.

use super::{Host, HostError, UnrecordedCall};
use crate::journal::entry::CallSite;
use crate::journal::{CallKey, RecordedSession};
use crate::script::recorded_calls::{AnswerError, RecordedAnswer, ReplayMode};
use serde_json::Value;

/// The kind of host call being planned: what makes a recorded answer whole differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallKind {
    /// `now`, `input`, `inputs`, GitHub reads: whole as recorded.
    Value,
    /// `spawn_session`: whole when the recording holds its session's result.
    Spawn,
    /// An effect: whole when the recording holds its result, not only its intent.
    Effect,
    /// `await_sessions`; `awaits_unfinished` when it waits for a session the recorded run
    /// stopped with in flight.
    Await { awaits_unfinished: bool },
}

/// What the recording holds for one call.
pub(super) struct Recorded {
    pub answer: RecordedAnswer,
    /// For a spawn whose session finished: that session's recorded result, as read (an
    /// unreadable one fails the call when the spawn executor takes it).
    pub session: Option<Result<RecordedSession, serde_json::Error>>,
}

/// How one host call is answered: decided by [`decide`], acted on by its kind's executor.
pub(super) enum CallPlan {
    /// Answered from the recording; this run journals nothing for it (a replay and a what-if
    /// write no journal, a resume's journal holds it already). `live_after` when the run goes
    /// on live past the recording (a resume): a reused leaf's harness hears of it.
    Recorded { recorded: Recorded, live_after: bool },
    /// Answered from the parent run's recording and journaled again in this run's own, so
    /// that the redo's journal alone replays it.
    Rejournaled(Recorded),
    /// The recording holds the call's start but not its end (a leaf in flight, an effect's
    /// intent without a result) and the run may act: it is finished live, after being
    /// journaled again first when `rejournal` (a redo).
    Unfinished { recorded: Recorded, rejournal: bool },
    /// Nothing recorded for it and the run is live here: run it and journal it.
    Live,
    /// Nothing may run (replay, what-if): answered as not recorded. `listed` when the what-if
    /// report lists it among calls the recording lacks; `started` when the recording holds
    /// its start (a leaf spawned but never finished).
    NotRecorded { listed: bool, started: bool },
    /// An exact replay reached the end of an interrupted run's journal.
    PastEnd,
}

/// A call with its index and key, and how it is answered.
pub(super) struct PlannedCall {
    pub index: u64,
    pub key: CallKey,
    pub plan: CallPlan,
}

/// The one replay decision. `mode` is the run's (none for a fresh run); `recorded` is what the
/// recording holds for this call, if anything.
pub(super) fn decide(mode: Option<ReplayMode>, kind: CallKind, recorded: Option<Recorded>) -> CallPlan {
    let Some(mode) = mode else { return CallPlan::Live };
    let offline = matches!(mode, ReplayMode::Exact | ReplayMode::WhatIf);
    let Some(recorded) = recorded else {
        return match mode {
            ReplayMode::Exact => CallPlan::PastEnd,
            ReplayMode::WhatIf => {
                CallPlan::NotRecorded { listed: !matches!(kind, CallKind::Await { .. }), started: false }
            }
            ReplayMode::Resume | ReplayMode::Branch => CallPlan::Live,
        };
    };
    if mode == ReplayMode::Exact && kind == (CallKind::Await { awaits_unfinished: true }) {
        return CallPlan::PastEnd;
    }
    let whole = match kind {
        CallKind::Spawn => recorded.session.is_some(),
        CallKind::Effect => recorded.answer.effect_result.is_some(),
        CallKind::Value | CallKind::Await { .. } => true,
    };
    match (whole, mode) {
        (true, ReplayMode::Branch) => CallPlan::Rejournaled(recorded),
        (true, _) => CallPlan::Recorded { recorded, live_after: !offline },
        // A what-if lists a leaf it could not reuse; an effect whose intent it holds it does not.
        (false, _) if offline => {
            CallPlan::NotRecorded { listed: mode == ReplayMode::WhatIf && kind == CallKind::Spawn, started: true }
        }
        (false, _) => CallPlan::Unfinished { recorded, rejournal: mode == ReplayMode::Branch },
    }
}

/// Whether a run with this recording may run leaves and act: a replay and a what-if only read.
pub(super) fn runs_live(mode: Option<ReplayMode>) -> bool {
    !matches!(mode, Some(ReplayMode::Exact | ReplayMode::WhatIf))
}

impl Host {
    fn replay_mode(&self) -> Option<ReplayMode> {
        self.recorded.as_ref().map(|r| r.mode)
    }

    /// Whether this run may run leaves and act (see [`runs_live`]).
    pub(super) fn runs_live(&self) -> bool {
        runs_live(self.replay_mode())
    }

    /// Allocates the next call index, looks for a recorded answer, and decides how the call
    /// is answered. A divergence, an unreadable journal and an exact replay past its journal's
    /// end stop the script here.
    pub(super) fn plan_call(
        &mut self,
        function: &str,
        workflow: Option<&str>,
        args: &Value,
        site: &CallSite,
        kind: CallKind,
    ) -> Result<PlannedCall, HostError> {
        self.check_interrupt()?;
        self.drain_completions()?;
        let index = self.next_call;
        self.next_call += 1;
        let key = call_key(function, workflow, args);
        let recorded = match &mut self.recorded {
            None => None,
            Some(rec) => {
                let answer = rec.answer(index, function, &key, args, site).map_err(|e| match e {
                    AnswerError::Divergence(d) => HostError::Divergence(d),
                    AnswerError::Unreadable => HostError::UnreadableJournal,
                })?;
                answer.map(|answer| {
                    let session = match kind {
                        CallKind::Spawn => answer.finished_session.as_deref().and_then(|s| rec.session_result(s)),
                        _ => None,
                    };
                    Recorded { answer, session }
                })
            }
        };
        let plan = decide(self.replay_mode(), kind, recorded);
        if let CallPlan::PastEnd = plan {
            return Err(HostError::JournalEnded(index));
        }
        Ok(PlannedCall { index, key, plan })
    }

    pub(super) fn note_unrecorded(&mut self, index: u64, function: &str, args: &Value, site: &CallSite) {
        self.unrecorded.push(UnrecordedCall {
            index,
            function: function.to_owned(),
            args: args.clone(),
            site: site.clone(),
        });
    }
}

/// A call's key: its arguments' hash, without the options that only label it for the views
/// ([`crate::script::option_keys::LABELS`]), so adding a `subject` to a script keeps its
/// journals replayable.
fn call_key(function: &str, workflow: Option<&str>, args: &Value) -> CallKey {
    use crate::script::option_keys::LABELS;
    match args {
        Value::Object(o)
            if matches!(function, "spawn_session" | "merge") && LABELS.iter().any(|l| o.contains_key(*l)) =>
        {
            let kept: serde_json::Map<String, Value> =
                o.iter().filter(|(k, _)| !LABELS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            CallKey::new(function, workflow, &Value::Object(kept))
        }
        _ => CallKey::new(function, workflow, args),
    }
}

#[cfg(test)]
mod tests {
    use super::{call_key, decide, CallKind, CallPlan, Recorded};
    use crate::script::recorded_calls::{RecordedAnswer, ReplayMode};
    use serde_json::json;

    fn recorded(effect_result: bool) -> Recorded {
        Recorded {
            answer: RecordedAnswer {
                result: None,
                parsed: None,
                call: Some(0),
                idempotency_key: None,
                effect_result: effect_result.then(|| json!({"status": "ok"})),
                finished_session: None,
                positional: true,
            },
            session: None,
        }
    }

    fn name(plan: &CallPlan) -> String {
        match plan {
            CallPlan::Recorded { live_after, .. } => format!("recorded(live_after={live_after})"),
            CallPlan::Rejournaled(_) => "rejournaled".into(),
            CallPlan::Unfinished { rejournal, .. } => format!("unfinished(rejournal={rejournal})"),
            CallPlan::Live => "live".into(),
            CallPlan::NotRecorded { listed, started } => format!("not_recorded(listed={listed},started={started})"),
            CallPlan::PastEnd => "past_end".into(),
        }
    }

    #[test]
    fn a_fresh_run_runs_everything_live() {
        for kind in [CallKind::Value, CallKind::Spawn, CallKind::Effect, CallKind::Await { awaits_unfinished: false }] {
            assert_eq!(name(&decide(None, kind, None)), "live");
        }
    }

    #[test]
    fn a_call_the_recording_lacks() {
        let miss = |mode, kind| name(&decide(Some(mode), kind, None));
        assert_eq!(miss(ReplayMode::Exact, CallKind::Value), "past_end");
        assert_eq!(miss(ReplayMode::WhatIf, CallKind::Spawn), "not_recorded(listed=true,started=false)");
        assert_eq!(
            miss(ReplayMode::WhatIf, CallKind::Await { awaits_unfinished: false }),
            "not_recorded(listed=false,started=false)"
        );
        assert_eq!(miss(ReplayMode::Resume, CallKind::Effect), "live");
        assert_eq!(miss(ReplayMode::Branch, CallKind::Value), "live");
    }

    #[test]
    fn a_call_the_recording_holds() {
        let hit = |mode, kind, whole| name(&decide(Some(mode), kind, Some(recorded(whole))));
        assert_eq!(hit(ReplayMode::Exact, CallKind::Value, false), "recorded(live_after=false)");
        assert_eq!(hit(ReplayMode::Resume, CallKind::Effect, true), "recorded(live_after=true)");
        assert_eq!(hit(ReplayMode::Branch, CallKind::Value, false), "rejournaled");
        assert_eq!(hit(ReplayMode::Exact, CallKind::Await { awaits_unfinished: true }, true), "past_end");
        assert_eq!(
            hit(ReplayMode::WhatIf, CallKind::Await { awaits_unfinished: true }, true),
            "recorded(live_after=false)"
        );
    }

    #[test]
    fn a_call_the_recording_holds_only_the_start_of() {
        let half = |mode, kind| name(&decide(Some(mode), kind, Some(recorded(false))));
        assert_eq!(half(ReplayMode::Exact, CallKind::Spawn), "not_recorded(listed=false,started=true)");
        assert_eq!(half(ReplayMode::WhatIf, CallKind::Spawn), "not_recorded(listed=true,started=true)");
        assert_eq!(half(ReplayMode::WhatIf, CallKind::Effect), "not_recorded(listed=false,started=true)");
        assert_eq!(half(ReplayMode::Resume, CallKind::Spawn), "unfinished(rejournal=false)");
        assert_eq!(half(ReplayMode::Branch, CallKind::Effect), "unfinished(rejournal=true)");
    }

    #[test]
    fn labels_are_left_out_of_the_call_key() {
        let plain = json!({"goal": "Review", "inputs": {"pr": 13}});
        let labelled = json!({"goal": "Review", "inputs": {"pr": 13}, "subject": "pr#13", "after": ["s1"]});
        assert_eq!(call_key("spawn_session", Some("w"), &labelled), call_key("spawn_session", Some("w"), &plain));
        assert_eq!(
            call_key("spawn_session", Some("w"), &plain).0,
            crate::journal::CallKey::new("spawn_session", Some("w"), &plain).0
        );
        // Only spawns and merges take labels: elsewhere the key covers every argument.
        assert_ne!(call_key("item_outcome", None, &json!({"subject": 1})), call_key("item_outcome", None, &json!({})));
    }
}
