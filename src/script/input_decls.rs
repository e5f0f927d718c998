//! A coordinator's declared inputs: a TOML table in the `//!` comment lines at the top of the
//! script, read by `coord run` (and resume, and the daemon) before anything runs, by
//! `coord check`, and by `coord run SCRIPT --help-inputs`:
//!
//! ```text
//! //! [inputs]
//! //! repo = { type = "string", description = "the repository (owner/name)" }
//! //! parallel = { type = "integer", default = 2, description = "tickets coded at once" }
//! //! escalate_to = { type = "string", required = false, description = "also notify escalations here" }
//! ```
//!
//! Types: `string`, `integer`, `number`, `boolean`, `array`, `object`, `any`. A value given
//! as text (`--input parallel=3`) is read as its declared type. An input without a default is
//! required unless `required = false`; a default fills in what is not given; an input the
//! header does not declare is refused (a misspelt `--input chanel=...`). A script with no
//! header takes any input, as text or as given.
//!
//! Owns the format and the checks; it must not read an input's value for routing.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputDecl {
    #[serde(rename = "type", default = "any_type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub default: Option<toml::Value>,
    #[serde(default)]
    pub required: Option<bool>,
}

fn any_type() -> String {
    "any".into()
}

const TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object", "any"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    #[serde(default)]
    inputs: IndexMap<String, InputDecl>,
}

/// The inputs a script declares; empty when it has no header.
#[derive(Clone, Debug, Default)]
pub struct InputDecls {
    pub inputs: IndexMap<String, InputDecl>,
    /// Whether the script has a header at all (without one, any input is taken).
    pub declared: bool,
}

/// A header that is not valid: the message, and the byte range in the script it is about.
#[derive(Debug)]
pub struct HeaderError {
    pub message: String,
    pub span: std::ops::Range<usize>,
}

