//! `coord report`: one self-contained HTML file per run (summary, decisions and the verdicts
//! behind them, the DAG as inline SVG, sessions with expandable inputs and outputs, effects,
//! errors, cost by workflow and model), and an index of all runs with a cost-over-time chart.
//!
//! Self-contained means no external assets, no scripts, no network: styles are inline, charts
//! are SVG drawn by [`super::dag_svg`] and [`super::cost_chart`]. The page data is built here;
//! the markup lives in `report_templates/` (minijinja, HTML auto-escaping on).

use super::cost_chart::render_cost_chart;
use super::dag_svg::render_dag;
use super::run_graph::{CostLine, NodeRef, Parent, RunGraph};
use super::run_listing::RunRow;
use super::run_tree::outcome_value;
use super::units;
use minijinja::{context, Environment};
use serde::Serialize;
use serde_json::Value;

const RUN_TEMPLATE: &str = include_str!("report_templates/run_report.html");
const INDEX_TEMPLATE: &str = include_str!("report_templates/runs_index.html");
const STYLE: &str = include_str!("report_templates/report.css");

#[derive(Debug, thiserror::Error)]
#[error("report template: {0}")]
pub struct ReportError(#[from] minijinja::Error);

#[derive(Serialize)]
struct Card {
    label: &'static str,
    value: String,
    note: String,
}

#[derive(Serialize)]
struct Decision {
    effect: String,
    status: String,
    succeeded: bool,
    because: Option<Because>,
    site: String,
}

#[derive(Serialize)]
struct Because {
    session: String,
    workflow: String,
    status: String,
    verdict: Option<String>,
    summary: Option<String>,
}

#[derive(Serialize)]
struct SessionRow {
    id: String,
    workflow: String,
    goal: String,
    status: String,
    verdict: Option<String>,
    summary: Option<String>,
    duration: String,
    duration_share: f64,
    tokens: String,
    cost: String,
    model: String,
    parent: String,
    parent_is_session: bool,
    depth: usize,
    error: Option<String>,
    inputs: String,
    output: Option<String>,
    longest: bool,
}

#[derive(Serialize)]
struct CostRow {
    name: String,
    sessions: usize,
    tokens: String,
    cost: String,
    share: f64,
}

#[derive(Serialize)]
struct ErrorRow {
    what: String,
    status: String,
    message: String,
}

#[derive(Serialize)]
struct RunPage {
    coordinator: String,
    status: String,
    run_id: String,
    script: String,
    mode: String,
    started: String,
    cards: Vec<Card>,
    outcome: Vec<(String, String)>,
    decisions: Vec<Decision>,
    sessions: Vec<SessionRow>,
    errors: Vec<ErrorRow>,
    cost_by_workflow: Vec<CostRow>,
    cost_by_model: Vec<CostRow>,
    warnings: Vec<String>,
    coord_version: &'static str,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Names end in `.html`, so every value is HTML-escaped unless marked safe.
    env.add_template("run_report.html", RUN_TEMPLATE).expect("the run report template parses");
    env.add_template("runs_index.html", INDEX_TEMPLATE).expect("the runs index template parses");
    env
}

pub fn render_run_report(g: &RunGraph) -> Result<String, ReportError> {
    let page = run_page(g);
    let env = environment();
    let html = env.get_template("run_report.html")?.render(context! {
        page => page,
        style => minijinja::Value::from_safe_string(STYLE.to_owned()),
        dag => minijinja::Value::from_safe_string(render_dag(g)),
    })?;
    Ok(html)
}

fn run_page(g: &RunGraph) -> RunPage {
    let usage = g.usage();
    let longest = g.longest_session();
    let max_ms = longest.map(|s| s.duration_ms()).unwrap_or(0);
    let not_ok = g.failed_sessions();
    let acted = g.effects.iter().filter(|e| e.succeeded()).count();
    let mut cards = vec![
        Card {
            label: "Sessions",
            value: g.sessions.len().to_string(),
            note: match (g.sessions.len(), not_ok) {
                (0, _) => "none started".into(),
                (_, 0) => "all ok".into(),
                (_, n) => format!("{n} not ok"),
            },
        },
        Card { label: "Effects", value: g.effects.len().to_string(), note: format!("{acted} done") },
        Card {
            label: "Tokens",
            value: units::tokens(usage.input_tokens + usage.output_tokens),
            note: format!("{} in · {} out", units::tokens(usage.input_tokens), units::tokens(usage.output_tokens)),
        },
        Card {
            label: "Cost",
            value: units::cost(usage.cost_usd),
            note: if usage.cost_estimated { "estimated from rates".into() } else { "as reported".into() },
        },
        Card {
            label: "Duration",
            value: g.duration_ms().map(units::duration).unwrap_or_else(|| "—".into()),
            note: g.status.as_str().to_owned(),
        },
    ];
    if let Some(s) = longest {
        cards.push(Card {
            label: "Longest session",
            value: units::duration(s.duration_ms()),
            note: format!("{} {}", s.id, s.workflow),
        });
    }
    let outcome = match &g.result {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), outcome_value(v))).collect(),
        _ => Vec::new(),
    };
    let decisions = g
        .effects
        .iter()
        .map(|e| Decision {
            effect: e.line(),
            status: e.status().to_owned(),
            succeeded: e.succeeded(),
            because: match &e.parent {
                Parent::Session(id) => g.session(id).map(|s| Because {
                    session: s.id.clone(),
                    workflow: s.workflow.clone(),
                    status: s.state().to_owned(),
                    verdict: s.verdict_text(),
                    summary: s.summary(),
                }),
                Parent::CallSite(_) => None,
            },
            site: e.site.rsplit('/').next().unwrap_or(&e.site).to_owned(),
        })
        .collect();
    let sessions = g
        .sessions
        .iter()
        .map(|s| SessionRow {
            id: s.id.clone(),
            workflow: s.workflow.clone(),
            goal: s.goal.clone(),
            status: s.state().to_owned(),
            verdict: s.verdict_text(),
            summary: s.summary(),
            duration: if s.result.is_some() { units::duration(s.duration_ms()) } else { "—".into() },
            duration_share: if max_ms > 0 { (s.duration_ms() as f64 / max_ms as f64 * 100.0).round() } else { 0.0 },
            tokens: units::tokens(s.tokens()),
            cost: units::cost(s.cost_usd()),
            model: s.result.as_ref().and_then(|r| r.model.clone()).unwrap_or_default(),
            parent: match &s.parent {
                Parent::Session(id) => id.clone(),
                site @ Parent::CallSite(_) => {
                    let label = g.parent_label(site);
                    label.rsplit('/').next().unwrap_or(&label).to_owned()
                }
            },
            parent_is_session: matches!(s.parent, Parent::Session(_)),
            depth: s.depth,
            error: s.error().map(str::to_owned),
            inputs: serde_json::to_string_pretty(&s.inputs).unwrap_or_default(),
            output: s.output().map(|o| serde_json::to_string_pretty(o).unwrap_or_default()),
            longest: longest.is_some_and(|l| l.id == s.id) && max_ms > 0,
        })
        .collect();
    let mut errors: Vec<ErrorRow> = g
        .error
        .iter()
        .map(|e| ErrorRow { what: "run".into(), status: g.status.as_str().into(), message: e.clone() })
        .collect();
    errors.extend(g.errors().into_iter().map(|(node, why)| match node {
        NodeRef::Session(i) => {
            let s = &g.sessions[i];
            ErrorRow { what: format!("{} {}", s.id, s.workflow), status: s.state().into(), message: why }
        }
        NodeRef::Effect(i) => {
            let e = &g.effects[i];
            ErrorRow { what: e.short_label(), status: e.status().into(), message: why }
        }
    }));
    RunPage {
        coordinator: g.coordinator.clone(),
        status: g.status.as_str().to_owned(),
        run_id: g.run_id.clone(),
        script: g.script.clone(),
        mode: g.mode.clone(),
        started: units::timestamp(&g.started_at),
        cards,
        outcome,
        decisions,
        sessions,
        errors,
        cost_by_workflow: cost_rows(&g.cost_by_workflow(), usage.cost_usd),
        cost_by_model: cost_rows(&g.cost_by_model(), usage.cost_usd),
        warnings: g.warnings.clone(),
        coord_version: env!("CARGO_PKG_VERSION"),
    }
}

