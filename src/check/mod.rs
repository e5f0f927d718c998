//! `coord check`: finds the mistakes a run would hit, without running anything. For each
//! coordinator script it compiles the script and resolves its imports, checks every function
//! call and workflow name, checks every workflow the project sees (schema, prompt fields), the
//! coordinator's scenarios, and the project's `coord.toml` library paths.
//!
//! Every problem is a [`Problem`] pointing at `file:line:col`. It spends nothing, needs no
//! network and runs no host call: it must never start a leaf or touch a run directory.

pub mod calls;
pub mod host_api_reference;
pub mod problem;
pub mod run_check;
pub mod scenarios;
pub mod workflows;

use crate::config::Config;
use crate::run::project::{scenario_dir, Project};
use crate::script::host_api::{self, HostCell};
use crate::script::module_resolver::compile_script;
use crate::script::ScriptEngine;
use crate::workflow::WorkflowSet;
pub use problem::Problem;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a check looked at and what it found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub problems: Vec<Problem>,
    /// Harnesses the coordinators' workflows need that cannot run on this machine (missing
    /// binary or credentials): `coord run` refuses them, `coord check` only warns, since it
    /// also serves offline work with mock leaves.
    pub warnings: Vec<String>,
    pub coordinators: usize,
    pub modules: usize,
    pub workflows: usize,
    pub scenarios: usize,
}

impl CheckReport {
    pub fn summary(&self) -> String {
        let found = match self.problems.len() {
            0 => "no problems".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        };
        format!(
            "checked {} coordinators, {} modules, {} workflows, {} scenarios: {found}",
            self.coordinators, self.modules, self.workflows, self.scenarios
        )
    }
}

/// A target that is not there: a usage error, not a problem in a file.
#[derive(Debug, thiserror::Error)]
#[error("nothing to check at {0}: expected a coordinator script (.rhai) or a folder of them")]
pub struct MissingTarget(pub String);

/// Checks scripts and folders of scripts. No targets means the `coordinators/` folder of the
/// project around `cwd`.
pub fn check(targets: &[PathBuf], cwd: &Path) -> Result<CheckReport, MissingTarget> {
    let targets = if targets.is_empty() {
        let here = cwd.join("coordinators");
        let default = if here.is_dir() {
            PathBuf::from("coordinators")
        } else {
            Project::containing(cwd).root.join("coordinators")
        };
        vec![default]
    } else {
        targets.to_vec()
    };
    let mut report = CheckReport::default();
    let mut scripts = BTreeSet::new();
    for target in &targets {
        if target.is_file() {
            scripts.insert(target.clone());
        } else if target.is_dir() {
            let dir = if has_scripts(target) || !target.join("coordinators").is_dir() {
                target.clone()
            } else {
                target.join("coordinators")
            };
            scripts.extend(scripts_in(&dir));
            orphan_scenarios(&dir, &mut report.problems);
        } else {
            return Err(MissingTarget(target.display().to_string()));
        }
    }

    let mut engine = ScriptEngine::build(Default::default());
    host_api::register(&mut engine, Rc::new(HostCell::default()), String::new());
    let catalog = calls::FunctionCatalog::from_engine(&engine);

    let mut checked_files = HashSet::new();
    let mut checked_projects = HashSet::new();
    let mut checked_workflows = HashSet::new();
    let mut compiled_scripts = 0;
    for script in &scripts {
        report.coordinators += 1;
        let project = Project::discover(script);
        let workflows = WorkflowSet::new(project.workflow_dirs());
        if checked_projects.insert(project.root.clone()) {
            check_config(&project.root, &mut report.problems);
            let config = Config::load(&project.root).unwrap_or_default();
            for name in workflows.names() {
                if let Some(path) = workflows.find_path(&name) {
                    if checked_workflows.insert(path.clone()) {
                        workflows::check_workflow(&name, &path, &config, &mut report.problems);
                    }
                }
            }
        }
        report.scenarios += scenarios::check_scenarios(script, &workflows, &mut report.problems);

        let source = match std::fs::read_to_string(script) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(Problem::at(
                    "coord::check::compile",
                    script,
                    "",
                    0..0,
                    format!("cannot read: {e}"),
                    None,
                ));
                continue;
            }
        };
        if let Err(e) = crate::script::input_decls::InputDecls::parse(&source) {
            report.problems.push(Problem::at("coord::check::inputs", script, &source, e.span, e.message, None));
        }
        let resolver = project.module_resolver(script);
        engine.set_module_resolver(resolver.clone());
        match compile_script(&engine, &resolver, script, &source) {
            Ok(compiled) => {
                compiled_scripts += 1;
                let mut named = BTreeSet::new();
                calls::check_calls(
                    &compiled,
                    &catalog,
                    &workflows,
                    &mut checked_files,
                    &mut report.problems,
                    &mut named,
                );
                let config = Config::load(&project.root).unwrap_or_default();
                let choice = run_check::HarnessChoice::default();
                let (errors, warnings) = run_check::preflight(&config, &project.root, &workflows, &named, &choice);
                report.warnings.extend(errors.into_iter().chain(warnings));
            }
            Err(d) => report.problems.push(Problem::from_script("coord::check::compile", *d)),
        }
    }
    report.workflows = checked_workflows.len();
    report.modules = checked_files.len().saturating_sub(compiled_scripts);
    report.problems.sort_by(|a, b| (&a.file, a.offset, &a.message).cmp(&(&b.file, b.offset, &b.message)));
    report.problems.dedup_by(|a, b| a.message == b.message);
    report.warnings.sort();
    report.warnings.dedup();
    Ok(report)
}

fn has_scripts(dir: &Path) -> bool {
    !scripts_in(dir).is_empty()
}

/// `*.rhai` directly in `dir`, sorted.
fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    scripts.sort();
    scripts
}

/// `dir/<name>/scenarios/` with no `dir/<name>.rhai` beside it.
fn orphan_scenarios(dir: &Path, problems: &mut Vec<Problem>) {
    let mut subdirs: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    for sub in subdirs {
        let script = sub.with_extension("rhai");
        let scenarios = scenario_dir(&script);
        if scenarios.is_dir() && !script.is_file() {
            for file in scenarios::scenario_files(&scenarios) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                problems.push(Problem::at(
                    "coord::check::scenario",
                    &file,
                    &text,
                    0..0,
                    format!(
                        "a scenario of a coordinator that does not exist ({})",
                        crate::library::display_path(&script)
                    ),
                    Some("scenarios live in coordinators/<name>/scenarios/ beside coordinators/<name>.rhai".into()),
                ));
            }
        }
    }
}

/// `coord.toml` loads and every `[library] paths` folder exists.
fn check_config(root: &Path, problems: &mut Vec<Problem>) {
    let config = match Config::load(root) {
        Ok(c) => c,
        Err(d) => {
            problems.push(Problem::from_file("coord::check::config", d));
            return;
        }
    };
    let (Some(path), Some(base)) = (config.path.clone(), config.base_dir()) else {
        return;
    };
    for p in &config.file.library.paths {
        let dir = base.join(p.get_ref());
        if !dir.is_dir() {
            problems.push(Problem::at(
                "coord::check::config",
                &path,
                &config.source,
                p.span(),
                format!("library folder `{}` does not exist", p.get_ref()),
                Some(format!(
                    "paths are relative to {}; a library is a folder of modules (and workflows/)",
                    crate::library::display_path(base)
                )),
            ));
        }
    }
}
