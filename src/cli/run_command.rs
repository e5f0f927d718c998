//! `coord run`: build a plan from flags, execute it, print the outcome, pick the exit code.

use super::{exit_code, report, Cli, LogFormat, RunArgs};
use crate::check::run_check::{check_for_run, HarnessChoice};
use crate::daemon::lock::{LockError, RunLock};
use crate::journal::run_dir::RunStore;
use crate::run::{self, RunFailure, RunOutcome, RunPlan, SetupError};
use crate::scheduler::run_event::RunEvents;
use crate::script::diagnostic::ScriptErrorKind;
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
) -> u8 {
    let mut plan = RunPlan::new(args.script.clone());
    if args.help_inputs {
        return help_inputs(&args.script);
    }
    plan.inputs = match &args.inputs_file {
        Some(file) => match inputs_from_file(file) {
            Ok(inputs) => inputs,
            Err(e) => {
                stderrln!("error: {e}");
                return exit_code::USAGE;
            }
        },
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
    plan.max_parallel = usize::from(args.max_parallel);
    plan.runs = RunStore::locate(args.runs_dir.as_deref());
    plan.dry_run = args.dry_run.is_some();
    plan.dry_run_no_leaves = args.dry_run.as_deref() == Some("no-leaves");
    plan.stdout_is_json = args.json;
    plan.process_exits_after = true;
    plan.journal_in_memory = args.journal_in_memory;
    plan.budget_usd = args.budget_usd;
    if let Some(n) = args.max_operations {
        plan.limits.max_operations = n;
    }
    if let Some(mib) = args.max_heap_mib {
        plan.limits.max_heap_bytes = usize::try_from(mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024);
    }
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
    let choice = HarnessChoice {
        overrides: plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), o.harness.clone())).collect(),
        scenario: plan.scenario.is_some() || plan.demo,
    };
    let named = match checked_workflows(&plan.script, &choice) {
        Ok(named) => named,
        Err(code) => return code,
    };
    if plan.dry_run {
        stderr!("{}", dry_run_plan(&plan, &named, &choice));
    }
    // Taken before anything touches the run store: a run the lock refuses changes nothing.
    let _lock = match &args.lock {
        Some(name) => match take_lock(&plan.runs, name) {
            Ok(lock) => Some(lock),
            Err(code) => return code,
        },
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
    match finish(outcome, args.json, &interrupt) {
        exit_code::EFFECTS_FAILED if args.allow_failed_effects => exit_code::SUCCESS,
        code => code,
    }
}

