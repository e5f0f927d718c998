//! Keeps API keys out of everything a run writes: results, transcripts, error messages.
//!
//! The [`Redactor`] knows the values of the key variables (the configured `api_key_env`s and
//! the usual ones of each provider) and masks them wherever they appear. [`RedactingHarness`]
//! passes every harness's result through it, so no harness can forget. It must not log or
//! store the values it holds.

use super::{Harness, HarnessLimits, LeafFuture};
use crate::config::leaf_settings::HarnessSettings;
use crate::scheduler::session::{LeafRequest, SessionResult};
use indexmap::IndexMap;
use serde_json::Value;
use std::sync::Arc;

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Environment variables that hold provider keys even when no config names them.
const USUAL_KEY_VARIABLES: [&str; 6] =
    ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "COORD_API_KEY"];

/// Values shorter than this are not treated as secrets: masking them would mangle text.
const MIN_SECRET_LEN: usize = 8;

/// The usual key variables plus every `api_key_env` the config names.
pub fn key_variables(sections: &IndexMap<String, HarnessSettings>) -> Vec<String> {
    let mut vars: Vec<String> = USUAL_KEY_VARIABLES.iter().map(|v| v.to_string()).collect();
    vars.extend(sections.values().filter_map(|s| s.api_key_env.clone()));
    vars.sort();
    vars.dedup();
    vars
}

#[derive(Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Reads the values of `variables` from the environment.
    pub fn from_env(variables: impl IntoIterator<Item = String>) -> Self {
        Redactor::new(variables.into_iter().filter_map(|v| std::env::var(v).ok()))
    }

    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> =
            values.into_iter().map(|v| v.trim().to_owned()).filter(|v| v.len() >= MIN_SECRET_LEN).collect();
        // Longest first, so a key containing another key is masked whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), MASK);
            }
        }
        text
    }

    pub fn scrub_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for s in &self.secrets {
            out = replace_bytes(&out, s.as_bytes(), MASK.as_bytes());
        }
        out
    }

    pub fn scrub_value(&self, v: &mut Value) {
        match v {
            Value::String(s) if self.secrets.iter().any(|k| s.contains(k.as_str())) => *s = self.scrub(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.scrub_value(i)),
            Value::Object(map) => {
                let keys: Vec<String> =
                    map.keys().filter(|k| self.secrets.iter().any(|s| k.contains(s.as_str()))).cloned().collect();
                for k in keys {
                    if let Some(inner) = map.remove(&k) {
                        map.insert(self.scrub(&k), inner);
                    }
                }
                map.values_mut().for_each(|i| self.scrub_value(i));
            }
            _ => {}
        }
    }

    pub fn scrub_result(&self, r: &mut SessionResult) {
        if self.secrets.is_empty() {
            return;
        }
        r.text = self.scrub(&r.text);
        r.error = r.error.as_deref().map(|e| self.scrub(e));
        r.provider_session_id = r.provider_session_id.as_deref().map(|e| self.scrub(e));
        r.model = r.model.as_deref().map(|e| self.scrub(e));
        self.scrub_value(&mut r.output);
    }
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
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

    fn scrubbed(&self, leaf: LeafFuture) -> LeafFuture {
        let redactor = self.redactor.clone();
        Box::pin(async move {
            let mut result = leaf.await;
            redactor.scrub_result(&mut result);
            result
        })
    }
}

impl Harness for RedactingHarness {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn start(&self, request: LeafRequest) -> LeafFuture {
        self.scrubbed(self.inner.start(request))
    }

    fn repair(&self, request: LeafRequest, previous: &SessionResult, feedback: &str) -> Option<LeafFuture> {
        self.inner.repair(request, previous, feedback).map(|leaf| self.scrubbed(leaf))
    }

    fn limits(&self) -> HarnessLimits {
        self.inner.limits()
    }

    fn runs_in_workdir(&self) -> bool {
        self.inner.runs_in_workdir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::session::SessionStatus;
    use serde_json::json;

    #[test]
    fn masks_every_occurrence_everywhere() {
        let r = Redactor::new(["sk-test-SECRET123".to_owned(), "short".to_owned()]);
        assert_eq!(r.scrub("key sk-test-SECRET123 and sk-test-SECRET123"), "key [redacted] and [redacted]");
        assert_eq!(r.scrub("short stays"), "short stays");
        assert_eq!(r.scrub_bytes(b"x-api-key: sk-test-SECRET123\n"), b"x-api-key: [redacted]\n");
        let mut result = SessionResult::failed("s1", "w", SessionStatus::Failed, "401 for sk-test-SECRET123");
        result.output = json!({"echo": ["sk-test-SECRET123"], "sk-test-SECRET123": 1});
        r.scrub_result(&mut result);
        let all = serde_json::to_string(&result).unwrap();
        assert!(!all.contains("SECRET123"), "{all}");
        assert!(all.contains("[redacted]"));
    }
}
