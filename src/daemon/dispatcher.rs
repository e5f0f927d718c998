//! The daemon's dispatcher: one loop that owns every pipeline's slot (next fire time, run in
//! flight, queued fires) and `select!`s over a closed set of events: a fire time coming due, a
//! verified webhook, a run ending, SIGHUP (reload), SIGTERM or SIGINT (stop).
//!
//! It owns the overlap policy (at most one run of a pipeline at a time; `skip` drops fires
//! while one runs, `queue` keeps at most one), catch-up after downtime, the pipeline locks
//! (so a run from system cron and a daemon run never overlap either), and which webhook
//! deliveries were accepted (a redelivered id does not fire again). Each run is an ordinary
//! journaled run (`run::execute`) on its own thread with its own [`Interrupt`]; runs report back
//! over a channel. It must not reach into a run: stopping one is triggering its interrupt, so
//! the run journals `interrupted` and `coord resume` can finish it.

use super::accepted_deliveries::{AcceptedDeliveries, DELIVERIES_FILE, MOST_REMEMBERED, REMEMBERED_FOR};
use super::listener::{self, ListenerLimits};
use super::lock::{LockError, RunLock};
use super::parked_runs::{self, ParkedRuns, WokenEnded};
use super::pipeline::{Pipeline, PipelineSet};
use super::schedule::Schedule;
use super::state::{DaemonState, STATE_FILE};
use super::webhook::{self, WebhookFire};
use super::{announce, coord_dir};
use crate::config::pipeline::Overlap;
use crate::journal::entry::RunStatus;
use crate::journal::run_dir::RunStore;
use crate::run::run_error::RunError;
use crate::run::{self, RunOutcome, SetupError};
use crate::scheduler::Interrupt;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

/// The longest the loop sleeps between looks at the clock (a wall clock that jumps, or a
/// machine that slept, is noticed within this).
const MAX_NAP: Duration = Duration::from_secs(30);
/// How long a stop waits for interrupted runs to journal their end.
const STOP_GRACE: Duration = Duration::from_secs(60);

