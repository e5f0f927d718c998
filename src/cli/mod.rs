//! The command line: parses flags (clap), sets up logging and the tokio runtime, dispatches to
//! a command, prints its output and turns the result into a stable exit code.
//!
//! Commands are thin: they build a plan, call the library, and render with `views`. They must
//! not hold routing, journaling or scheduling logic.

mod check_command;
pub mod cli_error;
mod daemon_command;
mod doctor_command;
pub mod exit_code;
pub mod flag_groups;
mod init_command;
mod leaf_exec_command;
mod lib_command;
mod replay_command;
mod run_command;
mod schedule_command;
mod signal_command;
mod test_command;
mod view_commands;

use clap::{Args, Parser, Subcommand};
use cli_error::CliError;
use flag_groups::{
    ExecutorArgs, JsonOutputArgs, OperationLimitArgs, ParallelismArgs, RunStoreArgs, RUNS_DIR_FOR_NEW_RUNS,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "coord", version, about = "Coordinators as scripts: Rhai routing over journaled leaf agent sessions")]
#[command(propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a coordinator script.
    Run(RunArgs),
    /// Re-run a recorded run with every host call answered from its journal (nothing runs,
    /// nothing is spent); with --script, a what-if of an edited coordinator.
    Replay(ReplayArgs),
    /// Continue an interrupted run: replay its journal, then go on live.
    Resume(ResumeArgs),
    /// Deliver a signal to a run: its `wait_signal(NAME)` returns the --data payload.
    Signal(signal_command::SignalArgs),
    /// Run every scenario offline and compare its routing trace with its snapshot.
    Test(TestArgs),
    /// Run the pipelines of coord.toml on their schedules and webhooks until SIGTERM (SIGHUP reloads).
    Daemon(daemon_command::DaemonArgs),
    /// List the pipelines of coord.toml, their next fire times and their last runs.
    Schedule(schedule_command::ScheduleArgs),
    /// Run one pipeline of coord.toml now, under its lock (for system cron and CI).
    Trigger(schedule_command::TriggerArgs),
    /// List recorded runs: id, coordinator, status, start, duration, sessions, cost.
    Runs(view_commands::RunsArgs),
    /// Show a run: its sessions as a tree, its effects, errors and cost.
    #[command(long_about = view_commands::SHOW_ABOUT)]
    Show(view_commands::ShowArgs),
    /// Print a run's graph of sessions and effects (Mermaid or Graphviz DOT).
    Graph(view_commands::GraphArgs),
    /// Write a self-contained HTML report of a run, or of all runs with --all.
    Report(view_commands::ReportArgs),
    /// Serve a read-only web dashboard of the runs: the list, and a live page per run.
    Serve(view_commands::ServeArgs),
    /// Check scripts, their imports, workflows and scenarios; runs nothing, spends nothing.
    Check(CheckArgs),
    /// The coordinator library: the library path, modules, the host API reference.
    Lib(LibArgs),
    /// Whether each harness the project's workflows use can run here: binary and version,
    /// credentials, schemas; with --probe, one tiny real call each. Exit 0 when all are ready.
    Doctor(DoctorArgs),
    /// Scaffold coord into an existing repository: coord.toml, shipped coordinators, the
    /// workflows they name and a first scenario; prints the next three commands.
    Init(init_command::InitArgs),
    /// Run one leaf from a leaf spec (what a remote job runs: docs/scale-out.md) and print its
    /// session result as the last line of stdout.
    LeafExec(leaf_exec_command::LeafExecArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Also make one tiny real call on each harness (spends a few tokens).
    #[arg(long)]
    pub probe: bool,
    #[command(flatten)]
    pub output: JsonOutputArgs,
}

