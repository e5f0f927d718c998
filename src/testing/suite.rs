//! `coord test`'s engine: finds scenarios, runs each offline, renders its routing trace,
//! compares it with its snapshot and checks the scenario's own expectations.
//!
//! Convention: a coordinator `coordinators/<name>.rhai` has its scenarios in
//! `coordinators/<name>/scenarios/*.toml`, and each scenario's snapshot is
//! `snapshots/<name>__<scenario>.snap` at the project root. Runs go to a temporary run store,
//! so testing never touches the working tree except to write snapshots when asked.

use super::snapshot;
use crate::journal::run_dir::RunStore;
use crate::journal::RecordedRun;
use crate::run::{self, RunFailure, RunOutcome, RunPlan, SetupError};
use crate::scenario::{Expectations, Scenario};
use crate::script::coverage::SharedHits;
use crate::script::diagnostic::ScriptErrorKind;
use crate::views::trace;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScenarioCase {
    pub coordinator: String,
    pub name: String,
    pub script: PathBuf,
    pub scenario: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{0}: not a coordinator (.rhai), a scenario (.toml) or a folder of them")]
    NotATestTarget(PathBuf),
    #[error("{scenario}: names no coordinator and is not under coordinators/<name>/scenarios/")]
    NoCoordinator { scenario: PathBuf },
}

/// Scenarios of a coordinator script.
pub fn scenarios_of(script: &Path) -> Vec<PathBuf> {
    let dir = run::project::scenario_dir(script);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    found
}

pub fn discover(paths: &[PathBuf]) -> Result<Vec<ScenarioCase>, DiscoveryError> {
    let defaults = [PathBuf::from("coordinators")];
    let paths = if paths.is_empty() { &defaults[..] } else { paths };
    let mut cases = Vec::new();
    for path in paths {
        if !path.exists() {
            return Err(DiscoveryError::Missing(path.clone()));
        }
        if path.is_dir() {
            let mut scripts: Vec<PathBuf> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
                .collect();
            scripts.sort();
            if scripts.is_empty() {
                // A scenarios folder: coordinators/<name>/scenarios.
                for scenario in std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| e.path()) {
                    if scenario.extension().is_some_and(|e| e == "toml") {
                        cases.push(case_for_scenario(&scenario)?);
                    }
                }
            }
            for script in scripts {
                cases.extend(cases_for_script(&script));
            }
        } else if path.extension().is_some_and(|e| e == "rhai") {
            cases.extend(cases_for_script(path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            cases.push(case_for_scenario(path)?);
        } else {
            return Err(DiscoveryError::NotATestTarget(path.clone()));
        }
    }
    cases.sort();
    cases.dedup();
    Ok(cases)
}

fn cases_for_script(script: &Path) -> Vec<ScenarioCase> {
    let coordinator = run::coordinator_name(script);
    scenarios_of(script)
        .into_iter()
        .map(|scenario| ScenarioCase {
            coordinator: coordinator.clone(),
            name: run::coordinator_name(&scenario),
            script: script.to_owned(),
            scenario,
        })
        .collect()
}

fn case_for_scenario(scenario: &Path) -> Result<ScenarioCase, DiscoveryError> {
    // coordinators/<name>/scenarios/<scenario>.toml -> coordinators/<name>.rhai
    let by_layout = scenario.parent().filter(|d| d.file_name().is_some_and(|n| n == "scenarios")).and_then(|d| {
        let coord_dir = d.parent()?;
        let name = coord_dir.file_name()?.to_string_lossy().into_owned();
        Some(coord_dir.parent()?.join(format!("{name}.rhai")))
    });
    let script = by_layout.ok_or_else(|| DiscoveryError::NoCoordinator { scenario: scenario.to_owned() })?;
    Ok(ScenarioCase {
        coordinator: run::coordinator_name(&script),
        name: run::coordinator_name(scenario),
        script,
        scenario: scenario.to_owned(),
    })
}

#[derive(Debug)]
pub enum SnapshotState {
    Matched,
    Accepted,
    /// No snapshot yet; the proposed one was written to `.snap.new` unless in CI.
    Missing {
        pending: Option<PathBuf>,
    },
    Changed {
        diff: String,
        pending: Option<PathBuf>,
    },
}

#[derive(Debug)]
pub struct CaseResult {
    pub case: ScenarioCase,
    pub trace: String,
    pub snapshot: Option<SnapshotState>,
    pub expectation_failures: Vec<String>,
    /// The scenario or script is at fault: a rendered diagnostic.
    pub error: Option<String>,
    pub sessions: usize,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.expectation_failures.is_empty()
            && matches!(self.snapshot, Some(SnapshotState::Matched | SnapshotState::Accepted))
    }
}