pub struct DaemonOptions {
    pub runs: RunStore,
    /// Where webhooks are served; none: schedules only.
    pub listen: Option<SocketAddr>,
    /// Where the read-only dashboard of the runs is served (`coord serve`'s); none: not at all.
    pub serve: Option<SocketAddr>,
    pub max_parallel: usize,
    /// The webhook listener's header timeout and connection cap.
    pub listener: ListenerLimits,
    /// A webhook body not read within this is answered 408.
    pub body_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another coord daemon{} serves this project; this one stops", pid_note(*.pid))]
    AlreadyRunning { pid: Option<u32> },
    #[error(transparent)]
    Lock(LockError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot watch signals: {0}")]
    Signals(std::io::Error),
}

fn pid_note(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// What the dispatcher did with a fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireAction {
    Started,
    Queued,
    Skipped(SkipReason),
    /// A delivery with this id was accepted (started or queued) then; nothing fires again.
    AlreadyAccepted(DateTime<Utc>),
    /// The daemon is stopping and starts nothing.
    Stopping,
    /// No such pipeline (any more).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    InFlight,
    AlreadyQueued,
    /// Another process (`coord run --lock`, `coord trigger`) holds the pipeline's lock.
    Locked(Option<u32>),
    StartFailed(String),
}

/// Why a run starts.
#[derive(Debug, Clone)]
enum FireCause {
    Schedule(DateTime<Utc>),
    CatchUp(DateTime<Utc>),
    /// With its delivery id, when it has one.
    Webhook(Option<String>),
}

#[derive(Debug)]
struct Fire {
    cause: FireCause,
    /// On top of the pipeline's own inputs.
    inputs: IndexMap<String, Value>,
}

/// One pipeline's place in the dispatcher.
#[derive(Default)]
struct Slot {
    next_fire: Option<DateTime<Utc>>,
    /// The interrupt of the run in flight.
    running: Option<Arc<Interrupt>>,
    /// The webhook delivery that started the run in flight, if one did.
    running_delivery: Option<String>,
    /// Fires waiting for the run in flight: catch-up fires, or the one `queue` keeps.
    pending: VecDeque<Fire>,
}

/// A run's end, as its thread reports it.
struct RunEnded {
    pipeline: String,
    report: RunReport,
}

enum RunReport {
    Finished { run_id: String, status: RunStatus, problem: Option<String> },
    NotStarted(String),
    Panicked,
}

struct Dispatcher {
    pipelines: Arc<PipelineSet>,
    slots: IndexMap<String, Slot>,
    runs: RunStore,
    locks_dir: PathBuf,
    state: DaemonState,
    state_path: PathBuf,
    deliveries: AcceptedDeliveries,
    deliveries_path: PathBuf,
    max_parallel: usize,
    ended: mpsc::UnboundedSender<RunEnded>,
    /// Runs parked at a wait, which the daemon resumes when their time comes.
    parked: ParkedRuns,
    stopping: bool,
}

/// Runs `pipelines` until SIGTERM or SIGINT, reloading `coord.toml` on SIGHUP.
pub async fn serve(options: DaemonOptions, pipelines: PipelineSet) -> Result<(), DaemonError> {
    let coord = coord_dir(&options.runs);
    let daemon_lock = take_daemon_lock(&coord)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let pipelines = Arc::new(pipelines);
    let (published, watched) = watch::channel(pipelines.clone());
    let (fires_tx, mut fires) = mpsc::channel::<WebhookFire>(64);
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<RunEnded>();
    let (woken_tx, mut woken) = mpsc::unbounded_channel::<WokenEnded>();
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = match options.listen {
        None => None,
        Some(addr) => Some(start_webhook_listener(addr, &options, watched, fires_tx.clone(), async {
            let _ = server_stopped.await;
        })?),
    };
    let dashboard = options.serve.map(|addr| start_dashboard(addr, &options)).transpose()?;

    let mut dispatcher = Dispatcher::remembering(&coord, &options, pipelines, ended_tx, woken_tx);
    dispatcher.start_up(Utc::now());
    announce(format_args!("daemon: ready ({})", listed(&dispatcher.pipelines)));

    let mut stop_server = Some(stop_server);
    let stop_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(stop_deadline);
    loop {
        if dispatcher.stopping && dispatcher.in_flight() == 0 {
            break;
        }
        let nap = dispatcher.nap(Utc::now());
        tokio::select! {
            _ = tokio::time::sleep(nap), if !dispatcher.stopping => {
                dispatcher.fire_due(Utc::now());
                dispatcher.parked.wake_due(Utc::now().timestamp_millis());
            }
            Some(fire) = fires.recv() => {
                let action = dispatcher.fire_webhook(&fire.pipeline, fire.delivery, fire.inputs, Utc::now());
                let _ = fire.reply.send(action);
            }
            Some(run) = ended.recv() => dispatcher.run_ended(run),
            Some(run) = woken.recv() => dispatcher.woken_run_ended(run),
            _ = sighup.recv() => {
                if !dispatcher.stopping {
                    dispatcher.reload(&published, Utc::now());
                }
            }
            _ = sigterm.recv() => {
                if dispatcher.stopping { break; }
                dispatcher.stop("SIGTERM", libc::SIGTERM);
                stop_deadline.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
            }
            _ = sigint.recv() => {
                if dispatcher.stopping { break; }
                dispatcher.stop("SIGINT", libc::SIGINT);
                stop_deadline.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
            }
            _ = &mut stop_deadline, if dispatcher.stopping => {
                announce(format_args!("daemon: {} run(s) did not end in time; `coord resume` finishes them", dispatcher.in_flight()));
                break;
            }
        }
        if dispatcher.stopping {
            if let Some(stop) = stop_server.take() {
                let _ = stop.send(());
            }
        }
    }
    dispatcher.save_state();
    if let Some(server) = server {
        server.abort();
    }
    if let Some((stop_pages, served)) = dashboard {
        let _ = stop_pages.send(true);
        served.abort();
    }
    drop(daemon_lock);
    announce(format_args!("daemon: stopped"));
    Ok(())
}

/// The project's one daemon lock: a second daemon is refused with the holder's pid.
fn take_daemon_lock(coord: &Path) -> Result<RunLock, DaemonError> {
    let lock = RunLock::acquire(&coord.join("daemon"), "daemon").map_err(|e| match e {
        LockError::Held { pid, .. } => DaemonError::AlreadyRunning { pid },
        other => DaemonError::Lock(other),
    })?;
    if let Some(pid) = lock.stale_pid {
        announce(format_args!("daemon: took over the daemon lock from pid {pid}, which died holding it"));
    }
    Ok(lock)
}

/// Binds the webhook listener, capped below the open-file limit, and serves it until `stop`.
fn start_webhook_listener(
    addr: SocketAddr,
    options: &DaemonOptions,
    pipelines: watch::Receiver<Arc<PipelineSet>>,
    fires: mpsc::Sender<WebhookFire>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let listener = listener::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let open_file_limit = listener::raise_open_file_limit();
    let mut limits = options.listener;
    limits.max_connections = listener::connection_cap(limits.max_connections, open_file_limit);
    if limits.max_connections < options.listener.max_connections {
        announce(format_args!(
            "daemon: at most {} webhook connections (the open-file limit is {open_file_limit})",
            limits.max_connections
        ));
    }
    announce(format_args!("daemon: listening on {bound}"));
    let router = webhook::router(pipelines, fires, options.body_timeout, options.runs.root.clone());
    Ok(tokio::spawn(listener::serve(listener, router, limits, stop)))
}

/// The dashboard: its own listener, so a page following a run never holds a webhook slot.
/// Returns the sender that tells its pages to end, and its task.
fn start_dashboard(
    addr: SocketAddr,
    options: &DaemonOptions,
) -> Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>), DaemonError> {
    let listener = listener::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    announce(format_args!("daemon: dashboard on http://{bound}"));
    let (stop_pages, pages_stopping) = watch::channel(false);
    let router = crate::views::dashboard::router(options.runs.clone(), pages_stopping, bound);
    let served = tokio::spawn(listener::serve(listener, router, options.listener, std::future::pending()));
    Ok((stop_pages, served))
}

