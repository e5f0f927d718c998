//! Phase three of a run: choose the world it runs against (a scenario, the live world, or
//! none for a replay), the harnesses its leaves run on, and the inputs the script reads.
//!
//! It must not create the run directory; a scenario or workflow that does not load fails the
//! run here, before anything exists.

use super::sources::Sources;
use super::{recorded_path, RunPlan, SetupError};
use crate::effects::live_world::LiveWorld;
use crate::effects::project_store::{DiskStore, MemoryStore, ProjectStore};
use crate::effects::{UnconfiguredWorld, World};
use crate::harness::HarnessSet;
use crate::journal::{AnswerIndex, RunMode};
use crate::scenario::mock_harness::MockHarness;
use crate::scenario::{MockResponder, Scenario, ScenarioWorld};
use crate::script::host::{Clock, SignalSource};
use crate::workflow::WorkflowSet;
use indexmap::IndexMap;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// The world a run acts on, and what comes with it.
pub(super) struct ChosenWorld {
    pub world: Box<dyn World>,
    /// The project's files and state: the scenario's, the disk's, or none for a replay.
    pub store: ProjectStore,
    pub clock: Clock,
    /// Where `wait_signal` finds deliveries: the scenario's, else the run directory's.
    pub signals: SignalSource,
    /// The harness every workflow uses unless overridden (a scenario's mock).
    pub default_harness: Option<String>,
    pub mode: RunMode,
    /// The scenario the run names, whether or not it was loaded (a replay reads none).
    pub scenario_path: Option<PathBuf>,
    pub inputs: IndexMap<String, Value>,
    pub workflows: Arc<WorkflowSet>,
    pub harnesses: HarnessSet,
    /// Where the run's report is published (`{run}` for its id): the scenario's `run_url`,
    /// else `[run] url`.
    pub run_url: Option<String>,
}

/// Chooses the world: a scenario (given, demo, or the recorded run's), else live; none at all
/// for a replay or a what-if, which answer every read from the journal and never act (the
/// recorded run's scenario is not even read: it may be large, or gone).
pub(super) fn choose_world(
    plan: &RunPlan,
    sources: &Sources,
    recorded: Option<&AnswerIndex>,
    runtime: &tokio::runtime::Handle,
) -> Result<ChosenWorld, SetupError> {
    let scenario_path = scenario_path(plan, sources, recorded)?;
    let offline = plan.recording.is_offline();
    let scenario = match &scenario_path {
        Some(p) if !offline => Some(Scenario::load(p).map_err(|e| SetupError::Scenario(Box::new(e)))?),
        _ => None,
    };
    let workflows = Arc::new(
        WorkflowSet::new(sources.project.workflow_dirs()).with_overrides(sources.config.file.workflow.clone()),
    );
    if let Some(s) = &scenario {
        s.validate(&workflows).map_err(|e| SetupError::Scenario(Box::new(e)))?;
    }
    let inputs = run_inputs(plan, sources, recorded, scenario.as_ref())?;
    let mut harnesses =
        HarnessSet::configured(&sources.config, &sources.project.root).map_err(|e| SetupError::Usage(e.to_string()))?;
    let mut signals = SignalSource::RunDirectory;
    let mut run_url = sources.config.file.run.url.clone();
    // The scenario is taken apart into the world and the mock leaves, not copied into them.
    let (world, store, clock, default_harness, mode): (Box<dyn World>, _, _, _, _) = match scenario {
        Some(mut s) => {
            harnesses.insert(Arc::new(MockHarness::new(MockResponder::new(std::mem::take(&mut s.rules)))));
            let store =
                ProjectStore::Memory(MemoryStore::new(std::mem::take(&mut s.files), std::mem::take(&mut s.state)));
            signals = SignalSource::Scenario(std::mem::take(&mut s.signals));
            run_url = s.run_url.take().or(run_url);
            let clock = Clock::Fixed(s.now_unix * 1000);
            let world = Box::new(ScenarioWorld::new(&mut s));
            (world, store, clock, Some("mock".into()), RunMode::Scenario)
        }
        None if offline => (Box::new(UnconfiguredWorld), ProjectStore::None, Clock::System, None, RunMode::Replay),
        None => {
            let world = LiveWorld::from_config(&sources.config, &sources.project.root, &inputs, runtime.clone())
                .with_stdout_is_json(plan.stdout_is_json);
            let store =
                ProjectStore::Disk(DiskStore::new(&sources.project.root, &state_namespace(plan, sources, recorded)));
            (Box::new(world), store, Clock::System, None, RunMode::Live)
        }
    };
    let mode = if plan.dry_run { RunMode::DryRun } else { mode };
    Ok(ChosenWorld {
        world,
        store,
        clock,
        signals,
        default_harness,
        mode,
        scenario_path,
        inputs,
        workflows,
        harnesses,
        run_url,
    })
}

/// Whose state a live run keeps: its pipeline's (a resume's is the recorded run's), else its
/// coordinator's.
fn state_namespace(plan: &RunPlan, sources: &Sources, recorded: Option<&AnswerIndex>) -> String {
    let recorded_pipeline = recorded.and_then(|rec| rec.header.pipeline.clone());
    plan.pipeline.clone().or(recorded_pipeline).unwrap_or_else(|| sources.coordinator.clone())
}

/// The scenario a run names: given, the script's demo, or the recorded run's.
fn scenario_path(
    plan: &RunPlan,
    sources: &Sources,
    recorded: Option<&AnswerIndex>,
) -> Result<Option<PathBuf>, SetupError> {
    if let Some(p) = &plan.scenario {
        return Ok(Some(p.clone()));
    }
    if plan.demo {
        let demo = sources.project.demo_scenario(&sources.script);
        if !demo.is_file() {
            return Err(SetupError::Usage(format!(
                "{} has no demo scenario (looked for {})",
                sources.script.display(),
                demo.display()
            )));
        }
        return Ok(Some(demo));
    }
    Ok(recorded.and_then(|rec| rec.header.scenario.as_deref().map(|p| recorded_path(p, &rec.header))))
}

/// The script's inputs: the recorded run's (else the scenario's), then those given now; read
/// as the types the script declares, with its defaults, nothing missing.
fn run_inputs(
    plan: &RunPlan,
    sources: &Sources,
    recorded: Option<&AnswerIndex>,
    scenario: Option<&Scenario>,
) -> Result<IndexMap<String, Value>, SetupError> {
    let mut inputs: IndexMap<String, Value> = match (recorded, scenario) {
        (Some(rec), _) => rec.header.inputs.as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default(),
        (None, Some(s)) => s.inputs.clone(),
        (None, None) => IndexMap::new(),
    };
    inputs.extend(plan.inputs.clone());
    let script = sources.script.display();
    let declared = crate::script::input_decls::InputDecls::parse(&sources.source)
        .map_err(|e| SetupError::Usage(format!("{script}: {}", e.message)))?;
    declared
        .apply(&mut inputs)
        .map_err(|problems| SetupError::Usage(format!("{script}: {}", problems.join("\n  "))))?;
    Ok(inputs)
}