#[derive(Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help("Print one JSON summary on stdout")))]
pub struct TestArgs {
    /// Coordinators (.rhai), scenarios (.toml) or folders of them [default: coordinators].
    pub paths: Vec<PathBuf>,
    /// Write the new traces as the snapshots (with --review: accept every pending one).
    #[arg(long, conflicts_with = "reject")]
    pub accept: bool,
    /// With --review: reject every pending snapshot (delete the .snap.new files).
    #[arg(long, requires = "review")]
    pub reject: bool,
    /// After the run, go through each pending snapshot (.snap.new): show its diff, then accept,
    /// reject or skip it (answers on stdin: a, r, s, A accept all, q quit).
    #[arg(long, conflicts_with = "json")]
    pub review: bool,
    /// Report the script lines and if/switch branches no scenario executed.
    #[arg(long)]
    pub coverage: bool,
    /// With --coverage: fail when a routing branch is never taken.
    #[arg(long, requires = "coverage")]
    pub fail_uncovered: bool,
    #[command(flatten)]
    pub output: JsonOutputArgs,
}

#[derive(Args, Debug, Clone)]
#[command(mut_arg("json", |a| a.help("Print one JSON object on stdout (same shape as `coord run --json`)")))]
pub struct ReplayArgs {
    /// The run: an id, a unique prefix, `last`, or a run directory.
    pub run: String,
    /// What-if: replay this edited script against the recorded run.
    #[arg(long, value_name = "EDITED.rhai")]
    pub script: Option<PathBuf>,
    #[command(flatten)]
    pub output: JsonOutputArgs,
    /// Print the run's routing trace.
    #[arg(long, conflicts_with = "json")]
    pub trace: bool,
    /// Read a journal that is corrupt in the middle up to its last valid entry.
    #[arg(long)]
    pub recover: bool,
    #[command(flatten)]
    pub store: RunStoreArgs,
    #[command(flatten)]
    pub limits: OperationLimitArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// The run: an id, a unique prefix, `last`, or a run directory.
    pub run: String,
    /// Redo the run from a session's spawn (`s7`) or a call index (`12`) as a new run linked
    /// to this one: what came before is reused, the rest runs again (`coord show` lists both).
    #[arg(long, value_name = "SESSION|CALL")]
    pub from: Option<String>,
    /// Redo the run as a new linked run in which only the leaves that did not end `ok` run
    /// again; every other recorded leaf, read and effect is reused.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub output: JsonOutputArgs,
    /// Resume from the valid prefix of a journal that is corrupt in the middle.
    #[arg(long)]
    pub recover: bool,
    #[command(flatten)]
    pub parallelism: ParallelismArgs,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    #[command(flatten)]
    pub store: RunStoreArgs,
    #[command(flatten)]
    pub limits: OperationLimitArgs,
    /// Park the run at a wait (`sleep`, `wait_signal`) that has lasted this long with no leaf
    /// running: the process exits, and `coord daemon` resumes it when its time comes or its
    /// signal arrives (e.g. `0s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_park_after)]
    pub park_after: Option<std::time::Duration>,
}

