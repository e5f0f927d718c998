//! `coord doctor`: whether each harness the project's workflows use can run here (binary and
//! version, credentials, schemas, and with `--probe` one tiny real call). Exit 0 when all are
//! ready, 1 when any is not, 2 when the project's files do not load.

use super::{exit_code, DoctorArgs};
use crate::config::Config;
use crate::harness::{readiness, HarnessSet};
use crate::run::project::Project;
use crate::workflow::WorkflowSet;

pub fn run(args: &DoctorArgs, runtime: &tokio::runtime::Handle) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = Project::containing(&cwd);
    let config = match Config::load(&project.root) {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{:?}", miette::Report::new(d));
            return exit_code::USAGE;
        }
    };
    let harnesses = match HarnessSet::configured(&config, &project.root) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::USAGE;
        }
    };
    let workflows = WorkflowSet::new(project.workflow_dirs()).with_overrides(config.file.workflow.clone());
    let in_use = readiness::harnesses_in_use(&workflows);
    let reports = runtime.block_on(readiness::examine(&harnesses, &config, &in_use, args.probe));
    if args.json {
        let ready = reports.iter().all(|r| r.ok());
        // A probe's error may quote what a provider answered: masked like every output.
        let json = serde_json::json!({"ready": ready, "harnesses": reports}).to_string();
        println!("{}", crate::redaction::process().mask_json_text(&json));
    } else {
        print!("{}", crate::redaction::mask(&crate::views::doctor_report::render(&reports)));
    }
    if reports.iter().all(|r| r.ok()) {
        exit_code::SUCCESS
    } else {
        exit_code::RUN_FAILED
    }
}
