//! A run: wires a script, a world (scenario or live), the scheduler, the journal and the host
//! together, runs the script on its own thread, and reports the outcome.
//!
//! It owns the order of setting up (compile and load everything a user wrote before creating
//! the run directory, so a bad file leaves nothing behind) and of finishing (the journal's last
//! entry says how the run ended). It must not decide routing or render output.

pub mod project;
pub mod resume;

use crate::effects::live_world::LiveWorld;
use crate::effects::{UnconfiguredWorld, World};
use crate::scenario::mock_harness::MockHarness;
use crate::harness::HarnessSet;
use crate::journal::entry::{Entry, ParentRun, RunHeader, RunStatus, JOURNAL_VERSION};
use crate::journal::run_dir::{self, RunStore};
use crate::journal::{AnswerIndex, JournalWriter};
use crate::leaf::session::{SessionResult, Usage};
use crate::config::file_diagnostic::FileDiagnostic;
use crate::scenario::{MockResponder, Scenario, ScenarioWorld};
use crate::scheduler::SchedulerClient;
use crate::script::diagnostic::ScriptErrorKind;
use crate::script::engine::SCRIPT_THREAD_STACK;
use crate::script::host::{Clock, EffectRecord, HostError, HostSetup, LeafOverride, UnrecordedCall};
use crate::script::host_api::{self, HostCell};
use crate::script::recorded_calls::{Divergence, RecordedCalls, ReplayMode};
use crate::script::{EngineLimits, Host, ScriptDiagnostic, ScriptEngine};
use crate::workflow::WorkflowSet;
use indexmap::IndexMap;
use project::Project;
use serde_json::Value;
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
    /// Every finished leaf's result, in spawn order.
    pub leaves: Vec<Box<SessionResult>>,
    pub effects: Vec<EffectRecord>,
    pub usage: Usage,
    /// What the script returned, as JSON.
    pub result: Value,
    pub failure: Option<RunFailure>,
    pub unrecorded: Vec<UnrecordedCall>,
    /// What-if and resume: the first call where the script left the recorded path.
    pub divergence: Option<Divergence>,
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

