//! `coord serve` (and `coord daemon --serve`): a read-only web dashboard over a run store. The
//! list of runs, and one page per run that follows its journal live with server-sent events;
//! the same pages for finished runs, and each run's `coord report` page.
//!
//! Routes (GET only; anything else is 405):
//! - `/`: the runs index ([`super::html_report`]'s, each run linked to its page), refreshed by
//!   the page's script; `/api/runs`: the same rows as `coord runs --json` has them, with links.
//! - `/runs/<id>`: the live run page (a static shell; its script renders the events);
//!   `/api/runs/<id>`: the page's model as one JSON snapshot; `/api/runs/<id>/events`: the
//!   event stream ([`run_events`]); `/runs/<id>/report`: the run's HTML report.
//! - `/assets/*`: the page's script and styles, compiled into the binary (no build step, no
//!   network: the pages load nothing from elsewhere).
//!
//! It only reads: journals, blobs and pid files, through the views' own readers. Everything it
//! serves is masked with the process's redactor, as `coord runs` and `coord report` mask what
//! they print. Bound to a loopback address it answers only requests addressed to a loopback
//! name (`localhost`, `127.0.0.1`, `[::1]`), so a web page elsewhere cannot read it through a
//! DNS name of its own pointed at this machine. It knows nothing of how connections are
//! accepted: the caller serves [`router`] (the daemon's listener does, with its limits).

pub mod journal_follower;
pub mod live_view;
pub mod run_events;
pub mod run_index;

use super::html_report;
use super::run_graph::{mask_recorded_run, RunGraph};
use crate::journal::run_dir::RunStore;
use crate::journal::writer::JOURNAL_FILE;
use crate::journal::RecordedRun;
use crate::redaction::Redactor;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use run_index::RunIndex;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

const RUN_PAGE: &str = include_str!("assets/run_page.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const REPORT_STYLE: &str = include_str!("../report_templates/report.css");

/// Where the page's script is served.
const SCRIPT_PATH: &str = "/assets/dashboard.js";

#[derive(Clone)]
struct Dashboard {
    index: Arc<RunIndex>,
    stopping: watch::Receiver<bool>,
}

/// The dashboard's routes over `runs`. Streams end when `stopping` turns true, so a server
/// shutting down gracefully is not held open by pages that would follow a run forever.
/// `listening` is the address served: on a loopback address, requests must name a loopback
/// host.
pub fn router(runs: RunStore, stopping: watch::Receiver<bool>, listening: SocketAddr) -> Router {
    let dashboard = Dashboard { index: Arc::new(RunIndex::new(runs)), stopping };
    let router = Router::new()
        .route("/", get(runs_page))
        .route("/api/runs", get(runs_json))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/report", get(run_report))
        .route("/api/runs/{id}", get(run_json))
        .route("/api/runs/{id}/events", get(run_events))
        .route("/assets/{name}", get(asset))
        .with_state(dashboard);
    if listening.ip().is_loopback() {
        router.layer(axum::middleware::from_fn(loopback_hosts_only))
    } else {
        router
    }
}

/// Refuses a request whose `Host` is not a loopback name (a DNS-rebinding page's would be its
/// own domain). A request with no `Host` (HTTP/1.0) comes from a program on this machine.
async fn loopback_hosts_only(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    match host {
        Some(host) if !is_loopback_host(host) => {
            (StatusCode::MISDIRECTED_REQUEST, "this dashboard answers only to localhost\n").into_response()
        }
        _ => next.run(request).await,
    }
}

/// `localhost:7878`, `127.0.0.1:7878`, `[::1]:7878` (a port or none).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request the dashboard cannot answer with a page: its status and why, masked when sent.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl ToString) -> Self {
        Refusal { status, message: message.to_string() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", redactor().mask(&self.message))).into_response()
    }
}

/// Blocking work (reading journals, building graphs) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))
}

fn redactor() -> Arc<Redactor> {
    crate::redaction::process()
}

fn masked_html(html: &str) -> Response {
    Html(redactor().mask(html).into_owned()).into_response()
}

fn masked_json(json: &str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], redactor().mask_json_text(json)).into_response()
}

/// The page of run `id` (a run directory's name), when the store holds such a run. Only plain
/// names are taken, so no request reaches outside the store.
fn run_dir(store: &RunStore, id: &str) -> Result<std::path::PathBuf, Refusal> {
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let dir = store.root.join(id);
    if plain && dir.join(JOURNAL_FILE).is_file() {
        Ok(dir)
    } else {
        Err(Refusal::new(StatusCode::NOT_FOUND, format!("no run `{id}` in {}", store.root.display())))
    }
}

