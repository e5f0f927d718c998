//! Leaf workflows: `workflows/<name>.toml` files naming a harness, model, timeout, prompt
//! template and output JSON Schema.
//!
//! Owns loading, schema compilation, output validation and prompt rendering. It must not run
//! anything: harnesses run leaves; this module only describes them.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WorkflowError {
    #[error("no workflow `{name}`: looked for {name}.toml in {searched}")]
    #[diagnostic(
        code(coord::workflow::missing),
        help("workflows live in `workflows/<name>.toml` beside the coordinators")
    )]
    Missing { name: String, searched: String },
    #[error("workflow `{name}` ({path}): {reason}")]
    #[diagnostic(code(coord::workflow::invalid))]
    Invalid { name: String, path: PathBuf, reason: String },
}

/// A workflow file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowFile {
    #[serde(default)]
    description: String,
    harness: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    timeout: Option<toml::Value>,
    prompt: String,
    schema: toml::Value,
    #[serde(default)]
    inputs: IndexMap<String, String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    max_turns: Option<u32>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    worktree: Option<bool>,
    /// Harness-specific settings, passed through untouched.
    #[serde(default)]
    options: toml::Table,
}

#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub harness: String,
    pub model: Option<String>,
    pub timeout: Duration,
    pub prompt: String,
    pub schema: Value,
    pub validator: jsonschema::Validator,
    /// Declared input names and their informal types.
    pub inputs: IndexMap<String, String>,
    pub command: Option<Vec<String>>,
    pub max_turns: Option<u32>,
    pub retries: u32,
    pub worktree: bool,
    pub options: toml::Table,
}

impl Workflow {
    pub fn load(name: &str, path: &Path) -> Result<Self, WorkflowError> {
        let invalid = |reason: String| WorkflowError::Invalid { name: name.to_owned(), path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let file: WorkflowFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let schema = match &file.schema {
            toml::Value::String(rel) => {
                let schema_path = path.parent().unwrap_or(Path::new(".")).join(rel);
                let text = std::fs::read_to_string(&schema_path)
                    .map_err(|e| invalid(format!("schema file {}: {e}", schema_path.display())))?;
                serde_json::from_str(&text)
                    .map_err(|e| invalid(format!("schema file {}: {e}", schema_path.display())))?
            }
            inline => serde_json::to_value(inline).map_err(|e| invalid(e.to_string()))?,
        };
        let validator = compile_schema(&schema).map_err(invalid)?;
        let timeout = match &file.timeout {
            None => DEFAULT_TIMEOUT,
            Some(v) => parse_timeout(v).map_err(invalid)?,
        };
        Ok(Workflow {
            name: name.to_owned(),
            path: path.to_owned(),
            description: file.description,
            harness: file.harness,
            model: file.model,
            timeout,
            prompt: file.prompt,
            schema,
            validator,
            inputs: file.inputs,
            command: file.command,
            max_turns: file.max_turns,
            retries: file.retries.unwrap_or(0),
            worktree: file.worktree.unwrap_or(false),
            options: file.options,
        })
    }

    /// Renders the prompt template with `goal`, `inputs` and `workflow` in scope.
    pub fn render_prompt(&self, goal: &str, inputs: &Value) -> Result<String, String> {
        render_template(&self.prompt, goal, inputs, &self.name)
    }
}

pub fn render_template(template: &str, goal: &str, inputs: &Value, workflow: &str) -> Result<String, String> {
    let env = minijinja::Environment::new();
    env.render_str(template, minijinja::context! { goal => goal, inputs => inputs, workflow => workflow })
        .map_err(|e| format!("prompt template: {e}"))
}

pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("invalid JSON Schema: {e}"))
}

