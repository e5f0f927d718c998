//! The host: the one place a script's host calls are answered.
//!
//! Every call gets the next call index and a call key, is answered from the recorded journal
//! when there is one (replay, resume, what-if), and otherwise live: leaves go to the scheduler,
//! reads and effects to the [`World`]. Every answer is journaled before the script sees it;
//! effects are journaled as an intent before they act and as a result after.
//!
//! It runs on the script thread and must not block anywhere but in `await_sessions` (waiting
//! for leaves) and in world calls (waiting for the network).

use crate::effects::{EffectKind, EffectRequest, GithubRead, World};
use crate::harness::HarnessSet;
use crate::journal::blob_store::{self, BlobStore, ANSWER_INLINE_LIMIT, INLINE_LIMIT};
use crate::journal::entry::{CallSite, Entry};
use crate::journal::{CallKey, JournalWriter, Prepared, RecordedSession};
use crate::leaf::session::{LeafRequest, SessionResult, SessionStatus, Usage};
use crate::leaf::worktree::WorktreePlan;
use crate::scheduler::run_event::{RunEvent, RunEvents};
use crate::scheduler::{SchedulerClient, SpawnOrder};
use crate::script::detached_value::PreparedAnswer;
use crate::script::recorded_calls::{AnswerError, Divergence, RecordedCalls, ReplayMode};
use crate::workflow::{self, WorkflowSet};
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the host stopped the script. Leaf failures are never here: they are results.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Script(String),
    #[error("the script diverged from the journal at call {}", .0.index)]
    Divergence(Box<Divergence>),
    #[error("the recorded journal is unreadable")]
    UnreadableJournal,
    #[error("the journal ends at call {0}: the recorded run was interrupted here (finish it with `coord resume`)")]
    JournalEnded(u64),
    #[error("journal: {0}")]
    Journal(#[from] std::io::Error),
    #[error("{0}")]
    World(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{}", .0)]
    Outage(Box<Outage>),
}

/// A leaf stopped by its harness's set-up or its provider (see
/// [`SessionResult::is_outage`]): the run stops instead of routing on it.
#[derive(Clone, Debug)]
pub struct Outage {
    pub harness: String,
    pub session: String,
    pub workflow: String,
    /// The leaf's error, which ends with a fix when the harness knows one.
    pub error: String,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} harness failed on session {} ({}): {}", self.harness, self.session, self.workflow, self.error)
    }
}

/// Where `now()` comes from.
#[derive(Clone, Debug)]
pub enum Clock {
    System,
    Fixed(i64),
}

/// A per-workflow harness (and model) swap, from `--leaf WORKFLOW=HARNESS[:MODEL]`.
#[derive(Clone, Debug)]
pub struct LeafOverride {
    pub harness: String,
    pub model: Option<String>,
}

pub struct HostSetup {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub project_root: PathBuf,
    pub journal: JournalWriter,
    pub world: Box<dyn World>,
    pub scheduler: SchedulerClient,
    pub workflows: Arc<WorkflowSet>,
    pub harnesses: HarnessSet,
    /// Harness every workflow uses unless overridden (`mock` in scenario runs).
    pub default_harness: Option<String>,
    pub leaf_overrides: IndexMap<String, LeafOverride>,
    pub inputs: IndexMap<String, Value>,
    pub clock: Clock,
    pub dry_run: bool,
    pub dry_run_no_leaves: bool,
    pub withheld_env: Vec<String>,
    /// `[capabilities] spawn_command`: a spawn may name a program to run (`command`).
    pub spawn_command: bool,
    pub recorded: Option<RecordedCalls>,
    pub interrupt: Arc<crate::scheduler::Interrupt>,
    pub log: Option<std::fs::File>,
    /// `--budget-usd`: once the run's leaves cost this much, new spawns are skipped.
    pub budget_usd: Option<f64>,
    /// `[worktrees] keep`: keep the worktrees of leaves that succeeded too.
    pub keep_worktrees: bool,
}

/// A spawned session: what was asked for, and how far it got.
#[derive(Debug)]
struct Session {
    workflow: String,
    /// The spawn's arguments as the journal holds them: its opts (goal, inputs, overrides).
    args: Value,
    slot: SessionSlot,
    /// For a recorded result: the result map the journal's reading thread built from it, until
    /// the script's first await takes it.
    prepared: Option<Prepared>,
}

pub(crate) fn goal_of(args: &Value) -> &str {
    args.get("goal").and_then(Value::as_str).unwrap_or("")
}

/// A spawn's inputs: always a map (`spawn_session` refuses anything else).
pub(crate) fn inputs_of(args: &Value) -> &Value {
    static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
    match args.get("inputs") {
        Some(v @ Value::Object(_)) => v,
        _ => &EMPTY,
    }
}

