//! Script values built on a journal-reading thread and handed whole to the script's thread.
//!
//! A replay answers tens of thousands of calls from the journal, and turning recorded JSON
//! into script values was a fifth of the script thread's work. The reading thread has time to
//! spare, so it builds them there ([`PREPARE`], given to
//! [`AnswerIndex::read_streaming`](crate::journal::AnswerIndex::read_streaming)), and the
//! script's thread only takes them.
//!
//! Rhai's values are not `Send` (its strings are `Rc`s), and rightly so in general: a clone
//! left behind would share a count between threads. A [`DetachedValue`] can only be made here,
//! from JSON, so every `Rc` inside it is new and owned by the value alone; nothing else can
//! reach any part of it until [`DetachedValue::into_inner`] hands the whole of it to one
//! thread. It must not grow a constructor from an existing script value, nor any `&self`
//! accessor.

use super::json_value::{parse_dynamic, to_dynamic};
use crate::journal::{PreparePayloads, Prepared};
use crate::scheduler::session::{SessionResult, SessionStatus};
use rhai::{Dynamic, Map};

/// A script value nobody else holds any part of.
pub struct DetachedValue(Dynamic);

// SAFETY: the value was built from JSON by this module alone (`parse_dynamic`, `to_dynamic`,
// `result_fields`): every `Rc` in it was created for it, has a count of one, and no clone of
// it exists. Moving the whole tree to another thread therefore moves every owner of each
// count together; no two threads can ever touch one count.
unsafe impl Send for DetachedValue {}
// SAFETY: a `&DetachedValue` gives no access to the value (there is no `&self` method), so
// sharing references between threads shares nothing.
unsafe impl Sync for DetachedValue {}

impl DetachedValue {
    pub fn into_inner(self) -> Dynamic {
        self.0
    }
}

/// The fields of a session's result map that come from the result itself; the host adds the
/// spawn's `goal` and `inputs` (see [`super::host_api::session_map`]).
pub fn result_fields(result: &SessionResult) -> Map {
    let mut usage = Map::new();
    usage.insert("input_tokens".into(), (result.usage.input_tokens as i64).into());
    usage.insert("output_tokens".into(), (result.usage.output_tokens as i64).into());
    usage.insert("cost_usd".into(), result.usage.cost_usd.into());
    let mut m = Map::new();
    m.insert("id".into(), result.id.as_str().into());
    m.insert("workflow".into(), result.workflow.as_str().into());
    m.insert("status".into(), result.status.as_str().into());
    m.insert("ok".into(), (result.status == SessionStatus::Ok).into());
    m.insert("output".into(), to_dynamic(&result.output));
    m.insert("text".into(), result.text.as_str().into());
    m.insert("usage".into(), usage.into());
    m.insert("error".into(), result.error.as_deref().map_or(Dynamic::UNIT, |e| e.into()));
    m
}

/// A recorded session's result fields, prepared as [`DetachedValue`] holding a map.
pub struct PreparedResultFields(pub DetachedValue);

/// A recorded call's answer, prepared as the script value it becomes.
pub struct PreparedAnswer(pub DetachedValue);

/// What a replay's reading thread prepares: the answers of GitHub reads (the only recorded
/// answers that reach a script as values; `now` and `input` are read as JSON) and sessions'
/// result fields. A result whose output sits in the blob store is left to the host, which
/// loads it.
pub const PREPARE: PreparePayloads = PreparePayloads {
    call_result: |function, text| {
        if !function.starts_with("github.") {
            return None;
        }
        let value = parse_dynamic(text).ok()?;
        Some(Box::new(PreparedAnswer(DetachedValue(value))) as Prepared)
    },
    session_result: |result| {
        if result.output.get("$blob").is_some() {
            return None;
        }
        Some(Box::new(PreparedResultFields(DetachedValue(result_fields(result).into()))) as Prepared)
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::host_api::session_map;
    use serde_json::json;

    #[test]
    fn prepared_values_equal_what_the_script_thread_builds() {
        let mut result = SessionResult::failed("s3", "mr-review", SessionStatus::Timeout, "timed out");
        result.output = json!({"verdict": "minor", "findings": [{"severity": "minor", "n": 1.5}]});
        let prepared = (PREPARE.session_result)(&result).unwrap();
        let fields = prepared.downcast::<PreparedResultFields>().unwrap().0.into_inner();
        let mut fields = fields.try_cast::<Map>().unwrap();
        fields.insert("goal".into(), "g".into());
        fields.insert("inputs".into(), to_dynamic(&json!({"pr": 3})));
        let built = session_map(&result, "g", &json!({"pr": 3}));
        assert_eq!(format!("{fields:?}"), format!("{built:?}"));

        let text = r#"[{"number": 1, "title": "t", "labels": []}]"#;
        let prepared = (PREPARE.call_result)("github.prs", text).unwrap();
        let value = prepared.downcast::<PreparedAnswer>().unwrap().0.into_inner();
        assert_eq!(format!("{value:?}"), format!("{:?}", parse_dynamic(text).unwrap()));
        assert!((PREPARE.call_result)("input", "\"x\"").is_none());
        assert!((PREPARE.call_result)("github.pr", "[1,").is_none(), "unparsable text is left to the host");

        result.output = json!({"$blob": "abc"});
        assert!((PREPARE.session_result)(&result).is_none(), "blob outputs are loaded by the host");
    }

    #[test]
    fn a_prepared_value_is_used_whole_on_another_thread() {
        let prepared = (PREPARE.call_result)("github.checks", r#"{"state": "green", "runs": ["a", "b"]}"#).unwrap();
        let shown = std::thread::spawn(move || {
            let value = prepared.downcast::<PreparedAnswer>().unwrap().0.into_inner();
            let copy = value.clone();
            drop(value);
            format!("{copy:?}")
        })
        .join()
        .unwrap();
        assert!(shown.contains("green"), "{shown}");
    }
}