fn cost_rows(lines: &[CostLine], total: f64) -> Vec<CostRow> {
    lines
        .iter()
        .map(|l| CostRow {
            name: l.name.clone(),
            sessions: l.sessions,
            tokens: units::tokens(l.tokens),
            cost: units::cost(l.cost_usd),
            share: if total > 0.0 { (l.cost_usd / total * 1000.0).round() / 10.0 } else { 0.0 },
        })
        .collect()
}

#[derive(Serialize)]
struct IndexRow {
    id: String,
    coordinator: String,
    status: String,
    started: String,
    duration: String,
    sessions: usize,
    sessions_not_ok: usize,
    effects: usize,
    tokens: String,
    cost: String,
}

#[derive(Serialize)]
struct IndexPage {
    cards: Vec<Card>,
    runs: Vec<IndexRow>,
    by_coordinator: Vec<CostRow>,
    warnings: Vec<String>,
    coord_version: &'static str,
}

pub fn render_runs_index(rows: &[RunRow], warnings: &[String]) -> Result<String, ReportError> {
    let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
    let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
    let mut by_coordinator: Vec<CostLine> = Vec::new();
    for r in rows {
        match by_coordinator.iter_mut().find(|l| l.name == r.coordinator) {
            Some(l) => {
                l.sessions += r.sessions;
                l.tokens += r.tokens;
                l.cost_usd += r.cost_usd;
            }
            None => by_coordinator.push(CostLine {
                name: r.coordinator.clone(),
                sessions: r.sessions,
                tokens: r.tokens,
                cost_usd: r.cost_usd,
            }),
        }
    }
    by_coordinator.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then_with(|| a.name.cmp(&b.name)));
    let page = IndexPage {
        cards: vec![
            Card {
                label: "Runs",
                value: rows.len().to_string(),
                note: format!("{} succeeded · {} failed", count("succeeded"), count("failed")),
            },
            Card {
                label: "Unfinished",
                value: (count("running") + count("interrupted")).to_string(),
                note: format!("{} running · {} interrupted", count("running"), count("interrupted")),
            },
            Card {
                label: "Sessions",
                value: rows.iter().map(|r| r.sessions).sum::<usize>().to_string(),
                note: format!("{} not ok", rows.iter().map(|r| r.sessions_not_ok).sum::<usize>()),
            },
            Card {
                label: "Total cost",
                value: units::cost(total),
                note: format!("{} tokens", units::tokens(rows.iter().map(|r| r.tokens).sum())),
            },
        ],
        runs: rows
            .iter()
            .rev()
            .map(|r| IndexRow {
                id: r.id.clone(),
                coordinator: r.coordinator.clone(),
                status: r.status.clone(),
                started: units::timestamp(&r.started_at),
                duration: r.duration_ms.map(units::duration).unwrap_or_else(|| "—".into()),
                sessions: r.sessions,
                sessions_not_ok: r.sessions_not_ok,
                effects: r.effects,
                tokens: units::tokens(r.tokens),
                cost: units::cost(r.cost_usd),
            })
            .collect(),
        by_coordinator: cost_rows(&by_coordinator, total),
        warnings: warnings.to_vec(),
        coord_version: env!("CARGO_PKG_VERSION"),
    };
    let env = environment();
    let html = env.get_template("runs_index.html")?.render(context! {
        page => page,
        style => minijinja::Value::from_safe_string(STYLE.to_owned()),
        chart => minijinja::Value::from_safe_string(render_cost_chart(rows)),
    })?;
    Ok(html)
}
