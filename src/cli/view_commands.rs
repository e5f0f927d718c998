//! The commands that look at recorded runs: `coord runs`, `coord show`, `coord graph`,
//! `coord report` and `coord serve`. Each resolves its RUN argument, reads the journal, masks
//! secrets, renders with `views` and prints (or writes the report file, or serves the
//! dashboard until a signal stops it). They never act on a run.

use super::exit_code;
use crate::journal::run_dir::RunStore;
use crate::redaction::Redactor;
use crate::views::run_graph::{open_run, OpenRunError};
use crate::views::{graph_export, html_report, run_listing, run_tree, session_view, trace};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

const RUN_HELP: &str = "The run: an id, a unique id prefix or suffix, `last`, or a run directory";

#[derive(Args, Debug, Clone)]
pub struct RunsArgs {
    /// Print a JSON array of runs instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the runs of this coordinator (script name without `.rhai`).
    #[arg(long, value_name = "NAME")]
    pub coordinator: Option<String>,
    /// Only the runs with this status.
    #[arg(long, value_name = "STATUS", value_parser = ["running", "succeeded", "failed", "interrupted"])]
    pub status: Option<String>,
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
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
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
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
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
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
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to serve on. Port 0 takes a free port; the first line of stdout names the
    /// address taken. On a loopback address only requests to a loopback name are answered.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,
    /// Where run directories are [env: COORD_RUNS_DIR] [default: .coord/runs].
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
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
) -> u8 {
    use crate::daemon::listener;
    let store = RunStore::locate(args.runs_dir.as_deref());
    runtime.block_on(async move {
        let listener = match listener::bind(args.listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return exit_code::RUN_FAILED;
            }
        };
        let bound = listener.local_addr().unwrap_or(args.listen);
        print_out(
            &format!("listening on http://{bound}\nserving the runs in {} (read-only)\n", store.root.display()),
            false,
        );
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
        exit_code::SUCCESS
    })
}

pub fn runs(args: &RunsArgs) -> u8 {
    let store = RunStore::locate(args.runs_dir.as_deref());
    let redactor = redactor();
    let (graphs, warnings) = run_listing::read_runs(&store, &redactor);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let filter = run_listing::RunFilter { coordinator: args.coordinator.clone(), status: args.status.clone() };
    let rows = run_listing::rows(&graphs, &filter);
    if args.json {
        let json = serde_json::to_string_pretty(&run_listing::rows_json(&rows)).unwrap_or_default();
        print_out(&redactor.mask_json_text(&json), true)
    } else {
        print_out(&redactor.mask(&run_listing::rows_table(&rows)), false)
    }
}

pub fn show(args: &ShowArgs) -> u8 {
    let redactor = redactor();
    let (run, graph) = match open(&args.run, args.runs_dir.as_deref(), &redactor) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let text = match &args.session {
        Some(id) => match graph.session(id) {
            Some(s) => session_view::render_session(&graph, s, &redactor),
            None => {
                let known: Vec<&str> = graph.sessions.iter().map(|s| s.id.as_str()).collect();
                eprintln!("error: run {} has no session `{id}`; its sessions: {}", graph.run_id, known.join(", "));
                return exit_code::USAGE;
            }
        },
        None => {
            let mut text = run_tree::render_show(&graph);
            if args.trace {
                text.push_str("\nTrace\n");
                text.push_str(&trace::render_trace(&run));
            }
            text
        }
    };
    print_out(&redactor.mask(&text), false)
}

pub fn graph(args: &GraphArgs) -> u8 {
    let redactor = redactor();
    let (_, graph) = match open(&args.run, args.runs_dir.as_deref(), &redactor) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let text = match args.format {
        GraphFormat::Mermaid => graph_export::mermaid(&graph),
        GraphFormat::Dot => graph_export::dot(&graph),
    };
    print_out(&redactor.mask(&text), false)
}

pub fn report(args: &ReportArgs) -> u8 {
    let redactor = redactor();
    let (html, default_name) = if args.all {
        let store = RunStore::locate(args.runs_dir.as_deref());
        let (graphs, warnings) = run_listing::read_runs(&store, &redactor);
        let rows = run_listing::rows(&graphs, &Default::default());
        (html_report::render_runs_index(&rows, &warnings), "runs.html")
    } else {
        let run = args.run.as_deref().unwrap_or("last");
        let (_, graph) = match open(run, args.runs_dir.as_deref(), &redactor) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
        (html_report::render_run_report(&graph), "report.html")
    };
    let html = match html {
        Ok(html) => redactor.mask(&html).into_owned(),
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::RUN_FAILED;
        }
    };
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from(default_name));
    if let Err(e) = std::fs::write(&path, html) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return exit_code::RUN_FAILED;
    }
    print_out(&format!("wrote {}\n", path.display()), false)
}

fn open(
    run: &str,
    runs_dir: Option<&Path>,
    redactor: &Redactor,
) -> Result<(crate::journal::RecordedRun, crate::views::run_graph::RunGraph), u8> {
    let store = RunStore::locate(runs_dir);
    open_run(&store, run, redactor).map_err(|e| {
        eprintln!("error: {e}");
        match e {
            OpenRunError::Lookup(_) => exit_code::USAGE,
            OpenRunError::Journal(_) => exit_code::DIVERGED,
        }
    })
}

/// The process's redactor: the secrets of this environment, with the credential variables of
/// the `coord.toml` at or above the current directory (`cli::main` teaches it those).
fn redactor() -> std::sync::Arc<Redactor> {
    crate::redaction::process()
}

/// Prints to stdout; a closed pipe (`coord show last | head`) is not an error.
fn print_out(text: &str, newline: bool) -> u8 {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if newline {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    exit_code::SUCCESS
}
