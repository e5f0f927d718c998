//! JSON a run keeps for long but reads rarely (a scenario world's PRs and issues, the mock
//! leaves' canned outputs, the effects a run performed), held as its text: a parsed
//! `serde_json` object costs several times its text (an entry of a map is over 100 bytes, and
//! maps leave room to grow), and a large run holds many thousands. It is parsed again whenever
//! it is read.
//!
//! It imports nothing of coord, so every layer may use it.

use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Clone, Debug)]
pub enum CompactJson {
    Text(Box<RawValue>),
    /// Scalars (nothing to save), and values holding a float: a float read back from text may
    /// differ in its last bit.
    Parsed(Value),
}

impl CompactJson {
    pub fn new(value: Value) -> Self {
        if !(value.is_object() || value.is_array()) || has_float(&value) {
            return CompactJson::Parsed(value);
        }
        match serde_json::value::to_raw_value(&value) {
            Ok(text) => CompactJson::Text(text),
            Err(_) => CompactJson::Parsed(value),
        }
    }

    /// The value, parsed again; a top-level object holds no spare room (it may be kept long,
    /// as the answer to `github::prs` is).
    pub fn value(&self) -> Value {
        match self {
            CompactJson::Text(text) => match serde_json::from_str(text.get()).expect("JSON this wrote parses") {
                Value::Object(fields) => {
                    let mut exact = serde_json::Map::with_capacity(fields.len());
                    exact.extend(fields);
                    Value::Object(exact)
                }
                other => other,
            },
            CompactJson::Parsed(value) => value.clone(),
        }
    }

    /// Changes the value through its parsed form, and keeps the result.
    pub fn edit<R>(&mut self, change: impl FnOnce(&mut Value) -> R) -> R {
        let mut value = self.value();
        let out = change(&mut value);
        *self = CompactJson::new(value);
        out
    }
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::CompactJson;
    use serde_json::json;

    #[test]
    fn values_come_back_as_they_went_in() {
        for v in [
            json!({"b": 1, "a": [true, null, "x", {"z": -3}], "big": 18446744073709551615u64}),
            json!({"f": 0.1, "g": [1e300]}),
            json!([]),
            json!("s"),
            json!(null),
        ] {
            let kept = CompactJson::new(v.clone());
            assert_eq!(kept.value(), v);
            // Key order too (`preserve_order`).
            assert_eq!(kept.value().to_string(), v.to_string());
        }
        assert!(matches!(CompactJson::new(json!({"f": 0.1})), CompactJson::Parsed(_)));
        let mut kept = CompactJson::new(json!({"n": 1}));
        kept.edit(|v| v["m"] = json!(2));
        assert_eq!(kept.value(), json!({"n": 1, "m": 2}));
    }
}
