//! One leaf's life on the scheduler, from its first attempt to its final result: its git
//! worktree, the permits it runs under (its harness's, then the run's), the timeout of each
//! attempt, retries of transient failures with exponential backoff and jitter, schema
//! validation, and the one repair a leaf gets when its output fails its schema.
//!
//! Retry and repair live here, not in the harnesses, so every harness gets the same policy and
//! validation stays in one place; a harness only says whether a failure is transient and how
//! to continue its conversation. This must not journal or route.

use super::session::{LeafRequest, SessionResult, SessionStatus, Usage};
use crate::harness::{Harness, LeafFuture};
use crate::workflow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Extra time a harness gets past its own timeout before the scheduler gives up on it.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// The longest wait between two attempts (unless the provider asks for longer).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct LeafTask {
    pub request: LeafRequest,
    pub harness: Arc<dyn Harness>,
    pub validator: Arc<jsonschema::Validator>,
    /// The first attempt, started in spawn order by the dispatcher.
    pub first: LeafFuture,
    pub run_permits: Arc<Semaphore>,
    pub harness_permits: Option<Arc<Semaphore>>,
}

impl LeafTask {
    pub async fn run(self) -> SessionResult {
        let LeafTask {
            request,
            harness,
            validator,
            first,
            run_permits,
            harness_permits,
        } = self;
        let started = Instant::now();
        let id = request.session_id.clone();
        let wf = request.workflow.name.clone();

        if let Some(plan) = &request.worktree {
            if let Err(e) = plan.create().await {
                return finalize(
                    SessionResult::failed(&id, &wf, SessionStatus::Failed, e),
                    &request,
                    &*harness,
                    started,
                    1,
                );
            }
        }

        let retries = request
            .overrides
            .get("retries")
            .and_then(|v| v.as_u64())
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
            .unwrap_or(request.workflow.retries);
        let backoff = harness.limits().retry_backoff;
        let attempt_once = |leaf: LeafFuture| attempt(leaf, &request, &run_permits, harness_permits.as_ref());

        let mut attempts = 1;
        let mut spent = Usage::default();
        let mut leaf = first;
        let mut result = loop {
            let result = attempt_once(leaf).await;
            match &result.retry {
                Some(hint) if attempts <= retries => {
                    let delay = retry_delay(attempts, backoff, hint.after);
                    tracing::warn!(
                        attempt = attempts,
                        delay_ms = delay.as_millis() as u64,
                        error = result.error.as_deref().unwrap_or(""),
                        "transient failure; retrying"
                    );
                    spent.add(&result.usage);
                    tokio::time::sleep(delay).await;
                    attempts += 1;
                    leaf = harness.start(request.clone());
                }
                _ => break result,
            }
        };

        if result.status == SessionStatus::Ok {
            if let Err(violation) = workflow::validate(&validator, &result.output) {
                match harness.repair(request.clone(), &result, &violation) {
                    Some(repair) => {
                        tracing::info!(error = %violation, "output fails its schema; one repair attempt");
                        spent.add(&result.usage);
                        attempts += 1;
                        result = attempt_once(repair).await;
                        if result.status == SessionStatus::Ok {
                            if let Err(again) = workflow::validate(&validator, &result.output) {
                                result.status = SessionStatus::Failed;
                                result.error = Some(format!("{again} (after one repair attempt)"));
                            }
                        }
                    }
                    None => {
                        result.status = SessionStatus::Failed;
                        result.error = Some(violation);
                    }
                }
            }
        }
        spent.add(&result.usage);
        result.usage = spent;
        result.retry = None;
        if let Some(plan) = &request.worktree {
            plan.finish(result.status == SessionStatus::Ok).await;
        }
        finalize(result, &request, &*harness, started, attempts)
    }
}

/// One run of the harness under the permits and the timeout.
async fn attempt(
    leaf: LeafFuture,
    request: &LeafRequest,
    run_permits: &Arc<Semaphore>,
    harness_permits: Option<&Arc<Semaphore>>,
) -> SessionResult {
    // The harness's own limit first: a leaf waiting for it must not hold a run-wide slot.
    let _harness_permit = match harness_permits {
        Some(p) => Some(p.clone().acquire_owned().await.expect("semaphore never closes")),
        None => None,
    };
    let _run_permit = run_permits
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closes");
    match tokio::time::timeout(request.timeout + TIMEOUT_GRACE, leaf).await {
        Ok(r) => r,
        Err(_) => SessionResult::failed(
            &request.session_id,
            &request.workflow.name,
            SessionStatus::Timeout,
            format!("timed out after {}", humantime::format_duration(request.timeout)),
        ),
    }
}

/// Exponential backoff with jitter: `base * 2^(n-1)`, capped, scaled by a random factor in
/// [0.5, 1.0) so retries of many leaves spread out; never shorter than the provider's
/// `retry-after`.
pub fn retry_delay(attempt: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = base
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
        .min(MAX_BACKOFF);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(after) => after.max(jittered.min(after + base)),
        None => jittered,
    }
}

fn finalize(
    mut result: SessionResult,
    request: &LeafRequest,
    harness: &dyn Harness,
    started: Instant,
    attempts: u32,
) -> SessionResult {
    result.id = request.session_id.clone();
    result.workflow = request.workflow.name.clone();
    result.harness.get_or_insert_with(|| harness.name().to_owned());
    if result.model.is_none() {
        result.model = request.model.clone();
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.attempts = attempts;
    tracing::info!(
        status = result.status.as_str(),
        attempts,
        cost_usd = result.usage.cost_usd,
        error = result.error.as_deref().unwrap_or(""),
        "leaf finished"
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_capped_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        for _ in 0..50 {
            let d1 = retry_delay(1, base, None);
            assert!(
                d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = retry_delay(3, base, None);
            assert!(
                d3 >= Duration::from_millis(200) && d3 < Duration::from_millis(400),
                "{d3:?}"
            );
            assert!(retry_delay(30, base, None) <= MAX_BACKOFF);
            let after = retry_delay(1, base, Some(Duration::from_secs(2)));
            assert!(
                after >= Duration::from_secs(2) && after <= Duration::from_millis(2100),
                "{after:?}"
            );
        }
    }
}