fn run_href(dir_name: &str) -> String {
    format!("/runs/{dir_name}")
}

async fn runs_page(State(d): State<Dashboard>) -> Result<Response, Refusal> {
    let index = d.index.clone();
    let html = blocking(move || {
        let (runs, warnings) = index.runs();
        let hrefs: Vec<String> = runs.iter().map(|r| run_href(&r.dir_name)).collect();
        let rows: Vec<_> = runs.into_iter().map(|r| r.row).collect();
        html_report::render_served_runs_index(&rows, &hrefs, &warnings, SCRIPT_PATH)
    })
    .await?
    .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(masked_html(&html))
}

async fn runs_json(State(d): State<Dashboard>) -> Result<Response, Refusal> {
    let index = d.index.clone();
    let json = blocking(move || {
        let (runs, warnings) = index.runs();
        let rows: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                let mut row = r.row.to_json();
                row["href"] = run_href(&r.dir_name).into();
                row["report_href"] = format!("{}/report", run_href(&r.dir_name)).into();
                row
            })
            .collect();
        serde_json::json!({ "runs": rows, "warnings": warnings }).to_string()
    })
    .await?;
    Ok(masked_json(&json))
}

async fn run_page(State(d): State<Dashboard>, Path(id): Path<String>) -> Result<Response, Refusal> {
    run_dir(d.index.store(), &id)?;
    // Named `.html`, so the run id is HTML-escaped (it is a plain name already).
    let mut env = minijinja::Environment::new();
    let html = env
        .add_template("run_page.html", RUN_PAGE)
        .and_then(|_| env.get_template("run_page.html"))
        .and_then(|t| t.render(minijinja::context! { run_id => id, script => SCRIPT_PATH }))
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(masked_html(&html))
}

/// Reads run `id` whole and builds its graph, masked, as `coord show` and `coord report` do.
async fn read_graph(d: &Dashboard, id: &str) -> Result<(RecordedRun, RunGraph), Refusal> {
    let dir = run_dir(d.index.store(), id)?;
    let read = blocking(move || {
        let redactor = redactor();
        let mut run = RecordedRun::read(&dir)?;
        mask_recorded_run(&redactor, &mut run);
        let graph = RunGraph::build(&run, &redactor);
        Ok::<_, crate::journal::JournalError>((run, graph))
    })
    .await?;
    read.map_err(|e| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, e))
}

async fn run_report(State(d): State<Dashboard>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let (run, graph) = read_graph(&d, &id).await?;
    let trace = crate::views::trace::render_trace(&run);
    let html = html_report::render_run_report_with_trace(&graph, Some(&trace))
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(masked_html(&html))
}

async fn run_json(State(d): State<Dashboard>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let (run, graph) = read_graph(&d, &id).await?;
    let view = live_view::run_view(&graph, live_view::max_parallel(&run));
    let nodes: Vec<&str> = view.nodes.iter().map(|(_, json)| json.as_str()).collect();
    Ok(masked_json(&live_view::payload(&view.header, &nodes)))
}

async fn run_events(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let dir = run_dir(d.index.store(), &id)?;
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let follow = run_events::RunEvents {
        dir,
        store: d.index.store().clone(),
        redactor: redactor(),
        last_event,
        stopping: d.stopping.clone(),
    };
    let (events, mut received) = mpsc::channel::<Event>(64);
    tokio::task::spawn_blocking(move || follow.follow(events));
    let stream = futures_util::stream::poll_fn(move |cx| received.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn asset(Path(name): Path<String>) -> Result<Response, Refusal> {
    let (body, kind) = match name.as_str() {
        "dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        "report.css" => (REPORT_STYLE, "text/css; charset=utf-8"),
        _ => return Err(Refusal::new(StatusCode::NOT_FOUND, format!("no asset `{name}`"))),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for host in ["localhost:7878", "LOCALHOST", "127.0.0.1:80", "127.1.2.3", "[::1]:7878", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["evil.example:7878", "192.168.1.2:7878", "localhost.evil.example", "[::2]:1", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn run_ids_stay_inside_the_store() {
        let root = tempfile::tempdir().unwrap();
        let store = RunStore { root: root.path().join("runs") };
        std::fs::create_dir_all(store.root.join("r1")).unwrap();
        std::fs::write(store.root.join("r1").join(JOURNAL_FILE), "{}\n").unwrap();
        std::fs::write(root.path().join(JOURNAL_FILE), "{}\n").unwrap();
        assert!(run_dir(&store, "r1").is_ok());
        for id in ["..", "../", "", ".", "r1/..", "%2e%2e"] {
            assert!(run_dir(&store, id).is_err(), "{id}");
        }
    }
}
