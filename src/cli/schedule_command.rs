//! `coord schedule` (the pipelines, their next fire times and last runs) and `coord trigger`
//! (one pipeline, now, under its lock: what system cron and CI call).

use super::{exit_code, parse_key_value, report, run_command};
use crate::daemon::PipelineSet;
use crate::journal::run_dir::RunStore;
use crate::views::run_history;
use crate::views::schedule_table::{self, ScheduleRow};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Compute next fire times from this instant (RFC 3339) instead of the clock.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Args, Debug, Clone)]
pub struct TriggerArgs {
    /// The pipeline's name in coord.toml.
    pub pipeline: String,
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    /// An input on top of the pipeline's own; repeatable. Values are strings.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,
    /// Where run directories go [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Most leaf sessions running at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub max_parallel: u16,
    /// Print one JSON object on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-21T09:00:00Z ({e})"))
}

fn load(config: &std::path::Path) -> Result<PipelineSet, u8> {
    PipelineSet::load(config).map_err(|diagnostic| {
        report(diagnostic);
        exit_code::USAGE
    })
}

pub fn list(args: &ScheduleArgs) -> u8 {
    let pipelines = match load(&args.config) {
        Ok(set) => set,
        Err(code) => return code,
    };
    let now = args.now.unwrap_or_else(Utc::now);
    let mut last = run_history::last_runs(&RunStore::locate(args.runs_dir.as_deref()), &pipelines.names());
    let rows: Vec<ScheduleRow> = pipelines
        .iter()
        .map(|p| ScheduleRow {
            name: p.name.clone(),
            script: p.script.display().to_string(),
            schedule: p.schedule.as_ref().map(|s| s.expression().to_owned()),
            timezone: p.schedule.as_ref().map(|s| s.timezone()),
            next_fire: p.schedule.as_ref().and_then(|s| s.next_after(now).map(|t| t.with_timezone(&s.timezone()))),
            overlap: p.overlap.as_str(),
            catch_up: p.catch_up,
            webhook: p.webhook.is_some(),
            last_run: last.shift_remove(&p.name),
        })
        .collect();
    if args.json {
        println!("{}", schedule_table::schedule_json(&rows));
    } else {
        print!("{}", schedule_table::schedule_text(&rows));
    }
    exit_code::SUCCESS
}

pub fn trigger(
    args: &TriggerArgs,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> u8 {
    let pipelines = match load(&args.config) {
        Ok(set) => set,
        Err(code) => return code,
    };
    let Some(pipeline) = pipelines.get(&args.pipeline) else {
        eprintln!(
            "error: no pipeline `{}` in {} (it has: {})",
            args.pipeline,
            args.config.display(),
            if pipelines.is_empty() { "none".to_owned() } else { pipelines.names().join(", ") }
        );
        return exit_code::USAGE;
    };
    let runs = RunStore::locate(args.runs_dir.as_deref());
    // Taken before anything touches the run store: a trigger the lock refuses changes nothing.
    let _lock = match run_command::take_lock(&runs, &pipeline.name) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let extra = args.inputs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut plan = pipeline.run_plan(&runs, extra);
    plan.max_parallel = usize::from(args.max_parallel);
    // The checks every run passes before it starts, as `coord run` and the daemon do.
    let choice = crate::check::run_check::HarnessChoice {
        overrides: plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), o.harness.clone())).collect(),
        scenario: plan.scenario.is_some() || plan.demo,
    };
    if let Some(code) = super::run_command::refuse_unless_checked(&plan.script, &choice) {
        return code;
    }
    let outcome = crate::run::execute(plan, runtime, interrupt.clone());
    run_command::finish(outcome, args.json, &interrupt)
}
