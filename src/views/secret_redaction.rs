//! The redaction pass every view goes through: secret values never reach a screen or a report.
//!
//! A secret is the value of an environment variable whose name ends in `_KEY`, `_TOKEN` or
//! `_SECRET`, or that `coord.toml` names in any `*_env` setting (`api_key_env`, `token_env`,
//! ...), when it is set. Its every occurrence, in any string of a run, becomes `[redacted]`.
//! Values shorter than [`MIN_SECRET_LEN`] are ignored: replacing `1` or `ok` everywhere would
//! wreck a view and protect nothing. This module reads the environment; it must not write
//! anything or log a secret it found.

use crate::config::Config;
use crate::journal::RecordedRun;
use serde_json::Value;

pub const REDACTED: &str = "[redacted]";
/// Shorter values are not treated as secrets.
pub const MIN_SECRET_LEN: usize = 4;
const SECRET_NAME_SUFFIXES: [&str; 3] = ["_KEY", "_TOKEN", "_SECRET"];

#[derive(Clone, Debug, Default)]
pub struct SecretRedactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<String>,
}

impl SecretRedactor {
    /// Secrets from the process environment and the env var names `config` lists.
    pub fn from_env(config: &Config) -> Self {
        let mut names = config_env_names(config);
        let env: Vec<(String, String)> =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
        names.extend(
            env.iter()
                .filter(|(k, _)| SECRET_NAME_SUFFIXES.iter().any(|s| k.to_ascii_uppercase().ends_with(s)))
                .map(|(k, _)| k.clone()),
        );
        let values = env.into_iter().filter(|(k, _)| names.contains(k)).map(|(_, v)| v);
        Self::with_values(values)
    }

    pub fn with_values(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> =
            values.into_iter().filter(|v| v.trim().chars().count() >= MIN_SECRET_LEN).collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        SecretRedactor { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string (and map key) inside `value`.
    pub fn redact_value(&self, value: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                let r = self.redact(s);
                if r != *s {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (k, mut v) in entries {
                    self.redact_value(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn redact_opt(&self, text: &mut Option<String>) {
        if let Some(t) = text {
            *t = self.redact(t);
        }
    }

    /// Redacts everything a view could show of a recorded run.
    pub fn redact_run(&self, run: &mut RecordedRun) {
        if self.secrets.is_empty() {
            return;
        }
        self.redact_value(&mut run.header.inputs);
        run.header.script = self.redact(&run.header.script);
        for entry in run.entries.iter_mut().chain(run.calls.iter_mut()).chain(run.finished.iter_mut()) {
            for v in [&mut entry.args, &mut entry.result].into_iter().flatten() {
                self.redact_value(v);
            }
            if let Some(h) = &mut entry.header {
                self.redact_value(&mut h.inputs);
            }
            self.redact_opt(&mut entry.error);
            self.redact_opt(&mut entry.source);
        }
        run.sessions.values_mut().for_each(|v| self.redact_value(v));
        run.effect_results.values_mut().for_each(|v| self.redact_value(v));
        run.warnings.iter_mut().for_each(|w| *w = self.redact(w));
    }
}

/// Every env var name `coord.toml` gives in a `*_env` setting, at any depth. Read from the
/// file as written, so it holds whatever sections the config grows.
fn config_env_names(config: &Config) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(value) = toml::from_str::<toml::Value>(&config.source) {
        collect_env_names(&value, &mut names);
    }
    names
}

fn collect_env_names(value: &toml::Value, names: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(name) if k.ends_with("_env") => names.push(name.clone()),
                    other => collect_env_names(other, names),
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| collect_env_names(v, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_every_occurrence_in_strings_and_keys() {
        let r = SecretRedactor::with_values(["sk-live-123456".to_owned(), "ab".to_owned()]);
        let mut v = json!({"prompt": "use sk-live-123456 twice: sk-live-123456", "sk-live-123456": [1, "ab"]});
        r.redact_value(&mut v);
        assert_eq!(v, json!({"prompt": "use [redacted] twice: [redacted]", "[redacted]": [1, "ab"]}));
    }

    #[test]
    fn config_names_key_env_vars_at_any_depth() {
        let source = "[harness.claude]\napi_key_env = \"MY_PROVIDER_PASS\"\n[github]\ntoken_env = \"GH_PASS\"\n";
        let config = Config { file: toml::from_str(source).unwrap(), source: source.to_owned(), ..Default::default() };
        let names = config_env_names(&config);
        assert!(names.contains(&"MY_PROVIDER_PASS".to_owned()), "{names:?}");
        assert!(names.contains(&"GH_PASS".to_owned()), "{names:?}");
    }
}