/// `--park-after`: a duration, zero included (park at the first wait).
pub fn parse_park_after(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. `0s`, `30s`, `5m`)"))
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Coordinator scripts or folders of them [default: the project's coordinators/].
    #[arg(value_name = "SCRIPT|DIR")]
    pub paths: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LibArgs {
    #[command(subcommand)]
    pub command: LibCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LibCommand {
    /// The library path, and which file or built-in each importable module comes from.
    List {
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a module's source as `import` would find it (e.g. `stdlib/review`).
    Show { module: String },
    /// Print the host API reference (the list in docs/coordinators.md).
    Api,
}

#[derive(Args, Debug, Clone)]
#[command(mut_arg("runs_dir", |a| a.help(RUNS_DIR_FOR_NEW_RUNS)))]
#[command(mut_arg("json", |a| a.help("Print one JSON object on stdout instead of a summary")))]
#[command(mut_arg("max_operations", |a| a.help("Operation limit of the script engine (an endless loop ends here)")))]
pub struct RunArgs {
    /// The coordinator script (.rhai).
    pub script: PathBuf,
    /// An input the script reads with `input(name)`; repeatable. The value is text, read as
    /// the input's declared type (`--help-inputs`).
    #[arg(long = "input", short = 'i', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub inputs: Vec<(String, String)>,
    /// An input given as JSON (a number, a list, a map ...); repeatable.
    #[arg(long = "input-json", value_name = "KEY=JSON", value_parser = parse_key_json)]
    pub inputs_json: Vec<(String, serde_json::Value)>,
    /// Inputs from a file: a JSON object or a TOML table of them. `--input` and `--input-json`
    /// given as well win.
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Print the inputs the coordinator declares (name, type, default, description) and exit.
    #[arg(long)]
    pub help_inputs: bool,
    /// The GitHub repository of a live run (owner/name); same as `--input repo=OWNER/NAME`.
    /// Default: `[github] repo` in coord.toml, else the `origin` remote.
    #[arg(long, value_name = "OWNER/NAME", value_parser = parse_repo)]
    pub repo: Option<String>,
    /// Run offline against this scenario (mock leaves, in-memory GitHub).
    #[arg(long, value_name = "FILE", conflicts_with = "demo")]
    pub scenario: Option<PathBuf>,
    /// Run offline on the coordinator's bundled demo scenario.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub parallelism: ParallelismArgs,
    #[command(flatten)]
    pub executor: ExecutorArgs,
    #[command(flatten)]
    pub store: RunStoreArgs,
    /// Change nothing outside this machine: journal every effect's intent but perform none,
    /// hold back every leaf that could write (a worktree, or `writes = true`), and give the
    /// leaves that run no GitHub, Slack or webhook credentials. `--dry-run=no-leaves` runs no
    /// leaf at all.
    #[arg(long, value_name = "LEAVES", num_args = 0..=1, require_equals = true,
          default_missing_value = "read-only", value_parser = ["read-only", "no-leaves"])]
    pub dry_run: Option<String>,
    #[command(flatten)]
    pub output: JsonOutputArgs,
    /// Swap a workflow's harness (and model) for this run; repeatable.
    #[arg(long = "leaf", value_name = "WORKFLOW=HARNESS[:MODEL]", value_parser = parse_key_value)]
    pub leaves: Vec<(String, String)>,
    /// Stop starting leaves once the run's leaves cost this many US dollars (new spawns are
    /// `skipped_budget`).
    #[arg(long, value_name = "USD", value_parser = parse_budget)]
    pub budget_usd: Option<f64>,
    /// Park the run at a wait (`sleep`, `wait_signal`) that has lasted this long with no leaf
    /// running: the process exits, and `coord daemon` resumes it when its time comes or its
    /// signal arrives (e.g. `0s`, `5m`).
    #[arg(long, value_name = "DURATION", value_parser = parse_park_after)]
    pub park_after: Option<std::time::Duration>,
    #[command(flatten)]
    pub limits: OperationLimitArgs,
    /// Heap budget of the script, like `2GiB` or `512MiB` (default: `[run] max_heap` in
    /// coord.toml, else a quarter of physical memory, at least 1GiB): a script that would grow
    /// past it stops with exit 2.
    #[arg(long, value_name = "SIZE", value_parser = parse_max_heap)]
    pub max_heap: Option<usize>,
    /// The heap budget in MiB (the older spelling of `--max-heap`).
    #[arg(long, value_name = "MIB", hide = true, conflicts_with = "max_heap", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_heap_mib: Option<u32>,
    /// Keep the journal in memory only (for the journaling-overhead benchmark).
    #[arg(long, hide = true)]
    pub journal_in_memory: bool,
    /// Hold the lock NAME (.coord/locks/NAME.lock) while running; if another process holds it,
    /// exit 75 and touch nothing.
    #[arg(long, value_name = "NAME")]
    pub lock: Option<String>,
    /// Exit 0 even when effects failed (a merge, comment, label or notification that could not
    /// be done); by default such a run exits 4.
    #[arg(long)]
    pub allow_failed_effects: bool,
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a dollar amount like 5 or 0.50, got `{s}`")),
    }
}

fn parse_max_heap(s: &str) -> Result<usize, String> {
    crate::config::heap_size::parse_heap_size(s).map_err(|e| e.to_string())
}

fn parse_repo(s: &str) -> Result<String, String> {
    crate::effects::github::repository::Repository::parse(s).map(|r| r.to_string())
}

