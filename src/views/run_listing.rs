//! `coord runs`: the recorded runs of a run store, one row each (id, coordinator, status,
//! start, duration, sessions, cost), as a table or as JSON.
//!
//! A run without `run_finished` is `running` while its owner process lives and `interrupted`
//! once it is gone. Rows come oldest first (run ids sort by start time). Reading only: an
//! unreadable journal becomes a warning, never a failure of the whole listing.
//!
//! Mock leaves' cost is simulated ([`super::spend`]): the table says `$1.3220 (simulated)`, or
//! `$0.2500 + $1.3220 simulated` for a run with real leaves too; the JSON has
//! `simulated_cost_usd` (the part of `cost_usd` mock leaves simulated) and `simulated` (all of it
//! was).

use super::run_graph::mask_recorded_run;
use super::run_graph::RunGraph;
use super::spend::{Label, Spend};
use super::units;
use crate::journal::run_dir::RunStore;
use crate::journal::RecordedRun;
use crate::redaction::Redactor;
use serde_json::{json, Value};
use std::fmt::Write;

#[derive(Clone, Debug)]
pub struct RunRow {
    pub id: String,
    pub coordinator: String,
    pub status: String,
    /// What an unfinished run waits for (`waiting until <time>`), shown beside its status.
    pub waiting: Option<String>,
    pub mode: String,
    /// The `coord.toml` pipeline it ran for (daemon, `coord trigger`).
    pub pipeline: Option<String>,
    /// Ran in a scenario world (mock leaves unless overridden).
    pub scenario: bool,
    pub started_at: String,
    pub duration_ms: Option<u64>,
    pub sessions: usize,
    pub sessions_not_ok: usize,
    pub effects: usize,
    pub tokens: u64,
    /// All leaves' dollars; `spend` splits them into real and simulated.
    pub cost_usd: f64,
    pub spend: Spend,
}

impl RunRow {
    pub fn from_graph(g: &RunGraph) -> Self {
        let usage = g.usage();
        RunRow {
            id: g.run_id.clone(),
            coordinator: g.coordinator.clone(),
            status: g.status.as_str().to_owned(),
            waiting: g.waiting.clone(),
            mode: g.mode.clone(),
            pipeline: g.pipeline.clone(),
            scenario: g.scenario,
            started_at: g.started_at.clone(),
            duration_ms: g.duration_ms(),
            sessions: g.sessions.len(),
            sessions_not_ok: g.failed_sessions(),
            effects: g.effects.len(),
            tokens: usage.input_tokens + usage.output_tokens,
            cost_usd: usage.cost_usd,
            spend: g.spend(),
        }
    }

    pub fn label(&self) -> Label {
        self.spend.label(self.scenario)
    }

    /// `$0.2500`, `$1.3220 (simulated)` or `$0.2500 + $1.3220 simulated`.
    pub fn cost_text(&self) -> String {
        self.spend.run_text(self.scenario)
    }

    /// `pipeline` only for a run that has one, so other runs' objects stay as they were.
    pub fn to_json(&self) -> Value {
        let mut row = json!({
            "id": self.id,
            "coordinator": self.coordinator,
            "status": self.status,
            "mode": self.mode,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "sessions": self.sessions,
            "sessions_not_ok": self.sessions_not_ok,
            "effects": self.effects,
            "tokens": self.tokens,
            "cost_usd": units::cost_json(self.cost_usd),
            "simulated_cost_usd": units::cost_json(self.spend.simulated_usd),
            "simulated": self.label() == Label::Simulated,
        });
        if let (Some(pipeline), Value::Object(fields)) = (&self.pipeline, &mut row) {
            fields.insert("pipeline".into(), json!(pipeline));
        }
        row
    }
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub coordinator: Option<String>,
    pub status: Option<String>,
}

impl RunFilter {
    fn keeps(&self, row: &RunRow) -> bool {
        self.coordinator.as_ref().is_none_or(|c| *c == row.coordinator)
            && self.status.as_ref().is_none_or(|s| *s == row.status)
    }
}

/// Every run's graph in `store`, oldest first, and a warning per run that could not be read.
pub fn read_runs(store: &RunStore, redactor: &Redactor) -> (Vec<RunGraph>, Vec<String>) {
    read_runs_with(store, redactor, |_, _| {})
}

/// [`read_runs`], handing each run's masked journal and graph to `each` as it is read (what
/// needs the journal itself, the routing trace, is made there, one run at a time).
pub fn read_runs_with(
    store: &RunStore,
    redactor: &Redactor,
    mut each: impl FnMut(&RecordedRun, &RunGraph),
) -> (Vec<RunGraph>, Vec<String>) {
    let mut graphs = Vec::new();
    let mut warnings = Vec::new();
    for (id, dir) in store.list() {
        match RecordedRun::read(&dir) {
            Ok(mut run) => {
                mask_recorded_run(redactor, &mut run);
                let graph = RunGraph::build(&run, redactor);
                each(&run, &graph);
                graphs.push(graph);
            }
            Err(e) => warnings.push(format!("skipped run {id}: {e}")),
        }
    }
    (graphs, warnings)
}

pub fn rows(graphs: &[RunGraph], filter: &RunFilter) -> Vec<RunRow> {
    graphs.iter().map(RunRow::from_graph).filter(|r| filter.keeps(r)).collect()
}

pub fn rows_json(rows: &[RunRow]) -> Value {
    Value::Array(rows.iter().map(RunRow::to_json).collect())
}

pub fn rows_table(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no runs\n".into();
    }
    let header = ["ID", "COORDINATOR", "STATUS", "STARTED", "DURATION", "SESSIONS", "COST"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let sessions = if r.sessions_not_ok > 0 {
                format!("{} ({} not ok)", r.sessions, r.sessions_not_ok)
            } else {
                r.sessions.to_string()
            };
            [
                r.id.clone(),
                r.coordinator.clone(),
                match &r.waiting {
                    Some(w) => format!("{}, {w}", r.status),
                    None => r.status.clone(),
                },
                units::timestamp(&r.started_at),
                r.duration_ms.map(units::duration).unwrap_or_else(|| "—".into()),
                sessions,
                r.cost_text(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[&str]| {
        let text: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &header);
    for row in &cells {
        line(&mut out, &row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}
