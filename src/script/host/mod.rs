//! The host: the one place a script's host calls are answered.
//!
//! Every call gets the next call index and a call key, and one decision
//! ([`replay_decision`]) says how it is answered: from the recorded journal (replay, resume,
//! what-if, redo), journaled again, live, not at all, or not past the journal's end. One
//! executor per kind of call acts on that decision: value calls and GitHub reads
//! ([`reads`]), the project's files and state ([`project_calls`]), leaf sessions ([`sessions`], with what a leaf is given in [`leaf_orders`]) and
//! effects ([`effects`]). Every answer is journaled before the script sees it; effects are
//! journaled as an intent before they act and as a result after.
//!
//! It runs on the script thread and must not block anywhere but in `await_sessions` (waiting
//! for leaves) and in world calls (waiting for the network). It must not know how a script
//! value is built: `host_api` turns its answers into script values.

mod awaits;
mod effects;
mod leaf_orders;
mod payload_size;
mod project_calls;
mod reads;
mod replay_decision;
mod sessions;
mod spawn_options;
mod waits;

pub use reads::{Answer, PARSED_AHEAD};
pub use spawn_options::SpawnOptions;
pub use waits::{duration_ms, SignalWait, WAIT_FUNCTIONS};

use crate::compact_json::CompactJson;
use crate::effects::project_store::ProjectStore;
use crate::effects::{EffectKind, World};
use crate::harness::HarnessSet;
use crate::journal::blob_store::BlobStore;
use crate::journal::entry::CallSite;
use crate::journal::JournalWriter;
use crate::leaf::session::Usage;
use crate::scheduler::run_event::RunEvents;
use crate::scheduler::SchedulerClient;
use crate::script::recorded_calls::{Divergence, RecordedCalls};
use crate::workflow::WorkflowSet;
use indexmap::IndexMap;
use serde_json::Value;
use sessions::Session;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// The run parked at a wait (`--park-after`): its process exits, its journal says so.
    #[error("parked")]
    Parked,
    #[error("{}", .0)]
    Outage(Box<Outage>),
}

/// A leaf stopped by its harness's set-up or its provider (see
/// [`crate::leaf::session::SessionResult::is_outage`]): the run stops instead of routing on it.
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
    /// A scenario's virtual clock, in Unix milliseconds: it starts at the scenario's `now` and
    /// moves only when the script sleeps or waits for a signal, so scenario runs never wait.
    Fixed(i64),
}

/// Where `wait_signal` finds deliveries.
#[derive(Clone, Debug)]
pub enum SignalSource {
    /// The run directory's signal box, filled by `coord signal` and the daemon.
    RunDirectory,
    /// A scenario's `[[signal]]` entries, delivered on its virtual clock.
    Scenario(Vec<crate::scenario::ScenarioSignal>),
}

/// A per-workflow harness (and model) swap, from `--leaf WORKFLOW=HARNESS[:MODEL]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafOverride {
    pub harness: String,
    pub model: Option<String>,
}

impl LeafOverride {
    /// Reads `HARNESS[:MODEL]`, the form the journal header records.
    pub fn from_spec(spec: &str) -> Self {
        match spec.split_once(':') {
            Some((harness, model)) => LeafOverride { harness: harness.to_owned(), model: Some(model.to_owned()) },
            None => LeafOverride { harness: spec.to_owned(), model: None },
        }
    }

    /// `HARNESS[:MODEL]`.
    pub fn spec(&self) -> String {
        match &self.model {
            Some(m) => format!("{}:{m}", self.harness),
            None => self.harness.clone(),
        }
    }
}

pub struct HostSetup {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub project_root: PathBuf,
    pub journal: JournalWriter,
    pub world: Box<dyn World>,
    /// The project's files and the state kept between runs (`read_file`, `state::*`).
    pub store: ProjectStore,
    pub scheduler: SchedulerClient,
    pub workflows: Arc<WorkflowSet>,
    pub harnesses: HarnessSet,
    /// Harness every workflow uses unless overridden (`mock` in scenario runs).
    pub default_harness: Option<String>,
    pub leaf_overrides: IndexMap<String, LeafOverride>,
    pub inputs: IndexMap<String, Value>,
    pub clock: Clock,
    pub signals: SignalSource,
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
    /// `--park-after`: a live wait this long, with no leaf running, parks the run.
    pub park_after: Option<std::time::Duration>,
    /// What `run_info()` answers: the run's id and its report's address.
    pub run_info: Value,
    /// Where each workflow's leaves run: here, or as jobs on an engine.
    pub executors: crate::executor::Executors,
}