impl Dispatcher {
    /// A dispatcher with what the daemon remembers from its last life: how far each pipeline's
    /// schedule got (for catch-up) and the webhook deliveries it accepted. Unreadable memory
    /// is announced and started afresh.
    fn remembering(
        coord: &Path,
        options: &DaemonOptions,
        pipelines: Arc<PipelineSet>,
        ended: mpsc::UnboundedSender<RunEnded>,
        woken: mpsc::UnboundedSender<WokenEnded>,
    ) -> Self {
        let state_path = coord.join("daemon").join(STATE_FILE);
        let state = DaemonState::load(&state_path).unwrap_or_else(|e| {
            announce(format_args!("daemon: {e}; starting without catch-up"));
            DaemonState::default()
        });
        let deliveries_path = coord.join("daemon").join(DELIVERIES_FILE);
        let deliveries = AcceptedDeliveries::load(&deliveries_path, REMEMBERED_FOR, MOST_REMEMBERED, Utc::now())
            .unwrap_or_else(|e| {
                announce(format_args!("daemon: {e}; starting without the deliveries it accepted"));
                AcceptedDeliveries::default()
            });
        Dispatcher {
            pipelines,
            slots: IndexMap::new(),
            runs: options.runs.clone(),
            locks_dir: super::locks_dir(&options.runs),
            state,
            state_path,
            deliveries,
            deliveries_path,
            max_parallel: options.max_parallel,
            ended,
            parked: ParkedRuns::new(options.runs.clone(), options.max_parallel, woken),
            stopping: false,
        }
    }

    /// Sets every slot's next fire, and queues the fire times missed while the daemon was down
    /// (the latest `catch_up` of them per pipeline).
    fn start_up(&mut self, now: DateTime<Utc>) {
        let pipelines = self.pipelines.clone();
        for p in pipelines.iter() {
            let mut slot = Slot::default();
            if let Some(schedule) = &p.schedule {
                slot.next_fire = schedule.next_after(now);
                if let Some(since) = self.state.handled_until(&p.name) {
                    let missed = schedule.missed(since, now, p.catch_up as usize);
                    if !missed.is_empty() {
                        let times: Vec<String> = missed.iter().map(|t| schedule.local_rfc3339(*t)).collect();
                        announce(format_args!(
                            "{}: catching up {} missed fire time(s): {}",
                            p.name,
                            missed.len(),
                            times.join(", ")
                        ));
                    }
                    slot.pending.extend(
                        missed.into_iter().map(|t| Fire { cause: FireCause::CatchUp(t), inputs: IndexMap::new() }),
                    );
                }
                self.state.set_handled_until(&p.name, now);
            }
            self.slots.insert(p.name.clone(), slot);
        }
        self.save_state();
        for name in pipelines.names() {
            self.start_next(name);
        }
    }

