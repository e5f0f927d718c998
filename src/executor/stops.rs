//! Stops of remote jobs whose leaf was dropped (the run was cancelled, or the scheduler gave up
//! on it). A dropped future cannot wait, so each stop runs on a thread of its own; the process
//! waits for them before it exits ([`wait_for_stops`]), or SIGINT would leave jobs running.

use super::Engine;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Stops `job` on `engine` in the background.
pub fn stop_in_background(engine: Engine, job: String) {
    let spawned = std::thread::Builder::new().name("coord-job-stop".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let Ok(runtime) = runtime else { return };
        match runtime.block_on(engine.stop(&job)) {
            Ok(()) => tracing::info!(job = %job, "job stopped"),
            Err(e) => tracing::warn!(job = %job, "cannot stop the job: {e}"),
        }
    });
    if let Ok(handle) = spawned {
        PENDING.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
    }
}

/// Waits (at most `limit`) for every stop started so far.
pub fn wait_for_stops(limit: Duration) {
    let deadline = Instant::now() + limit;
    let handles: Vec<_> = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|p| p.into_inner()));
    for handle in handles {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}