pub struct SuiteOptions {
    pub accept: bool,
    /// CI: never write `.snap.new`.
    pub ci: bool,
    pub snapshots_dir: PathBuf,
}

/// One scenario's run: its routing trace, its outcome, and what the scenario expects of it.
pub struct CaseRun {
    pub trace: String,
    pub outcome: RunOutcome,
    pub expect: Option<Expectations>,
}

/// Runs one scenario and returns its trace (and the outcome), without comparing anything.
pub fn run_case(
    case: &ScenarioCase,
    runtime: &tokio::runtime::Handle,
    coverage: Option<SharedHits>,
) -> Result<CaseRun, String> {
    let scenario = Scenario::load(&case.scenario).map_err(render_diagnostic)?;
    if let Some(named) = &scenario.coordinator {
        if *named != case.coordinator {
            let span = scenario.coordinator_span.clone().unwrap_or(0..0);
            return Err(render_diagnostic(scenario.diagnostic(
                span,
                format!("this scenario names coordinator `{named}` but sits with `{}`", case.coordinator),
                None,
            )));
        }
    }
    // The run checks the scenario against its workflows before anything runs.
    let store = tempfile::Builder::new().prefix("coord-test-").tempdir().map_err(|e| e.to_string())?;
    let mut plan = RunPlan::new(case.script.clone());
    plan.scenario = Some(case.scenario.clone());
    plan.runs = RunStore { root: store.path().to_owned() };
    plan.max_parallel = 64;
    plan.coverage = coverage;
    let mut outcome = match run::execute(plan, runtime, Arc::new(crate::scheduler::Interrupt::default())) {
        Ok(o) => o,
        Err(SetupError::Script(d)) => return Err(render_diagnostic(*d)),
        Err(SetupError::Scenario(d)) => return Err(render_diagnostic(*d)),
        Err(e) => return Err(e.to_string()),
    };
    match outcome.failure.take() {
        Some(RunFailure::Script(d)) if d.kind != ScriptErrorKind::Thrown => return Err(render_diagnostic(*d)),
        Some(RunFailure::Host(m)) => return Err(m),
        other => outcome.failure = other,
    }
    let recorded = RecordedRun::read(&outcome.run_dir).map_err(|e| e.to_string())?;
    Ok(CaseRun { trace: trace::render_trace(&recorded), outcome, expect: scenario.expect })
}

fn render_diagnostic(d: impl miette::Diagnostic + Send + Sync + 'static) -> String {
    let mut out = String::new();
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor()).with_width(120);
    if handler.render_report(&mut out, &d).is_err() {
        out = d.to_string();
    }
    out
}

