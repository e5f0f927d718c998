//! Waking parked runs: a run that parked at a durable wait (`--park-after`) is resumed by the
//! daemon once its deadline has passed or a delivery of the signal it waits for has arrived,
//! as `coord resume` would resume it, on its own thread with its own [`Interrupt`], parking
//! again (with the same `--park-after`) at its next long wait.
//!
//! It owns which parked runs this daemon has woken. The run store's wait index says which runs
//! are parked (`journal::wait_index`); a woken run's entry is marked not parked before its
//! resume starts, so a resume that fails is reported once, not retried on every tick (`coord
//! resume` retries it by hand). A run another process owns is left alone. It must not journal
//! or route: the resumed run is an ordinary run made by `run::execute`.

use super::announce;
use crate::journal::run_dir::{owner_alive, OwnerLock, RunStore};
use crate::journal::wait_index::{self, WaitEntry};
use crate::run::{self, RunOutcome, SetupError};
use crate::scheduler::Interrupt;
use indexmap::IndexMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the daemon looks at the wait index (any process may park a run at any time): the
/// latest a parked run wakes after its deadline or its signal.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// A woken run's end, as its thread reports it.
pub struct WokenEnded {
    pub run_id: String,
    pub result: Result<RunOutcome, SetupError>,
    /// The signal that stopped it (its interrupt's), or 0.
    pub signal: i32,
}

pub struct ParkedRuns {
    runs: RunStore,
    max_parallel: usize,
    /// The runs this daemon has woken and that have not ended, by run id.
    woken: IndexMap<String, Arc<Interrupt>>,
    ended: mpsc::UnboundedSender<WokenEnded>,
    index: wait_index::IndexReader,
}

impl ParkedRuns {
    pub fn new(runs: RunStore, max_parallel: usize, ended: mpsc::UnboundedSender<WokenEnded>) -> Self {
        ParkedRuns { runs, max_parallel, woken: IndexMap::new(), ended, index: Default::default() }
    }

    pub fn in_flight(&self) -> usize {
        self.woken.len()
    }

    /// Resumes every parked run that is due at `now_ms` and that nobody owns.
    pub fn wake_due(&mut self, now_ms: i64) {
        for entry in self.index.look(&self.runs.root) {
            if !entry.parked || self.woken.contains_key(&entry.run_id) {
                continue;
            }
            let dir = self.runs.root.join(&entry.run_id);
            if !dir.is_dir() {
                // Its run was deleted: nothing will ever wake.
                wait_index::remove(&self.runs.root, &entry.run_id);
                continue;
            }
            if !entry.due(now_ms) || owner_alive(&dir) {
                continue;
            }
            self.wake(entry, dir);
        }
    }

    fn wake(&mut self, entry: WaitEntry, dir: std::path::PathBuf) {
        let run_id = entry.run_id.clone();
        let owner = match OwnerLock::take(&dir) {
            Ok(owner) => Arc::new(owner),
            // Someone resumed it by hand just now.
            Err(_) => return,
        };
        if let Err(e) = wait_index::record(&self.runs.root, &WaitEntry { parked: false, ..entry.clone() }) {
            announce(format_args!("run {run_id}: cannot mark it woken ({e}); left parked"));
            return;
        }
        let why = match &entry.signal {
            Some(signal) if entry.delivered => format!("signal `{signal}` arrived"),
            _ => "its time came".to_owned(),
        };
        let interrupt = Arc::new(Interrupt::default());
        let runtime = tokio::runtime::Handle::current();
        let ended = self.ended.clone();
        let (run_interrupt, max_parallel, thread_run) = (interrupt.clone(), self.max_parallel, run_id.clone());
        let park_after = entry.park_after_ms.map(Duration::from_millis);
        let spawned = std::thread::Builder::new().name(format!("coord-wake-{run_id}")).spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                resume(&dir, owner, max_parallel, park_after, &runtime, run_interrupt.clone())
            }))
            .unwrap_or_else(|_| Err(SetupError::Usage("the resume panicked (a bug in coord; stderr has it)".into())));
            let signal = run_interrupt.signal();
            let _ = ended.send(WokenEnded { run_id: thread_run, result, signal });
        });
        match spawned {
            Ok(_) => {
                announce(format_args!("run {run_id}: woken ({why}); resuming"));
                self.woken.insert(run_id, interrupt);
            }
            Err(e) => announce(format_args!("run {run_id}: cannot start a thread to resume it: {e}")),
        }
    }

    /// A woken run ended: forgets it. Returns whether this daemon had woken it.
    pub fn forget(&mut self, run_id: &str) -> bool {
        self.woken.shift_remove(run_id).is_some()
    }

    /// Interrupts every woken run (the daemon is stopping); each journals `interrupted`.
    pub fn stop(&self, signal: i32) -> usize {
        for interrupt in self.woken.values() {
            interrupt.trigger(signal);
        }
        self.woken.len()
    }
}

/// The resume itself, as `coord resume RUN --park-after ...` does it: the journal made ready,
/// the recorded script checked as a run would check it, then the run continued.
fn resume(
    dir: &std::path::Path,
    owner: Arc<OwnerLock>,
    max_parallel: usize,
    park_after: Option<Duration>,
    runtime: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
) -> Result<RunOutcome, SetupError> {
    let (mut plan, _prepared) = run::resume::continue_plan(dir, false, owner).map_err(|e| match e {
        run::resume::ResumeError::Journal(e) => SetupError::Journal(Box::new(e)),
        other => SetupError::Usage(other.to_string()),
    })?;
    plan.max_parallel = max_parallel;
    plan.park_after = park_after;
    plan.process_exits_after = false;
    if let run::Recording::From { preloaded: Some(recorded), .. } = &plan.recording {
        let choice = crate::check::run_check::HarnessChoice::of_recorded(recorded);
        if let Some(why) = super::dispatcher::unchecked_script(&plan.script, &choice) {
            return Err(SetupError::Usage(why));
        }
    }
    run::execute(plan, runtime, interrupt)
}
