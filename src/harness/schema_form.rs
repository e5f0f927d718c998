//! The form a workflow's one JSON Schema takes for each provider. A workflow keeps a single
//! schema (draft 2020-12 unless it says otherwise) and every answer is validated against it by
//! the scheduler; what a provider is *sent* differs:
//! - Claude Code checks `--json-schema` with a draft-07 validator and silently drops a schema
//!   it cannot load, so it gets draft-07 without `$schema` ([`draft07`]).
//! - Codex (`--output-schema`) and the OpenAI harness send `strict: true`, whose rules no
//!   ordinary schema meets: every property required, optional ones as `null` unions,
//!   `additionalProperties: false` on every object, a small keyword set ([`strict`]); the
//!   `null`s a strict answer carries for absent optional fields are taken out again before
//!   validation ([`drop_optional_nulls`]).
//! - The Gemini CLI has no schema flag: the schema travels in the prompt as it is.
//!
//! Owns the translations and the list of what a provider cannot take ([`problems`], which
//! `coord check` and `coord doctor` report with the schema path). It must not validate answers.

use serde_json::{json, Map, Value};

/// Something in a schema one provider cannot take, at a JSON pointer into the schema.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaProblem {
    pub path: String,
    pub message: String,
}

/// Which schema rules a harness kind's provider applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SchemaDialect {
    /// Draft-07, root an object (Claude Code's `StructuredOutput` tool, the Anthropic tool).
    Draft07Object,
    /// OpenAI structured outputs with `strict: true` (Codex, the OpenAI harness).
    OpenAiStrict,
    /// Anything: the schema is only quoted to the model (Gemini CLI, command, mock).
    Quoted,
}

impl SchemaDialect {
    /// The dialect of a harness `kind`; `openai_strict` is the `openai` harness's `strict`
    /// setting (without it, that harness sends the schema as it is).
    pub fn of_kind(kind: &str, openai_strict: bool) -> Self {
        match kind {
            "claude-code" | "anthropic" => SchemaDialect::Draft07Object,
            "codex" => SchemaDialect::OpenAiStrict,
            "openai" if openai_strict => SchemaDialect::OpenAiStrict,
            _ => SchemaDialect::Quoted,
        }
    }
}

/// What `schema` cannot be for a harness of `kind` (see [`SchemaDialect::of_kind`]), each
/// with its path.
pub fn problems(kind: &str, openai_strict: bool, schema: &Value) -> Vec<SchemaProblem> {
    match SchemaDialect::of_kind(kind, openai_strict) {
        SchemaDialect::Draft07Object => root_object_problem(schema).into_iter().collect(),
        SchemaDialect::OpenAiStrict => strict(schema).err().unwrap_or_default(),
        SchemaDialect::Quoted => Vec::new(),
    }
}

fn root_object_problem(schema: &Value) -> Option<SchemaProblem> {
    let is_object = schema.get("type").and_then(Value::as_str) == Some("object")
        || (schema.get("type").is_none() && schema.get("properties").is_some());
    (!is_object).then(|| SchemaProblem {
        path: "/".into(),
        message: "the answer must be a JSON object (`\"type\": \"object\"` at the root): providers take structured \
                  output as a tool's or a response's object"
            .into(),
    })
}

// ---- draft-07 -----------------------------------------------------------------------------

/// The schema in draft-07: no `$schema`, `$defs` as `definitions` (references rewritten),
/// `prefixItems` as tuple `items`, `dependentRequired`/`dependentSchemas` as `dependencies`.
/// Keywords draft-07 lacks (`unevaluatedProperties`, `$dynamicRef` ...) are dropped: the
/// provider's check is a first filter, coord's validation against the original is the rule.
pub fn draft07(schema: &Value) -> Value {
    let mut out = draft07_node(schema);
    if let Value::Object(map) = &mut out {
        map.remove("$schema");
    }
    out
}

