//! Leaf workflows: `workflows/<name>.toml` files naming a harness, model, timeout, prompt
//! template and output JSON Schema.
//!
//! Owns loading, schema compilation, output validation and prompt rendering. It must not run
//! anything: harnesses run leaves; this module only describes them.

use crate::config::leaf_settings::WorkflowSettings;
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
    #[serde(default)]
    writes: Option<bool>,
    #[serde(default)]
    pass_env: Vec<String>,
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
    /// Shared, because every leaf request carries it.
    pub schema: std::sync::Arc<Value>,
    pub validator: jsonschema::Validator,
    /// Declared input names and their informal types.
    pub inputs: IndexMap<String, String>,
    pub command: Option<Vec<String>>,
    pub max_turns: Option<u32>,
    pub retries: u32,
    pub worktree: bool,
    /// The leaf changes things outside its run (pushes, writes in the project, calls out):
    /// a dry run holds it back, as it does every leaf with a worktree.
    pub writes: bool,
    /// Variables of coord's environment the leaf gets by name (`GITHUB_TOKEN` for a leaf that
    /// calls `gh`); a leaf gets no credential otherwise.
    pub pass_env: Vec<String>,
    pub options: toml::Table,
    /// The prompt template, compiled once: rendering is per leaf, and parsing per leaf costs
    /// more than everything else a spawn does.
    template: minijinja::Environment<'static>,
}

const PROMPT_TEMPLATE: &str = "prompt";

fn compile_template(source: &str) -> Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    env.add_template_owned(PROMPT_TEMPLATE, source.to_owned()).map_err(|e| format!("prompt template: {e}"))?;
    Ok(env)
}

impl Workflow {
    /// A workflow built in code rather than read from a file (embedders, tests).
    pub fn new(name: &str, harness: &str, prompt: &str, schema: Value) -> Result<Self, String> {
        Ok(Workflow {
            template: compile_template(prompt)?,
            validator: compile_schema(&schema)?,
            schema: std::sync::Arc::new(schema),
            name: name.to_owned(),
            path: PathBuf::from(format!("{name}.toml")),
            description: String::new(),
            harness: harness.to_owned(),
            model: None,
            timeout: DEFAULT_TIMEOUT,
            prompt: prompt.to_owned(),
            inputs: IndexMap::new(),
            command: None,
            max_turns: None,
            retries: 0,
            worktree: false,
            writes: false,
            pass_env: Vec::new(),
            options: toml::Table::new(),
        })
    }

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
        let template = compile_template(&file.prompt).map_err(invalid)?;
        if let Some(bad) = file.pass_env.iter().find(|n| !is_variable_name(n)) {
            return Err(invalid(format!("pass_env: `{bad}` is not an environment variable name")));
        }
        Ok(Workflow {
            template,
            name: name.to_owned(),
            path: path.to_owned(),
            description: file.description,
            harness: file.harness,
            model: file.model,
            timeout,
            prompt: file.prompt,
            schema: std::sync::Arc::new(schema),
            validator,
            inputs: file.inputs,
            command: file.command,
            max_turns: file.max_turns,
            retries: file.retries.unwrap_or(0),
            worktree: file.worktree.unwrap_or(false),
            writes: file.writes.unwrap_or(false),
            pass_env: file.pass_env,
            options: file.options,
        })
    }

    /// Applies a `[workflow.<name>]` table from `coord.toml`. A harness swapped there without a
    /// model drops the file's model, which was chosen for the file's harness.
    pub fn apply_settings(&mut self, settings: &WorkflowSettings) -> Result<(), String> {
        if let Some(harness) = &settings.harness {
            if *harness != self.harness {
                self.model = None;
            }
            self.harness = harness.clone();
        }
        if let Some(model) = &settings.model {
            self.model = Some(model.clone());
        }
        if let Some(timeout) = &settings.timeout {
            self.timeout = parse_timeout(timeout).map_err(|e| format!("coord.toml [workflow.{}]: {e}", self.name))?;
        }
        if let Some(retries) = settings.retries {
            self.retries = retries;
        }
        if let Some(worktree) = settings.worktree {
            self.worktree = worktree;
        }
        if let Some(bad) = settings.pass_env.iter().find(|n| !is_variable_name(n)) {
            return Err(format!(
                "coord.toml [workflow.{}]: pass_env: `{bad}` is not an environment variable name",
                self.name
            ));
        }
        for name in &settings.pass_env {
            if !self.pass_env.contains(name) {
                self.pass_env.push(name.clone());
            }
        }
        Ok(())
    }

    /// Renders the prompt template with `goal`, `inputs` and `workflow` in scope.
    pub fn render_prompt(&self, goal: &str, inputs: &Value) -> Result<String, String> {
        let template = self.template.get_template(PROMPT_TEMPLATE).map_err(|e| format!("prompt template: {e}"))?;
        template
            .render(minijinja::context! { goal => goal, inputs => inputs, workflow => &self.name })
            .map_err(|e| format!("prompt template: {e}"))
    }
}

/// Whether `name` can be an environment variable's name (for `pass_env` lists).
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
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
            let path = e.instance_path().to_string();
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
    /// `[workflow.<name>]` overrides from `coord.toml`, applied on load.
    overrides: IndexMap<String, WorkflowSettings>,
}

impl WorkflowSet {
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        WorkflowSet { dirs, cache: Mutex::new(HashMap::new()), overrides: IndexMap::new() }
    }

    pub fn with_overrides(mut self, overrides: IndexMap<String, WorkflowSettings>) -> Self {
        self.overrides = overrides;
        self
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
        let mut wf = Workflow::load(name, &path)?;
        if let Some(settings) = self.overrides.get(name) {
            wf.apply_settings(settings).map_err(|reason| WorkflowError::Invalid {
                name: name.to_owned(),
                path: path.clone(),
                reason,
            })?;
        }
        let wf = Arc::new(wf);
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

    #[test]
    fn variable_names() {
        assert!(is_variable_name("GITHUB_TOKEN") && is_variable_name("_x1"));
        assert!(
            !is_variable_name("") && !is_variable_name("1A") && !is_variable_name("A-B") && !is_variable_name("A=B")
        );
    }
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
    fn config_overrides_apply_on_load() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "review.toml",
            "harness = \"claude-code\"\nmodel = \"sonnet\"\nprompt = \"x\"\nschema = { type = \"object\" }\n",
        );
        let mut overrides = IndexMap::new();
        let settings = WorkflowSettings {
            harness: Some("codex".into()),
            timeout: Some(toml::Value::String("90s".into())),
            retries: Some(2),
            ..Default::default()
        };
        overrides.insert("review".to_owned(), settings);
        let set = WorkflowSet::new(vec![dir.path().to_owned()]).with_overrides(overrides);
        let wf = set.get("review").unwrap();
        assert_eq!(wf.harness, "codex");
        assert_eq!(wf.model, None, "the file's model belonged to the file's harness");
        assert_eq!(wf.timeout, Duration::from_secs(90));
        assert_eq!(wf.retries, 2);
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