fn execute_on_script_thread(
    mut plan: RunPlan,
    runtime: tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> Result<RunOutcome, SetupError> {
    let script_path = plan.script.clone();
    let exits_after = plan.process_exits_after;
    let source = std::fs::read_to_string(&script_path)
        .map_err(|e| SetupError::Usage(format!("cannot read script {}: {e}", script_path.display())))?;
    let project = Project::discover(&script_path);
    let coordinator = coordinator_name(&script_path);
    let config = crate::config::Config::load(&project.root).map_err(|e| SetupError::Scenario(Box::new(e)))?;

    // Compile first: a script that does not compile leaves no run behind.
    let cell: Rc<HostCell> = Rc::new(HostCell::default());
    let mut engine = ScriptEngine::build(plan.limits);
    let resolver = project.module_resolver(&script_path);
    engine.set_module_resolver(resolver.clone());
    let main_source = script_path.display().to_string();
    host_api::register(&mut engine, cell.clone(), main_source.clone());
    if let Some(hits) = &plan.coverage {
        crate::script::coverage::record(&mut engine, main_source.clone(), hits.clone());
    }
    {
        // Between operations: stop for a graceful stop, or when the heap outgrows its budget.
        let flag = interrupt.clone();
        // The script thread's own allocations: this closure runs on it, between operations.
        // Checked after every operation, for growth a little at a time; a single call that
        // would allocate past the budget is refused before it allocates (`heap_budget.rs`).
        let heap = crate::script::heap_budget::HeapBudget::starting_now(plan.limits.max_heap_bytes);
        engine.on_progress(move |_| {
            if flag.is_set() {
                Some(rhai::Dynamic::from(STOP_INTERRUPTED))
            } else if heap.is_exceeded() {
                Some(heap.exhausted_token())
            } else {
                None
            }
        });
    }
    // Every import is resolved and loaded here, before anything runs.
    let ast = crate::script::module_resolver::compile_script(&engine, &resolver, &script_path, &source)?.ast;

    // The recorded run, when replaying or resuming.
    // Take the preloaded journal out of the plan, so the only reference is ours and it is
    // moved, not copied, into the recorded calls.
    let preloaded = match &mut plan.recording {
        Recording::From { preloaded, .. } | Recording::Branch { preloaded, .. } => preloaded.take(),
        Recording::Fresh => None,
    };
    let recorded_source = match &plan.recording {
        Recording::Fresh => None,
        Recording::From { run_dir, recover, .. } => Some((run_dir, *recover)),
        Recording::Branch { parent_dir, .. } => Some((parent_dir, false)),
    };
    let recorded_run = match recorded_source {
        None => None,
        Some((dir, recover)) => match preloaded.map(Arc::try_unwrap) {
            Some(Ok(journal)) => Some(journal),
            _ => Some(AnswerIndex::read(dir, recover).map_err(|e| SetupError::Journal(Box::new(e)))?),
        },
    };

    // A continued run keeps the options it was started with.
    if let Some(rec) = &recorded_run {
        apply_recorded_options(&mut plan, &rec.header.options);
    }

    // The world: a scenario (given, demo, or the recorded run's), else live.
    let scenario_path = match (&plan.scenario, plan.demo, &recorded_run) {
        (Some(p), _, _) => Some(p.clone()),
        (None, true, _) => {
            let demo = project.demo_scenario(&script_path);
            if !demo.is_file() {
                return Err(SetupError::Usage(format!(
                    "{} has no demo scenario (looked for {})",
                    script_path.display(),
                    demo.display()
                )));
            }
            Some(demo)
        }
        (None, false, Some(rec)) => rec.header.scenario.as_deref().map(|p| recorded_path(p, &rec.header)),
        _ => None,
    };
    // Replay and what-if answer every read from the journal and never act, so they need no
    // world: the recorded run's scenario is not even read (it may be large, or gone).
    let offline = matches!(&plan.recording, Recording::From { mode: ReplayMode::Exact | ReplayMode::WhatIf, .. });
    let scenario = match &scenario_path {
        Some(p) if !offline => Some(Scenario::load(p).map_err(|e| SetupError::Scenario(Box::new(e)))?),
        _ => None,
    };
    let workflows = Arc::new(WorkflowSet::new(project.workflow_dirs()).with_overrides(config.file.workflow.clone()));
    if let Some(s) = &scenario {
        s.validate(&workflows).map_err(|e| SetupError::Scenario(Box::new(e)))?;
    }

    let mut inputs: IndexMap<String, Value> = match (&recorded_run, &scenario) {
        (Some(rec), _) => rec.header.inputs.as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default(),
        (None, Some(s)) => s.inputs.clone(),
        (None, None) => IndexMap::new(),
    };
    inputs.extend(plan.inputs.clone());
    // The inputs the script declares: text read as its type, defaults, nothing missing.
    let declared = crate::script::input_decls::InputDecls::parse(&source)
        .map_err(|e| SetupError::Usage(format!("{}: {}", script_path.display(), e.message)))?;
    declared
        .apply(&mut inputs)
        .map_err(|problems| SetupError::Usage(format!("{}: {}", script_path.display(), problems.join("\n  "))))?;

    let mut harnesses = HarnessSet::configured(&config, &project.root).map_err(|e| SetupError::Usage(e.to_string()))?;
    // The scenario is taken apart into the world and the mock leaves, not copied into them.
    let (world, clock, default_harness, mode): (Box<dyn World>, Clock, Option<String>, &str) = match scenario {
        Some(mut s) => {
            harnesses.insert(Arc::new(MockHarness::new(MockResponder::new(std::mem::take(&mut s.rules)))));
            (Box::new(ScenarioWorld::new(&mut s)), Clock::Fixed(s.now_unix), Some("mock".into()), "scenario")
        }
        None if offline => (Box::new(UnconfiguredWorld), Clock::System, None, "replay"),
        None => {
            let world = LiveWorld::from_config(&config, &project.root, &inputs, runtime.clone())
                .with_stdout_is_json(plan.stdout_is_json);
            (Box::new(world), Clock::System, None, "live")
        }
    };
    let mode = if plan.dry_run { "dry_run" } else { mode };

    // The run directory and journal; a run that appends holds its directory's owner lock.
    let mut owner = plan.owner.take();
    let header = |id: &str, parent: Option<ParentRun>| RunHeader {
        version: JOURNAL_VERSION,
        coord_version: env!("CARGO_PKG_VERSION").into(),
        run_id: id.to_owned(),
        coordinator: coordinator.clone(),
        script: script_path.display().to_string(),
        script_sha256: crate::journal::call_key::short_hash(source.as_bytes()),
        inputs: Value::Object(inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        mode: mode.into(),
        scenario: scenario_path.as_ref().map(|p| p.display().to_string()),
        started_at: now_rfc3339(),
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
        options: serde_json::json!({
            "leaf": plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), Value::String(match &o.model {
                Some(m) => format!("{}:{m}", o.harness),
                None => o.harness.clone(),
            }))).collect::<serde_json::Map<String, Value>>(),
            "dry_run": plan.dry_run,
            "dry_run_no_leaves": plan.dry_run_no_leaves,
            "max_parallel": plan.max_parallel,
        }),
        pipeline: plan.pipeline.clone(),
        parent,
    };
    let (run_id, run_dir, journal, recorded) = match (&plan.recording, recorded_run) {
        (Recording::From { run_dir, mode, .. }, Some(rec)) => {
            if !offline && owner.is_none() {
                owner = Some(Arc::new(run_dir::OwnerLock::take(run_dir)?));
            }
            let journal = if offline {
                JournalWriter::in_memory()
            } else {
                JournalWriter::append_to(run_dir, rec.valid_len, rec.next_seq)?
            };
            let run_id = rec.header.run_id.clone();
            (run_id, run_dir.clone(), journal, Some(RecordedCalls::new(rec, *mode)))
        }
        (Recording::Branch { parent_dir, link, .. }, Some(rec)) => {
            let (id, dir) = plan.runs.create_run(&coordinator)?;
            owner = Some(Arc::new(run_dir::OwnerLock::take(&dir)?));
            // The parent's blobs (large outputs, transcripts) are this run's too.
            run_dir::share_blobs(parent_dir, &dir)?;
            let journal = JournalWriter::start(&dir, Entry::run_started(header(&id, Some(link.clone()))))?;
            let mut calls = RecordedCalls::new(rec, ReplayMode::Branch);
            calls.rerun(link.retried.iter().cloned());
            if let Some(call) = link.from_call {
                calls.reuse_before(call);
            }
            (id, dir, journal, Some(calls))
        }
        _ => {
            let (id, dir) = plan.runs.create_run(&coordinator)?;
            if !plan.journal_in_memory {
                owner = Some(Arc::new(run_dir::OwnerLock::take(&dir)?));
            }
            let started = Entry::run_started(header(&id, None));
            let journal = if plan.journal_in_memory {
                let mut journal = JournalWriter::in_memory();
                journal.append(started)?;
                journal
            } else {
                JournalWriter::start(&dir, started)?
            };
            (id, dir, journal, None)
        }
    };
    let mut warnings = Vec::new();
    if !offline {
        run_dir::write_pid(&run_dir)?;
    }
    let log = if offline {
        None
    } else {
        std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join("run.log")).ok()
    };

    let scheduler = SchedulerClient::start(&runtime, plan.max_parallel, &interrupt);
    cell.install(Host::new(HostSetup {
        run_id: run_id.clone(),
        run_dir: run_dir.clone(),
        project_root: project.root.clone(),
        journal,
        world,
        scheduler,
        workflows,
        harnesses,
        default_harness,
        leaf_overrides: plan.leaf_overrides.clone(),
        inputs,
        clock,
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
    }));
    if let Some(events) = plan.events.clone() {
        cell.with(|host| host.report_events_to(events));
    }

    let evaluated = engine.eval_ast::<rhai::Dynamic>(&ast);
    drop(engine);
    let mut host = cell.take().expect("the host was installed above");
    host.flush_log();
    // A journal streamed in while the script ran is known readable only once read to its end:
    // an unreadable one is refused as a whole, as if it had been read before the run.
    if let Some(rec) = host.recorded_mut() {
        rec.finish_reading().map_err(|e| SetupError::Journal(Box::new(e)))?;
        warnings.extend(rec.warnings().iter().cloned());
    }

    let (status, failure, result) = match evaluated {
        Ok(value) => (RunStatus::Succeeded, None, rhai::serde::from_dynamic::<Value>(&value).unwrap_or(Value::Null)),
        Err(err) => {
            let failure = classify_failure(&mut host, &err, &script_path, &source, &interrupt);
            // A stopped run, by a signal or an outage, is finished by `coord resume`.
            let status = if matches!(failure, RunFailure::Interrupted | RunFailure::Outage(_)) {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            (status, Some(failure), Value::Null)
        }
    };
    if matches!(status, RunStatus::Interrupted) {
        host.cancel_leaves();
    }
    let divergence = host.recorded().and_then(|r| r.divergence.clone());
    let journal_error = match &failure {
        Some(RunFailure::Script(d)) => Some(d.message.clone()),
        Some(RunFailure::Host(m)) => Some(m.clone()),
        Some(RunFailure::Interrupted) => Some("interrupted".into()),
        Some(RunFailure::Outage(o)) => Some(o.to_string()),
        _ => None,
    };
    if !offline {
        let at = now_rfc3339();
        let finished_entry =
            Entry::run_finished(status, journal_error, Some(result.clone()), at).with_usage(&host.usage);
        let journal = host.journal_mut();
        let finished = journal.append(finished_entry).and_then(|_| journal.sync());
        if let Err(e) = finished {
            warnings.push(format!("could not finish the journal: {e}"));
        }
        run_dir::clear_pid(&run_dir);
    }

    // Released once the journal's last entry is written: a resume may take the run now.
    drop(owner);
    let outcome = RunOutcome {
        run_id,
        run_dir,
        coordinator,
        status,
        sessions: host.session_count(),
        leaves: host.take_session_results(),
        effects: std::mem::take(&mut host.effects),
        usage: host.usage.clone(),
        result,
        failure,
        unrecorded: std::mem::take(&mut host.unrecorded),
        divergence,
        warnings,
    };
    if exits_after {
        host.drop_for_exit();
    }
    Ok(outcome)
}