/// One effect the run performed (or would have, in a dry or what-if run). A run keeps one per
/// effect until it ends, so its arguments and result are kept as their JSON text.
#[derive(Clone, Debug)]
pub struct EffectRecord {
    pub call: u64,
    pub kind: EffectKind,
    args: CompactJson,
    result: CompactJson,
    pub site: CallSite,
}

impl EffectRecord {
    pub fn new(call: u64, kind: EffectKind, args: Value, result: Value, site: CallSite) -> Self {
        EffectRecord { call, kind, args: CompactJson::new(args), result: CompactJson::new(result), site }
    }

    /// The effect's arguments, as the script gave them.
    pub fn args(&self) -> Value {
        self.args.value()
    }

    /// What the world answered.
    pub fn result(&self) -> Value {
        self.result.value()
    }
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
    store: ProjectStore,
    scheduler: SchedulerClient,
    workflows: Arc<WorkflowSet>,
    harnesses: HarnessSet,
    default_harness: Option<String>,
    leaf_overrides: IndexMap<String, LeafOverride>,
    inputs: IndexMap<String, Value>,
    clock: Clock,
    /// The virtual clock's start (a scenario's `now`), which `[[signal]]` times count from.
    clock_start_ms: i64,
    signals: SignalSource,
    /// Signal deliveries this run has consumed (recorded or live): never consumed twice.
    consumed_signals: std::collections::HashSet<String>,
    dry_run: bool,
    /// A dry run that runs no leaf at all (`--dry-run=no-leaves`).
    dry_run_no_leaves: bool,
    spawn_command: bool,
    /// What leaves must not inherit (see [`crate::leaf::session::LeafRequest::withheld_env`]).
    withheld_env: Arc<[String]>,
    recorded: Option<RecordedCalls>,
    interrupt: Arc<crate::scheduler::Interrupt>,
    log: Option<std::io::BufWriter<std::fs::File>>,
    budget_usd: Option<f64>,
    keep_worktrees: bool,
    park_after: Option<std::time::Duration>,
    run_info: Value,
    executors: crate::executor::Executors,
    next_call: u64,
    next_session: u64,
    /// Sessions in spawn order: `s{n}` is `sessions[n - 1]`.
    sessions: Vec<Session>,
    /// Sessions a replay found spawned but never finished (the recorded run stopped there).
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
            store: s.store,
            scheduler: s.scheduler,
            workflows: s.workflows,
            harnesses: s.harnesses,
            default_harness: s.default_harness,
            leaf_overrides: s.leaf_overrides,
            inputs: s.inputs,
            clock_start_ms: match s.clock {
                Clock::Fixed(ms) => ms,
                Clock::System => 0,
            },
            clock: s.clock,
            signals: s.signals,
            consumed_signals: Default::default(),
            dry_run: s.dry_run,
            dry_run_no_leaves: s.dry_run_no_leaves,
            spawn_command: s.spawn_command,
            withheld_env: Arc::from(s.withheld_env),
            recorded: s.recorded,
            interrupt: s.interrupt,
            log: s.log.map(std::io::BufWriter::new),
            budget_usd: s.budget_usd,
            keep_worktrees: s.keep_worktrees,
            park_after: s.park_after,
            run_info: s.run_info,
            executors: s.executors,
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

    pub fn recorded(&self) -> Option<&RecordedCalls> {
        self.recorded.as_ref()
    }

    pub fn recorded_mut(&mut self) -> Option<&mut RecordedCalls> {
        self.recorded.as_mut()
    }

    pub fn log_line(&mut self, line: &str) {
        tracing::info!(target: "coord::script", "{line}");
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "{}", crate::redaction::process().mask(line));
        }
    }

    pub fn flush_log(&mut self) {
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
    }

    fn check_interrupt(&self) -> Result<(), HostError> {
        if self.interrupt.is_set() {
            Err(HostError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// The world's notes (a list that changed while it was read) go to the run's log.
    fn log_world_notes(&mut self) {
        for note in self.world.take_notes() {
            self.log_line(&note);
        }
    }

    /// Stops every leaf still running (graceful stop).
    pub fn cancel_leaves(&mut self) {
        self.scheduler.cancel_all();
    }

    /// Ends a run whose process exits right after it. The bulky records (the session table,
    /// the journal index) are left for the operating system to take back at exit instead of
    /// being freed one allocation at a time; everything whose drop does something (in-flight
    /// leaves, the journal file, the log) is dropped as usual.
    pub fn drop_for_exit(mut self) {
        std::mem::forget(std::mem::take(&mut self.sessions));
        std::mem::forget(self.recorded.take());
    }
}

/// The type of a JSON value, as a message names it.
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