fn draft07_node(node: &Value) -> Value {
    match node {
        Value::Object(map) => {
            let mut out = Map::new();
            let mut dependencies = Map::new();
            for (key, value) in map {
                match key.as_str() {
                    "$schema" => {}
                    "$defs" | "definitions" => {
                        let defs = object_map(value, draft07_node);
                        merge_into(&mut out, "definitions", defs);
                    }
                    "$ref" => {
                        let target = value.as_str().unwrap_or_default().replace("#/$defs/", "#/definitions/");
                        out.insert("$ref".into(), Value::String(target));
                    }
                    "prefixItems" => {
                        let items: Vec<Value> = value.as_array().into_iter().flatten().map(draft07_node).collect();
                        out.insert("items".into(), Value::Array(items));
                        if let Some(rest) = map.get("items") {
                            out.insert("additionalItems".into(), draft07_node(rest));
                        }
                    }
                    "items" if map.contains_key("prefixItems") => {}
                    "dependentRequired" | "dependentSchemas" => {
                        if let Value::Object(deps) = value {
                            for (k, v) in deps {
                                dependencies.insert(k.clone(), draft07_node(v));
                            }
                        }
                    }
                    "unevaluatedProperties"
                    | "unevaluatedItems"
                    | "$dynamicRef"
                    | "$dynamicAnchor"
                    | "$anchor"
                    | "$vocabulary"
                    | "minContains"
                    | "maxContains" => {}
                    "properties" | "patternProperties" => {
                        out.insert(key.clone(), Value::Object(object_map(value, draft07_node)));
                    }
                    "enum" | "const" | "required" | "examples" | "default" => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {
                        out.insert(key.clone(), draft07_node(value));
                    }
                }
            }
            if !dependencies.is_empty() {
                out.insert("dependencies".into(), Value::Object(dependencies));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(draft07_node).collect()),
        other => other.clone(),
    }
}

fn object_map(value: &Value, f: fn(&Value) -> Value) -> Map<String, Value> {
    value.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), f(v))).collect()).unwrap_or_default()
}

fn merge_into(out: &mut Map<String, Value>, key: &str, more: Map<String, Value>) {
    match out.get_mut(key) {
        Some(Value::Object(existing)) => existing.extend(more),
        _ => {
            out.insert(key.into(), Value::Object(more));
        }
    }
}

// ---- OpenAI strict ------------------------------------------------------------------------

/// Keywords strict mode refuses; their meaning moves into the description so the model still
/// reads it, and coord's validation against the original schema still enforces it.
const DESCRIBED_NOT_SENT: &[&str] = &[
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "default",
    "examples",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "patternProperties",
];

/// Keywords strict mode takes as they are.
const KEPT: &[&str] = &[
    "type",
    "description",
    "title",
    "enum",
    "pattern",
    "format",
    "multipleOf",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "$ref",
];

/// The schema in OpenAI's strict form, or every place it cannot be expressed there.
pub fn strict(schema: &Value) -> Result<Value, Vec<SchemaProblem>> {
    let mut problems = Vec::new();
    if let Some(p) = root_object_problem(schema) {
        problems.push(p);
    }
    let mut out = strict_node(schema, "", &mut problems);
    if let (Value::Object(out), Some(Value::Object(defs))) =
        (&mut out, schema.get("$defs").or(schema.get("definitions")))
    {
        let defs: Map<String, Value> =
            defs.iter().map(|(k, v)| (k.clone(), strict_node(v, &format!("/$defs/{k}"), &mut problems))).collect();
        out.insert("$defs".into(), Value::Object(defs));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn strict_node(node: &Value, path: &str, problems: &mut Vec<SchemaProblem>) -> Value {
    let Value::Object(map) = node else {
        if node == &Value::Bool(true) {
            problems.push(problem(path, "`true` (any value) cannot be expressed in strict mode; give a type"));
        }
        return node.clone();
    };
    let mut out = Map::new();
    let mut notes: Vec<String> = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            k if KEPT.contains(&k) => {
                let value = if k == "$ref" {
                    Value::String(value.as_str().unwrap_or_default().replace("#/definitions/", "#/$defs/"))
                } else {
                    value.clone()
                };
                out.insert(key.clone(), value);
            }
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "items" => {
                out.insert("items".into(), strict_node(value, &format!("{path}/items"), problems));
            }
            "anyOf" | "oneOf" => {
                let branches: Vec<Value> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, b)| strict_node(b, &format!("{path}/{key}/{i}"), problems))
                    .collect();
                if path.is_empty() {
                    problems.push(problem(path, &format!("`{key}` at the root cannot be expressed in strict mode")));
                }
                out.insert("anyOf".into(), Value::Array(branches));
            }
            "allOf" => problems
                .push(problem(&format!("{path}/allOf"), "`allOf` is not supported in strict mode; merge the branches")),
            "prefixItems" => problems.push(problem(
                &format!("{path}/prefixItems"),
                "tuples (`prefixItems`) are not supported in strict mode",
            )),
            "properties"
            | "required"
            | "additionalProperties"
            | "$defs"
            | "definitions"
            | "$schema"
            | "$id"
            | "$comment" => {}
            k if DESCRIBED_NOT_SENT.contains(&k) => notes.push(format!("{k}: {value}")),
            other => notes.push(format!("{other}: {value}")),
        }
    }
    if map.contains_key("properties") || map.get("type").and_then(Value::as_str) == Some("object") {
        strict_object(map, path, &mut out, problems);
    }
    if !out.contains_key("type") && !out.contains_key("anyOf") && !out.contains_key("$ref") {
        let values = map.get("enum").cloned().or_else(|| map.get("const").map(|c| json!([c])));
        match values.as_ref().and_then(enum_type) {
            Some(t) => {
                out.insert("type".into(), Value::String(t.into()));
            }
            // An enum of mixed types is taken as it is.
            None if values.is_some() => {}
            None => problems.push(problem(path, "strict mode needs a `type` here")),
        }
    }
    if !notes.is_empty() {
        let described = match out.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d} ({})", notes.join("; ")),
            None => format!("Constraints: {}", notes.join("; ")),
        };
        out.insert("description".into(), Value::String(described));
    }
    Value::Object(out)
}