#[derive(Debug)]
enum SessionSlot {
    Pending,
    /// Boxed: the table holds 20,000 sessions at 10,000 PRs, and growing it moved every
    /// result's bytes (and touched fresh pages) each time it doubled.
    Done(Box<SessionResult>),
}

/// Where session `id` sits in a table of `len` sessions: ids are `s1`, `s2`, ... in spawn order
/// (anything else, `s01` included, names no session).
fn session_index(id: &str, len: usize) -> Option<usize> {
    let digits = id.strip_prefix('s')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (1..=len).contains(&n).then(|| n - 1)
}

/// A value call's answer: live, a JSON value; replayed, the journal's JSON text, which the
/// script side parses straight into a script value (a recorded list of 10,000 PRs is not built
/// as JSON values first).
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    Recorded(String),
    /// A recorded answer the journal's reading thread already made a script value.
    Script(rhai::Dynamic),
}

impl Answer {
    /// A recorded answer that is not JSON (a corrupt journal line) reads as null.
    pub fn into_json(self) -> Value {
        match self {
            Answer::Json(v) => v,
            Answer::Recorded(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Answer::Script(v) => crate::script::json_value::to_json(&v).unwrap_or(Value::Null),
        }
    }
}

/// One effect the run performed (or would have, in a dry or what-if run).
#[derive(Clone, Debug)]
pub struct EffectRecord {
    pub call: u64,
    pub kind: EffectKind,
    pub args: Value,
    pub result: Value,
    pub site: CallSite,
}

/// A call the what-if replay had no recorded answer for.
#[derive(Clone, Debug)]
pub struct UnrecordedCall {
    pub index: u64,
    pub function: String,
    pub args: Value,
    pub site: CallSite,
}

pub struct Host {
    pub run_id: String,
    pub run_dir: PathBuf,
    project_root: PathBuf,
    journal: JournalWriter,
    blobs: BlobStore,
    world: Box<dyn World>,
    scheduler: SchedulerClient,
    workflows: Arc<WorkflowSet>,
    harnesses: HarnessSet,
    default_harness: Option<String>,
    leaf_overrides: IndexMap<String, LeafOverride>,
    inputs: IndexMap<String, Value>,
    clock: Clock,
    dry_run: bool,
    /// A dry run that runs no leaf at all (`--dry-run=no-leaves`).
    dry_run_no_leaves: bool,
    spawn_command: bool,
    /// What leaves must not inherit (see [`LeafRequest::withheld_env`]).
    withheld_env: Arc<[String]>,
    recorded: Option<RecordedCalls>,
    interrupt: Arc<crate::scheduler::Interrupt>,
    log: Option<std::io::BufWriter<std::fs::File>>,
    budget_usd: Option<f64>,
    keep_worktrees: bool,
    next_call: u64,
    next_session: u64,
    /// Sessions in spawn order: `s{n}` is `sessions[n - 1]`.
    sessions: Vec<Session>,
    /// Sessions an exact replay found spawned but never finished (the run stopped there).
    unfinished_in_journal: std::collections::HashSet<String>,
    validators: HashMap<String, Arc<jsonschema::Validator>>,
    pub effects: Vec<EffectRecord>,
    pub usage: Usage,
    pub unrecorded: Vec<UnrecordedCall>,
    /// The error that stopped the script, kept typed (the engine only carries a message).
    pub fatal: Option<HostError>,
    /// The first outage of a harness in this run: the run stops on it.
    pub outage: Option<Outage>,
    /// Where live progress goes (`coord run`'s display), when someone watches.
    events: Option<RunEvents>,
}

impl Host {
    pub fn new(s: HostSetup) -> Self {
        Host {
            blobs: BlobStore::new(&s.run_dir),
            run_id: s.run_id,
            run_dir: s.run_dir,
            project_root: s.project_root,
            journal: s.journal,
            world: s.world,
            scheduler: s.scheduler,
            workflows: s.workflows,
            harnesses: s.harnesses,
            default_harness: s.default_harness,
            leaf_overrides: s.leaf_overrides,
            inputs: s.inputs,
            clock: s.clock,
            dry_run: s.dry_run,
            dry_run_no_leaves: s.dry_run_no_leaves,
            spawn_command: s.spawn_command,
            withheld_env: Arc::from(s.withheld_env),
            recorded: s.recorded,
            interrupt: s.interrupt,
            log: s.log.map(std::io::BufWriter::new),
            budget_usd: s.budget_usd,
            keep_worktrees: s.keep_worktrees,
            next_call: 0,
            next_session: 0,
            sessions: Vec::new(),
            unfinished_in_journal: Default::default(),
            validators: HashMap::new(),
            effects: Vec::new(),
            usage: Usage::default(),
            unrecorded: Vec::new(),
            fatal: None,
            outage: None,
            events: None,
        }
    }

