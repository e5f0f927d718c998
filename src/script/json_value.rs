//! Converts between JSON values (what the host, the journal and the leaves speak) and script
//! values, directly.
//!
//! Going through Rhai's serde bridge builds every value via a serializer and costs a tenth of
//! a large run; the direct walk gives the same values. Anything that is not plain data (a
//! session handle, a function pointer) still goes through the bridge, so its errors and
//! edge cases stay Rhai's. It must not know what a value means.

use rhai::{Array, Dynamic, ImmutableString, Map};
use serde_json::Value;

/// A JSON value as a script value: objects become maps, numbers ints when they fit.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(fields) => Dynamic::from_map(to_map(fields)),
    }
}

/// A JSON object as a script map.
pub fn to_map(fields: &serde_json::Map<String, Value>) -> Map {
    fields.iter().map(|(k, v)| (k.as_str().into(), to_dynamic(v))).collect()
}

/// A script value as JSON: maps become objects (in the map's sorted key order).
pub fn to_json(v: &Dynamic) -> Result<Value, Box<rhai::EvalAltResult>> {
    if v.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = v.as_float() {
        return Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return Ok(Value::String(s.as_str().to_owned()));
    }
    if let Some(items) = v.read_lock::<Array>() {
        return items.iter().map(to_json).collect::<Result<Vec<_>, _>>().map(Value::Array);
    }
    if let Some(fields) = v.read_lock::<Map>() {
        let mut object = serde_json::Map::with_capacity(fields.len());
        for (k, v) in fields.iter() {
            object.insert(k.to_string(), to_json(v)?);
        }
        return Ok(Value::Object(object));
    }
    if let Some(record) = v.read_lock::<super::record::Record>() {
        return record.to_json();
    }
    rhai::serde::from_dynamic::<Value>(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_conversions_agree_with_the_serde_bridge() {
        let samples = [
            json!(null),
            json!({"b": [1, 2.5, "x", true, null], "a": {"n": -3, "big": 18446744073709551615u64}, "e": {}}),
            json!([[], {}, "ünïcode", 0, -0.0, 1e300]),
        ];
        for v in samples {
            let direct = to_dynamic(&v);
            let bridged = rhai::serde::to_dynamic(&v).unwrap();
            assert_eq!(format!("{direct:?}"), format!("{bridged:?}"));
            assert_eq!(to_json(&direct).unwrap(), rhai::serde::from_dynamic::<Value>(&bridged).unwrap());
        }
        let mut engine = rhai::Engine::new();
        engine.set_max_expr_depths(0, 0);
        let script: Dynamic = engine.eval(r#"let m = #{ z: 1, a: ['c', 0.5, ()] }; let f = || m; f.call()"#).unwrap();
        assert_eq!(to_json(&script).unwrap(), rhai::serde::from_dynamic::<Value>(&script).unwrap());
        let nan = Dynamic::from_float(f64::NAN);
        assert_eq!(to_json(&nan).unwrap(), rhai::serde::from_dynamic::<Value>(&nan).unwrap());
    }
}
