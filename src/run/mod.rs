//! A run: wires a script, a world (scenario or live), the scheduler, the journal and the host
//! together, runs the script on its own thread, and reports the outcome.
//!
//! It owns the order of setting up (compile and load everything a user wrote before creating
//! the run directory, so a bad file leaves nothing behind) and of finishing (the journal's last
//! entry says how the run ended). It must not decide routing or render output.

mod finish;
pub mod leaf_exec;
pub mod project;
mod recording;
pub mod resume;
mod run_directory;
pub mod run_error;
mod sources;
mod world_choice;

pub use finish::describe_divergence;

use crate::config::file_diagnostic::FileDiagnostic;
use crate::journal::entry::{ParentRun, RunHeader, RunStatus};
use crate::journal::run_dir::{self, RunStore};
use crate::journal::{AnswerIndex, RunMode};
use crate::leaf::session::{FinishedSession, Usage};
use crate::scheduler::SchedulerClient;
use crate::script::diagnostic::ScriptErrorKind;
use crate::script::engine::SCRIPT_THREAD_STACK;
use crate::script::host::{EffectRecord, HostSetup, LeafOverride, UnrecordedCall};
use crate::script::host_api::{self, HostCell};
use crate::script::recorded_calls::{Divergence, ReplayMode};
use crate::script::{EngineLimits, Host, ScriptDiagnostic, ScriptEngine};
use finish::RunEnding;
use indexmap::IndexMap;
use project::Project;
use run_directory::RunDirectory;
use serde_json::Value;
use sources::Sources;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// How a run relates to a recorded one.
#[derive(Clone, Debug)]
pub enum Recording {
    /// A fresh run.
    Fresh,
    /// Answer from `run`'s journal: replay, what-if or resume (`mode`).
    From {
        run_dir: PathBuf,
        mode: ReplayMode,
        recover: bool,
        /// The journal, when the caller has read it already (saves reading it twice).
        preloaded: Option<std::sync::Arc<AnswerIndex>>,
    },
    /// A redo (`coord resume --from`, `--retry-failed`): a new run, answered from its parent's
    /// journal as `link` says, that records everything in its own. The parent is never touched.
    Branch { parent_dir: PathBuf, link: ParentRun, preloaded: Option<std::sync::Arc<AnswerIndex>> },
}

#[derive(Clone, Debug)]
pub struct RunPlan {
    pub script: PathBuf,
    pub inputs: IndexMap<String, Value>,
    pub scenario: Option<PathBuf>,
    pub demo: bool,
    pub max_parallel: usize,
    pub runs: RunStore,
    pub dry_run: bool,
    /// `--dry-run=no-leaves`: no leaf runs at all.
    pub dry_run_no_leaves: bool,
    pub limits: EngineLimits,
    pub leaf_overrides: IndexMap<String, LeafOverride>,
    /// Keep the journal in memory only (the journaling-overhead benchmark).
    pub journal_in_memory: bool,
    pub recording: Recording,
    /// Record which statements run, for routing coverage.
    pub coverage: Option<crate::script::coverage::SharedHits>,
    /// Stdout carries the `--json` object: the `stdout` notification channel writes to stderr.
    pub stdout_is_json: bool,
    /// The pipeline this run belongs to, recorded in the journal header.
    pub pipeline: Option<String>,
    /// Live progress for a display (`coord run` on a terminal or in logs).
    pub events: Option<crate::scheduler::run_event::RunEvents>,
    /// `--budget-usd`: no new leaf starts once the run's leaves cost this much.
    pub budget_usd: Option<f64>,
    /// The process exits once this run's outcome is reported (the CLI's one-shot commands),
    /// so the run's bulky state need not be freed.
    pub process_exits_after: bool,
    /// A resume's hold on the run, taken before its journal was prepared (a fresh run takes
    /// its own as it creates its directory).
    pub owner: Option<Arc<run_dir::OwnerLock>>,
    /// `--park-after`: a wait this long, with no leaf running, parks the run (its process
    /// exits; `coord resume` or the daemon goes on with it).
    pub park_after: Option<std::time::Duration>,
    /// `--executor KIND`: where every leaf runs, over `coord.toml`'s `[executor]`.
    pub executor: Option<String>,
}