/// `coord: 2 of 9 effects failed: github.comment ×1, merge ×1; the first: WHY`, when any did:
/// a run whose writes all failed must not read as a success in cron or CI.
fn failed_effects(outcome: &RunOutcome) -> Option<String> {
    let mut failed: indexmap::IndexMap<&str, usize> = indexmap::IndexMap::new();
    let mut first_error = None;
    for effect in outcome.effects.iter().filter(|e| e.result["status"] == "failed") {
        *failed.entry(effect.kind.function()).or_default() += 1;
        first_error = first_error.or_else(|| effect.result["error"].as_str().or(effect.result["reason"].as_str()));
    }
    if failed.is_empty() {
        return None;
    }
    let count: usize = failed.values().sum();
    let kinds: Vec<String> = failed.iter().map(|(kind, n)| format!("{kind} ×{n}")).collect();
    let mut line = format!("coord: {count} of {} effects failed: {}", outcome.effects.len(), kinds.join(", "));
    if let Some(error) = first_error {
        line.push_str(&format!("; the first: {}", error.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    Some(line)
}

/// What a dry run held back: the leaves it did not run and the effects it did not perform.
fn held_back(outcome: &RunOutcome) -> String {
    let mut leaves: indexmap::IndexMap<&str, usize> = indexmap::IndexMap::new();
    for leaf in outcome.leaves.iter().filter(|l| l.status == crate::leaf::session::SessionStatus::SkippedDryRun) {
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
fn help_inputs(script: &std::path::Path) -> u8 {
    let source = match std::fs::read_to_string(script) {
        Ok(s) => s,
        Err(e) => {
            stderrln!("error: cannot read {}: {e}", script.display());
            return exit_code::USAGE;
        }
    };
    match crate::script::input_decls::InputDecls::parse(&source) {
        Ok(decls) => {
            stdout!("{}", decls.describe());
            exit_code::SUCCESS
        }
        Err(e) => {
            stderrln!("error: {}: {}", script.display(), e.message);
            exit_code::USAGE
        }
    }
}

/// Runs the checks a run must pass before it starts ([`check_for_run`]); on a problem, reports
/// every one and returns the exit code (2): nothing has run and no run directory exists.
pub(super) fn refuse_unless_checked(script: &std::path::Path, choice: &HarnessChoice) -> Option<u8> {
    checked_workflows(script, choice).err()
}

/// [`refuse_unless_checked`], returning the workflows the script names when it passes.
fn checked_workflows(
    script: &std::path::Path,
    choice: &HarnessChoice,
) -> Result<std::collections::BTreeSet<String>, u8> {
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
    let problems = check.problems.len() + check.preflight.len();
    for problem in check.problems {
        report(problem);
    }
    for line in &check.preflight {
        stderrln!("error: {line}");
    }
    stderrln!(
        "coord: not started: {problems} problem{} (`coord check` and `coord doctor` show them too)",
        if problems == 1 { "" } else { "s" }
    );
    if !check.preflight.is_empty() && !choice.scenario {
        stderrln!(
            "coord: to try it offline, with mock leaves and no credentials: coord run {} --demo",
            script.display()
        );
    }
    Err(exit_code::USAGE)
}

/// Takes the lock `name` beside `runs`; a refusal is one line on stderr and an exit code.
pub(super) fn take_lock(runs: &RunStore, name: &str) -> Result<RunLock, u8> {
    match RunLock::acquire(&crate::daemon::locks_dir(runs), name) {
        Ok(lock) => {
            if let Some(pid) = lock.stale_pid {
                stderrln!("warning: lock `{name}`: taken over from pid {pid}, which died holding it");
            }
            Ok(lock)
        }
        Err(e @ LockError::Held { .. }) => {
            stderrln!("coord: {e}");
            Err(exit_code::LOCKED)
        }
        Err(e @ LockError::BadName(_)) => {
            stderrln!("error: {e}");
            Err(exit_code::USAGE)
        }
        Err(e) => {
            stderrln!("error: {e}");
            Err(exit_code::RUN_FAILED)
        }
    }
}

/// Prints a run's outcome (or why it never started) and returns the exit code.
pub fn finish(outcome: Result<RunOutcome, SetupError>, json: bool, interrupt: &crate::scheduler::Interrupt) -> u8 {
    let outcome = match outcome {
        Ok(o) => o,
        // An unreadable journal reads the same whether it was found before or during a replay.
        Err(SetupError::Journal(e)) => {
            stderrln!("error: {e}");
            return exit_code::DIVERGED;
        }
        Err(SetupError::Owned(e @ crate::journal::run_dir::OwnerLockError::Held { .. })) => {
            stderrln!("coord: {e}; nothing was touched");
            return exit_code::LOCKED;
        }
        Err(err) => {
            let code = match &err {
                SetupError::Io(_) | SetupError::Owned(_) => exit_code::RUN_FAILED,
                _ => exit_code::USAGE,
            };
            report(err);
            return code;
        }
    };
    // The process ends right after this: freeing a large run's results one by one only delays
    // the exit, and the operating system takes the memory back at once.
    let mut outcome = std::mem::ManuallyDrop::new(outcome);
    let failure = outcome.failure.take();
    // What the run reports was masked where it entered coord; masked again here, as every
    // text printed is (`crate::redaction`).
    let redactor = crate::redaction::process();
    for w in &outcome.warnings {
        stderrln!("warning: {}", redactor.mask(w));
    }
    if json {
        run_summary::print_outcome_json(&outcome);
    } else {
        stdout!("{}", redactor.mask(&run_summary::outcome_text(&outcome)));
    }
    match failure {
        None => match failed_effects(&outcome) {
            Some(line) => {
                stderrln!("{}", redactor.mask(&line));
                exit_code::EFFECTS_FAILED
            }
            None => exit_code::SUCCESS,
        },
        Some(RunFailure::Script(diag)) => {
            let code = if diag.kind == ScriptErrorKind::Thrown { exit_code::RUN_FAILED } else { exit_code::USAGE };
            report(*diag);
            code
        }
        Some(RunFailure::Divergence(_, diag)) => {
            report(*diag);
            exit_code::DIVERGED
        }
        Some(RunFailure::JournalEnded(i)) => {
            stderrln!("error: the journal ends at call {i}: the recorded run was interrupted there; `coord resume` finishes it");
            exit_code::DIVERGED
        }
        Some(RunFailure::Host(msg)) => {
            stderrln!("error: {}", redactor.mask(&msg));
            exit_code::RUN_FAILED
        }
        Some(RunFailure::Outage(o)) => {
            stderrln!(
                "error: {}\nrun {} stopped before anything acted on that failure; once it is fixed, `coord resume {}` finishes the run",
                redactor.mask(&o.to_string()),
                outcome.run_id,
                outcome.run_id
            );
            exit_code::RUN_FAILED
        }
        Some(RunFailure::Interrupted) => {
            stderrln!("interrupted: run {} stopped; `coord resume {}` finishes it", outcome.run_id, outcome.run_id);
            if interrupt.signal() == libc::SIGTERM {
                exit_code::INTERRUPTED_SIGTERM
            } else {
                exit_code::INTERRUPTED_SIGINT
            }
        }
    }
}
