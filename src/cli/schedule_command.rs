//! `coord schedule` (the pipelines, their next fire times and last runs) and `coord trigger`
//! (one pipeline, now, under its lock: what system cron and CI call).

use super::cli_error::CliError;
use super::flag_groups::{JsonOutputArgs, ParallelismArgs, RunStoreArgs, RUNS_DIR_FOR_NEW_RUNS};
use super::{parse_key_value, run_command};
use crate::daemon::PipelineSet;
use crate::views::console::{stdout, stdoutln};
use crate::views::run_history;
use crate::views::schedule_table::{self, ScheduleRow};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help("Print JSON on stdout instead of a table")))]
pub struct ScheduleArgs {
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub store: RunStoreArgs,
    #[command(flatten)]
    pub output: JsonOutputArgs,
    /// Compute next fire times from this instant (RFC 3339) instead of the clock.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Args, Debug, Clone)]
#[command(mut_arg("runs_dir", |a| a.help(RUNS_DIR_FOR_NEW_RUNS)))]
#[command(mut_arg("json", |a| a.help("Print one JSON object on stdout instead of a summary")))]
pub struct TriggerArgs {
    /// The pipeline's name in coord.toml.
    pub pipeline: String,
    /// The configuration defining the pipelines.
    #[arg(long, value_name = "FILE", default_value = "coord.toml")]
    pub config: PathBuf,
    /// An input on top of the pipeline's own; repeatable. Values are strings.
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,
    #[command(flatten)]
    pub store: RunStoreArgs,
    #[command(flatten)]
    pub parallelism: ParallelismArgs,
    #[command(flatten)]
    pub output: JsonOutputArgs,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-21T09:00:00Z ({e})"))
}

fn load(config: &std::path::Path) -> Result<PipelineSet, CliError> {
    Ok(PipelineSet::load(config).map_err(Box::new)?)
}

pub fn list(args: &ScheduleArgs) -> Result<(), CliError> {
    let pipelines = load(&args.config)?;
    let now = args.now.unwrap_or_else(Utc::now);
    let mut last = run_history::last_runs(&args.store.store(), &pipelines.names());
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
    if args.output.json {
        stdoutln!("{}", schedule_table::schedule_json(&rows));
    } else {
        stdout!("{}", schedule_table::schedule_text(&rows));
    }
    Ok(())
}

pub fn trigger(
    args: &TriggerArgs,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<crate::scheduler::Interrupt>,
) -> Result<(), CliError> {
    let pipelines = load(&args.config)?;
    let Some(pipeline) = pipelines.get(&args.pipeline) else {
        return Err(CliError::Usage(format!(
            "no pipeline `{}` in {} (it has: {})",
            args.pipeline,
            args.config.display(),
            if pipelines.is_empty() { "none".to_owned() } else { pipelines.names().join(", ") }
        )));
    };
    let runs = args.store.store();
    // Taken before anything touches the run store: a trigger the lock refuses changes nothing.
    let _lock = run_command::take_lock(&runs, &pipeline.name)?;
    let extra = args.inputs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut plan = pipeline.run_plan(&runs, extra);
    plan.max_parallel = args.parallelism.leaves_at_once();
    // The checks every run passes before it starts, as `coord run` and the daemon do.
    let choice = crate::check::run_check::HarnessChoice {
        overrides: plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), o.harness.clone())).collect(),
        scenario: plan.scenario.is_some() || plan.demo,
    };
    run_command::refuse_unless_checked(&plan.script, &choice)?;
    let outcome = crate::run::execute(plan, runtime, interrupt.clone());
    run_command::finish(outcome, args.output.json, &interrupt)
}
