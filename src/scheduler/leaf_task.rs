//! One leaf's life on the scheduler, from its first attempt to its final result: its git
//! worktree, the permits it runs under (its harness's, then the run's), the timeout of each
//! attempt, retries of transient failures with exponential backoff and jitter, schema
//! validation, and the one repair a leaf gets when its output fails its schema.
//!
//! Retry and repair live here, not in the harnesses, so every harness gets the same policy and
//! validation stays in one place; a harness only says whether a failure is transient and how
//! to continue its conversation. This must not journal or route.

use super::run_clock::RunClock;
use crate::harness::{Harness, LeafFuture};
use crate::leaf::session::{LeafRequest, SessionResult, SessionStatus, SessionTiming, Turn, TurnKind, Usage};
use crate::workflow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The longest wait between two attempts (unless the provider asks for longer).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The harnesses of this run that had an outage: no new leaf starts on them.
#[derive(Debug, Default)]
pub struct Breaker {
    tripped: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Breaker {
    fn trip(&self, harness: &str, error: &str) {
        self.tripped.lock().expect("breaker poisoned").entry(harness.to_owned()).or_insert_with(|| error.to_owned());
    }

    /// The first outage of `harness`, if it had one.
    fn tripped(&self, harness: &str) -> Option<String> {
        self.tripped.lock().expect("breaker poisoned").get(harness).cloned()
    }
}

pub struct LeafTask {
    pub request: LeafRequest,
    pub harness: Arc<dyn Harness>,
    pub validator: Arc<jsonschema::Validator>,
    /// The first attempt, started in spawn order by the dispatcher.
    pub first: LeafFuture,
    pub run_permits: Arc<Semaphore>,
    pub harness_permits: Option<Arc<Semaphore>>,
    pub breaker: Arc<Breaker>,
    /// When it was queued and started, on the run's clock (the timeline).
    pub clock: LeafClock,
}

/// A leaf's times as the scheduler sees them: when it was queued, and (shared with the
/// dispatcher, which reports a leaf it cancels) when it got its first permit.
#[derive(Clone, Debug)]
pub struct LeafClock {
    pub run: RunClock,
    pub queued_ms: u64,
    started_ms: Arc<AtomicU64>,
}

impl LeafClock {
    /// Not started yet.
    const NOT_STARTED: u64 = u64::MAX;

    pub fn queued_now(run: RunClock) -> Self {
        LeafClock { run, queued_ms: run.now_ms(), started_ms: Arc::new(AtomicU64::new(Self::NOT_STARTED)) }
    }

