//! The run options a journal header records (`run_started`'s `options`) so that a resume or a
//! redo keeps them: `--leaf` swaps, `--dry-run`, `--max-parallel` and `--executor`.
//!
//! It owns their on-disk shape (field names and order, as every journal since the first has
//! written them); it must not apply them to a run (the run does).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run's recorded options. Written in full by every run; read leniently, because a header
/// from an older journal may lack any of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedOptions {
    /// `--leaf WORKFLOW=HARNESS[:MODEL]`: `HARNESS[:MODEL]` by workflow, in the order given.
    #[serde(default)]
    pub leaf: IndexMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
    /// `--dry-run=no-leaves`.
    #[serde(default)]
    pub dry_run_no_leaves: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    /// `--executor KIND`: where the run's leaves run, so a resume adopts its jobs there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

impl RecordedOptions {
    /// The options a header's `options` value holds; none when it holds no readable set.
    pub fn from_header(options: &Value) -> Self {
        RecordedOptions::deserialize(options).unwrap_or_default()
    }

    /// The value written to the header.
    pub fn to_header(&self) -> Value {
        serde_json::to_value(self).expect("recorded options serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::RecordedOptions;
    use serde_json::{json, Value};

    #[test]
    fn the_header_keeps_the_shape_every_journal_has_written() {
        let options = RecordedOptions {
            leaf: [("mr-review".to_owned(), "codex:gpt-5".to_owned()), ("fix".to_owned(), "mock".to_owned())]
                .into_iter()
                .collect(),
            dry_run: true,
            dry_run_no_leaves: false,
            max_parallel: Some(8),
            executor: None,
        };
        assert_eq!(
            options.to_header().to_string(),
            r#"{"leaf":{"mr-review":"codex:gpt-5","fix":"mock"},"dry_run":true,"dry_run_no_leaves":false,"max_parallel":8}"#
        );
        assert_eq!(RecordedOptions::from_header(&options.to_header()), options);
    }

    #[test]
    fn an_older_header_reads_as_far_as_it_goes() {
        assert_eq!(RecordedOptions::from_header(&Value::Null), RecordedOptions::default());
        let partial = RecordedOptions::from_header(&json!({"dry_run": true}));
        assert!(partial.dry_run && partial.leaf.is_empty() && partial.max_parallel.is_none());
    }
}
