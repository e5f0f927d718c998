//! Passes every harness's results through the process's redactor (`crate::redaction`), so no
//! harness can forget: an agent that echoes its key, a provider quoting a token in an error,
//! a leaf printing its environment. Masking here, where a result enters coord, means the
//! script, the journal and every output see the same masked result.
//!
//! It must not change anything of a result but the secrets in its strings.

use super::{Harness, HarnessLimits, LeafFuture};
use crate::leaf::session::{LeafRequest, SessionResult};
use crate::redaction::Redactor;
use std::sync::Arc;

/// Masks every string of a result a leaf could have filled.
pub fn mask_result(redactor: &Redactor, r: &mut SessionResult) {
    redactor.mask_string(&mut r.text);
    for text in [&mut r.error, &mut r.provider_session_id, &mut r.model, &mut r.agent_version].into_iter().flatten() {
        redactor.mask_string(text);
    }
    redactor.mask_value(&mut r.output);
}

/// A harness whose results (first runs and repairs) pass through the redactor.
pub struct RedactingHarness {
    inner: Arc<dyn Harness>,
    redactor: Arc<Redactor>,
}

impl RedactingHarness {
    pub fn new(inner: Arc<dyn Harness>, redactor: Arc<Redactor>) -> Self {
        RedactingHarness { inner, redactor }
    }

    fn masked(&self, leaf: LeafFuture) -> LeafFuture {
        let redactor = self.redactor.clone();
        Box::pin(async move {
            let mut result = leaf.await;
            mask_result(&redactor, &mut result);
            result
        })
    }
}

impl Harness for RedactingHarness {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        self.masked(self.inner.start(request))
    }

    fn replayed(&self, workflow: &str, goal: &str, inputs: &serde_json::Value) {
        self.inner.replayed(workflow, goal, inputs)
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        self.inner.repair(request, previous, feedback).map(|leaf| self.masked(leaf))
    }

    fn limits(&self) -> HarnessLimits {
        self.inner.limits()
    }

    fn answers_in_process(&self) -> bool {
        self.inner.answers_in_process()
    }

    fn runs_in_workdir(&self) -> bool {
        self.inner.runs_in_workdir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::session::SessionStatus;
    use serde_json::json;

    #[test]
    fn every_string_a_leaf_fills_is_masked() {
        let r = Redactor::with_values(["sk-test-SECRET123".to_owned()]);
        let mut result = SessionResult::failed("s1", "w", SessionStatus::Failed, "401 for sk-test-SECRET123");
        result.output = json!({"echo": ["sk-test-SECRET123"], "sk-test-SECRET123": 1, "gh": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"});
        result.text = "Bearer sk-test-SECRET123".into();
        mask_result(&r, &mut result);
        let all = serde_json::to_string(&result).unwrap();
        assert!(!all.contains("SECRET123") && !all.contains("ghp_abc"), "{all}");
        assert!(all.contains("[redacted]"));
    }
}