    fn nap(&self, now: DateTime<Utc>) -> Duration {
        let next = self.slots.values().filter_map(|s| s.next_fire).min();
        let nap = match next {
            Some(t) => (t - now).to_std().unwrap_or(Duration::ZERO).min(MAX_NAP),
            None => MAX_NAP,
        };
        // Another process may park a run at any moment.
        nap.min(parked_runs::LOOK_EVERY)
    }

    fn in_flight(&self) -> usize {
        self.slots.values().filter(|s| s.running.is_some()).count() + self.parked.in_flight()
    }

    /// A run the daemon woke has ended (finished, failed, parked again, or stopped).
    fn woken_run_ended(&mut self, run: WokenEnded) {
        self.parked.forget(&run.run_id);
        let id = run.run_id;
        match report_of(run.result, run.signal) {
            RunReport::Finished { status: RunStatus::Parked, .. } => announce(format_args!("run {id}: parked again")),
            RunReport::Finished { status: RunStatus::Interrupted, .. } => {
                announce(format_args!("run {id}: interrupted; `coord resume {id}` finishes it"))
            }
            RunReport::Finished { status, problem: Some(problem), .. } => {
                announce(format_args!("run {id}: {status}: {problem}"))
            }
            RunReport::Finished { status, problem: None, .. } => announce(format_args!("run {id}: {status}")),
            RunReport::NotStarted(why) => {
                announce(format_args!("run {id}: could not be resumed: {why}; `coord resume {id}` tries again"))
            }
            RunReport::Panicked => announce(format_args!("run {id}: the resume panicked (a bug in coord)")),
        }
    }