    /// Reports sessions and effects to `events` as they happen, for a live display.
    pub fn report_events_to(&mut self, events: RunEvents) {
        self.events = Some(events);
    }

    pub fn journal_mut(&mut self) -> &mut JournalWriter {
        &mut self.journal
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn recorded(&self) -> Option<&RecordedCalls> {
        self.recorded.as_ref()
    }

    pub fn recorded_mut(&mut self) -> Option<&mut RecordedCalls> {
        self.recorded.as_mut()
    }

    fn replaying(&self) -> Option<ReplayMode> {
        self.recorded.as_ref().map(|r| r.mode)
    }

    /// A redo journals every answer it takes from its parent's journal in its own, so its
    /// journal alone replays it. (A resume's answers are already in the journal it continues.)
    fn rejournal(&self) -> bool {
        self.replaying() == Some(ReplayMode::Branch)
    }

    /// Never performs anything: replay and what-if only read the journal.
    fn offline_replay(&self) -> bool {
        matches!(self.replaying(), Some(ReplayMode::Exact | ReplayMode::WhatIf))
    }

    pub fn log_line(&mut self, line: &str) {
        tracing::info!(target: "coord::script", "{line}");
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "{}", crate::redaction::process().mask(line));
        }
    }

    fn check_interrupt(&self) -> Result<(), HostError> {
        if self.interrupt.is_set() {
            Err(HostError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Allocates the next call index and looks for a recorded answer.
    fn begin_call(
        &mut self,
        function: &str,
        workflow: Option<&str>,
        args: &Value,
        site: &CallSite,
    ) -> Result<(u64, CallKey, Option<crate::script::recorded_calls::RecordedAnswer>), HostError> {
        self.check_interrupt()?;
        self.drain_completions()?;
        let index = self.next_call;
        self.next_call += 1;
        let key = CallKey::new(function, workflow, args);
        let answer = match &mut self.recorded {
            None => None,
            Some(rec) => {
                let ans = rec.answer(index, function, &key, args, site).map_err(|e| match e {
                    AnswerError::Divergence(d) => HostError::Divergence(d),
                    AnswerError::Unreadable => HostError::UnreadableJournal,
                })?;
                if ans.is_none() && rec.mode == ReplayMode::Exact {
                    return Err(HostError::JournalEnded(index));
                }
                ans
            }
        };
        Ok((index, key, answer))
    }

    fn note_unrecorded(&mut self, index: u64, function: &str, args: &Value, site: &CallSite) {
        self.unrecorded.push(UnrecordedCall {
            index,
            function: function.to_owned(),
            args: args.clone(),
            site: site.clone(),
        });
    }

    // ---- simple journaled values -------------------------------------------------------

    /// A call whose live answer is computed by `live`; journaled, or answered from the journal.
    fn value_call(
        &mut self,
        function: &str,
        args: Value,
        site: &CallSite,
        live: impl FnOnce(&mut Self) -> Result<Value, HostError>,
    ) -> Result<Answer, HostError> {
        let (index, key, answer) = self.begin_call(function, None, &args, site)?;
        if let Some(ans) = answer {
            let prepared = ans.prepared.and_then(|p| p.downcast::<PreparedAnswer>().ok());
            let result = match prepared {
                Some(p) => Answer::Script(p.0.into_inner()),
                None => {
                    let text = ans.result.unwrap_or_else(|| "null".into());
                    match blob_store::marked_hash(&text) {
                        Some(hash) => Answer::Recorded(self.blob_text(hash)?),
                        None => Answer::Recorded(text),
                    }
                }
            };
            if self.rejournal() {
                let value = result.into_json();
                self.journal.append(Entry::call(index, function, key, site, args, value.clone(), None))?;
                return Ok(Answer::Json(value));
            }
            return Ok(result);
        }
        if self.replaying() == Some(ReplayMode::WhatIf) {
            self.note_unrecorded(index, function, &args, site);
            return Ok(Answer::Json(Value::Null));
        }
        let result = live(self)?;
        if !fits_within(&result, ANSWER_INLINE_LIMIT) {
            let hash = self.blobs.put(result.to_string().as_bytes())?;
            self.journal.append(Entry::call(index, function, key, site, args, blob_store::marker(&hash), None))?;
            return Ok(Answer::Json(result));
        }
        let entry = self.journal.append_returning(Entry::call(index, function, key, site, args, result, None))?;
        Ok(Answer::Json(entry.result.unwrap_or(Value::Null)))
    }

    /// The text of a blob this run's journal names.
    fn blob_text(&self, hash: &str) -> Result<String, HostError> {
        let bytes = self.blobs.get(hash)?;
        String::from_utf8(bytes).map_err(|e| HostError::Script(format!("journal: blob {hash} is not text: {e}")))
    }

    pub fn now(&mut self, site: &CallSite) -> Result<i64, HostError> {
        let v = self.value_call("now", json!([]), site, |h| {
            Ok(json!(match h.clock {
                Clock::Fixed(t) => t,
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

    pub fn github_read(&mut self, site: &CallSite, read: GithubRead) -> Result<Answer, HostError> {
        let function = read.function();
        self.value_call(function, read.args(), site, |h| {
            let answer = h.world.github_read(&read).map_err(|e| HostError::World(e.to_string()));
            h.log_world_notes();
            answer
        })
    }

    /// The world's notes (a list that changed while it was read) go to the run's log.
    fn log_world_notes(&mut self) {
        for note in self.world.take_notes() {
            self.log_line(&note);
        }
    }

    // ---- sessions ----------------------------------------------------------------------

    /// Starts a leaf session (or takes its recorded result) and returns its id at once.
    pub fn spawn_session(
        &mut self,
        site: &CallSite,
        workflow_name: &str,
        opts: Value,
        schema_override: Option<Value>,
    ) -> Result<String, HostError> {
        let checked = self.check_spawn(workflow_name, &opts, schema_override.as_ref())?;
        // The opts are the call's arguments, kept once: the journal, the leaf and the result
        // map read goal and inputs from them (a replay copies nothing).
        let mut args = opts;
        if let (Some(obj), Some(schema)) = (args.as_object_mut(), &schema_override) {
            obj.insert("schema".into(), schema.clone());
        }
        let (index, key, answer) = self.begin_call("spawn_session", Some(workflow_name), &args, site)?;
        self.next_session += 1;
        let id = format!("s{}", self.next_session);

        let mut already_journaled = false;
        if let Some(ans) = answer {
            let rejournal = self.rejournal();
            if rejournal {
                self.journal.append_call(index, "spawn_session", &key, site, &args, Some(&id))?;
            }
            let recorded = ans.finished_session.as_deref().and_then(|s| self.recorded.as_mut()?.session_result(s));
            if let Some(recorded) = recorded {
                let RecordedSession { mut result, prepared } =
                    recorded.map_err(|e| HostError::Script(format!("journal: unreadable session result: {e}")))?;
                if rejournal {
                    // Journaled again as the leaf gave it (a large output goes to this run's
                    // blobs): the parent's blob marker is resolved first.
                    self.resolve_blob(&mut result)?;
                }
                result.id = id.clone();
                if !self.offline_replay() {
                    self.note_replayed(workflow_name, &args);
                }
                self.record_spawn(&id, workflow_name, args).prepared = prepared;
                self.finish_session(result, rejournal)?;
                return Ok(id);
            }
            // Recorded as spawned but never finished: it was in flight when the run stopped,
            // so it runs again.
            already_journaled = true;
        }
        if self.offline_replay() {
            if already_journaled {
                self.unfinished_in_journal.insert(id.clone());
            }
            if self.replaying() == Some(ReplayMode::WhatIf) {
                self.note_unrecorded(index, "spawn_session", &args, site);
            }
            let mut result = SessionResult::failed(
                &id,
                workflow_name,
                SessionStatus::NotRecorded,
                "no recorded result for this leaf: replay runs nothing",
            );
            result.harness = Some("replay".into());
            self.record_spawn(&id, workflow_name, args);
            self.finish_session(Box::new(result), false)?;
            return Ok(id);
        }

        if !already_journaled {
            self.journal.append_call(index, "spawn_session", &key, site, &args, Some(&id))?;
        }
        if let Some(budget) = self.budget_usd.filter(|b| self.usage.cost_usd >= *b) {
            let result = SessionResult::failed(
                &id,
                workflow_name,
                SessionStatus::SkippedBudget,
                format!("not run: the run's budget of ${budget:.2} is spent (${:.4} so far)", self.usage.cost_usd),
            );
            self.record_spawn(&id, workflow_name, args);
            self.finish_session(Box::new(result), true)?;
            return Ok(id);
        }
        if let Some(why) = self.held_back_by_dry_run(workflow_name, &args) {
            let result = SessionResult::failed(&id, workflow_name, SessionStatus::SkippedDryRun, why);
            self.record_spawn(&id, workflow_name, args);
            self.finish_session(Box::new(result), true)?;
            return Ok(id);
        }
        let prepared = self.prepare_leaf(&id, workflow_name, &args, schema_override, checked);
        self.record_spawn(&id, workflow_name, args);
        match prepared {
            Ok(mut order) => {
                if let Some(events) = &self.events {
                    let goal = order.request.goal.clone();
                    events.send(RunEvent::SessionQueued { id: id.clone(), workflow: workflow_name.to_owned(), goal });
                    order.harness = events.report_starts(order.harness);
                }
                self.scheduler.spawn(order);
            }
            // `check_spawn` refused every script error before the call was journaled; should one
            // still get here, the session fails rather than staying pending for ever.
            Err(LeafSetupError::Script(msg) | LeafSetupError::Leaf(msg)) => {
                let result = SessionResult::failed(&id, workflow_name, SessionStatus::Failed, msg);
                self.finish_session(Box::new(result), true)?;
            }
        }
        Ok(id)
    }

    /// Why a dry run does not run this leaf: it runs none (`no-leaves`), or this one could
    /// change something (a worktree, or a workflow that `writes`).
    fn held_back_by_dry_run(&self, workflow_name: &str, opts: &Value) -> Option<String> {
        if !self.dry_run {
            return None;
        }
        if self.dry_run_no_leaves {
            return Some("not run: a dry run with --dry-run=no-leaves runs no leaf".into());
        }
        let wf = self.workflows.get(workflow_name).ok()?;
        let worktree = opts.get("worktree").and_then(Value::as_bool).unwrap_or(wf.worktree);
        match (worktree, wf.writes) {
            (true, _) => Some(format!(
                "not run: a dry run holds back leaves that write (workflow `{workflow_name}` works in a worktree)"
            )),
            (_, true) => Some(format!(
                "not run: a dry run holds back leaves that write (workflow `{workflow_name}` sets `writes = true`)"
            )),
            _ => None,
        }
    }

    /// Refuses a spawn the script got wrong before the call takes a call index or a session id,
    /// so the error leaves nothing behind: no journaled call, no session that never finishes.
    /// What depends only on the arguments is checked in every mode, so a replay throws where the
    /// run threw; the workflow itself only when the leaf may run (a replay needs no workflow file).
    /// What it checked is handed on to [`Host::prepare_leaf`], which does not check it again.
    fn check_spawn(
        &mut self,
        workflow_name: &str,
        opts: &Value,
        schema: Option<&Value>,
    ) -> Result<CheckedSpawn, HostError> {
        let refuse = |msg: String| HostError::Script(format!("spawn_session: {msg}"));
        if opts.get("command").is_some() && !self.spawn_command {
            return Err(refuse(
                "the `command` option (run any program as a leaf) is switched off in coord.toml: [capabilities] spawn_command = false".into(),
            ));
        }
        match opts.get("inputs") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => return Err(refuse(format!("`inputs` must be a map, not {}", json_type(other)))),
        }
        let timeout = opts.get("timeout").map_or(Ok(None), timeout_of).map_err(refuse)?;
        let override_validator = schema.map(|s| self.validator_for_override(s)).transpose().map_err(refuse)?;
        if !self.offline_replay() {
            let wf = self.workflows.get(workflow_name).map_err(|e| refuse(e.to_string()))?;
            self.validator_for_workflow(&wf).map_err(refuse)?;
        }
        Ok(CheckedSpawn { timeout, override_validator })
    }

    fn validator_for_override(&mut self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let hash = crate::journal::call_key::short_hash(schema.to_string().as_bytes());
        if let Some(v) = self.validators.get(&hash) {
            return Ok(v.clone());
        }
        let v = Arc::new(workflow::compile_schema(schema)?);
        self.validators.insert(hash, v.clone());
        Ok(v)
    }

    fn validator_for_workflow(&mut self, wf: &workflow::Workflow) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.validators.get(&wf.name) {
            return Ok(v.clone());
        }
        let v = Arc::new(workflow::compile_schema(&wf.schema)?);
        self.validators.insert(wf.name.clone(), v.clone());
        Ok(v)
    }

    /// Adds session `id` to the table, pending until [`Host::finish_session`] records its end.
    fn record_spawn(&mut self, id: &str, workflow: &str, args: Value) -> &mut Session {
        debug_assert_eq!(session_index(id, self.sessions.len() + 1), Some(self.sessions.len()));
        self.sessions.push(Session { workflow: workflow.to_owned(), args, slot: SessionSlot::Pending, prepared: None });
        self.sessions.last_mut().expect("just pushed")
    }

    fn session(&self, id: &str) -> Option<&Session> {
        session_index(id, self.sessions.len()).map(|i| &self.sessions[i])
    }

    /// The harness a leaf of `wf` runs on: the call's `harness` option, else `--leaf`'s, else
    /// the run's default (a scenario's mock), else the workflow's. True when it is not the
    /// workflow's own.
    fn harness_name(&self, wf: &workflow::Workflow, opts: &Value) -> (String, bool) {
        let chosen = opts
            .get("harness")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| self.leaf_overrides.get(&wf.name).map(|o| o.harness.clone()));
        let swapped = chosen.as_ref().is_some_and(|h| *h != wf.harness);
        (chosen.or_else(|| self.default_harness.clone()).unwrap_or_else(|| wf.harness.clone()), swapped)
    }

    /// Tells the harness of a leaf taken from the journal that it was, in spawn order.
    fn note_replayed(&self, workflow_name: &str, opts: &Value) {
        let Ok(wf) = self.workflows.get(workflow_name) else { return };
        if let Some(harness) = self.harnesses.get(&self.harness_name(&wf, opts).0) {
            self.scheduler.replayed(harness, workflow_name, goal_of(opts), inputs_of(opts));
        }
    }

    fn prepare_leaf(
        &mut self,
        id: &str,
        workflow_name: &str,
        opts: &Value,
        schema_override: Option<Value>,
        checked: CheckedSpawn,
    ) -> Result<SpawnOrder, LeafSetupError> {
        let (goal, inputs) = (goal_of(opts), inputs_of(opts));
        let wf =
            self.workflows.get(workflow_name).map_err(|e| LeafSetupError::Script(format!("spawn_session: {e}")))?;
        let over = self.leaf_overrides.get(workflow_name).cloned();
        let (harness_name, swapped) = self.harness_name(&wf, opts);
        let harness = self.harnesses.get(&harness_name).ok_or_else(|| {
            LeafSetupError::Leaf(format!(
                "harness `{harness_name}` (workflow `{workflow_name}`) is not available in this run; available: {}",
                self.harnesses.names().join(", ")
            ))
        })?;
        // The workflow's model was chosen for the workflow's harness: a harness swapped in
        // without a model of its own uses its configured default instead.
        let model = opts
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| over.and_then(|o| o.model))
            .or_else(|| if swapped { None } else { wf.model.clone() });
        let timeout = checked.timeout.unwrap_or(wf.timeout);
        let (schema, validator) = match (schema_override, checked.override_validator) {
            (Some(schema), Some(v)) => (Arc::new(schema), v),
            _ => (wf.schema.clone(), self.validator_for_workflow(&wf).map_err(LeafSetupError::Script)?),
        };
        // Harnesses read per-call settings from the opts; goal and inputs travel on their own.
        let overrides = match opts {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| *k != "inputs" && *k != "goal" && *k != "schema")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        let wants_worktree = opts.get("worktree").and_then(Value::as_bool).unwrap_or(wf.worktree);
        let worktree = (wants_worktree && harness.runs_in_workdir()).then(|| {
            WorktreePlan::for_session(&self.run_dir, &self.run_id, id, &self.project_root, self.keep_worktrees)
        });
        let workdir = worktree.as_ref().map(|w| w.workdir.clone()).unwrap_or_else(|| self.project_root.clone());
        Ok(SpawnOrder {
            request: LeafRequest {
                session_id: id.to_owned(),
                workflow: wf,
                goal: goal.to_owned(),
                inputs: inputs.clone(),
                // Rendered by the scheduler's dispatcher, off the script thread.
                prompt: String::new(),
                schema,
                model,
                timeout,
                run_dir: self.run_dir.clone(),
                project_root: self.project_root.clone(),
                overrides,
                workdir,
                worktree,
                withheld_env: self.withheld_env.clone(),
            },
            harness,
            validator,
        })
    }

    /// Records a finished session. `journal` is false for results taken from the journal.
    fn finish_session(&mut self, mut result: Box<SessionResult>, journal: bool) -> Result<(), HostError> {
        // A leaf cancelled because the run is stopping was in flight, not finished: it is not
        // journaled, so `coord resume` runs it again.
        let stopping = self.interrupt.is_set() && result.status == SessionStatus::Cancelled;
        // An outage is no answer to route on: the run stops, nothing acts on it, and the leaf
        // is not journaled, so `coord resume` runs it again once the set-up is fixed.
        if journal && result.is_outage() {
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
            let outage = self.outage.clone();
            self.usage.add(&result.usage);
            if let Some(events) = &self.events {
                events.send(RunEvent::finished(&result));
            }
            return Err(match outage {
                Some(o) => HostError::Outage(Box::new(o)),
                None => HostError::Interrupted,
            });
        }
        if journal && !stopping {
            let output_fits = fits_inline(&result.output);
            if output_fits && result.text.len() <= INLINE_LIMIT {
                self.journal.append_session(&result.id, &result)?;
            } else {
                // Large payloads go to blobs, so no journal line grows with a leaf's answer.
                let mut record = serde_json::to_value(&result).expect("session results serialize");
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
            }
        } else {
            self.resolve_blob(&mut result)?;
        }
        self.usage.add(&result.usage);
        if let Some(events) = &self.events {
            events.send(RunEvent::finished(&result));
        }
        match session_index(&result.id, self.sessions.len()) {
            Some(i) => self.sessions[i].slot = SessionSlot::Done(result),
            None => unreachable!("a session finishes only after its spawn is recorded"),
        }
        Ok(())
    }

    /// A recorded result's output and text, read back from their blobs when the journal holds
    /// only a marker or the text's start.
    fn resolve_blob(&self, result: &mut SessionResult) -> Result<(), HostError> {
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

    /// Journals every completion that has already arrived, without waiting.
    fn drain_completions(&mut self) -> Result<(), HostError> {
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
        let (index, key, answer) = self.begin_call("await_sessions", None, &args, site)?;
        if self.replaying() == Some(ReplayMode::Exact) && ids.iter().any(|id| self.unfinished_in_journal.contains(id)) {
            return Err(HostError::JournalEnded(index));
        }
        // Wait for live sessions; recorded ones are already done.
        loop {
            let pending = ids.iter().any(|id| matches!(self.session(id).map(|s| &s.slot), Some(SessionSlot::Pending)));
            if !pending {
                break;
            }
            self.check_interrupt()?;
            // What the script did before it waits (its spawns) reaches the OS before the wait,
            // not with the first completion: a run's journal shows its leaves while they run
            // (`coord serve`). A no-op once the buffer is empty.
            self.journal.flush()?;
            match self.scheduler.next_completion() {
                Some(c) => {
                    self.finish_session(Box::new(c.result), true)?;
                    // Drain whatever else finished meanwhile, then hand it all to the OS at
                    // once: a leaf recorded here is never run again, even after a kill -9.
                    while let Some(c) = self.scheduler.try_completion() {
                        self.finish_session(Box::new(c.result), true)?;
                    }
                    self.journal.flush()?;
                }
                None => return Err(HostError::Interrupted),
            }
        }
        let journal_it = match &answer {
            None => !self.offline_replay(),
            Some(_) => self.rejournal(),
        };
        if journal_it {
            let statuses: Vec<&str> = ids.iter().map(|id| self.finished(id).status.as_str()).collect();
            self.journal.append(Entry::call(index, "await_sessions", key, site, args, json!(statuses), None))?;
            // An await boundary: make everything so far durable, in one fsync.
            self.journal.sync()?;
        }
        Ok(())
    }

    /// Blocks until every listed session is done; returns their results in the order given.
    pub fn await_sessions(&mut self, site: &CallSite, ids: &[String]) -> Result<Vec<SessionResult>, HostError> {
        self.wait_for(site, ids)?;
        Ok(ids.iter().map(|id| self.finished(id).clone()).collect())
    }

    /// The result of a session [`Host::wait_for`] has seen finish.
    pub fn finished(&self, id: &str) -> &SessionResult {
        match self.session(id).map(|s| &s.slot) {
            Some(SessionSlot::Done(r)) => r,
            _ => unreachable!("only sessions waited for are asked for"),
        }
    }

    /// Ends a run whose process exits right after it. The bulky records (the session table,
    /// the journal index) are left for the operating system to take back at exit instead of
    /// being freed one allocation at a time (a tenth of a second's tail at 10,000 PRs);
    /// everything whose drop does something (in-flight leaves, the journal file, the log) is
    /// dropped as usual.
    pub fn drop_for_exit(mut self) {
        std::mem::forget(std::mem::take(&mut self.sessions));
        std::mem::forget(self.recorded.take());
    }

    /// Every finished session's result, in spawn order, moved out of the host (the run is over;
    /// copying 20,000 results was a tenth of a large run's tail).
    pub fn take_session_results(&mut self) -> Vec<Box<SessionResult>> {
        let done = self.sessions.iter().filter(|s| matches!(s.slot, SessionSlot::Done(_))).count();
        let mut results = Vec::with_capacity(done);
        results.extend(self.sessions.iter_mut().filter_map(|s| {
            match std::mem::replace(&mut s.slot, SessionSlot::Pending) {
                SessionSlot::Done(r) => Some(r),
                SessionSlot::Pending => None,
            }
        }));
        results
    }

    /// What the journal's reading thread prepared from a recorded session's result, moved out.
    pub fn take_prepared(&mut self, id: &str) -> Option<Prepared> {
        let i = session_index(id, self.sessions.len())?;
        self.sessions[i].prepared.take()
    }

    pub fn spawn_info(&self, id: &str) -> Option<(&str, &str, &Value)> {
        self.session(id).map(|s| (s.workflow.as_str(), goal_of(&s.args), inputs_of(&s.args)))
    }

    // ---- effects -----------------------------------------------------------------------

    /// Journals the intent, acts (unless dry-run or replaying), journals the result.
    pub fn effect(&mut self, site: &CallSite, kind: EffectKind, args: Value) -> Result<Value, HostError> {
        let function = kind.function();
        let (index, key, answer) = self.begin_call(function, None, &args, site)?;
        let request = EffectRequest { kind, args: args.clone() };
        let idempotency_key = format!("{}:{index}", self.run_id);

        let result = match answer {
            Some(ans) => {
                let recorded_key = ans.idempotency_key.clone().unwrap_or(idempotency_key.clone());
                if self.rejournal() {
                    self.journal.append(Entry::effect_intent(
                        index,
                        function,
                        key.clone(),
                        site,
                        args.clone(),
                        recorded_key.clone(),
                    ))?;
                }
                match ans.effect_result {
                    Some(result) => {
                        self.world.restore(&request, &result);
                        if self.rejournal() {
                            self.journal.append(Entry::effect_result(index, function, result.clone()))?;
                        }
                        result
                    }
                    None if self.offline_replay() => json!({"status": "not_recorded"}),
                    None => {
                        // Intent without result: the run stopped around this effect. Ask the
                        // world before acting again.
                        let done = self
                            .world
                            .already_done(&request, &recorded_key)
                            .map_err(|e| HostError::World(e.to_string()))?;
                        let result = match done {
                            Some(r) => r,
                            None => self.act(&request, &recorded_key)?,
                        };
                        let at = if ans.positional { ans.call.unwrap_or(index) } else { index };
                        self.journal.append(Entry::effect_result(at, function, result.clone()))?;
                        self.journal.flush()?;
                        result
                    }
                }
            }
            None if self.offline_replay() => {
                self.note_unrecorded(index, function, &args, site);
                json!({"status": "not_recorded"})
            }
            None => {
                self.journal.append(Entry::effect_intent(
                    index,
                    function,
                    key,
                    site,
                    args.clone(),
                    idempotency_key.clone(),
                ))?;
                let result = if self.dry_run {
                    json!({"status": "dry_run"})
                } else {
                    if self.world.is_external() {
                        // The intent must survive anything, power loss included, before the
                        // world changes.
                        self.journal.sync()?;
                    }
                    self.act(&request, &idempotency_key)?
                };
                self.journal.append(Entry::effect_result(index, function, result.clone()))?;
                if self.world.is_external() {
                    self.journal.flush()?;
                }
                result
            }
        };
        if let Some(events) = &self.events {
            events.send(RunEvent::effect_done(function, &args, &result));
        }
        self.effects.push(EffectRecord { call: index, kind, args, result: result.clone(), site: site.clone() });
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

    /// Stops every leaf still running (graceful stop).
    pub fn cancel_leaves(&mut self) {
        self.scheduler.cancel_all();
    }

    pub fn flush_log(&mut self) {
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
    }
}

/// What [`Host::check_spawn`] found in a spawn's options.
struct CheckedSpawn {
    /// The `timeout` option, if given.
    timeout: Option<Duration>,
    /// The validator of a per-call schema (`classify`'s), if given.
    override_validator: Option<Arc<jsonschema::Validator>>,
}

enum LeafSetupError {
    /// The script asked for something impossible (unknown workflow): a script error.
    Script(String),
    /// This one leaf cannot run (harness missing, template error): a failed result.
    Leaf(String),
}

/// Whether a leaf's output is small enough to stay in the journal line (else it becomes a
/// blob). Measured by serializing into a counter that gives up past the limit, so neither a
/// small output nor a huge one is written out just to be measured.
fn fits_inline(output: &Value) -> bool {
    fits_within(output, INLINE_LIMIT)
}

/// Whether `value` serializes to at most `limit` bytes.
fn fits_within(value: &Value, limit: usize) -> bool {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { written: 0, limit }, value).is_ok()
}

/// The start of a text too long for a journal line: what views show in its place.
fn text_start(text: &str) -> String {
    const SHOWN: usize = 1024;
    let end = (0..=SHOWN.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// A spawn's `timeout` option: seconds, or a duration like `"20m"`; `()` means the workflow's.
fn timeout_of(v: &Value) -> Result<Option<Duration>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_f64()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .map(Some)
            .ok_or_else(|| format!("`timeout` must be a non-negative number of seconds, not {n}")),
        Value::String(s) => humantime::parse_duration(s).map(Some).map_err(|e| format!("timeout `{s}`: {e}")),
        other => Err(format!("`timeout` must be seconds or a duration like \"20m\", not {}", json_type(other))),
    }
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "()",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::{fits_inline, session_index, INLINE_LIMIT};
    use serde_json::json;

    #[test]
    fn outputs_up_to_the_limit_stay_inline() {
        assert!(fits_inline(&json!(null)));
        assert!(fits_inline(&json!({"verdict": "clean", "findings": []})));
        // A string of n characters serializes to n + 2 bytes (its quotes).
        assert!(fits_inline(&json!("x".repeat(INLINE_LIMIT - 2))));
        assert!(!fits_inline(&json!("x".repeat(INLINE_LIMIT - 1))));
        assert!(!fits_inline(&json!({ "big": vec!["y".repeat(100); 100] })));
    }

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
