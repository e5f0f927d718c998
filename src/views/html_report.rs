//! `coord report`: one self-contained HTML file per run (summary, each item's outcome with a
//! link to GitHub when the repository is known, decisions and the verdicts
//! behind them, the DAG as inline SVG, sessions with expandable inputs and outputs, effects,
//! errors, cost by workflow and model), and an index of all runs with a cost-over-time chart.
//!
//! Mock leaves' cost is simulated ([`super::spend`]): a run's page says so at the cost card, the
//! meta line and the cost tables (and marks each mock session when real leaves ran too). The
//! index keeps real and simulated spend apart: its totals, its per-coordinator table and the
//! running total of its chart count real spend only, and simulated spend is shown beside them.
//!
//! Self-contained means no external assets, no scripts, no network: styles are inline, charts
//! are SVG drawn by [`super::dag_svg`] and [`super::cost_chart`]. The page data is built here;
//! the markup lives in `report_templates/` (minijinja, HTML auto-escaping on).

use super::cost_chart::render_cost_chart;
use super::dag_svg::render_dag;
use super::item_outcomes::{item_rows, ItemRow};
use super::run_graph::{CostLine, NodeRef, Parent, RunGraph};
use super::run_listing::RunRow;
use super::run_tree::outcome_value;
use super::spend::{Label, Spend};
use super::timeline::{self, Timeline};
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

/// A summary card: `Cost` `$0.2500` `as reported`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Card {
    pub label: &'static str,
    pub value: String,
    pub note: String,
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
    /// A mock leaf's cost in a run that also had real leaves.
    simulated: bool,
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
    /// Every dollar of the run was simulated.
    simulated: bool,
    /// What of the run's cost was simulated, when any was.
    spend_note: Option<String>,
    started: String,
    cards: Vec<Card>,
    outcome: Vec<(String, String)>,
    /// What became of each item the run routed ([`super::item_outcomes`]).
    items: Vec<ItemRow>,
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

/// The run's report without its routing trace (for callers that hold only the graph).
pub fn render_run_report(g: &RunGraph) -> Result<String, ReportError> {
    render_run_report_with_trace(g, None)
}

/// The run's report; `trace` is its routing trace ([`super::trace::render_trace`]), shown
/// in a section of its own.
pub fn render_run_report_with_trace(g: &RunGraph, trace: Option<&str>) -> Result<String, ReportError> {
    let page = run_page(g);
    let timeline = Timeline::of(g);
    let env = environment();
    let html = env.get_template("run_report.html")?.render(context! {
        page => page,
        style => minijinja::Value::from_safe_string(STYLE.to_owned()),
        dag => minijinja::Value::from_safe_string(render_dag(g)),
        timeline => (!timeline.rows.is_empty()).then(|| TimelineSection::of(&timeline)),
        trace => trace,
    })?;
    Ok(html)
}

/// The report's timeline: the SVG Gantt and the totals beside it.
#[derive(Serialize)]
struct TimelineSection {
    svg: minijinja::Value,
    totals: String,
    critical_path: String,
    untimed: Option<String>,
}

impl TimelineSection {
    fn of(t: &Timeline) -> Self {
        TimelineSection {
            svg: minijinja::Value::from_safe_string(timeline::render_svg(t)),
            totals: t.totals_text(),
            critical_path: t.critical_text(),
            untimed: (t.untimed > 0).then(|| units::count(t.untimed, "session")),
        }
    }
}

fn run_page(g: &RunGraph) -> RunPage {
    let usage = g.usage();
    let spent = g.spend();
    let outcome = match &g.result {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), outcome_value(v))).collect(),
        _ => Vec::new(),
    };
    RunPage {
        coordinator: g.coordinator.clone(),
        status: g.status.as_str().to_owned(),
        run_id: g.run_id.clone(),
        script: g.script.clone(),
        mode: g.mode.clone(),
        simulated: spent.label(g.scenario) == Label::Simulated,
        spend_note: spent.run_note(g.scenario),
        started: units::timestamp(&g.started_at),
        cards: summary_cards(g),
        outcome,
        items: item_rows(g),
        decisions: decision_rows(g),
        sessions: session_rows(g, spent.label(g.scenario) == Label::Mixed),
        errors: error_rows(g),
        cost_by_workflow: cost_rows(&g.cost_by_workflow(), usage.cost_usd),
        cost_by_model: cost_rows(&g.cost_by_model(), usage.cost_usd),
        warnings: g.warnings.clone(),
        coord_version: env!("CARGO_PKG_VERSION"),
    }
}

/// The cards across the top: sessions, effects, tokens, cost, duration, the longest session.
fn summary_cards(g: &RunGraph) -> Vec<Card> {
    let usage = g.usage();
    let longest = g.longest_session();
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
        cost_card(g),
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
    cards
}

/// Each effect with the session whose result led to it and the script line that acted.
fn decision_rows(g: &RunGraph) -> Vec<Decision> {
    g.effects
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
        .collect()
}

