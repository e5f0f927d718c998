//! `coord run`: build a plan from flags, execute it, print the outcome, pick the exit code.

use super::cli_error::{CliError, RunRefused};
use super::{Cli, LogFormat, RunArgs};
use crate::check::run_check::{check_for_run, HarnessChoice};
use crate::daemon::lock::RunLock;
use crate::journal::run_dir::RunStore;
use crate::run::run_error::RunError;
use crate::run::{self, RunOutcome, RunPlan, SetupError};
use crate::scheduler::run_event::RunEvents;
use crate::script::host::LeafOverride;
use crate::views::console::{stderr, stderrln, stdout};
use crate::views::live_progress::{LiveProgress, ProgressDisplay};
use crate::views::run_summary;
use serde_json::Value;
use std::sync::Arc;

pub fn run(
    args: &RunArgs,
    cli: &Cli,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> Result<(), CliError> {
    if args.help_inputs {
        return help_inputs(&args.script);
    }
    let mut plan = plan_from_flags(args)?;
    if may_start_leaves_here(&plan) {
        // The supervisor host's own start (a process) overlaps the pre-run check and the
        // script's compile rather than delaying the first leaf. A refused run leaves it idle,
        // and it exits with coord.
        runtime.spawn_blocking(crate::harness::supervisor_host::start_early);
    }
    let choice = HarnessChoice {
        overrides: plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), o.harness.clone())).collect(),
        scenario: plan.scenario.is_some() || plan.demo,
    };
    let named = checked_workflows(&plan.script, &choice)?;
    if plan.dry_run {
        stderr!("{}", dry_run_plan(&plan, &named, &choice));
    }
    // Taken before anything touches the run store: a run the lock refuses changes nothing.
    let _lock = match &args.lock {
        Some(name) => Some(take_lock(&plan.runs, name)?),
        None => None,
    };
    let display = ProgressDisplay::for_stderr(cli.quiet, cli.verbose, cli.log_format == LogFormat::Json);
    let progress = display.map(|display| {
        let (events, receiver) = RunEvents::channel();
        plan.events = Some(events);
        LiveProgress::start(display, receiver)
    });
    let dry_run = plan.dry_run;
    let outcome = run::execute(plan, runtime, interrupt.clone());
    if let Some(progress) = progress {
        progress.finish();
    }
    if let (true, Ok(o)) = (dry_run, &outcome) {
        stderr!("{}", held_back(o));
    }
    match finish(outcome, args.output.json, &interrupt) {
        // Still said, but the run counts as a success.
        Err(e @ CliError::Run(RunError::EffectsFailed(_))) if args.allow_failed_effects => {
            e.print();
            Ok(())
        }
        result => result,
    }
}

/// The run the flags ask for.
fn plan_from_flags(args: &RunArgs) -> Result<RunPlan, CliError> {
    let mut plan = RunPlan::new(args.script.clone());
    plan.inputs = match &args.inputs_file {
        Some(file) => inputs_from_file(file).map_err(CliError::Usage)?,
        None => Default::default(),
    };
    plan.inputs.extend(args.inputs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))));
    plan.inputs.extend(args.inputs_json.iter().cloned());
    if let Some(repo) = &args.repo {
        // An input, so the run header records it and a resumed run talks to the same repository.
        plan.inputs.insert("repo".into(), Value::String(repo.clone()));
    }
    plan.scenario = args.scenario.clone();
    plan.demo = args.demo;
    plan.max_parallel = args.parallelism.leaves_at_once();
    plan.executor = args.executor.executor.clone();
    plan.runs = args.store.store();
    plan.dry_run = args.dry_run.is_some();
    plan.dry_run_no_leaves = args.dry_run.as_deref() == Some("no-leaves");
    plan.stdout_is_json = args.output.json;
    plan.process_exits_after = true;
    plan.journal_in_memory = args.journal_in_memory;
    plan.budget_usd = args.budget_usd;
    plan.park_after = args.park_after;
    args.limits.apply(&mut plan.limits);
    let heap_mib = args.max_heap_mib.map(|mib| usize::try_from(mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024));
    plan.limits.max_heap = args.max_heap.or(heap_mib);
    plan.leaf_overrides = args
        .leaves
        .iter()
        .map(|(wf, spec)| {
            let (harness, model) = match spec.split_once(':') {
                Some((h, m)) => (h.to_owned(), Some(m.to_owned())),
                None => (spec.clone(), None),
            };
            (wf.clone(), LeafOverride { harness, model })
        })
        .collect();
    Ok(plan)
}

/// A live run whose leaves may run on this machine, as far as the flags and `coord.toml` say
/// (a config that fails to load is the check's to report, so it says no here).
fn may_start_leaves_here(plan: &RunPlan) -> bool {
    if plan.scenario.is_some() || plan.demo || plan.dry_run || !plan.script.is_file() {
        return false;
    }
    let project = crate::run::project::Project::discover(&plan.script);
    let Ok(config) = crate::config::Config::load(&project.root) else { return false };
    crate::executor::ExecutorPlan::new(&config, plan.executor.as_deref()).is_ok_and(|p| p.may_run_here())
}

