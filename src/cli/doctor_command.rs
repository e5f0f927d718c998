//! `coord doctor`: whether each harness the project's workflows use can run here (binary and
//! version, credentials, schemas, and with `--probe` one tiny real call). Exit 0 when all are
//! ready, 1 when any is not, 2 when the project's files do not load.

use super::cli_error::CliError;
use super::{exit_code, DoctorArgs};
use crate::config::Config;
use crate::harness::{readiness, HarnessSet};
use crate::run::project::Project;
use crate::views::console::{stdout, stdoutln};
use crate::workflow::WorkflowSet;

pub fn run(args: &DoctorArgs, runtime: &tokio::runtime::Handle) -> Result<(), CliError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = Project::containing(&cwd);
    let config = Config::load(&project.root).map_err(Box::new)?;
    let harnesses = HarnessSet::configured(&config, &project.root).map_err(|e| CliError::Usage(e.to_string()))?;
    let workflows = WorkflowSet::new(project.workflow_dirs()).with_overrides(config.file.workflow.clone());
    let in_use = readiness::harnesses_in_use(&workflows);
    let reports = runtime.block_on(readiness::examine(&harnesses, &config, &in_use, args.probe));
    if args.output.json {
        let ready = reports.iter().all(|r| r.ok());
        // A probe's error may quote what a provider answered: masked like every output.
        let json = serde_json::json!({"ready": ready, "harnesses": reports}).to_string();
        stdoutln!("{}", crate::redaction::process().mask_json_text(&json));
    } else {
        stdout!("{}", crate::redaction::mask(&crate::views::doctor_report::render(&reports)));
    }
    if reports.iter().all(|r| r.ok()) {
        Ok(())
    } else {
        Err(CliError::Reported { what: "harnesses not ready", code: exit_code::RUN_FAILED })
    }
}
