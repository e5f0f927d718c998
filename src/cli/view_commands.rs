//! The commands that look at recorded runs: `coord runs`, `coord show`, `coord graph`,
//! `coord report` and `coord serve`. Each resolves its RUN argument, reads the journal, masks
//! secrets, renders with `views` and prints (or writes the report file, or serves the
//! dashboard until a signal stops it). They never act on a run. A closed stdout (`coord runs |
//! head -1`) ends their printing quietly (`views::console`): they still exit 0.

use super::cli_error::CliError;
use super::flag_groups::{JsonOutputArgs, RunStoreArgs};
use crate::redaction::Redactor;
use crate::views::console::{stderrln, stdout, stdoutln};
use crate::views::run_graph::{open_run, OpenRunError};
use crate::views::{graph_export, html_report, run_listing, run_tree, session_view, timeline, trace};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

const RUN_HELP: &str = "The run: an id, a unique id prefix or suffix, `last`, or a run directory";

#[derive(Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help("Print a JSON array of runs instead of a table")))]
pub struct RunsArgs {
    #[command(flatten)]
    pub output: JsonOutputArgs,
    /// Only the runs of this coordinator (script name without `.rhai`).
    #[arg(long, value_name = "NAME")]
    pub coordinator: Option<String>,
    /// Only the runs with this status.
    #[arg(long, value_name = "STATUS", value_parser = ["running", "succeeded", "failed", "interrupted", "parked"])]
    pub status: Option<String>,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

/// The parent rule, for `coord show --help`.
pub const SHOW_ABOUT: &str = "Show a run: its sessions as a tree, its effects, errors and cost.

Each session and effect hangs under the session whose result led to it: a node is the child of \
session X when X's result had reached the script (an `await_sessions` returned it) before the \
node was made, and both are about the same PR or issue (the `pr`, `number`, `issue` or \
`pr_number` of their inputs or arguments, else the first `#N` of the goal). When several \
sessions qualify, the most recently awaited wins. Anything else hangs under the script line \
that made it.";

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    #[arg(help = RUN_HELP)]
    pub run: String,
    /// Show one session in full: goal, inputs, prompt, output and transcript.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Add the routing trace: every host call in script order.
    #[arg(long, conflicts_with = "session")]
    pub trace: bool,
    /// Add the timeline: each session's wait for a permit, turns (retries, repair) and end as
    /// a text Gantt, with the critical path and the time lost to `--max-parallel`.
    #[arg(long, conflicts_with = "session")]
    pub timeline: bool,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    #[arg(help = RUN_HELP)]
    pub run: String,
    /// Mermaid (paste into Markdown) or Graphviz DOT (`dot -Tsvg`).
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    #[arg(help = RUN_HELP, required_unless_present = "all", conflicts_with = "all")]
    pub run: Option<String>,
    /// An index of every recorded run, with a cost-over-time chart, instead of one run.
    #[arg(long)]
    pub all: bool,
    /// The HTML file to write [default: report.html, or runs.html with --all].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to serve on. Port 0 takes a free port; the first line of stdout names the
    /// address taken. On a loopback address only requests to a loopback name are answered.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub store: RunStoreArgs,
}

/// How long a dashboard connection may take to send a request head (and stay idle between
/// requests), and how many may be open at once.
const SERVE_LIMITS: crate::daemon::listener::ListenerLimits = crate::daemon::listener::ListenerLimits {
    header_timeout: std::time::Duration::from_secs(10),
    max_connections: 256,
};

/// `coord serve`: the dashboard (`views::dashboard`) on `--listen` until SIGINT or SIGTERM.
pub fn serve(
    args: &ServeArgs,
    runtime: &tokio::runtime::Handle,
    interrupt: std::sync::Arc<crate::scheduler::Interrupt>,
) -> Result<(), CliError> {
    use crate::daemon::listener;
    let store = args.store.store();
    runtime.block_on(async move {
        let listener = listener::bind(args.listen)
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
        let bound = listener.local_addr().unwrap_or(args.listen);
        stdout!("listening on http://{bound}\nserving the runs in {} (read-only)\n", store.root.display());
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let router = crate::views::dashboard::router(store, stopping, bound);
        let stopped = async move {
            // The signal handler (`cli::main`) sets the interrupt; pages following runs end first.
            while !interrupt.is_set() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let _ = stop.send(true);
        };
        listener::serve(listener, router, SERVE_LIMITS, stopped).await;
        Ok(())
    })
}