/// Validates `output` and returns every violation as `path: message`, or Ok.
pub fn validate(validator: &jsonschema::Validator, output: &Value) -> Result<(), String> {
    let errors: Vec<String> = validator
        .iter_errors(output)
        .take(5)
        .map(|e| {
            let path = e.instance_path.to_string();
            if path.is_empty() {
                format!("output: {e}")
            } else {
                format!("output{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("schema violation: {}", errors.join("; ")))
    }
}

fn parse_timeout(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(secs) if *secs > 0 => Ok(Duration::from_secs(*secs as u64)),
        toml::Value::Float(secs) if *secs > 0.0 => Ok(Duration::from_secs_f64(*secs)),
        toml::Value::String(s) => {
            humantime::parse_duration(s).map_err(|e| format!("timeout `{s}`: {e} (write e.g. \"90s\", \"15m\")"))
        }
        other => Err(format!("timeout must be seconds or a duration like \"15m\", not {other}")),
    }
}

/// Finds and caches workflows by name across an ordered list of directories.
#[derive(Debug, Default)]
pub struct WorkflowSet {
    dirs: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Arc<Workflow>>>,
}

impl WorkflowSet {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        WorkflowSet { dirs, cache: Mutex::new(HashMap::new()) }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub fn find_path(&self, name: &str) -> Option<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return None;
        }
        self.dirs.iter().map(|d| d.join(format!("{name}.toml"))).find(|p| p.is_file())
    }

    pub fn get(&self, name: &str) -> Result<Arc<Workflow>, WorkflowError> {
        if let Some(w) = self.cache.lock().expect("workflow cache poisoned").get(name) {
            return Ok(w.clone());
        }
        let path = self.find_path(name).ok_or_else(|| WorkflowError::Missing {
            name: name.to_owned(),
            searched: self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        })?;
        let wf = Arc::new(Workflow::load(name, &path)?);
        self.cache.lock().expect("workflow cache poisoned").insert(name.to_owned(), wf.clone());
        Ok(wf)
    }

    /// Names of every workflow visible through the set, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dirs
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter_map(|e| {
                let p = e.path();
                if p.extension()? != "toml" {
                    return None;
                }
                Some(p.file_stem()?.to_string_lossy().into_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn loads_inline_and_file_schemas_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "review.schema.json",
            r#"{"type":"object","required":["verdict"],"properties":{"verdict":{"enum":["clean","minor"]}}}"#,
        );
        write(dir.path(), "review.toml", "harness = \"mock\"\ntimeout = \"90s\"\nprompt = \"Review #{{ inputs.pr }}: {{ goal }}\"\nschema = \"review.schema.json\"\n");
        write(dir.path(), "inline.toml", "harness = \"mock\"\nprompt = \"x\"\n[schema]\ntype = \"object\"\n");
        let set = WorkflowSet::new(vec![dir.path().to_owned()]);
        let wf = set.get("review").unwrap();
        assert_eq!(wf.timeout, Duration::from_secs(90));
        assert_eq!(wf.render_prompt("look closely", &json!({"pr": 12})).unwrap(), "Review #12: look closely");
        assert!(validate(&wf.validator, &json!({"verdict": "clean"})).is_ok());
        let err = validate(&wf.validator, &json!({"verdict": "maybe"})).unwrap_err();
        assert!(err.contains("/verdict"), "{err}");
        assert!(validate(&wf.validator, &json!({})).unwrap_err().contains("verdict"));
        assert!(set.get("inline").is_ok());
        assert_eq!(set.names(), vec!["inline", "review"]);
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bad.toml", "harness = \"mock\"\nprompt = \"x\"\nschema = { type = 12 }\n");
        write(dir.path(), "typo.toml", "harnes = \"mock\"\n");
        let set = WorkflowSet::new(vec![dir.path().to_owned()]);
        assert!(matches!(set.get("bad"), Err(WorkflowError::Invalid { .. })));
        assert!(matches!(set.get("typo"), Err(WorkflowError::Invalid { .. })));
        assert!(matches!(set.get("nope"), Err(WorkflowError::Missing { .. })));
        assert!(set.find_path("../etc").is_none());
    }
}