impl InputDecls {
    /// Reads the header: the `//!` lines before the first line of code.
    pub fn parse(source: &str) -> Result<Self, HeaderError> {
        let mut toml_text = String::new();
        let mut span = 0..0;
        let mut offset = 0;
        for line in source.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("//!") {
                if toml_text.is_empty() {
                    span.start = offset;
                }
                toml_text.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                if !rest.ends_with('\n') {
                    toml_text.push('\n');
                }
                span.end = offset + line.len();
            } else if !(trimmed.is_empty() || trimmed.starts_with("//")) {
                break;
            }
            offset += line.len();
        }
        if toml_text.trim().is_empty() {
            return Ok(InputDecls::default());
        }
        let header: Header = toml::from_str(&toml_text)
            .map_err(|e| HeaderError { message: format!("the `//!` header: {}", e.message()), span: span.clone() })?;
        for (name, decl) in &header.inputs {
            if !TYPES.contains(&decl.kind.as_str()) {
                return Err(HeaderError {
                    message: format!("input `{name}`: unknown type `{}` (one of: {})", decl.kind, TYPES.join(", ")),
                    span,
                });
            }
        }
        Ok(InputDecls { inputs: header.inputs, declared: true })
    }

    /// Checks `inputs` against the declarations: reads text as its declared type, fills in
    /// defaults, and returns every problem (missing, mistyped, undeclared).
    pub fn apply(&self, inputs: &mut IndexMap<String, Value>) -> Result<(), Vec<String>> {
        if !self.declared {
            return Ok(());
        }
        let mut problems = Vec::new();
        for (name, value) in inputs.iter_mut() {
            match self.inputs.get(name) {
                None => {
                    let known: Vec<&str> = self.inputs.keys().map(String::as_str).collect();
                    let near = known
                        .iter()
                        .map(|k| (crate::script::diagnostic::strsim_distance(name, k), *k))
                        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
                        .min_by_key(|(d, _)| *d)
                        .map(|(_, k)| format!("did you mean `{k}`? "))
                        .unwrap_or_default();
                    problems
                        .push(format!("unknown input `{name}`: {near}this coordinator takes: {}", known.join(", ")));
                }
                Some(decl) => match typed(value, &decl.kind) {
                    Ok(v) => *value = v,
                    Err(why) => problems.push(format!("input `{name}`: {why}")),
                },
            }
        }
        for (name, decl) in &self.inputs {
            if inputs.contains_key(name) {
                continue;
            }
            match &decl.default {
                Some(default) => {
                    inputs.insert(name.clone(), serde_json::to_value(default).unwrap_or(Value::Null));
                }
                None if decl.required != Some(false) => problems.push(format!(
                    "missing input `{name}` ({}{}): give it with --input {name}=..., --input-json or --inputs FILE",
                    decl.kind,
                    if decl.description.is_empty() { String::new() } else { format!(", {}", decl.description) }
                )),
                None => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The declared inputs as a table for `--help-inputs`.
    pub fn describe(&self) -> String {
        if !self.declared {
            return "this coordinator declares no inputs (any --input is passed as text)\n".into();
        }
        let rows: Vec<(&String, &InputDecl, String)> = self
            .inputs
            .iter()
            .map(|(name, d)| {
                let need = match (&d.default, d.required) {
                    (Some(v), _) => format!("default {v}"),
                    (None, Some(false)) => "optional".into(),
                    (None, _) => "required".into(),
                };
                (name, d, need)
            })
            .collect();
        let name_width = rows.iter().map(|(n, ..)| n.len()).max().unwrap_or(0);
        let need_width = rows.iter().map(|(.., need)| need.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, d, need) in rows {
            out.push_str(&format!("{name:<name_width$}  {:<7}  {need:<need_width$}  {}\n", d.kind, d.description));
        }
        out
    }
}

/// `value` as `kind`: text is read as the kind (a number, `true`, JSON for lists and maps).
fn typed(value: &Value, kind: &str) -> Result<Value, String> {
    let fits = |v: &Value| match kind {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    };
    if fits(value) {
        return Ok(value.clone());
    }
    if let Value::String(text) = value {
        let parsed = match kind {
            "integer" => text.trim().parse::<i64>().ok().map(Value::from),
            "number" => {
                text.trim().parse::<f64>().ok().and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
            }
            "boolean" => match text.trim() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => serde_json::from_str::<Value>(text).ok().filter(fits),
        };
        if let Some(v) = parsed {
            return Ok(v);
        }
        return Err(format!("expected {kind}, got the text {text:?}"));
    }
    Err(format!("expected {kind}, got {}", crate::script::host::json_type(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCRIPT: &str = "// a comment first is fine\n//! [inputs]\n//! repo = { type = \"string\", description = \"owner/name\" }\n//! parallel = { type = \"integer\", default = 2 }\n//! jobs = { type = \"array\", required = false }\n\nlet x = 1;\n//! not a header line\n";

    #[test]
    fn text_is_read_as_its_type_and_defaults_fill_in() {
        let decls = InputDecls::parse(SCRIPT).unwrap();
        let mut inputs: IndexMap<String, Value> =
            [("repo".to_owned(), json!("acme/w")), ("jobs".to_owned(), json!("[{\"id\": 1}]"))].into_iter().collect();
        decls.apply(&mut inputs).unwrap();
        assert_eq!(inputs["parallel"], json!(2));
        assert_eq!(inputs["jobs"], json!([{"id": 1}]));
        let mut inputs: IndexMap<String, Value> =
            [("repo".to_owned(), json!("r")), ("parallel".to_owned(), json!("3"))].into_iter().collect();
        decls.apply(&mut inputs).unwrap();
        assert_eq!(inputs["parallel"], json!(3));
    }

    #[test]
    fn missing_mistyped_and_undeclared_inputs_are_each_named() {
        let decls = InputDecls::parse(SCRIPT).unwrap();
        let mut inputs: IndexMap<String, Value> =
            [("parallel".to_owned(), json!("many")), ("repos".to_owned(), json!("x"))].into_iter().collect();
        let problems = decls.apply(&mut inputs).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("input `parallel`: expected integer, got the text \"many\""), "{problems:?}");
        assert!(problems[1].contains("unknown input `repos`: did you mean `repo`?"), "{problems:?}");
        assert!(problems[2].starts_with("missing input `repo` (string, owner/name)"), "{problems:?}");
    }

    #[test]
    fn no_header_takes_anything_and_a_bad_header_says_where() {
        let decls = InputDecls::parse("let x = 1;\n").unwrap();
        let mut inputs: IndexMap<String, Value> = [("x".to_owned(), json!("1"))].into_iter().collect();
        decls.apply(&mut inputs).unwrap();
        assert_eq!(inputs["x"], json!("1"));
        let err = InputDecls::parse("//! [inputs]\n//! n = { type = \"int\" }\n").unwrap_err();
        assert!(err.message.contains("unknown type `int`"), "{}", err.message);
        assert_eq!(err.span, 0..38);
    }
}