pub fn run_and_compare(
    case: &ScenarioCase,
    runtime: &tokio::runtime::Handle,
    opts: &SuiteOptions,
    coverage: Option<SharedHits>,
) -> CaseResult {
    let CaseRun { trace, outcome, expect } = match run_case(case, runtime, coverage) {
        Ok(r) => r,
        Err(error) => {
            return CaseResult {
                case: case.clone(),
                trace: String::new(),
                snapshot: None,
                expectation_failures: vec![],
                error: Some(error),
                sessions: 0,
            }
        }
    };
    let expectation_failures = expect.map(|e| check_expectations(&e, &outcome)).unwrap_or_default();
    let snap = snapshot::snapshot_path(&opts.snapshots_dir, &case.coordinator, &case.name);
    let pending = snapshot::pending_path(&snap);
    let source = case.scenario.display().to_string();
    let write = |path: &Path| -> Option<PathBuf> {
        std::fs::create_dir_all(&opts.snapshots_dir).ok()?;
        std::fs::write(path, snapshot::render(&source, &trace)).ok()?;
        Some(path.to_owned())
    };
    let state = match snapshot::read_contents(&snap) {
        Some(existing) if snapshot::matches(&existing, &trace) => {
            let _ = std::fs::remove_file(&pending);
            SnapshotState::Matched
        }
        _ if opts.accept => {
            write(&snap);
            let _ = std::fs::remove_file(&pending);
            SnapshotState::Accepted
        }
        Some(existing) => SnapshotState::Changed {
            diff: snapshot::diff(&existing, &trace, &snap.display().to_string()),
            pending: if opts.ci { None } else { write(&pending) },
        },
        None => SnapshotState::Missing { pending: if opts.ci { None } else { write(&pending) } },
    };
    CaseResult {
        case: case.clone(),
        trace,
        snapshot: Some(state),
        expectation_failures,
        error: None,
        sessions: outcome.sessions,
    }
}

fn numbers(v: &[Value]) -> Vec<String> {
    let mut out: Vec<String> =
        v.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect();
    out.sort();
    out
}

/// Checks `[expect]` against what the run did; one message per failed expectation.
pub fn check_expectations(expect: &Expectations, o: &RunOutcome) -> Vec<String> {
    use crate::effects::EffectKind;
    let mut failures = Vec::new();
    let merged: Vec<Value> = o
        .effects
        .iter()
        .filter(|e| e.kind == EffectKind::Merge && e.result()["status"] == "merged")
        .map(|e| {
            let args = e.args();
            args.get("pr").or_else(|| args.get("branch")).cloned().unwrap_or(Value::Null)
        })
        .collect();
    let show = |v: &[String]| format!("[{}]", v.join(", "));
    if let Some(want) = &expect.merged {
        let (want, got) = (numbers(want), numbers(&merged));
        if want != got {
            failures.push(format!("expect.merged: expected {}, the run merged {}", show(&want), show(&got)));
        }
    }
    if let Some(never) = &expect.not_merged {
        let got = numbers(&merged);
        let wrongly: Vec<String> = numbers(never).into_iter().filter(|n| got.contains(n)).collect();
        if !wrongly.is_empty() {
            failures.push(format!("expect.not_merged: the run merged {}", show(&wrongly)));
        }
    }
    if let Some(want) = &expect.notified {
        let mut got: Vec<String> = o
            .effects
            .iter()
            .filter(|e| e.kind == EffectKind::Notify)
            .filter_map(|e| e.args()["channel"].as_str().map(str::to_owned))
            .collect();
        got.sort();
        got.dedup();
        let mut want = want.clone();
        want.sort();
        want.dedup();
        if want != got {
            failures.push(format!("expect.notified: expected {}, the run notified {}", show(&want), show(&got)));
        }
    }
    let sessions = o.sessions as u64;
    if let Some(max) = expect.max_sessions {
        if sessions > max {
            failures.push(format!("expect.max_sessions: expected at most {max} sessions, the run spawned {sessions}"));
        }
    }
    if let Some(min) = expect.min_sessions {
        if sessions < min {
            failures.push(format!("expect.min_sessions: expected at least {min} sessions, the run spawned {sessions}"));
        }
    }
    if let Some(status) = &expect.status {
        if status != o.status.as_str() {
            failures.push(format!("expect.status: expected `{status}`, the run ended `{}`", o.status));
        }
    }
    if let Some(max) = expect.max_cost_usd {
        if o.usage.cost_usd > max + 1e-9 {
            failures.push(format!(
                "expect.max_cost_usd: expected at most ${max:.4}, the run cost ${:.4}",
                o.usage.cost_usd
            ));
        }
    }
    if let Some(fields) = &expect.result {
        for (k, want) in fields {
            let want = serde_json::to_value(want).unwrap_or(Value::Null);
            let got = o.result.get(k).cloned().unwrap_or(Value::Null);
            if !json_equal(&want, &got) {
                failures.push(format!("expect.result.{k}: expected {want}, the script returned {got}"));
            }
        }
    }
    failures
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}
