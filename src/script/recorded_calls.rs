//! Answers host calls from a recorded journal, for replay, resume and what-if replay.
//!
//! Calls are matched by position while the script asks for exactly what the journal holds
//! (same call key at the same index). At the first difference an exact replay stops with a
//! divergence; resume and what-if switch to matching by key, each recorded entry used at most
//! once, so changed routing still reuses every recorded leaf, read and effect it asks for.

use crate::journal::entry::{CallSite, Entry};
use crate::journal::{CallKey, RecordedRun};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayMode {
    /// `coord replay`: every call must match; nothing runs live.
    Exact,
    /// `coord resume`: the recorded prefix is reused; the rest runs live.
    Resume,
    /// `coord replay --script`: an edited script against a recorded run; nothing runs live.
    WhatIf,
}

/// The first call where the script and the journal part ways.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub index: u64,
    pub recorded: Option<Entry>,
    pub now_function: String,
    pub now_key: CallKey,
    pub now_args: Value,
    pub now_site: CallSite,
}

pub struct RecordedCalls {
    pub mode: ReplayMode,
    calls: Vec<Entry>,
    sessions: HashMap<String, Value>,
    effect_results: HashMap<u64, Value>,
    used: Vec<bool>,
    by_key: HashMap<CallKey, VecDeque<usize>>,
    /// Still matching by position.
    positional: bool,
    pub divergence: Option<Divergence>,
    /// Session ids whose recorded results must not be reused (`--retry-failed`).
    rerun_sessions: std::collections::HashSet<String>,
    pub finished: bool,
}

/// What the journal holds for one call.
pub struct RecordedAnswer {
    pub entry: Entry,
    /// For effects: the recorded result, if the effect finished.
    pub effect_result: Option<Value>,
    /// For spawns: the recorded session result, if the session finished (and may be reused).
    pub session_result: Option<Value>,
    /// Matched at its own index (the journal already holds it where it belongs), rather
    /// than by key after a divergence (a resumed run must journal it again at its new index).
    pub positional: bool,
}

impl RecordedCalls {
    /// Takes the recorded run apart rather than copying it: a 10,000-PR journal is large.
    pub fn from_run(run: RecordedRun, mode: ReplayMode) -> Self {
        let mut by_key: HashMap<CallKey, VecDeque<usize>> = HashMap::new();
        for (i, e) in run.calls.iter().enumerate() {
            if let Some(k) = &e.key {
                by_key.entry(k.clone()).or_default().push_back(i);
            }
        }
        RecordedCalls {
            mode,
            used: vec![false; run.calls.len()],
            finished: run.finished.is_some(),
            calls: run.calls,
            sessions: run.sessions.into_iter().collect(),
            effect_results: run.effect_results.into_iter().collect(),
            by_key,
            positional: true,
            divergence: None,
            rerun_sessions: Default::default(),
        }
    }

    /// Marks sessions whose recorded result must be run again.
    pub fn rerun(&mut self, ids: impl IntoIterator<Item = String>) {
        self.rerun_sessions.extend(ids);
    }

    /// Looks up the answer for call `index`. `Ok(None)` means the journal has nothing for it
    /// (go live, or not_recorded); `Err` is a divergence in exact mode.
    pub fn answer(
        &mut self,
        index: u64,
        function: &str,
        key: &CallKey,
        args: &Value,
        site: &CallSite,
    ) -> Result<Option<RecordedAnswer>, Divergence> {
        let i = index as usize;
        if self.positional {
            match self.calls.get(i) {
                Some(e) if e.key.as_ref() == Some(key) && !self.used[i] => return Ok(Some(self.take(i, true))),
                recorded => {
                    let past_end = recorded.is_none();
                    let divergence = Divergence {
                        index,
                        recorded: recorded.cloned(),
                        now_function: function.to_owned(),
                        now_key: key.clone(),
                        now_args: args.clone(),
                        now_site: site.clone(),
                    };
                    self.positional = false;
                    match self.mode {
                        // The journal of a run that never finished simply stops: no more
                        // answers, which the host reports as the journal's end.
                        ReplayMode::Exact if past_end && !self.finished => return Ok(None),
                        ReplayMode::Exact => return Err(divergence),
                        // Running past the end of an interrupted run's journal is not a
                        // divergence: it is where resume goes live.
                        ReplayMode::Resume if past_end => {}
                        _ => self.divergence = Some(divergence),
                    }
                }
            }
        }
        let found = self.by_key.get_mut(key).and_then(|q| {
            while let Some(&j) = q.front() {
                if !self.used[j] {
                    return Some(j);
                }
                q.pop_front();
            }
            None
        });
        Ok(found.map(|j| self.take(j, false)))
    }

    fn take(&mut self, i: usize, positional: bool) -> RecordedAnswer {
        self.used[i] = true;
        // Each recorded answer is used at most once, so its payloads move out rather than
        // being copied: a large run's journal is mostly payload.
        let recorded = &mut self.calls[i];
        let (args, result) = (recorded.args.take(), recorded.result.take());
        let mut entry = recorded.clone();
        entry.args = args;
        entry.result = result;
        let effect_result = entry.call.and_then(|c| self.effect_results.remove(&c));
        let session_result = entry
            .session
            .as_ref()
            .filter(|id| !self.rerun_sessions.contains(*id))
            .and_then(|id| self.sessions.remove(id));
        RecordedAnswer { entry, effect_result, session_result, positional }
    }
}