fn parse_key_json(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = parse_key_value(s)?;
    let value = serde_json::from_str(&v).map_err(|e| format!("`{k}`: not JSON ({e}): {v}"))?;
    Ok((k, value))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit_code::USAGE } else { exit_code::SUCCESS };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    learn_project_secrets(&cli);
    init_logging(&cli);
    let _ = miette::set_hook(Box::new(|_| Box::new(cli_error::diagnostic_handler())));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return exit_with(Err(CliError::Failed(format!("cannot start the async runtime: {e}")))),
    };
    let interrupt = Arc::new(crate::scheduler::Interrupt::default());
    // The daemon handles its own signals: SIGTERM stops it, SIGHUP reloads its config.
    // leaf-exec keeps the default SIGTERM: an engine stopping its job kills it, and its
    // leaf's supervisor then kills the leaf's process tree.
    if !matches!(cli.command, Command::Daemon(_) | Command::LeafExec(_)) {
        watch_signals(&runtime, interrupt.clone());
    }
    let result = match &cli.command {
        Command::Run(args) => run_command::run(args, &cli, runtime.handle(), interrupt),
        Command::Replay(args) => replay_command::replay(args, runtime.handle(), interrupt),
        Command::Resume(args) => replay_command::resume(args, runtime.handle(), interrupt),
        Command::Test(args) => test_command::test(args, runtime.handle()),
        Command::Signal(args) => signal_command::run(args),
        Command::Daemon(args) => daemon_command::run(args, runtime.handle()),
        Command::Schedule(args) => schedule_command::list(args),
        Command::Trigger(args) => schedule_command::trigger(args, runtime.handle(), interrupt),
        Command::Runs(args) => view_commands::runs(args),
        Command::Show(args) => view_commands::show(args),
        Command::Graph(args) => view_commands::graph(args),
        Command::Report(args) => view_commands::report(args),
        Command::Serve(args) => view_commands::serve(args, runtime.handle(), interrupt),
        Command::Check(args) => check_command::run(args),
        Command::Lib(args) => lib_command::run(args),
        Command::Doctor(args) => doctor_command::run(args, runtime.handle()),
        Command::Init(args) => init_command::run(args),
        Command::LeafExec(args) => leaf_exec_command::run(args, runtime.handle()),
    };
    // A cancelled run's remote jobs are being stopped: wait for the engine's answers.
    crate::executor::stops::wait_for_stops(std::time::Duration::from_secs(10));
    let code = exit_with(result);
    // Leaves still running belong to a run that is over: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// Tells a command's error, once, and turns the result into the process's exit code.
fn exit_with(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit_code::SUCCESS),
        Err(e) => {
            e.print();
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            // Progress lines (`coord run` off a terminal) show unless --quiet.
            0 => "warn,coord::progress=info",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("COORD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redaction::MaskingWriter(crate::views::stderr_batch::LogStderr))
        .with_target(false)
        .with_ansi(ansi);
    let _ = match cli.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}

/// Teaches the process's redactor (`crate::redaction`) the credential variables of the
/// configuration this command works with: the script's project for `run`, the `--config` of
/// the pipeline commands, else the `coord.toml` at or above the current directory. A config
/// that does not load teaches nothing: the command reports it itself.
fn learn_project_secrets(cli: &Cli) {
    use crate::config::{Config, CONFIG_FILE};
    let config = match &cli.command {
        Command::Run(args) => Config::load(&crate::run::project::Project::discover(&args.script).root).ok(),
        Command::Daemon(args) => Config::load_file(&args.config).ok(),
        Command::Schedule(args) => Config::load_file(&args.config).ok(),
        Command::Trigger(args) => Config::load_file(&args.config).ok(),
        _ => std::env::current_dir()
            .ok()
            .and_then(|cwd| cwd.ancestors().find(|d| d.join(CONFIG_FILE).is_file()).map(Path::to_path_buf))
            .and_then(|root| Config::load(&root).ok()),
    };
    crate::redaction::learn_variables(config.map(|c| c.secret_variables()).unwrap_or_default());
}

/// SIGINT and SIGTERM start a graceful stop: no new spawns, leaves killed, journal flushed.
fn watch_signals(runtime: &tokio::runtime::Runtime, interrupt: Arc<crate::scheduler::Interrupt>) {
    runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => interrupt.trigger(libc::SIGINT),
            _ = term.recv() => interrupt.trigger(libc::SIGTERM),
        }
    });
}