fn strict_object(
    map: &Map<String, Value>,
    path: &str,
    out: &mut Map<String, Value>,
    problems: &mut Vec<SchemaProblem>,
) {
    out.insert("type".into(), Value::String("object".into()));
    let free_keys =
        matches!(map.get("additionalProperties"), Some(v) if v != &Value::Bool(false) && v != &Value::Bool(true));
    if free_keys {
        problems.push(problem(
            &format!("{path}/additionalProperties"),
            "a map of free keys (`additionalProperties`) cannot be expressed in strict mode",
        ));
        return;
    }
    let Some(Value::Object(props)) = map.get("properties") else {
        problems.push(problem(path, "an object without `properties` cannot be expressed in strict mode"));
        return;
    };
    let required: Vec<&str> =
        map.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut strict_props = Map::new();
    for (name, prop) in props {
        let prop_path = format!("{path}/properties/{}", name.replace('~', "~0").replace('/', "~1"));
        let converted = strict_node(prop, &prop_path, problems);
        let converted = if required.contains(&name.as_str()) { converted } else { nullable(converted) };
        strict_props.insert(name.clone(), converted);
    }
    out.insert("required".into(), Value::Array(props.keys().cloned().map(Value::String).collect()));
    out.insert("properties".into(), Value::Object(strict_props));
    out.insert("additionalProperties".into(), Value::Bool(false));
}

/// An optional property in strict form: its own type, or `null`.
fn nullable(mut schema: Value) -> Value {
    let Value::Object(map) = &mut schema else { return schema };
    let takes_null = |t: &Value| t == "null" || t.as_array().is_some_and(|a| a.iter().any(|x| x == "null"));
    match map.get("type").cloned() {
        Some(t) if takes_null(&t) => {}
        Some(Value::String(t)) if !map.contains_key("$ref") => {
            map.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.push(Value::Null);
            }
        }
        Some(Value::Array(mut types)) => {
            types.push(Value::String("null".into()));
            map.insert("type".into(), Value::Array(types));
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.push(Value::Null);
            }
        }
        _ => {
            if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
                branches.push(json!({"type": "null"}));
            } else {
                return json!({"anyOf": [schema, {"type": "null"}]});
            }
        }
    }
    schema
}

/// The one JSON type every value of an `enum` has.
fn enum_type(values: &Value) -> Option<&'static str> {
    let values = values.as_array()?;
    let type_of = |v: &Value| match v {
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Value::Number(_) => Some("number"),
        _ => None,
    };
    let first = type_of(values.first()?)?;
    values.iter().all(|v| type_of(v) == Some(first)).then_some(first)
}

fn problem(path: &str, message: &str) -> SchemaProblem {
    SchemaProblem { path: if path.is_empty() { "/".into() } else { path.into() }, message: message.into() }
}

/// Takes out of a strict-mode answer the `null`s it carries for optional properties the
/// original schema does not allow to be `null`, so the answer validates against the original.
pub fn drop_optional_nulls(answer: &mut Value, original: &Value) {
    drop_nulls_at(answer, original, original, 0);
}