    fn mark_started(&self, at_ms: u64) {
        let _ = self.started_ms.compare_exchange(Self::NOT_STARTED, at_ms, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn started_ms(&self) -> Option<u64> {
        Some(self.started_ms.load(Ordering::SeqCst)).filter(|&ms| ms != Self::NOT_STARTED)
    }

    /// The timing of a leaf ending now, after `turns`.
    pub fn ended_now(&self, turns: Vec<Turn>) -> SessionTiming {
        SessionTiming { queued_ms: self.queued_ms, started_ms: self.started_ms(), ended_ms: self.run.now_ms(), turns }
    }
}

impl LeafTask {
    pub async fn run(self) -> SessionResult {
        let LeafTask { request, harness, validator, first, run_permits, harness_permits, breaker, clock } = self;
        let started = Instant::now();
        let id = request.session_id.clone();
        let wf = request.workflow.name.clone();

        if let Some(plan) = &request.worktree {
            if let Err(e) = plan.create().await {
                let mut result = SessionResult::failed(&id, &wf, SessionStatus::Failed, e);
                result.timing = Some(clock.ended_now(Vec::new()));
                return finalize(result, &request, &*harness, started, 1);
            }
        }

        let retries = request
            .overrides
            .get("retries")
            .and_then(|v| v.as_u64())
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
            .unwrap_or(request.workflow.retries);
        let backoff = harness.limits().retry_backoff;
        let turns = std::sync::Mutex::new(Vec::new());
        let attempt_once = |leaf: LeafFuture, kind: TurnKind| {
            let permits = Permits { run: &run_permits, harness: harness_permits.as_ref(), breaker: &breaker };
            attempt(leaf, &request, &*harness, permits, &clock, kind, &turns)
        };

        let mut attempts = 1;
        let mut spent = Usage::default();
        let mut leaf = first;
        let mut result = loop {
            let kind = if attempts == 1 { TurnKind::First } else { TurnKind::Retry };
            let result = attempt_once(leaf, kind).await;
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

        let violation = match result.status {
            SessionStatus::Ok => workflow::validate(&validator, &result.output).err(),
            SessionStatus::Failed if result.repairable => result.error.clone(),
            _ => None,
        };
        if let Some(violation) = violation {
            match harness.repair(request.clone(), &result, &violation) {
                Some(repair) => {
                    tracing::info!(error = %violation, "the answer does not fit its schema; one repair attempt");
                    spent.add(&result.usage);
                    attempts += 1;
                    result = attempt_once(repair, TurnKind::Repair).await;
                    if result.status == SessionStatus::Ok {
                        if let Err(again) = workflow::validate(&validator, &result.output) {
                            result.status = SessionStatus::Failed;
                            result.error = Some(format!("{again} (after one repair attempt)"));
                            result.failure = Some(crate::leaf::session::FailureClass::Permanent);
                        }
                    } else if result.repairable {
                        let error = result.error.take().unwrap_or_default();
                        result.error = Some(format!("{error} (after one repair attempt)"));
                    }
                }
                None if result.status == SessionStatus::Ok => {
                    result.status = SessionStatus::Failed;
                    result.error = Some(violation);
                    result.failure = Some(crate::leaf::session::FailureClass::Permanent);
                }
                None => {}
            }
        }
        spent.add(&result.usage);
        result.usage = spent;
        result.retry = None;
        if result.is_outage() {
            breaker.trip(harness.name(), result.error.as_deref().unwrap_or(""));
        }
        if let Some(plan) = &request.worktree {
            plan.finish(result.status == SessionStatus::Ok).await;
        }
        result.timing = Some(clock.ended_now(turns.into_inner().expect("turns poisoned")));
        finalize(result, &request, &*harness, started, attempts)
    }
}

/// What a turn waits for before it runs: its harness's permit, the run's, and no outage.
struct Permits<'a> {
    run: &'a Arc<Semaphore>,
    harness: Option<&'a Arc<Semaphore>>,
    breaker: &'a Breaker,
}

/// One run of the harness under the permits and the timeout, logged in `turns`; none when
/// the harness had an outage meanwhile.
async fn attempt(
    leaf: LeafFuture,
    request: &LeafRequest,
    harness: &dyn Harness,
    permits: Permits<'_>,
    clock: &LeafClock,
    kind: TurnKind,
    turns: &std::sync::Mutex<Vec<Turn>>,
) -> SessionResult {
    let asked = Instant::now();
    // The harness's own limit first: a leaf waiting for it must not hold a run-wide slot.
    let _harness_permit = match permits.harness {
        Some(p) => Some(p.clone().acquire_owned().await.expect("semaphore never closes")),
        None => None,
    };
    let _run_permit = permits.run.clone().acquire_owned().await.expect("semaphore never closes");
    let started = Instant::now();
    let start_ms = clock.run.at_ms(started);
    clock.mark_started(start_ms);
    // Measured between instants, so a permit taken at once is a wait of 0, not a rounding.
    let waited_ms = u64::try_from(started.duration_since(asked).as_millis()).unwrap_or(u64::MAX);
    let result = run_turn(leaf, request, harness, permits.breaker).await;
    turns.lock().expect("turns poisoned").push(Turn { kind, start_ms, end_ms: clock.run.now_ms(), waited_ms });
    result
}

/// The turn itself, once its permits are held.
async fn run_turn(leaf: LeafFuture, request: &LeafRequest, harness: &dyn Harness, breaker: &Breaker) -> SessionResult {
    if let Some(first) = breaker.tripped(harness.name()) {
        let mut r = SessionResult::failed(
            &request.session_id,
            &request.workflow.name,
            SessionStatus::Cancelled,
            format!("not started: the {} harness failed on another leaf: {first}", harness.name()),
        );
        r.failure = Some(crate::leaf::session::FailureClass::Configuration);
        return r;
    }
    match tokio::time::timeout(request.timeout + harness.limits().timeout_grace, leaf).await {
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
    let exp = base.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16)).min(MAX_BACKOFF);
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
    use crate::leaf::session::RetryHint;
    use crate::workflow::Workflow;
    use serde_json::{json, Value};
    use std::sync::Mutex;

    /// Answers each start or repair with the next scripted result, and counts repairs.
    struct ScriptedHarness {
        results: Mutex<Vec<SessionResult>>,
        repairs: Mutex<Vec<String>>,
    }

    impl ScriptedHarness {
        fn new(mut results: Vec<SessionResult>) -> Arc<Self> {
            results.reverse();
            Arc::new(ScriptedHarness { results: Mutex::new(results), repairs: Mutex::new(Vec::new()) })
        }

        fn next(&self) -> LeafFuture {
            let r = self.results.lock().unwrap().pop().expect("a scripted result");
            Box::pin(async move { r })
        }
    }

    impl Harness for ScriptedHarness {
        fn name(&self) -> &str {
            "scripted"
        }
        fn start(&self, _request: LeafRequest) -> LeafFuture {
            self.next()
        }
        fn repair(&self, _request: LeafRequest, _previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
            self.repairs.lock().unwrap().push(feedback.to_owned());
            Some(self.next())
        }
        fn limits(&self) -> crate::harness::HarnessLimits {
            crate::harness::HarnessLimits { retry_backoff: Duration::from_millis(1), ..Default::default() }
        }
    }

    fn request(retries: u32) -> LeafRequest {
        let schema = json!({"type": "object", "required": ["verdict"]});
        let mut workflow = Workflow::new("review", "scripted", "", schema).unwrap();
        workflow.timeout = Duration::from_secs(5);
        workflow.retries = retries;
        LeafRequest::sample(workflow, Duration::from_secs(5))
    }

    fn ok(output: Value, cost: f64) -> SessionResult {
        let mut r = SessionResult::new("s1", "review", SessionStatus::Ok);
        r.output = output;
        r.usage.cost_usd = cost;
        r
    }

    fn transient(cost: f64) -> SessionResult {
        let mut r = SessionResult::failed("s1", "review", SessionStatus::Failed, "HTTP 529: Overloaded");
        r.retry = Some(RetryHint::default());
        r.usage.cost_usd = cost;
        r
    }

    async fn run(harness: Arc<ScriptedHarness>, retries: u32) -> SessionResult {
        let request = request(retries);
        let task = LeafTask {
            first: harness.start(request.clone()),
            validator: Arc::new(workflow::compile_schema(&request.schema).unwrap()),
            request,
            harness,
            run_permits: Arc::new(Semaphore::new(1)),
            harness_permits: None,
            breaker: Arc::default(),
            clock: LeafClock::queued_now(RunClock::default()),
        };
        task.run().await
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_limit_and_their_cost_counted() {
        let h = ScriptedHarness::new(vec![transient(0.5), transient(0.25), ok(json!({"verdict": "clean"}), 1.0)]);
        let r = run(h, 2).await;
        assert_eq!((r.status, r.attempts), (SessionStatus::Ok, 3));
        assert_eq!(r.usage.cost_usd, 1.75);
        assert!(r.retry.is_none());

        let r = run(ScriptedHarness::new(vec![transient(0.0), transient(0.0)]), 1).await;
        assert_eq!((r.status, r.attempts), (SessionStatus::Failed, 2));
        assert_eq!(r.error.as_deref(), Some("HTTP 529: Overloaded"));
    }

    #[tokio::test]
    async fn a_schema_violation_gets_exactly_one_repair() {
        let h = ScriptedHarness::new(vec![ok(json!({}), 0.1), ok(json!({"verdict": "clean"}), 0.2)]);
        let r = run(h.clone(), 0).await;
        assert_eq!((r.status, r.attempts), (SessionStatus::Ok, 2));
        assert!((r.usage.cost_usd - 0.3).abs() < 1e-9);
        assert_eq!(h.repairs.lock().unwrap().len(), 1);
        assert!(h.repairs.lock().unwrap()[0].contains("verdict"), "the feedback names the violation");

        let h = ScriptedHarness::new(vec![ok(json!({}), 0.0), ok(json!({"nope": 1}), 0.0)]);
        let r = run(h.clone(), 3).await;
        assert_eq!(r.status, SessionStatus::Failed);
        assert!(r.error.unwrap().ends_with("(after one repair attempt)"));
        assert_eq!(h.repairs.lock().unwrap().len(), 1);
    }

    #[test]
    fn backoff_grows_is_jittered_capped_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        for _ in 0..50 {
            let d1 = retry_delay(1, base, None);
            assert!(d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(100), "{d1:?}");
            let d3 = retry_delay(3, base, None);
            assert!(d3 >= Duration::from_millis(200) && d3 < Duration::from_millis(400), "{d3:?}");
            assert!(retry_delay(30, base, None) <= MAX_BACKOFF);
            let after = retry_delay(1, base, Some(Duration::from_secs(2)));
            assert!(after >= Duration::from_secs(2) && after <= Duration::from_millis(2100), "{after:?}");
        }
    }
}