impl RunPlan {
    pub fn new(script: PathBuf) -> Self {
        RunPlan {
            script,
            inputs: IndexMap::new(),
            scenario: None,
            demo: false,
            max_parallel: 8,
            runs: RunStore::locate(None),
            dry_run: false,
            dry_run_no_leaves: false,
            limits: EngineLimits::default(),
            leaf_overrides: IndexMap::new(),
            journal_in_memory: false,
            recording: Recording::Fresh,
            coverage: None,
            stdout_is_json: false,
            pipeline: None,
            events: None,
            budget_usd: None,
            process_exits_after: false,
            owner: None,
            park_after: None,
            executor: None,
        }
    }
}

/// Errors that stop a run before it starts: the user's files are at fault, or the run store.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SetupError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Script(#[from] Box<ScriptDiagnostic>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Scenario(#[from] Box<FileDiagnostic>),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Journal(#[from] Box<crate::journal::JournalError>),
    #[error("run store: {0}")]
    Io(#[from] std::io::Error),
    /// Another process owns the run (exit 75).
    #[error(transparent)]
    Owned(#[from] run_dir::OwnerLockError),
}

/// Why a run that started did not succeed.
#[derive(Debug)]
pub enum RunFailure {
    /// The script is at fault (exit 2) or threw (exit 1).
    Script(Box<ScriptDiagnostic>),
    /// Replay met a call the journal does not hold (exit 3).
    Divergence(Box<Divergence>, Box<ScriptDiagnostic>),
    /// The journal of an interrupted run ended before the script did.
    JournalEnded(u64),
    /// A read or the journal failed (exit 1).
    Host(String),
    /// SIGINT or SIGTERM.
    Interrupted,
    /// A harness failed on its set-up or its provider (exit 1); the run stopped before the
    /// script saw it and `coord resume` finishes it once fixed.
    Outage(Box<crate::script::host::Outage>),
}

#[derive(Debug)]
pub struct RunOutcome {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub coordinator: String,
    pub status: RunStatus,
    pub sessions: usize,
    /// Every finished leaf, in spawn order.
    pub leaves: Vec<Arc<FinishedSession>>,
    pub effects: Vec<EffectRecord>,
    pub usage: Usage,
    /// What the script returned, as JSON.
    pub result: Value,
    pub failure: Option<RunFailure>,
    pub unrecorded: Vec<UnrecordedCall>,
    /// What-if and resume: the first call where the script left the recorded path.
    pub divergence: Option<Divergence>,
    /// A parked run's wait, as the wait index lists it.
    pub parked: Option<crate::journal::wait_index::WaitEntry>,
    pub warnings: Vec<String>,
}

/// Compiles a script the way a run does (sandboxed engine, host API, imports resolved), for
/// analysis that must see exactly what a run would: coverage, checks.
pub fn compile_for_analysis(script: &Path) -> Result<rhai::AST, Box<ScriptDiagnostic>> {
    let source = std::fs::read_to_string(script).map_err(|e| {
        Box::new(ScriptDiagnostic::at(script, "", 0, 0, format!("cannot read: {e}"), None, ScriptErrorKind::Syntax))
    })?;
    let project = Project::discover(script);
    let mut engine = ScriptEngine::build(EngineLimits::default());
    let resolver = project.module_resolver(script);
    engine.set_module_resolver(resolver.clone());
    host_api::register(&mut engine, Rc::new(HostCell::default()), script.display().to_string());
    Ok(crate::script::module_resolver::compile_script(&engine, &resolver, script, &source)?.ast)
}

/// Runs a plan to its end. Blocks the calling thread; `runtime` runs the leaves.
pub fn execute(
    plan: RunPlan,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> Result<RunOutcome, SetupError> {
    let runtime = runtime.clone();
    let handle = std::thread::Builder::new()
        .name("coord-script".into())
        .stack_size(SCRIPT_THREAD_STACK)
        .spawn(move || execute_on_script_thread(plan, runtime, interrupt))
        .map_err(SetupError::Io)?;
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A run, phase by phase: load sources → open the recording → choose the world → open the
/// run directory → install the host → evaluate → finish the journal → outcome. Each phase
/// hands the next a typed result; nothing is created before the sources loaded.
fn execute_on_script_thread(
    mut plan: RunPlan,
    runtime: tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> Result<RunOutcome, SetupError> {
    let sources = Sources::load(&plan, &interrupt)?;
    let recorded = recording::open_recording(&mut plan)?;
    let world = world_choice::choose_world(&plan, &sources, recorded.as_ref(), &runtime)?;
    let executor_plan = crate::executor::ExecutorPlan::new(&sources.config, plan.executor.as_deref())
        .map_err(|e| SetupError::Usage(e.to_string()))?;
    if world.mode == RunMode::Live && executor_plan.may_run_here() {
        // The supervisor host starts while the script compiles, not when the first leaf waits.
        runtime.spawn_blocking(crate::harness::supervisor_host::start_early);
    }
    let resumed = matches!(plan.recording, Recording::From { mode: ReplayMode::Resume, .. });
    let directory = run_directory::open_run_directory(&mut plan, &sources, &world, recorded)?;
    let Sources { script, source, project, coordinator, config, engine, ast, cell } = sources;
    let RunDirectory { run_id, run_dir, journal, recorded, owner, log, offline, clock: run_clock } = directory;
    let executors = match offline {
        true => crate::executor::Executors::local(),
        false => executor_plan
            .open(&run_id, &run_dir, &project.root, resumed)
            .map_err(|e| SetupError::Usage(e.to_string()))?,
    };
    cell.install(Host::new(HostSetup {
        run_id: run_id.clone(),
        run_dir: run_dir.clone(),
        project_root: project.root,
        journal,
        world: world.world,
        store: world.store,
        scheduler: SchedulerClient::start(&runtime, plan.max_parallel, &interrupt, run_clock),
        workflows: world.workflows,
        harnesses: world.harnesses,
        default_harness: world.default_harness,
        leaf_overrides: plan.leaf_overrides.clone(),
        inputs: world.inputs,
        clock: world.clock,
        signals: world.signals,
        dry_run: plan.dry_run,
        dry_run_no_leaves: plan.dry_run_no_leaves,
        // A dry run's leaves get none of the credentials its effects would use.
        withheld_env: if plan.dry_run { config.credential_variables() } else { Vec::new() },
        spawn_command: config.file.capabilities.spawn_command,
        recorded,
        interrupt: interrupt.clone(),
        log,
        budget_usd: plan.budget_usd,
        keep_worktrees: config.file.worktrees.keep,
        park_after: plan.park_after,
        run_info: run_info(&run_id, world.scenario_path.is_some(), world.run_url.as_deref()),
        executors,
    }));
    if let Some(events) = plan.events.clone() {
        cell.with(|host| host.report_events_to(events));
    }

    let evaluated = engine.eval_ast::<rhai::Dynamic>(&ast);
    drop(engine);
    let host = cell.take().expect("the host was installed above");
    let ending = RunEnding {
        run_id,
        run_dir,
        coordinator,
        script: &script,
        source: &source,
        offline,
        owner,
        interrupt: &interrupt,
        exits_after: plan.process_exits_after,
    };
    ending.finish(evaluated, host)
}

/// A scenario run's id as `run_info()` gives it: the same in every run, so snapshots are too.
pub const SCENARIO_RUN_ID: &str = "scenario";

/// What `run_info()` answers: `#{ id, url }`, the url from `[run] url` with `{run}` filled in.
fn run_info(run_id: &str, scenario: bool, url: Option<&str>) -> Value {
    let id = if scenario { SCENARIO_RUN_ID } else { run_id };
    serde_json::json!({ "id": id, "url": url.map(|u| u.replace("{run}", id)) })
}

/// Why the engine's progress callback stopped a script.
const STOP_INTERRUPTED: &str = "interrupted";

/// A path as a recorded run wrote it: as given if it exists from here, else relative to the
/// recorded run's working directory.
pub fn recorded_path(path: &str, header: &RunHeader) -> PathBuf {
    let p = PathBuf::from(path);
    if p.exists() || p.is_absolute() {
        return p;
    }
    match &header.cwd {
        Some(cwd) if Path::new(cwd).join(&p).exists() => Path::new(cwd).join(p),
        _ => p,
    }
}

pub fn coordinator_name(script: &Path) -> String {
    script.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "script".into())
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
