//! What `coord run`, `coord resume` and the daemon check before a run starts: the same static
//! analysis as `coord check`, limited to what this run can reach (the script and its modules,
//! the workflows its string literals name), and a preflight of the harness each of those
//! workflows would run on (binary there, credentials configured, a command leaf's program
//! present). A run with a problem is refused before its run directory exists.
//!
//! Like the rest of `check`, it never starts a leaf and never touches the network.

use super::problem::Problem;
use super::{calls, workflows};
use crate::config::Config;
use crate::harness::{readiness, HarnessSet};
use crate::run::project::Project;
use crate::script::host_api::{self, HostCell};
use crate::script::module_resolver::compile_script;
use crate::script::ScriptEngine;
use crate::workflow::WorkflowSet;
use indexmap::IndexMap;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// How the run chooses harnesses, for the preflight.
#[derive(Clone, Debug, Default)]
pub struct HarnessChoice {
    /// `--leaf WORKFLOW=HARNESS` swaps (and the recorded run's, on resume).
    pub overrides: IndexMap<String, String>,
    /// Scenario runs answer every other workflow with mock leaves.
    pub scenario: bool,
}

impl HarnessChoice {
    /// The recorded run's choice, for a resume or a redo of it.
    pub fn of_recorded(recorded: &crate::journal::AnswerIndex) -> Self {
        HarnessChoice {
            overrides: crate::journal::recorded_options::RecordedOptions::from_header(&recorded.header.options)
                .leaf
                .iter()
                .filter_map(|(workflow, spec)| Some((workflow.clone(), spec.split(':').next()?.to_owned())))
                .collect(),
            scenario: recorded.header.scenario.is_some(),
        }
    }
}

/// What the check found: problems in the user's files, and harnesses that cannot run here.
#[derive(Debug, Default)]
pub struct RunCheck {
    pub problems: Vec<Problem>,
    /// One line each: the harness, the workflows on it, what is wrong and the fix.
    pub preflight: Vec<String>,
    /// The workflows the script names (those a run can reach, as far as the script says).
    pub named: BTreeSet<String>,
    /// Agent CLIs whose credentials coord cannot see: they may be logged in another way (a
    /// system keychain), so the run goes on, and a rejected login stops it at its first leaf.
    pub warnings: Vec<String>,
}

impl RunCheck {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.preflight.is_empty()
    }
}

pub fn check_for_run(script: &Path, choice: &HarnessChoice) -> RunCheck {
    let mut check = RunCheck::default();
    let project = Project::discover(script);
    let config = match Config::load(&project.root) {
        Ok(c) => c,
        Err(d) => {
            check.problems.push(Problem::from_file("coord::check::config", d));
            return check;
        }
    };
    let workflows = WorkflowSet::new(project.workflow_dirs()).with_overrides(config.file.workflow.clone());
    let named = check_script(script, &project, &workflows, &mut check.problems);
    for name in &named {
        if let Some(path) = workflows.find_path(name) {
            workflows::check_workflow(name, &path, &config, &mut check.problems);
        }
    }
    (check.preflight, check.warnings) = preflight(&config, &project.root, &workflows, &named, choice);
    check.named = named;
    check
}

/// The calls of the script and its modules, and its inputs header; returns the workflows the
/// calls name.
pub fn check_script(
    script: &Path,
    project: &Project,
    workflows: &WorkflowSet,
    problems: &mut Vec<Problem>,
) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let source = match std::fs::read_to_string(script) {
        Ok(s) => s,
        Err(e) => {
            problems.push(Problem::at("coord::check::compile", script, "", 0..0, format!("cannot read: {e}"), None));
            return named;
        }
    };
    let mut engine = ScriptEngine::build(Default::default());
    host_api::register(&mut engine, Rc::new(HostCell::default()), String::new());
    let catalog = calls::FunctionCatalog::from_engine(&engine);
    if let Err(e) = crate::script::input_decls::InputDecls::parse(&source) {
        problems.push(Problem::at("coord::check::inputs", script, &source, e.span, e.message, None));
    }
    let resolver = project.module_resolver(script);
    engine.set_module_resolver(resolver.clone());
    match compile_script(&engine, &resolver, script, &source) {
        Ok(compiled) => {
            calls::check_calls(&compiled, &catalog, workflows, &mut HashSet::new(), problems, &mut named);
        }
        Err(d) => problems.push(Problem::from_script("coord::check::compile", *d)),
    }
    named
}

/// The harness problems of every workflow the script names, one line per harness and
/// problem: those that refuse the run, and those that only warn (see [`RunCheck::warnings`]).
pub fn preflight(
    config: &Config,
    root: &Path,
    workflows: &WorkflowSet,
    named: &BTreeSet<String>,
    choice: &HarnessChoice,
) -> (Vec<String>, Vec<String>) {
    let Ok(harnesses) = HarnessSet::configured(config, root) else {
        // A broken [harness.*] table fails the run's own setup with its own message.
        return Default::default();
    };
    let mut by_harness: BTreeMap<String, Vec<Arc<crate::workflow::Workflow>>> = BTreeMap::new();
    for name in named {
        let Ok(workflow) = workflows.get(name) else { continue };
        let harness = match choice.overrides.get(name) {
            Some(h) => h.clone(),
            None if choice.scenario => continue,
            None => workflow.harness.clone(),
        };
        by_harness.entry(harness).or_default().push(workflow);
    }
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for (harness, on_it) in &by_harness {
        let names: Vec<&str> = on_it.iter().map(|w| w.name.as_str()).collect();
        let cli = readiness::cli_binary(&config.harness_kind(harness)).is_some();
        for finding in readiness::preflight(&harnesses, config, harness, on_it) {
            let fix = finding.fix.map(|f| format!(". Fix: {f}")).unwrap_or_default();
            let workflows = format!("workflow{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "));
            if cli && finding.check == "credentials" {
                warnings.push(format!(
                    "the {harness} harness ({workflows}): {}: {}{fix} (if it is logged in another way, ignore this)",
                    finding.check, finding.detail
                ));
            } else {
                errors.push(format!(
                    "the {harness} harness ({workflows}) cannot run: {}: {}{fix}",
                    finding.check, finding.detail
                ));
            }
        }
    }
    (errors, warnings)
}