/// Why the engine's progress callback stopped a script.
const STOP_INTERRUPTED: &str = "interrupted";

fn classify_failure(
    host: &mut Host,
    err: &rhai::EvalAltResult,
    script: &Path,
    source: &str,
    interrupt: &crate::scheduler::Interrupt,
) -> RunFailure {
    if let rhai::EvalAltResult::ErrorTerminated(token, pos) = err {
        if let Some(exhausted) = crate::script::heap_budget::HeapExhausted::from_token(token) {
            let limit_mib = exhausted.budget_bytes / (1024 * 1024);
            return RunFailure::Script(Box::new(ScriptDiagnostic::at(
                script,
                source,
                pos.line().unwrap_or(0),
                pos.position().unwrap_or(0),
                "the script outgrew its memory budget: runaway data growth?".into(),
                Some(format!("a coordinator only routes; the budget is {limit_mib} MiB of heap (--max-heap-mib)")),
                ScriptErrorKind::Runtime,
            )));
        }
    }
    if let Some(outage) = host.outage.take() {
        return RunFailure::Outage(Box::new(outage));
    }
    if interrupt.is_set() || matches!(err, rhai::EvalAltResult::ErrorTerminated(..)) {
        return RunFailure::Interrupted;
    }
    match host.fatal.take() {
        Some(HostError::Interrupted) | Some(HostError::Outage(_)) => RunFailure::Interrupted,
        Some(HostError::Divergence(d)) => {
            let (file, text) = site_source(&d.now_site, script, source);
            let diag = ScriptDiagnostic::at(
                &file,
                &text,
                d.now_site.line,
                d.now_site.col,
                format!("replay diverged from the journal at call {}", d.index),
                Some(describe_divergence(&d)),
                ScriptErrorKind::Runtime,
            );
            RunFailure::Divergence(d, Box::new(diag))
        }
        Some(HostError::JournalEnded(i)) => RunFailure::JournalEnded(i),
        // `execute` reports the journal's own error in place of the run's.
        Some(e @ HostError::UnreadableJournal) => RunFailure::Host(e.to_string()),
        Some(HostError::Journal(e)) => RunFailure::Host(format!("journal: {e}")),
        Some(HostError::World(m)) => {
            let mut d = ScriptDiagnostic::from_eval(err, script, source);
            d.message = match &d.location {
                Some(at) => format!("{at}: {m}"),
                None => m,
            };
            d.kind = ScriptErrorKind::Thrown;
            RunFailure::Script(Box::new(d))
        }
        Some(HostError::Script(_)) => {
            // The host refused the call (an unknown workflow, a bad option): the script is at
            // fault, not failing on purpose.
            let mut d = ScriptDiagnostic::from_eval(err, script, source);
            d.kind = ScriptErrorKind::Runtime;
            if d.message.contains("the script threw: ") {
                d.message = d.message.replacen("the script threw: ", "", 1);
                d.label = "called here".into();
            }
            RunFailure::Script(Box::new(d))
        }
        None => RunFailure::Script(Box::new(ScriptDiagnostic::from_eval(err, script, source))),
    }
}