pub fn runs(args: &RunsArgs) -> Result<(), CliError> {
    let redactor = redactor();
    let (graphs, warnings) = run_listing::read_runs(&args.store.store(), &redactor);
    for w in &warnings {
        stderrln!("warning: {w}");
    }
    let filter = run_listing::RunFilter { coordinator: args.coordinator.clone(), status: args.status.clone() };
    let rows = run_listing::rows(&graphs, &filter);
    if args.output.json {
        let json = serde_json::to_string_pretty(&run_listing::rows_json(&rows)).unwrap_or_default();
        stdoutln!("{}", redactor.mask_json_text(&json));
    } else {
        stdout!("{}", redactor.mask(&run_listing::rows_table(&rows)));
    }
    Ok(())
}

pub fn show(args: &ShowArgs) -> Result<(), CliError> {
    let redactor = redactor();
    let (run, graph) = open(&args.run, &args.store, &redactor)?;
    let text = match &args.session {
        Some(id) => match graph.session(id) {
            Some(s) => session_view::render_session(&graph, s, &redactor),
            None => {
                let known: Vec<&str> = graph.sessions.iter().map(|s| s.id.as_str()).collect();
                return Err(CliError::Usage(format!(
                    "run {} has no session `{id}`; its sessions: {}",
                    graph.run_id,
                    known.join(", ")
                )));
            }
        },
        None => {
            let mut text = run_tree::render_show(&graph);
            if args.timeline {
                text.push_str("\nTimeline\n");
                text.push_str(&timeline::render_text(&timeline::Timeline::of(&graph)));
            }
            if args.trace {
                text.push_str("\nTrace\n");
                text.push_str(&trace::render_trace(&run));
            }
            text
        }
    };
    stdout!("{}", redactor.mask(&text));
    Ok(())
}

pub fn graph(args: &GraphArgs) -> Result<(), CliError> {
    let redactor = redactor();
    let (_, graph) = open(&args.run, &args.store, &redactor)?;
    let text = match args.format {
        GraphFormat::Mermaid => graph_export::mermaid(&graph),
        GraphFormat::Dot => graph_export::dot(&graph),
    };
    stdout!("{}", redactor.mask(&text));
    Ok(())
}

pub fn report(args: &ReportArgs) -> Result<(), CliError> {
    let redactor = redactor();
    if args.all {
        return report_all(args, &redactor);
    }
    let run = args.run.as_deref().unwrap_or("last");
    let (recorded, graph) = open(run, &args.store, &redactor)?;
    let trace = trace::render_trace(&recorded);
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("report.html"));
    write_report(&path, html_report::render_run_report_with_trace(&graph, Some(&trace)), &redactor)?;
    stdout!("wrote {}\n", path.display());
    Ok(())
}

/// `coord report --all`: the index (`runs.html`), and beside it a folder named after it
/// (`runs/`) holding every run's report, which the index links to.
fn report_all(args: &ReportArgs, redactor: &Redactor) -> Result<(), CliError> {
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from("runs.html"));
    let folder_name = path.file_stem().map_or_else(|| "runs".into(), |s| s.to_string_lossy().into_owned());
    let folder = path.with_file_name(&folder_name);
    std::fs::create_dir_all(&folder)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", folder.display())))?;
    let mut written = Ok(());
    let (graphs, warnings) = run_listing::read_runs_with(&args.store.store(), redactor, |recorded, graph| {
        if written.is_ok() {
            let trace = trace::render_trace(recorded);
            let page = folder.join(format!("{}.html", graph.run_id));
            written = write_report(&page, html_report::render_run_report_with_trace(graph, Some(&trace)), redactor);
        }
    });
    written?;
    let rows = run_listing::rows(&graphs, &Default::default());
    let hrefs: Vec<String> = rows.iter().map(|r| format!("{folder_name}/{}.html", r.id)).collect();
    write_report(&path, html_report::render_runs_index(&rows, &hrefs, &warnings), redactor)?;
    let reports = crate::views::units::count(rows.len(), "run report");
    stdout!("wrote {} and {reports} in {}/\n", path.display(), folder.display());
    Ok(())
}

fn write_report(
    path: &std::path::Path,
    html: Result<String, html_report::ReportError>,
    redactor: &Redactor,
) -> Result<(), CliError> {
    let html = redactor.mask(&html.map_err(|e| CliError::Failed(e.to_string()))?).into_owned();
    std::fs::write(path, html).map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))
}

fn open(
    run: &str,
    store: &RunStoreArgs,
    redactor: &Redactor,
) -> Result<(crate::journal::RecordedRun, crate::views::run_graph::RunGraph), CliError> {
    open_run(&store.store(), run, redactor).map_err(|e| match e {
        OpenRunError::Lookup(_) => CliError::Usage(e.to_string()),
        OpenRunError::Journal(_) => CliError::Journal(e.to_string()),
    })
}

/// The process's redactor: the secrets of this environment, with the credential variables of
/// the `coord.toml` at or above the current directory (`cli::main` teaches it those).
fn redactor() -> std::sync::Arc<Redactor> {
    crate::redaction::process()
}
