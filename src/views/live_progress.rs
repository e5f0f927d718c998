//! Live progress of `coord run` on stderr, fed by the run's [`RunEvent`]s.
//!
//! On a terminal (and not `--quiet`, `-v` or `--log-format json`): indicatif bars, one summary
//! line (sessions done of queued, running, queued, failed, tokens and cost so far) and one
//! spinner per running session with its workflow, goal and elapsed time; finished sessions
//! scroll above. Otherwise: plain log lines through `tracing` (target `coord::progress`), one
//! per session start and finish, structured when `--log-format json`.
//!
//! It only displays. It must not hold up the run: it reads a channel on its own thread, and
//! stdout (where results go) is never touched.

use super::{stderr_batch, units};
use crate::leaf::session::{SessionStatus, Usage};
use crate::scheduler::run_event::RunEvent;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The tracing target of progress log lines (enabled at info by default).
pub const PROGRESS_TARGET: &str = "coord::progress";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// Bars on a terminal.
    Bars,
    /// One log line per session start and finish.
    LogLines,
}

impl ProgressDisplay {
    /// What suits stderr: bars on an interactive terminal unless logs were asked for; nothing
    /// when `quiet`.
    pub fn for_stderr(quiet: bool, verbose: u8, json_logs: bool) -> Option<Self> {
        use std::io::IsTerminal;
        if quiet {
            return None;
        }
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb && verbose == 0 && !json_logs {
            Some(ProgressDisplay::Bars)
        } else {
            Some(ProgressDisplay::LogLines)
        }
    }
}

/// The display thread. [`LiveProgress::finish`] clears the bars and waits for it.
pub struct LiveProgress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LiveProgress {
    pub fn start(display: ProgressDisplay, events: Receiver<RunEvent>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("coord-progress".into())
            .spawn(move || match display {
                ProgressDisplay::Bars => run_bars(events, &flag),
                ProgressDisplay::LogLines => run_log_lines(events, &flag),
            })
            .ok();
        LiveProgress { stop, thread }
    }

    /// Shows what is left in the channel, then clears the bars.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for LiveProgress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Counts and totals so far.
#[derive(Default)]
struct Tally {
    queued: usize,
    running: usize,
    done: usize,
    not_ok: usize,
    effects: usize,
    usage: Usage,
    /// Queued sessions' workflow and goal, until they start.
    waiting: HashMap<String, (String, String)>,
}

impl Tally {
    fn summary(&self) -> String {
        let mut parts = vec![format!("{} running", self.running), format!("{} queued", self.queued)];
        if self.not_ok > 0 {
            parts.push(format!("{} failed", self.not_ok));
        }
        if self.effects > 0 {
            parts.push(units::count(self.effects, "effect"));
        }
        parts.push(format!("{} tok", units::tokens(self.usage.input_tokens + self.usage.output_tokens)));
        parts.push(units::cost(self.usage.cost_usd));
        parts.join(" · ")
    }