/// What a dry run held back: the leaves it did not run and the effects it did not perform.
fn held_back(outcome: &RunOutcome) -> String {
    let mut leaves: indexmap::IndexMap<&str, usize> = indexmap::IndexMap::new();
    let results = outcome.leaves.iter().map(|l| &l.result);
    for leaf in results.filter(|l| l.status == crate::leaf::session::SessionStatus::SkippedDryRun) {
        *leaves.entry(leaf.workflow.as_str()).or_default() += 1;
    }
    let mut effects: indexmap::IndexMap<&str, usize> = indexmap::IndexMap::new();
    for effect in &outcome.effects {
        *effects.entry(effect.kind.function()).or_default() += 1;
    }
    let list = |m: &indexmap::IndexMap<&str, usize>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
        }
    };
    format!("dry run: held back leaves: {}; effects not performed: {}\n", list(&leaves), list(&effects))
}

/// What a dry run will spend and hold back, said before it starts: the workflows the script
/// names, which of them would run (read-only, on which harness) and which are held back.
fn dry_run_plan(plan: &RunPlan, named: &std::collections::BTreeSet<String>, choice: &HarnessChoice) -> String {
    let project = crate::run::project::Project::discover(&plan.script);
    let config = crate::config::Config::load(&project.root).unwrap_or_default();
    let workflows =
        crate::workflow::WorkflowSet::new(project.workflow_dirs()).with_overrides(config.file.workflow.clone());
    let (mut run, mut held) = (Vec::new(), Vec::new());
    for name in named {
        let Ok(wf) = workflows.get(name) else { continue };
        let harness = match choice.overrides.get(name) {
            Some(h) => h.clone(),
            None if choice.scenario => "mock".into(),
            None => wf.harness.clone(),
        };
        if plan.dry_run_no_leaves || wf.worktree || wf.writes {
            held.push(name.clone());
        } else {
            run.push(format!("{name} ({harness})"));
        }
    }
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    format!(
        "dry run: no effect acts; leaves run read-only, without GitHub, Slack or webhook credentials\n  may run: {}\n  held back: {}\n",
        list(&run),
        list(&held)
    )
}

/// `--inputs FILE`: a JSON object, or a TOML table (by the file's extension).
fn inputs_from_file(file: &std::path::Path) -> Result<indexmap::IndexMap<String, Value>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("--inputs {}: {e}", file.display()))?;
    let value: Value = if file.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("--inputs {}: {}", file.display(), e.message()))?;
        serde_json::to_value(table).map_err(|e| format!("--inputs {}: {e}", file.display()))?
    } else {
        serde_json::from_str(&text).map_err(|e| format!("--inputs {}: not JSON: {e}", file.display()))?
    };
    match value {
        Value::Object(map) => Ok(map.into_iter().collect()),
        _ => Err(format!("--inputs {}: expected a map of inputs", file.display())),
    }
}

/// `--help-inputs`: the inputs the script declares.
fn help_inputs(script: &std::path::Path) -> Result<(), CliError> {
    let source = std::fs::read_to_string(script)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", script.display())))?;
    let decls = crate::script::input_decls::InputDecls::parse(&source)
        .map_err(|e| CliError::Usage(format!("{}: {}", script.display(), e.message)))?;
    stdout!("{}", decls.describe());
    Ok(())
}

/// Runs the checks a run must pass before it starts ([`check_for_run`]); a problem refuses the
/// run (exit 2): nothing has run and no run directory exists.
pub(super) fn refuse_unless_checked(script: &std::path::Path, choice: &HarnessChoice) -> Result<(), CliError> {
    checked_workflows(script, choice).map(drop)
}

/// [`refuse_unless_checked`], returning the workflows the script names when it passes.
fn checked_workflows(
    script: &std::path::Path,
    choice: &HarnessChoice,
) -> Result<std::collections::BTreeSet<String>, CliError> {
    if !script.is_file() {
        // The run itself reports a missing script, as it always has.
        return Ok(Default::default());
    }
    let check = check_for_run(script, choice);
    for warning in &check.warnings {
        stderrln!("warning: {warning}");
    }
    if check.is_clean() {
        return Ok(check.named);
    }
    Err(CliError::NotStarted(RunRefused {
        problems: check.problems,
        preflight: check.preflight,
        script: script.to_owned(),
        offline: choice.scenario,
    }))
}

/// Takes the lock `name` beside `runs`; another holder refuses the run (exit 75).
pub(super) fn take_lock(runs: &RunStore, name: &str) -> Result<RunLock, CliError> {
    let lock = RunLock::acquire(&crate::daemon::locks_dir(runs), name)?;
    if let Some(pid) = lock.stale_pid {
        stderrln!("warning: lock `{name}`: taken over from pid {pid}, which died holding it");
    }
    Ok(lock)
}

/// Prints a run's outcome on stdout (its warnings on stderr); what went wrong, if anything, is
/// the error ([`RunError::of`] reads the outcome).
pub fn finish(
    result: Result<RunOutcome, SetupError>,
    json: bool,
    interrupt: &crate::scheduler::Interrupt,
) -> Result<(), CliError> {
    let (outcome, error) = RunError::of(result, interrupt.signal())?;
    // The process ends right after this: freeing a large run's results one by one only delays
    // the exit, and the operating system takes the memory back at once.
    let outcome = std::mem::ManuallyDrop::new(outcome);
    print_outcome(&outcome, json);
    match error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// What the run reports was masked where it entered coord; masked again here, as every text
/// printed is (`crate::redaction`).
fn print_outcome(outcome: &RunOutcome, json: bool) {
    let redactor = crate::redaction::process();
    for w in &outcome.warnings {
        stderrln!("warning: {}", redactor.mask(w));
    }
    if json {
        run_summary::print_outcome_json(outcome);
    } else {
        stdout!("{}", redactor.mask(&run_summary::outcome_text(outcome)));
    }
}