fn site_source(site: &crate::journal::entry::CallSite, script: &Path, source: &str) -> (PathBuf, String) {
    match &site.source {
        Some(m) => match crate::library::stdlib::by_source_name(m) {
            Some(builtin) => (PathBuf::from(m), builtin.source.to_owned()),
            None => (PathBuf::from(m), std::fs::read_to_string(m).unwrap_or_default()),
        },
        None => (script.to_owned(), source.to_owned()),
    }
}

pub fn describe_divergence(d: &Divergence) -> String {
    let now = format!("{} {}", d.now_function, compact(&d.now_args));
    match &d.recorded {
        Some(e) => format!(
            "the journal recorded: {} {} (at {}{})\nthe script now asks: {now}",
            e.function.as_deref().unwrap_or("?"),
            compact(e.args.as_ref().unwrap_or(&Value::Null)),
            e.source.as_deref().map(|s| format!("{s}:")).unwrap_or_default(),
            e.pos.as_deref().unwrap_or("?"),
        ),
        None => format!("the journal ends here; the script now asks: {now}"),
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        format!("{}…", &s[..s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

fn apply_recorded_options(plan: &mut RunPlan, options: &Value) {
    if let Some(leaf) = options.get("leaf").and_then(Value::as_object) {
        for (workflow, spec) in leaf {
            let Some(spec) = spec.as_str() else { continue };
            let (harness, model) = match spec.split_once(':') {
                Some((h, m)) => (h.to_owned(), Some(m.to_owned())),
                None => (spec.to_owned(), None),
            };
            plan.leaf_overrides.entry(workflow.clone()).or_insert(LeafOverride { harness, model });
        }
    }
    plan.dry_run |= options.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    plan.dry_run_no_leaves |= options.get("dry_run_no_leaves").and_then(Value::as_bool).unwrap_or(false);
}

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