    /// Fires every pipeline whose fire time has come. Fire times passed over while the loop
    /// was not looking (a suspended machine) fold into this one fire.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        let due: Vec<(String, DateTime<Utc>)> = self
            .slots
            .iter()
            .filter_map(|(name, s)| s.next_fire.filter(|t| *t <= now).map(|t| (name.clone(), t)))
            .collect();
        if due.is_empty() {
            return;
        }
        for (name, at) in due {
            let next = self.pipelines.get(&name).and_then(|p| p.schedule.as_ref()).and_then(|s| s.next_after(now));
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.next_fire = next;
            }
            self.state.set_handled_until(&name, now);
            self.fire(&name, Fire { cause: FireCause::Schedule(at), inputs: IndexMap::new() });
        }
        self.save_state();
    }

    /// A verified webhook: a delivery id accepted before does not fire again; one that starts
    /// or queues a run is remembered, on disk before the answer goes out.
    fn fire_webhook(
        &mut self,
        name: &str,
        delivery: Option<String>,
        inputs: IndexMap<String, Value>,
        now: DateTime<Utc>,
    ) -> FireAction {
        if self.stopping {
            return FireAction::Stopping;
        }
        if self.pipelines.get(name).is_none() {
            return FireAction::Unknown;
        }
        if let Some(id) = &delivery {
            if let Some(at) = self.deliveries.accepted_at(name, id, now) {
                let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                announce(format_args!("{name}: delivery {id} was accepted at {when}; not run again"));
                return FireAction::AlreadyAccepted(at);
            }
        }
        let action = self.fire(name, Fire { cause: FireCause::Webhook(delivery.clone()), inputs });
        if let (Some(id), FireAction::Started | FireAction::Queued) = (&delivery, &action) {
            self.deliveries.remember(name, id, now);
            if let Err(e) = self.deliveries.save(&self.deliveries_path) {
                announce(format_args!("daemon: cannot save the deliveries it accepted: {e}"));
            }
        }
        action
    }

    /// Applies the overlap policy to a fire.
    fn fire(&mut self, name: &str, fire: Fire) -> FireAction {
        if self.stopping {
            return FireAction::Stopping;
        }
        let Some(pipeline) = self.pipelines.get(name).cloned() else {
            return FireAction::Unknown;
        };
        let cause = describe(&fire.cause, pipeline.schedule.as_ref());
        let slot = self.slots.entry(name.to_owned()).or_default();
        if slot.running.is_none() && slot.pending.is_empty() {
            return self.start(&pipeline, fire);
        }
        let action = match pipeline.overlap {
            Overlap::Skip => FireAction::Skipped(SkipReason::InFlight),
            Overlap::Queue if slot.pending.is_empty() => {
                slot.pending.push_back(fire);
                FireAction::Queued
            }
            Overlap::Queue => FireAction::Skipped(SkipReason::AlreadyQueued),
        };
        match &action {
            FireAction::Queued => announce(format_args!("{name}: queued ({cause}): a run is in flight")),
            FireAction::Skipped(why) => announce(format_args!("{name}: skipped ({cause}): {why}")),
            _ => {}
        }
        action
    }

    /// Starts a run of `pipeline` under its lock, on its own thread.
    fn start(&mut self, pipeline: &Arc<Pipeline>, fire: Fire) -> FireAction {
        let name = pipeline.name.clone();
        let cause = describe(&fire.cause, pipeline.schedule.as_ref());
        let delivery = fire.cause.delivery().map(str::to_owned);
        let lock = match RunLock::acquire(&self.locks_dir, &name) {
            Ok(lock) => lock,
            Err(e) => {
                let why = match e {
                    LockError::Held { pid, .. } => SkipReason::Locked(pid),
                    other => SkipReason::StartFailed(other.to_string()),
                };
                announce(format_args!("{name}: skipped ({cause}): {why}"));
                return FireAction::Skipped(why);
            }
        };
        if let Some(pid) = lock.stale_pid {
            announce(format_args!("{name}: took over the lock from pid {pid}, which died holding it"));
        }
        let mut plan = pipeline.run_plan(&self.runs, fire.inputs);
        plan.max_parallel = self.max_parallel;
        let interrupt = Arc::new(Interrupt::default());
        let runtime = tokio::runtime::Handle::current();
        let ended = self.ended.clone();
        let run_interrupt = interrupt.clone();
        let thread_name = name.clone();
        let spawned = std::thread::Builder::new().name(format!("coord-pipeline-{name}")).spawn(move || {
            // The same checks as `coord run`: a pipeline that would fail on its files or on a
            // harness that cannot run here does not start.
            if let Some(why) = unchecked(&plan) {
                drop(lock);
                let _ = ended.send(RunEnded { pipeline: thread_name, report: RunReport::NotStarted(why) });
                return;
            }
            let stopped_by = run_interrupt.clone();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run::execute(plan, &runtime, run_interrupt)));
            // Released before the dispatcher hears of the end, so a queued fire can take it.
            drop(lock);
            let report = match outcome {
                Ok(result) => report_of(result, stopped_by.signal()),
                Err(_) => RunReport::Panicked,
            };
            let _ = ended.send(RunEnded { pipeline: thread_name, report });
        });
        if let Err(e) = spawned {
            let why = SkipReason::StartFailed(format!("cannot start a thread: {e}"));
            announce(format_args!("{name}: skipped ({cause}): {why}"));
            return FireAction::Skipped(why);
        }
        let slot = self.slots.entry(name.clone()).or_default();
        slot.running = Some(interrupt);
        slot.running_delivery = delivery;
        announce(format_args!("{name}: started ({cause})"));
        FireAction::Started
    }

    /// Starts the first waiting fire that can start.
    fn start_next(&mut self, name: &str) {
        if self.stopping {
            return;
        }
        let Some(pipeline) = self.pipelines.get(name).cloned() else {
            return;
        };
        loop {
            let Some(slot) = self.slots.get_mut(name) else {
                return;
            };
            if slot.running.is_some() {
                return;
            }
            let Some(fire) = slot.pending.pop_front() else {
                return;
            };
            let delivery = fire.cause.delivery().map(str::to_owned);
            if self.start(&pipeline, fire) == FireAction::Started {
                return;
            }
            self.unaccept(name, delivery);
        }
    }

    fn run_ended(&mut self, run: RunEnded) {
        let name = run.pipeline;
        let not_started = matches!(run.report, RunReport::NotStarted(_));
        match run.report {
            RunReport::Finished { run_id, status: RunStatus::Interrupted, .. } => {
                announce(format_args!("{name}: run {run_id} interrupted; `coord resume {run_id}` finishes it"))
            }
            RunReport::Finished { run_id, status, problem: Some(problem) } => {
                announce(format_args!("{name}: run {run_id} {status}: {problem}"))
            }
            RunReport::Finished { run_id, status, problem: None } => {
                announce(format_args!("{name}: run {run_id} {status}"))
            }
            RunReport::NotStarted(why) => announce(format_args!("{name}: run did not start: {why}")),
            RunReport::Panicked => {
                announce(format_args!("{name}: run panicked (a bug in coord; stderr has the details)"))
            }
        }
        let delivery = self.slots.get_mut(&name).and_then(|slot| {
            slot.running = None;
            slot.running_delivery.take()
        });
        if not_started {
            self.unaccept(&name, delivery);
        }
        if self.pipelines.get(&name).is_none() {
            // Removed by a reload while it ran.
            self.slots.shift_remove(&name);
            return;
        }
        self.start_next(&name);
    }

    /// Reloads `coord.toml`; a config with errors keeps the current one. Runs in flight go on;
    /// a pipeline whose schedule changed gets its next fire time from the new schedule.
    fn reload(&mut self, published: &watch::Sender<Arc<PipelineSet>>, now: DateTime<Utc>) {
        let path = self.pipelines.config_path.clone();
        let fresh = match PipelineSet::load(&path) {
            Ok(set) => Arc::new(set),
            Err(diagnostic) => {
                crate::views::console::stderrln!("{:?}", miette::Report::new(diagnostic));
                announce(format_args!(
                    "daemon: SIGHUP: {} has errors; kept the previous configuration",
                    path.display()
                ));
                return;
            }
        };
        let old = std::mem::replace(&mut self.pipelines, fresh.clone());
        for p in fresh.iter() {
            let unchanged = old.get(&p.name).is_some_and(|o| same_schedule(o.schedule.as_ref(), p.schedule.as_ref()));
            let slot = self.slots.entry(p.name.clone()).or_default();
            if !unchanged {
                slot.next_fire = p.schedule.as_ref().and_then(|s| s.next_after(now));
                if p.schedule.is_some() {
                    self.state.set_handled_until(&p.name, now);
                }
            }
        }
        let removed: Vec<String> = self.slots.keys().filter(|n| fresh.get(n).is_none()).cloned().collect();
        for name in removed {
            let slot = self.slots.get_mut(&name).expect("listed above");
            if slot.running.is_some() {
                slot.next_fire = None;
                let dropped: Vec<Fire> = slot.pending.drain(..).collect();
                for fire in dropped {
                    self.unaccept(&name, fire.cause.delivery().map(str::to_owned));
                }
            } else {
                self.slots.shift_remove(&name);
            }
            self.state.pipelines.remove(&name);
        }
        self.save_state();
        let _ = published.send(fresh.clone());
        announce(format_args!("daemon: SIGHUP: reloaded {} ({})", path.display(), listed(&fresh)));
    }

    /// Stops scheduling and interrupts every run in flight; queued fires are dropped.
    fn stop(&mut self, signal_name: &str, signal: i32) {
        self.stopping = true;
        let mut interrupted = 0;
        let mut dropped = Vec::new();
        for (name, slot) in self.slots.iter_mut() {
            dropped.extend(slot.pending.drain(..).map(|fire| (name.clone(), fire.cause)));
            slot.next_fire = None;
            if let Some(interrupt) = &slot.running {
                interrupt.trigger(signal);
                interrupted += 1;
            }
        }
        for (name, cause) in dropped {
            self.unaccept(&name, cause.delivery().map(str::to_owned));
        }
        interrupted += self.parked.stop(signal);
        announce(format_args!("daemon: {signal_name}: stopping; interrupting {interrupted} run(s)"));
    }

    /// Forgets a delivery accepted for `name` whose fire never ran (a queued fire dropped, a
    /// run that did not start), so its redelivery runs.
    fn unaccept(&mut self, name: &str, delivery: Option<String>) {
        let Some(id) = delivery else {
            return;
        };
        self.deliveries.forget(name, &id);
        if let Err(e) = self.deliveries.save(&self.deliveries_path) {
            announce(format_args!("daemon: cannot save the deliveries it accepted: {e}"));
        }
    }

    fn save_state(&mut self) {
        if let Err(e) = self.state.save(&self.state_path) {
            announce(format_args!("daemon: cannot save its state: {e}"));
        }
    }
}