fn drop_nulls_at(answer: &mut Value, schema: &Value, root: &Value, depth: usize) {
    if depth > 64 {
        return;
    }
    let schema = resolve(schema, root);
    match answer {
        Value::Object(fields) => {
            let Some(Value::Object(props)) = schema.get("properties") else { return };
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            fields.retain(|k, v| {
                !(v.is_null()
                    && !required.contains(&k.as_str())
                    && props.get(k).is_some_and(|p| !allows_null(resolve(p, root), root)))
            });
            for (k, v) in fields.iter_mut() {
                if let Some(p) = props.get(k) {
                    drop_nulls_at(v, p, root, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    drop_nulls_at(item, item_schema, root, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { return schema };
    let Some(pointer) = reference.strip_prefix('#') else { return schema };
    root.pointer(pointer).unwrap_or(schema)
}

fn allows_null(schema: &Value, root: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => {
            schema.get("enum").and_then(Value::as_array).is_some_and(|v| v.contains(&Value::Null))
                || ["anyOf", "oneOf"].iter().any(|k| {
                    schema
                        .get(*k)
                        .and_then(Value::as_array)
                        .is_some_and(|bs| bs.iter().any(|b| allows_null(resolve(b, root), root)))
                })
                || (schema.get("enum").is_none()
                    && schema.get("anyOf").is_none()
                    && schema.get("oneOf").is_none()
                    && schema.get("const").is_none())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review() -> Value {
        serde_json::from_str(include_str!("../../workflows/mr-review.schema.json")).unwrap()
    }

    #[test]
    fn draft07_drops_schema_and_rewrites_2020_keywords() {
        let s = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}},
            "properties": {"p": {"$ref": "#/$defs/pair"}, "a": {"type": "string"}},
            "dependentRequired": {"a": ["p"]},
            "unevaluatedProperties": false
        });
        let d = draft07(&s);
        assert_eq!(
            d,
            json!({
                "type": "object",
                "definitions": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false}},
                "properties": {"p": {"$ref": "#/definitions/pair"}, "a": {"type": "string"}},
                "dependencies": {"a": ["p"]}
            })
        );
        assert!(draft07(&review()).get("$schema").is_none());
    }

    #[test]
    fn strict_requires_everything_and_makes_optional_fields_nullable() {
        let s = strict(&review()).unwrap();
        assert_eq!(s["required"], json!(["verdict", "summary", "findings"]));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["verdict"], json!({"enum": ["clean", "minor", "blocking"], "type": "string"}));
        assert_eq!(s["properties"]["summary"]["type"], json!(["string", "null"]));
        let item = &s["properties"]["findings"]["items"];
        assert_eq!(item["required"], json!(["severity", "file", "line", "message"]));
        assert_eq!(item["properties"]["line"]["type"], json!(["integer", "null"]));
        assert_eq!(item["additionalProperties"], false);
        assert!(s.get("$schema").is_none());
    }

    #[test]
    fn strict_describes_what_it_cannot_send_and_reports_what_it_cannot_express() {
        let s = strict(
            &json!({"type": "object", "properties": {"n": {"type": "string", "minLength": 3}}, "required": ["n"]}),
        )
        .unwrap();
        assert_eq!(s["properties"]["n"], json!({"type": "string", "description": "Constraints: minLength: 3"}));
        let bad = strict(&json!({"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}, "any": {}}})).unwrap_err();
        let paths: Vec<&str> = bad.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["/properties/tags/additionalProperties", "/properties/any"]);
        assert_eq!(strict(&json!({"type": "array"})).unwrap_err()[0].path, "/");
        assert!(problems("codex", false, &json!({"type": "array", "items": {"type": "string"}})).len() == 1);
        assert!(problems("gemini", false, &json!({"type": "array"})).is_empty());
        assert!(problems("openai", false, &json!({"type": "object", "additionalProperties": {}})).is_empty());
        assert!(!problems("openai", true, &json!({"type": "object", "additionalProperties": {}})).is_empty());
    }

    /// Any shipped workflow may be swapped onto any harness (`--leaf WORKFLOW=codex`), except
    /// workshop-job's map of free keys, which strict mode cannot say.
    #[test]
    fn every_shipped_schema_has_a_strict_and_a_draft07_form() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".schema.json") {
                continue;
            }
            let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            match strict(&schema) {
                Err(p) if path.ends_with("workshop-job.schema.json") => {
                    assert_eq!(p[0].path, "/properties/inputs_used/additionalProperties")
                }
                other => assert_eq!(other.err(), None, "{}", path.display()),
            }
            assert!(problems("claude-code", false, &schema).is_empty(), "{}", path.display());
            jsonschema::draft7::new(&draft07(&schema)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
        assert!(seen >= 20, "{seen}");
    }

    #[test]
    fn nulls_for_absent_optional_fields_are_dropped_before_validation() {
        let mut answer = json!({"verdict": "minor", "summary": null, "findings": [{"severity": "minor", "file": null, "line": null, "message": "m"}]});
        drop_optional_nulls(&mut answer, &review());
        assert_eq!(answer, json!({"verdict": "minor", "findings": [{"severity": "minor", "message": "m"}]}));
        // A null the original allows, or a required one, stays (and fails validation if wrong).
        let s = json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": ["string", "null"]}}});
        let mut answer = json!({"a": null, "b": null});
        drop_optional_nulls(&mut answer, &s);
        assert_eq!(answer, json!({"a": null, "b": null}));
    }
}
