//! `coord schedule`: the pipelines with their schedules, next fire times (on each pipeline's
//! own wall clock) and last runs, as a table for people or JSON for programs.

use super::run_history::LastRun;
use chrono::DateTime;
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::fmt::Write;

pub struct ScheduleRow {
    pub name: String,
    pub script: String,
    pub schedule: Option<String>,
    pub timezone: Option<Tz>,
    pub next_fire: Option<DateTime<Tz>>,
    pub overlap: &'static str,
    pub catch_up: u32,
    pub webhook: bool,
    pub last_run: Option<LastRun>,
}

const NONE: &str = "—";

pub fn schedule_text(rows: &[ScheduleRow]) -> String {
    if rows.is_empty() {
        return "no pipelines in coord.toml\n".into();
    }
    let header = ["PIPELINE", "SCHEDULE", "TIMEZONE", "NEXT FIRE", "OVERLAP", "TRIGGERS", "LAST RUN"].map(String::from);
    let mut table = vec![header.to_vec()];
    for r in rows {
        let triggers = match (r.schedule.is_some(), r.webhook) {
            (true, true) => "cron, webhook",
            (true, false) => "cron",
            (false, true) => "webhook",
            (false, false) => "trigger only",
        };
        table.push(vec![
            r.name.clone(),
            r.schedule.clone().unwrap_or_else(|| NONE.into()),
            r.timezone.map(|tz| tz.name().to_owned()).unwrap_or_else(|| NONE.into()),
            r.next_fire.map(|t| t.format("%Y-%m-%d %H:%M:%S %Z").to_string()).unwrap_or_else(|| NONE.into()),
            r.overlap.into(),
            triggers.into(),
            r.last_run.as_ref().map(|l| format!("{} {}", l.status, l.run_id)).unwrap_or_else(|| NONE.into()),
        ]);
    }
    let columns = table[0].len();
    let widths: Vec<usize> =
        (0..columns).map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn schedule_json(rows: &[ScheduleRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "script": r.script,
                    "schedule": r.schedule,
                    "timezone": r.timezone.map(|tz| tz.name()),
                    "next_fire": r.next_fire.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    "overlap": r.overlap,
                    "catch_up": r.catch_up,
                    "webhook": r.webhook,
                    "last_run": r.last_run.as_ref().map(|l| json!({
                        "run_id": l.run_id,
                        "status": l.status,
                        "started_at": l.started_at,
                    })),
                })
            })
            .collect(),
    )
}
