//! Answers host calls from a recorded journal, for replay, resume and what-if replay.
//!
//! Calls are matched by position while the script asks for exactly what the journal holds
//! (same call key at the same index). At the first difference an exact replay and a resume
//! stop with a divergence; a what-if and a redo (a branch of the run) switch to matching by
//! key, each recorded entry used at most once, so changed routing still reuses every recorded
//! leaf, read and effect it asks for. A redo from a point (`--from`) reuses nothing recorded at
//! or after that point.

use crate::journal::entry::{CallSite, Entry, EntryKind};
use crate::journal::{AnswerIndex, CallKey};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayMode {
    /// `coord replay`: every call must match; nothing runs live.
    Exact,
    /// `coord resume`: the run continues its own journal. Its calls are answered by position;
    /// past the journal's end they run live. A call the journal does not hold at its place is
    /// a divergence: continuing would leave two histories in one file.
    Resume,
    /// `coord resume --from` / `--retry-failed`: a new run answered from its parent's journal
    /// (by position, then by key), everything it is given recorded in its own journal.
    Branch,
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
    journal: AnswerIndex,
    used: Vec<bool>,
    /// Recorded calls by key, built the first time a call is matched by key: an exact replay
    /// that never diverges never needs it.
    by_key: Option<HashMap<CallKey, VecDeque<usize>>>,
    /// Still matching by position.
    positional: bool,
    pub divergence: Option<Divergence>,
    /// Session ids whose recorded results must not be reused (`--retry-failed`).
    rerun_sessions: std::collections::HashSet<String>,
    /// Recorded calls from this index on are never reused (`--from`).
    reuse_before: Option<u64>,
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum AnswerError {
    /// An exact replay met a call the journal does not hold.
    Divergence(Box<Divergence>),
    /// The journal turned out unreadable while it was being read (its error is kept in the
    /// index, for [`RecordedCalls::finish_reading`]).
    Unreadable,
}

fn index_by_key(journal: &AnswerIndex) -> HashMap<CallKey, VecDeque<usize>> {
    let mut by_key: HashMap<CallKey, VecDeque<usize>> = HashMap::with_capacity(journal.calls().len());
    for (i, e) in journal.calls().iter().enumerate() {
        if let Some(k) = journal.key(e) {
            by_key.entry(CallKey(k.to_owned())).or_default().push_back(i);
        }
    }
    by_key
}

/// What the journal holds for one call. Payloads are parsed here, when the call is answered.
pub struct RecordedAnswer {
    /// The recorded answer of a value call (reads, `now`, `input`), as the journal's JSON text:
    /// the caller parses it into what it needs, once. `None` when it was `parsed`.
    pub result: Option<String>,
    /// The recorded answer as the journal's reading thread parsed it ahead, when it did.
    pub parsed: Option<Value>,
    /// The call index the journal recorded it at.
    pub call: Option<u64>,
    /// For effects: the idempotency key the intent was journaled with.
    pub idempotency_key: Option<String>,
    /// For effects: the recorded result, if the effect finished.
    pub effect_result: Option<Value>,
    /// For spawns: the recorded session's id, if the session finished and may be reused.
    pub finished_session: Option<String>,
    /// Matched at its own index (the journal already holds it where it belongs), rather
    /// than by key after a divergence (a resumed run must journal it again at its new index).
    pub positional: bool,
}

impl RecordedCalls {
    pub fn new(journal: AnswerIndex, mode: ReplayMode) -> Self {
        RecordedCalls {
            mode,
            used: Vec::new(),
            journal,
            by_key: None,
            positional: true,
            divergence: None,
            rerun_sessions: Default::default(),
            reuse_before: None,
        }
    }

    /// Reuses no recorded call from `call` on: the script runs live from there.
    pub fn reuse_before(&mut self, call: u64) {
        self.reuse_before = Some(call);
    }

    fn reusable(&self, i: usize) -> bool {
        self.reuse_before.is_none_or(|limit| (i as u64) < limit)
    }

    /// Marks sessions whose recorded result must be run again.
    pub fn rerun(&mut self, ids: impl IntoIterator<Item = String>) {
        self.rerun_sessions.extend(ids);
    }

    /// Reads the rest of a streamed journal; its error if it turned out unreadable.
    pub fn finish_reading(&mut self) -> Result<(), crate::journal::JournalError> {
        match self.journal.finish_reading() {
            Ok(()) => Ok(()),
            Err(_) => Err(self.journal.take_error().expect("an unreadable journal keeps its error")),
        }
    }

    /// Warnings met reading the journal (complete once [`RecordedCalls::finish_reading`] ran).
    pub fn warnings(&self) -> &[String] {
        &self.journal.warnings
    }

    fn is_used(&self, i: usize) -> bool {
        self.used.get(i).copied().unwrap_or(false)
    }

    /// Looks up the answer for call `index`. `Ok(None)` means the journal has nothing for it
    /// (go live, or not_recorded); `Err` is a divergence in exact mode, or a journal that
    /// turned out unreadable while it was read.
    pub fn answer(
        &mut self,
        index: u64,
        function: &str,
        key: &CallKey,
        args: &Value,
        site: &CallSite,
    ) -> Result<Option<RecordedAnswer>, AnswerError> {
        let answer = self.answer_unchecked(index, function, key, args, site);
        // Nothing read past an unreadable line may be trusted, and neither may a miss that
        // was only a miss because reading stopped there.
        if self.journal.failed() {
            return Err(AnswerError::Unreadable);
        }
        answer
    }

    fn answer_unchecked(
        &mut self,
        index: u64,
        function: &str,
        key: &CallKey,
        args: &Value,
        site: &CallSite,
    ) -> Result<Option<RecordedAnswer>, AnswerError> {
        let i = index as usize;
        if self.positional {
            self.journal.read_through_call(i);
            if !self.reusable(i) {
                // A redo from here: nothing recorded at or after this point is reused.
                self.positional = false;
                return Ok(None);
            }
            match self.journal.calls().get(i) {
                Some(e) if self.journal.key(e) == Some(key.0.as_str()) && !self.is_used(i) => {
                    return Ok(Some(self.take(i, true)))
                }
                recorded => {
                    let past_end = recorded.is_none();
                    let divergence = Divergence {
                        index,
                        recorded: recorded.map(|e| self.journal.entry(e)),
                        now_function: function.to_owned(),
                        now_key: key.clone(),
                        now_args: args.clone(),
                        now_site: site.clone(),
                    };
                    self.positional = false;
                    match self.mode {
                        // The journal of a run that never finished simply stops: no more
                        // answers, which the host reports as the journal's end.
                        ReplayMode::Exact if past_end && self.journal.finished().is_none() => return Ok(None),
                        // Running past the end of an interrupted run's journal is not a
                        // divergence: it is where resume goes live.
                        ReplayMode::Resume if past_end => return Ok(None),
                        ReplayMode::Exact | ReplayMode::Resume => {
                            return Err(AnswerError::Divergence(Box::new(divergence)))
                        }
                        ReplayMode::WhatIf | ReplayMode::Branch => self.divergence = Some(divergence),
                    }
                }
            }
        }
        if self.by_key.is_none() {
            // Matching by key needs every recorded call.
            let _ = self.journal.finish_reading();
            self.by_key = Some(index_by_key(&self.journal));
        }
        let used = &self.used;
        let limit = self.reuse_before.map_or(usize::MAX, |l| l as usize);
        let by_key = self.by_key.as_mut().expect("built above");
        let found = by_key.get_mut(key).and_then(|q| {
            while let Some(&j) = q.front() {
                if j < limit && !used.get(j).copied().unwrap_or(false) {
                    return Some(j);
                }
                q.pop_front();
            }
            None
        });
        Ok(found.map(|j| self.take(j, false)))
    }

    /// The recorded result of a finished session.
    pub fn session_result(&mut self, id: &str) -> Option<Result<crate::journal::RecordedSession, serde_json::Error>> {
        self.journal.take_session_result(id)
    }

    fn take(&mut self, i: usize, positional: bool) -> RecordedAnswer {
        if self.used.len() <= i {
            self.used.resize(i + 1, false);
        }
        self.used[i] = true;
        // What this call's answer draws on (its session's result, its effect's) may be further
        // down a journal still being read: those accessors wait for it.
        let recorded = &self.journal.calls()[i];
        let session = self.journal.spawned_session(recorded).map(str::to_owned);
        let effect_call = recorded.call.filter(|_| recorded.kind == EntryKind::EffectIntent);
        let finished_session = session.filter(|id| !self.rerun_sessions.contains(id) && self.journal.has_session(id));
        let effect_result = effect_call.and_then(|call| self.journal.take_effect_result(call));
        let parsed = self.journal.take_parsed_result(i);
        let journal = &self.journal;
        let recorded = &journal.calls()[i];
        RecordedAnswer {
            result: if parsed.is_some() { None } else { journal.result_text(recorded).map(str::to_owned) },
            parsed,
            call: recorded.call,
            idempotency_key: journal.idempotency_key(recorded).map(str::to_owned),
            effect_result,
            finished_session,
            positional,
        }
    }
}
