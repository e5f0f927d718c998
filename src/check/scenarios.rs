//! Checks a coordinator's scenarios (`coordinators/<name>/scenarios/*.toml`): each parses, the
//! coordinator it names is the one whose folder it is in, and every `[[leaf]]` workflow exists.

use super::problem::Problem;
use crate::run::project::scenario_dir;
use crate::scenario::Scenario;
use crate::script::diagnostic::strsim_distance;
use crate::workflow::WorkflowSet;
use std::path::{Path, PathBuf};

/// Checks every scenario of `script`; returns how many there are.
pub fn check_scenarios(script: &Path, workflows: &WorkflowSet, problems: &mut Vec<Problem>) -> usize {
    let files = scenario_files(&scenario_dir(script));
    let coordinator = crate::run::coordinator_name(script);
    for file in &files {
        let scenario = match Scenario::load(file) {
            Ok(s) => s,
            Err(d) => {
                problems.push(Problem::from_file("coord::check::scenario", d));
                continue;
            }
        };
        if let (Some(named), Some(span)) = (&scenario.coordinator, &scenario.coordinator_span) {
            if *named != coordinator {
                let sibling = script.with_file_name(format!("{named}.rhai"));
                let message = if sibling.is_file() {
                    format!("this scenario is in the folder of `{coordinator}` but names the coordinator `{named}`")
                } else {
                    format!("no coordinator `{named}` (no {})", crate::library::display_path(&sibling))
                };
                let help =
                    Some(format!("write coordinator = \"{coordinator}\", or move the scenario to {named}/scenarios/"));
                problems.push(Problem::at(
                    "coord::check::scenario",
                    file,
                    &scenario.source,
                    span.clone(),
                    message,
                    help,
                ));
            }
        }
        for rule in &scenario.rules {
            if workflows.find_path(&rule.workflow).is_some() {
                continue;
            }
            let names = workflows.names();
            let near = names.iter().map(|n| (strsim_distance(&rule.workflow, n), n)).filter(|(d, _)| *d <= 3).min();
            let help = match near {
                Some((_, n)) => format!("did you mean `{n}`?"),
                None => format!("workflows: {}", names.join(", ")),
            };
            problems.push(Problem::at(
                "coord::check::unknown-workflow",
                file,
                &scenario.source,
                rule.workflow_span.clone(),
                format!("no workflow `{}`", rule.workflow),
                Some(help),
            ));
        }
    }
    files.len()
}

/// `*.toml` in a scenarios folder, sorted.
pub fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}