impl FireCause {
    /// The webhook delivery id of a webhook's fire.
    fn delivery(&self) -> Option<&str> {
        match self {
            FireCause::Webhook(id) => id.as_deref(),
            _ => None,
        }
    }
}

/// `1 pipeline: groom`, `2 pipelines: groom, triage`.
fn listed(pipelines: &PipelineSet) -> String {
    let hooks = pipelines.signal_hook_names();
    let hooks = if hooks.is_empty() { String::new() } else { format!("; signal hooks: {}", hooks.join(", ")) };
    if pipelines.is_empty() {
        return format!("no pipelines; it wakes parked runs{hooks}");
    }
    let noun = if pipelines.len() == 1 { "pipeline" } else { "pipelines" };
    format!("{} {noun}: {}{hooks}", pipelines.len(), pipelines.names().join(", "))
}

fn same_schedule(a: Option<&Schedule>, b: Option<&Schedule>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.expression() == b.expression() && a.timezone() == b.timezone(),
        _ => false,
    }
}

fn describe(cause: &FireCause, schedule: Option<&Schedule>) -> String {
    let local = |t: &DateTime<Utc>| match schedule {
        Some(s) => s.local_rfc3339(*t),
        None => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    match cause {
        FireCause::Schedule(t) => format!("schedule {}", local(t)),
        FireCause::CatchUp(t) => format!("catch-up {}", local(t)),
        FireCause::Webhook(None) => "webhook".into(),
        FireCause::Webhook(Some(id)) => format!("webhook {id}"),
    }
}

/// What the dispatcher needs of a run's outcome; diagnostics go to stderr here, as `coord run`
/// prints them.
/// What keeps a pipeline's run from starting ([`crate::check::run_check`]), reported in full
/// on stderr; `None` when it may start.
fn unchecked(plan: &run::RunPlan) -> Option<String> {
    let choice = crate::check::run_check::HarnessChoice {
        overrides: plan.leaf_overrides.iter().map(|(w, o)| (w.clone(), o.harness.clone())).collect(),
        scenario: plan.scenario.is_some() || plan.demo,
    };
    unchecked_script(&plan.script, &choice)
}

/// [`unchecked`] of a script run with `choice` (a woken run's recorded choice).
pub(super) fn unchecked_script(script: &Path, choice: &crate::check::run_check::HarnessChoice) -> Option<String> {
    let check = crate::check::run_check::check_for_run(script, choice);
    for warning in &check.warnings {
        crate::views::console::stderrln!("warning: {warning}");
    }
    if check.is_clean() {
        return None;
    }
    let first = check.problems.first().map(|p| p.message.clone()).or_else(|| check.preflight.first().cloned());
    for problem in check.problems {
        crate::views::console::stderrln!("{:?}", miette::Report::new(problem));
    }
    for line in &check.preflight {
        crate::views::console::stderrln!("error: {line}");
    }
    first
}

/// The run's end for the log: what [`RunError::of`] found, with its diagnostic on stderr. An
/// interrupted run's status says it all; effects that failed are in the run's record.
fn report_of(result: Result<RunOutcome, SetupError>, signal: i32) -> RunReport {
    let (outcome, error) = match RunError::of(result, signal) {
        Ok(ended) => ended,
        Err(not_started) => {
            let first_line = not_started.to_string().lines().next().unwrap_or_default().to_owned();
            crate::views::console::stderrln!("{:?}", miette::Report::new(not_started));
            return RunReport::NotStarted(first_line);
        }
    };
    for w in &outcome.warnings {
        crate::views::console::stderrln!("warning: {w}");
    }
    let problem = match error {
        None | Some(RunError::Interrupted { .. } | RunError::EffectsFailed(_) | RunError::NotStarted(_)) => None,
        Some(RunError::Script(diag) | RunError::Diverged(diag)) => {
            let message = diag.message.clone();
            crate::views::console::stderrln!("{:?}", miette::Report::new(*diag));
            Some(message)
        }
        Some(RunError::JournalEnded(i)) => Some(format!("the journal ends at call {i}")),
        Some(RunError::Host(message)) => Some(message),
        Some(RunError::Outage { run_id, outage }) => {
            Some(format!("{outage} (the run stopped; `coord resume {run_id}` finishes it)"))
        }
    };
    RunReport::Finished { run_id: outcome.run_id, status: outcome.status, problem }
}