    fn total(&self) -> u64 {
        (self.queued + self.running + self.done) as u64
    }
}

/// How often the display thread looks at the channel.
const TICK: Duration = Duration::from_millis(50);

/// Hands every event to `on` as `Some`, a tick's worth at a time, then `None` after each tick,
/// until told to stop (then the channel is drained once more) or every sender is gone. Log
/// lines a tick produces are written to stderr together.
///
/// The thread polls rather than blocking on the channel, so that a sender never has to wake
/// it: a large run sends several events per leaf, and waking the display for each one costs
/// the run's own threads more than the display itself (docs/performance.md).
fn each_batch(events: Receiver<RunEvent>, stop: &AtomicBool, mut on: impl FnMut(Option<RunEvent>)) {
    loop {
        // Read before draining: whatever was sent before the stop is shown.
        let stopping = stop.load(Ordering::SeqCst);
        let gone = stderr_batch::batch(|| loop {
            match events.try_recv() {
                Ok(e) => on(Some(e)),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        });
        on(None);
        if stopping || gone {
            return;
        }
        std::thread::park_timeout(TICK);
    }
}

fn run_bars(events: Receiver<RunEvent>, stop: &AtomicBool) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.bold} [{bar:20.cyan/blue}] {pos}/{len} done · {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    overall.set_prefix("coord");
    overall.enable_steady_tick(Duration::from_millis(120));
    let session_style = ProgressStyle::with_template("  {spinner:.green} {prefix:.bold} {wide_msg} {elapsed:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut tally = Tally::default();
    let mut running: HashMap<String, ProgressBar> = HashMap::new();
    overall.set_message(tally.summary());

    each_batch(events, stop, |event| {
        let Some(event) = event else {
            overall.set_length(tally.total());
            overall.set_position(tally.done as u64);
            overall.set_message(tally.summary());
            return;
        };
        match event {
            RunEvent::SessionQueued { id, workflow, goal } => {
                tally.queued += 1;
                tally.waiting.insert(id, (workflow, goal));
            }
            RunEvent::SessionStarted { id } => {
                let (workflow, goal) = tally.waiting.remove(&id).unwrap_or_default();
                tally.queued = tally.queued.saturating_sub(1);
                tally.running += 1;
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(session_style.clone());
                bar.set_prefix(format!("{id} {workflow}"));
                bar.set_message(goal);
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(id, bar);
            }
            RunEvent::SessionFinished { id, workflow, status, usage, duration_ms, error } => {
                match running.remove(&id) {
                    Some(bar) => {
                        bar.finish_and_clear();
                        multi.remove(&bar);
                        tally.running = tally.running.saturating_sub(1);
                    }
                    // Finished without running: taken from the journal, or failed at setup.
                    None if tally.waiting.remove(&id).is_some() => tally.queued = tally.queued.saturating_sub(1),
                    None => {}
                }
                tally.done += 1;
                tally.usage.add(&usage);
                let mark = if status == SessionStatus::Ok { "✓" } else { "✗" };
                if status != SessionStatus::Ok {
                    tally.not_ok += 1;
                }
                let error = error.map(|e| format!(": {e}")).unwrap_or_default();
                let _ = multi.println(format!(
                    "{mark} {id} {workflow} {} in {} · {}{error}",
                    status.as_str(),
                    units::duration(duration_ms),
                    units::cost(usage.cost_usd)
                ));
            }
            RunEvent::EffectDone { .. } => tally.effects += 1,
        }
    });
    for bar in running.values() {
        bar.finish_and_clear();
    }
    overall.finish_and_clear();
    let _ = multi.clear();
}

fn run_log_lines(events: Receiver<RunEvent>, stop: &AtomicBool) {
    let mut goals: HashMap<String, (String, String)> = HashMap::new();
    each_batch(events, stop, |event| match event {
        Some(RunEvent::SessionQueued { id, workflow, goal }) => {
            goals.insert(id, (workflow, goal));
        }
        Some(RunEvent::SessionStarted { id }) => {
            let (workflow, goal) = goals.remove(&id).unwrap_or_default();
            tracing::info!(target: PROGRESS_TARGET, session = %id, workflow = %workflow, goal = %goal, "session started");
        }
        Some(RunEvent::SessionFinished { id, workflow, status, usage, duration_ms, error }) => {
            // Finished without starting (taken from the journal, or failed at setup).
            goals.remove(&id);
            let tokens = usage.input_tokens + usage.output_tokens;
            let cost = format!("{:.4}", usage.cost_usd);
            match error {
                Some(error) => tracing::info!(
                    target: PROGRESS_TARGET,
                    session = %id, workflow = %workflow, status = %status.as_str(), duration_ms, tokens, cost_usd = %cost, error = %error,
                    "session finished"
                ),
                None => tracing::info!(
                    target: PROGRESS_TARGET,
                    session = %id, workflow = %workflow, status = %status.as_str(), duration_ms, tokens, cost_usd = %cost,
                    "session finished"
                ),
            }
        }
        Some(RunEvent::EffectDone { function, target, status }) => {
            let target = target.unwrap_or_default();
            tracing::debug!(target: PROGRESS_TARGET, effect = %function, on = %target, status = %status, "effect done");
        }
        None => {}
    });
}