/// One row per session; `mixed` marks simulated sessions in a run that also spent for real.
fn session_rows(g: &RunGraph, mixed: bool) -> Vec<SessionRow> {
    let longest = g.longest_session();
    let max_ms = longest.map(|s| s.duration_ms()).unwrap_or(0);
    g.sessions
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
            simulated: mixed && s.simulated,
        })
        .collect()
}

/// The run's own error first, then every session's and effect's.
fn error_rows(g: &RunGraph) -> Vec<ErrorRow> {
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
    errors
}

/// The run's cost card: real, simulated, or the real part with the simulated part beside it.
pub fn cost_card(g: &RunGraph) -> Card {
    let usage = g.usage();
    let spent = g.spend();
    match spent.label(g.scenario) {
        Label::Real => Card {
            label: "Cost",
            value: units::cost(usage.cost_usd),
            note: if usage.cost_estimated { "estimated from rates".into() } else { "as reported".into() },
        },
        Label::Simulated => Card {
            label: "Simulated cost",
            value: units::cost(usage.cost_usd),
            note: "mock leaves: no money spent".into(),
        },
        Label::Mixed => Card {
            label: "Real cost",
            value: units::cost(spent.real_usd),
            note: format!("+ {} simulated by mock leaves", units::cost(spent.simulated_usd)),
        },
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
    /// The run's page, where the index is served (`coord serve`).
    href: Option<String>,
    coordinator: String,
    mode: String,
    pipeline: Option<String>,
    status: String,
    started: String,
    duration: String,
    sessions: usize,
    sessions_not_ok: usize,
    effects: usize,
    tokens: String,
    /// `$0.2500`, `$1.3220` (with `simulated`), or `$0.2500 + $1.3220 simulated`.
    cost: String,
    /// Every dollar of the run was simulated.
    simulated: bool,
}

/// A coordinator's runs in the index: real spend (and its share of the real total) apart from
/// simulated spend.
#[derive(Serialize)]
struct CoordinatorRow {
    name: String,
    sessions: usize,
    tokens: String,
    cost: String,
    simulated: Option<String>,
    share: f64,
}

#[derive(Serialize)]
struct IndexPage {
    cards: Vec<Card>,
    spend: String,
    runs: Vec<IndexRow>,
    by_coordinator: Vec<CoordinatorRow>,
    warnings: Vec<String>,
    coord_version: &'static str,
    /// Served by `coord serve`: links to run pages and its script; a file has neither.
    served: bool,
}

/// The index of all runs as a self-contained file (`coord report --all`), each run linked to
/// `hrefs[i]` (parallel to `rows`: its report written beside the index), with no script.
pub fn render_runs_index(rows: &[RunRow], hrefs: &[String], warnings: &[String]) -> Result<String, ReportError> {
    render_index(rows, hrefs, warnings, None)
}

/// The index as `coord serve` serves it: each run linked to `hrefs[i]` (parallel to `rows`),
/// and the script at `script` keeping it fresh.
pub fn render_served_runs_index(
    rows: &[RunRow],
    hrefs: &[String],
    warnings: &[String],
    script: &str,
) -> Result<String, ReportError> {
    render_index(rows, hrefs, warnings, Some(script))
}

fn render_index(
    rows: &[RunRow],
    hrefs: &[String],
    warnings: &[String],
    script: Option<&str>,
) -> Result<String, ReportError> {
    let mut total = Spend::default();
    for r in rows {
        total.add(r.spend);
    }
    let page = IndexPage {
        cards: index_cards(rows, &total),
        spend: total.totals_text(),
        runs: rows.iter().enumerate().rev().map(|(i, r)| index_row(r, hrefs.get(i).cloned())).collect(),
        by_coordinator: spend_by_coordinator(rows)
            .iter()
            .map(|(l, spent)| CoordinatorRow {
                name: l.name.clone(),
                sessions: l.sessions,
                tokens: units::tokens(l.tokens),
                cost: units::cost(spent.real_usd),
                simulated: (spent.simulated_usd > 0.0).then(|| units::cost(spent.simulated_usd)),
                share: if total.real_usd > 0.0 {
                    (spent.real_usd / total.real_usd * 1000.0).round() / 10.0
                } else {
                    0.0
                },
            })
            .collect(),
        warnings: warnings.to_vec(),
        coord_version: env!("CARGO_PKG_VERSION"),
        served: script.is_some(),
    };
    let env = environment();
    let html = env.get_template("runs_index.html")?.render(context! {
        page => page,
        style => minijinja::Value::from_safe_string(STYLE.to_owned()),
        chart => minijinja::Value::from_safe_string(render_cost_chart(rows)),
        script => script,
    })?;
    Ok(html)
}

/// Sessions, tokens and spend per coordinator, the most real spend first.
fn spend_by_coordinator(rows: &[RunRow]) -> Vec<(CostLine, Spend)> {
    let mut by_coordinator: Vec<(CostLine, Spend)> = Vec::new();
    for r in rows {
        let i = match by_coordinator.iter().position(|(l, _)| l.name == r.coordinator) {
            Some(i) => i,
            None => {
                by_coordinator.push((CostLine { name: r.coordinator.clone(), ..Default::default() }, Spend::default()));
                by_coordinator.len() - 1
            }
        };
        let (line, spent) = &mut by_coordinator[i];
        line.sessions += r.sessions;
        line.tokens += r.tokens;
        spent.add(r.spend);
    }
    by_coordinator.sort_by(|(a, x), (b, y)| {
        y.real_usd
            .total_cmp(&x.real_usd)
            .then_with(|| y.simulated_usd.total_cmp(&x.simulated_usd))
            .then_with(|| a.name.cmp(&b.name))
    });
    by_coordinator
}

/// The index's cards: runs, unfinished runs, sessions, real spend and simulated spend.
fn index_cards(rows: &[RunRow], total: &Spend) -> Vec<Card> {
    let real_runs = rows.iter().filter(|r| r.label() != Label::Simulated).count();
    let simulated_runs = rows.iter().filter(|r| r.label() != Label::Real).count();
    let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
    let mut cards = vec![
        Card {
            label: "Runs",
            value: rows.len().to_string(),
            note: format!("{} succeeded · {} failed", count("succeeded"), count("failed")),
        },
        Card {
            label: "Unfinished",
            value: (count("running") + count("interrupted") + count("parked")).to_string(),
            note: format!(
                "{} running · {} interrupted · {} parked",
                count("running"),
                count("interrupted"),
                count("parked")
            ),
        },
        Card {
            label: "Sessions",
            value: rows.iter().map(|r| r.sessions).sum::<usize>().to_string(),
            note: format!(
                "{} not ok · {} tokens",
                rows.iter().map(|r| r.sessions_not_ok).sum::<usize>(),
                units::tokens(rows.iter().map(|r| r.tokens).sum())
            ),
        },
        Card {
            label: "Real spend",
            value: units::cost(total.real_usd),
            note: format!("{} with real leaves", units::count(real_runs, "run")),
        },
    ];
    if simulated_runs > 0 {
        cards.push(Card {
            label: "Simulated spend",
            value: units::cost(total.simulated_usd),
            note: format!("{} with mock leaves: no money spent", units::count(simulated_runs, "run")),
        });
    }
    cards
}

/// One run's line in the index; `href` links its page when it has one.
fn index_row(r: &RunRow, href: Option<String>) -> IndexRow {
    IndexRow {
        id: r.id.clone(),
        href,
        coordinator: r.coordinator.clone(),
        mode: r.mode.clone(),
        pipeline: r.pipeline.clone(),
        status: r.status.clone(),
        started: units::timestamp(&r.started_at),
        duration: r.duration_ms.map(units::duration).unwrap_or_else(|| "—".into()),
        sessions: r.sessions,
        sessions_not_ok: r.sessions_not_ok,
        effects: r.effects,
        tokens: units::tokens(r.tokens),
        cost: match r.label() {
            Label::Simulated => units::cost(r.cost_usd),
            _ => r.cost_text(),
        },
        simulated: r.label() == Label::Simulated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, pipeline: Option<&str>) -> RunRow {
        RunRow {
            id: id.into(),
            coordinator: "groom-prs".into(),
            status: "succeeded".into(),
            waiting: None,
            mode: "live".into(),
            pipeline: pipeline.map(str::to_owned),
            scenario: false,
            started_at: "2026-11-21T09:00:00.000Z".into(),
            duration_ms: Some(1500),
            sessions: 1,
            sessions_not_ok: 0,
            effects: 0,
            tokens: 10,
            cost_usd: 0.25,
            spend: Spend::leaf(0.25, false),
        }
    }

    #[test]
    fn the_index_shows_mode_and_pipeline_and_links_each_run_to_its_page() {
        let rows = [row("r1", Some("nightly")), row("r2", None)];
        let file = render_runs_index(&rows, &[], &[]).unwrap();
        assert!(
            file.contains("<td class=\"mono nowrap\">r1</td><td>groom-prs</td><td>live</td><td>nightly</td>"),
            "{file}"
        );
        assert!(file.contains("<td class=\"mono nowrap\">r2</td><td>groom-prs</td><td>live</td><td>—</td>"), "{file}");
        assert!(!file.contains("<script") && !file.contains("<a href"), "no pages, no links, no script");
        let pages = ["runs/r1.html".to_owned(), "runs/r2.html".to_owned()];
        let file = render_runs_index(&rows, &pages, &[]).unwrap();
        assert!(file.contains("<a href=\"runs&#x2f;r1.html\">r1</a>"), "{file}");
        assert!(!file.contains("<script"), "a file runs no script");

        let hrefs = ["/runs/r1".to_owned(), "/runs/r2".to_owned()];
        let served = render_served_runs_index(&rows, &hrefs, &[], "/assets/dashboard.js").unwrap();
        assert!(served.contains("<a href=\"&#x2f;runs&#x2f;r1\">r1</a>"), "{served}");
        assert!(served.contains("<a href=\"&#x2f;runs&#x2f;r2\">r2</a>"), "{served}");
        assert!(served.contains("<script src=\"&#x2f;assets&#x2f;dashboard.js\" defer></script>"), "{served}");
        // Newest first, each with its own link.
        assert!(served.find("id=\"run-r2\"").unwrap() < served.find("id=\"run-r1\"").unwrap());
    }
}
