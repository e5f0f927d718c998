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

use super::host_api::result_fields;
use super::json_value::parse_dynamic;
use crate::journal::{PreparePayloads, Prepared};
use rhai::{Dynamic, Map};

/// A script value nobody else holds any part of.
pub struct DetachedValue(Dynamic);

// SAFETY: the value was built from JSON by this module alone (`parse_dynamic`, and
// `result_fields` over a result parsed from JSON): every `Rc` in it was created for it, has a
// count of one, and no clone of it exists. Moving the whole tree to another thread therefore
// moves every owner of each count together; no two threads can ever touch one count.
unsafe impl Send for DetachedValue {}
// SAFETY: a `&DetachedValue` gives no access to the value (there is no `&self` method), so
// sharing references between threads shares nothing.
unsafe impl Sync for DetachedValue {}

impl DetachedValue {
    pub fn into_inner(self) -> Dynamic {
        self.0
    }
}

/// A recorded session's result map, prepared as a [`DetachedValue`] holding a map: the
/// result's fields and its spawn's `goal` and `inputs`, as
/// [`session_map`](super::host_api::session_map) builds it. The spawn's recorded arguments are
/// the arguments of any call that reuses this result (the call key covers them all).
pub struct PreparedSessionMap(pub DetachedValue);

/// A recorded call's answer, prepared as the script value it becomes.
pub struct PreparedAnswer(pub DetachedValue);

/// What a replay's reading thread prepares: the answers of GitHub reads (the only recorded
/// answers that reach a script as values; `now` and `input` are read as JSON) and sessions'
/// whole result maps. A result whose output sits in the blob store is left to the host, which
/// loads it.
pub const PREPARE: PreparePayloads = PreparePayloads {
    call_result: |function, text| {
        if !function.starts_with("github.") || crate::journal::blob_store::marked_hash(text).is_some() {
            return None;
        }
        let value = parse_dynamic(text).ok()?;
        Some(Box::new(PreparedAnswer(DetachedValue(value))) as Prepared)
    },
    session_result: |result, spawn_args| {
        if result.output.get("$blob").is_some() || result.text_blob.is_some() {
            return None;
        }
        // The arguments are parsed straight into script values; goal and inputs are read as
        // `goal_of` and `inputs_of` read them (a goal that is not a string reads as "", inputs
        // that are not a map as an empty map).
        let mut args = parse_dynamic(spawn_args?).ok()?.try_cast::<Map>()?;
        let goal = args.remove("goal").filter(Dynamic::is_string).unwrap_or_else(|| "".into());
        let inputs = args.remove("inputs").filter(Dynamic::is_map).unwrap_or_else(|| Map::new().into());
        let mut map = result_fields(result);
        map.insert("goal".into(), goal);
        map.insert("inputs".into(), inputs);
        Some(Box::new(PreparedSessionMap(DetachedValue(map.into()))) as Prepared)
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf::session::{SessionResult, SessionStatus};
    use crate::script::host::{goal_of, inputs_of};
    use crate::script::host_api::session_map;
    use serde_json::json;

    #[test]
    fn prepared_values_equal_what_the_script_thread_builds() {
        let mut result = SessionResult::failed("s3", "mr-review", SessionStatus::Timeout, "timed out");
        result.output = json!({"verdict": "minor", "findings": [{"severity": "minor", "n": 1.5}]});
        let args = r#"{"goal": "g", "inputs": {"pr": 3}}"#;
        let prepared = (PREPARE.session_result)(&result, Some(args)).unwrap();
        let map = prepared.downcast::<PreparedSessionMap>().unwrap().0.into_inner();
        let built = session_map(&result, "g", &json!({"pr": 3}));
        assert_eq!(format!("{map:?}"), format!("{:?}", Dynamic::from_map(built)));
        for odd in ["{}", r#"{"goal": 7, "inputs": [1]}"#, r#"{"goal": null, "inputs": "x", "other": 1}"#] {
            let args: serde_json::Value = serde_json::from_str(odd).unwrap();
            let built = session_map(&result, goal_of(&args), inputs_of(&args));
            let prepared = (PREPARE.session_result)(&result, Some(odd)).unwrap();
            let map = prepared.downcast::<PreparedSessionMap>().unwrap().0.into_inner();
            assert_eq!(format!("{map:?}"), format!("{:?}", Dynamic::from_map(built)), "{odd}");
        }
        assert!((PREPARE.session_result)(&result, Some("[1]")).is_none(), "arguments that are not a map");
        assert!((PREPARE.session_result)(&result, None).is_none(), "no spawn seen: the host builds it");

        let text = r#"[{"number": 1, "title": "t", "labels": []}]"#;
        let prepared = (PREPARE.call_result)("github.prs", text).unwrap();
        let value = prepared.downcast::<PreparedAnswer>().unwrap().0.into_inner();
        assert_eq!(format!("{value:?}"), format!("{:?}", parse_dynamic(text).unwrap()));
        assert!((PREPARE.call_result)("input", "\"x\"").is_none());
        assert!((PREPARE.call_result)("github.pr", "[1,").is_none(), "unparsable text is left to the host");

        result.output = json!({"$blob": "abc"});
        assert!((PREPARE.session_result)(&result, Some(args)).is_none(), "blob outputs are loaded by the host");
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
