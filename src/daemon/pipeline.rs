//! Pipelines: the `[[pipeline]]` sections of `coord.toml`, validated into what the daemon,
//! `coord schedule` and `coord trigger` run: a script, its inputs, an optional schedule, an
//! overlap policy and an optional webhook trigger.
//!
//! Owns validation (with diagnostics pointing into `coord.toml`) and turning a pipeline plus a
//! trigger's inputs into a [`RunPlan`]. It must not start runs or read the clock for anything
//! but refusing a schedule that never fires.

use super::lock;
use super::schedule::{Schedule, ScheduleError};
use super::webhook::PayloadPath;
use crate::config::file_diagnostic::FileDiagnostic;
use crate::config::pipeline::{Overlap, PipelineSection};
use crate::config::Config;
use crate::journal::run_dir::RunStore;
use crate::run::RunPlan;
use indexmap::IndexMap;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Missed fire times run when the daemon starts, unless a pipeline says otherwise.
pub const DEFAULT_CATCH_UP: u32 = 1;

#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    /// Resolved against the folder of `coord.toml`.
    pub script: PathBuf,
    pub schedule: Option<Schedule>,
    pub inputs: IndexMap<String, Value>,
    pub overlap: Overlap,
    pub scenario: Option<PathBuf>,
    pub catch_up: u32,
    pub webhook: Option<WebhookTrigger>,
}

#[derive(Debug)]
pub struct WebhookTrigger {
    /// The environment variable holding the HMAC secret, read on every request.
    pub secret_env: String,
    /// Input name -> where in the payload it is; empty: the payload's top-level fields.
    pub inputs: IndexMap<String, PayloadPath>,
}

impl Pipeline {
    /// The run a fire of this pipeline starts: its inputs, then `extra` (a webhook's) on top.
    pub fn run_plan(&self, runs: &RunStore, extra: IndexMap<String, Value>) -> RunPlan {
        let mut plan = RunPlan::new(self.script.clone());
        plan.inputs = self.inputs.clone();
        plan.inputs.extend(extra);
        plan.scenario = self.scenario.clone();
        plan.runs = runs.clone();
        plan.pipeline = Some(self.name.clone());
        plan
    }
}

/// A `[[signal_hook]]`, validated (`signal_hook::validate`).
#[derive(Clone, Debug)]
pub struct SignalHook {
    pub name: String,
    /// The environment variable holding the HMAC secret, read on every request.
    pub secret_env: String,
    pub signal: String,
    pub key: Option<PayloadPath>,
    /// (the path as written, the path, the text its value must start with)
    pub matches: Vec<(String, PayloadPath, String)>,
    pub data: Option<PayloadPath>,
}

/// Every pipeline of one `coord.toml`, in file order, and its signal hooks.
#[derive(Debug, Default)]
pub struct PipelineSet {
    pub config_path: PathBuf,
    pipelines: IndexMap<String, Arc<Pipeline>>,
    signal_hooks: IndexMap<String, SignalHook>,
}

impl PipelineSet {
    pub fn load(config_path: &Path) -> Result<Self, FileDiagnostic> {
        if !config_path.is_file() {
            return Err(FileDiagnostic::io(config_path, "no such file: pipelines are defined in coord.toml"));
        }
        let config = Config::load_file(config_path)?;
        Self::from_config(&config)
    }

    pub fn from_config(config: &Config) -> Result<Self, FileDiagnostic> {
        let path = config.path.clone().unwrap_or_else(|| PathBuf::from(crate::config::CONFIG_FILE));
        let base = config.base_dir().unwrap_or(Path::new("")).to_owned();
        let at = |span: std::ops::Range<usize>, message: String, help: Option<&str>| {
            FileDiagnostic::at(&path, &config.source, span, message, help.map(str::to_owned))
        };
        let mut pipelines: IndexMap<String, Arc<Pipeline>> = IndexMap::new();
        for section in &config.file.pipeline {
            let pipeline = validate(section, &base, &at)?;
            if pipelines.contains_key(&pipeline.name) {
                return Err(at(
                    section.name.span(),
                    format!("a second pipeline named `{}`", pipeline.name),
                    Some("pipeline names must be unique: they name locks and webhook URLs"),
                ));
            }
            pipelines.insert(pipeline.name.clone(), Arc::new(pipeline));
        }
        let mut signal_hooks = IndexMap::new();
        for section in &config.file.signal_hook {
            let hook = super::signal_hook::validate(section, &at)?;
            if signal_hooks.contains_key(&hook.name) {
                let help = "signal hook names must be unique: they name webhook URLs";
                return Err(at(section.name.span(), format!("a second signal hook named `{}`", hook.name), Some(help)));
            }
            signal_hooks.insert(hook.name.clone(), hook);
        }
        Ok(PipelineSet { config_path: path, pipelines, signal_hooks })
    }

    pub fn signal_hook(&self, name: &str) -> Option<&SignalHook> {
        self.signal_hooks.get(name)
    }

    pub fn signal_hook_names(&self) -> Vec<&str> {
        self.signal_hooks.keys().map(String::as_str).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Pipeline>> {
        self.pipelines.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Pipeline>> {
        self.pipelines.values()
    }

    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.pipelines.keys().map(String::as_str).collect()
    }
}

fn validate(
    section: &PipelineSection,
    base: &Path,
    at: &impl Fn(std::ops::Range<usize>, String, Option<&str>) -> FileDiagnostic,
) -> Result<Pipeline, FileDiagnostic> {
    let name = section.name.get_ref().clone();
    if !lock::valid_name(&name) {
        return Err(at(
            section.name.span(),
            format!("`{name}` cannot name a pipeline"),
            Some("use letters, digits, `-`, `_` and `.` (not first): the name is a lock file and a URL segment"),
        ));
    }
    let script = base.join(section.script.get_ref());
    if !script.is_file() {
        return Err(at(
            section.script.span(),
            format!("no script `{}`", section.script.get_ref()),
            Some("the path is relative to the folder of coord.toml"),
        ));
    }
    let scenario = match &section.scenario {
        None => None,
        Some(s) => {
            let p = base.join(s.get_ref());
            if !p.is_file() {
                return Err(at(
                    s.span(),
                    format!("no scenario `{}`", s.get_ref()),
                    Some("the path is relative to the folder of coord.toml"),
                ));
            }
            Some(p)
        }
    };
    let timezone = section.timezone.as_ref().map(|t| t.get_ref().as_str());
    let schedule = match &section.schedule {
        None => {
            if let Some(tz) = &section.timezone {
                // Checked anyway, so a typo does not wait for a schedule to surface.
                Schedule::parse("0 0 * * *", Some(tz.get_ref())).map_err(|e| {
                    at(tz.span(), e.to_string(), Some("write an IANA name such as Europe/Berlin or UTC"))
                })?;
            }
            None
        }
        Some(expr) => Some(Schedule::parse(expr.get_ref(), timezone).map_err(|e| match e {
            ScheduleError::Timezone(_) => at(
                section.timezone.as_ref().map(|t| t.span()).unwrap_or(expr.span()),
                e.to_string(),
                Some("write an IANA name such as Europe/Berlin or UTC"),
            ),
            _ => at(
                expr.span(),
                e.to_string(),
                Some("five fields (minute hour day-of-month month day-of-week), or six with seconds first"),
            ),
        })?),
    };
    let webhook = match &section.webhook {
        None => None,
        Some(w) => {
            let secret_env = w.secret_env.get_ref().trim().to_owned();
            if secret_env.is_empty() {
                return Err(at(
                    w.secret_env.span(),
                    "`secret_env` names no environment variable".into(),
                    Some("name the variable that holds the webhook secret, e.g. secret_env = \"GROOM_WEBHOOK_SECRET\""),
                ));
            }
            let mut inputs = IndexMap::new();
            for (input, path) in &w.inputs {
                let parsed = PayloadPath::parse(path.get_ref()).map_err(|reason| {
                    at(
                        path.span(),
                        format!("webhook input `{input}`: {reason}"),
                        Some("a JSON pointer (`/repository/full_name`) or a dotted path (`repository.full_name`)"),
                    )
                })?;
                inputs.insert(input.clone(), parsed);
            }
            Some(WebhookTrigger { secret_env, inputs })
        }
    };
    Ok(Pipeline {
        name,
        script,
        schedule,
        inputs: section
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("TOML converts to JSON")))
            .collect(),
        overlap: section.overlap,
        scenario,
        catch_up: section.catch_up.unwrap_or(DEFAULT_CATCH_UP),
        webhook,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project folder with `coord.toml` holding `toml`, and the files pipelines name.
    fn load(toml: &str) -> Result<PipelineSet, FileDiagnostic> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("coordinators")).unwrap();
        std::fs::write(dir.path().join("coordinators/groom.rhai"), "1").unwrap();
        std::fs::write(dir.path().join("demo.toml"), "").unwrap();
        std::fs::write(dir.path().join("coord.toml"), toml).unwrap();
        PipelineSet::load(&dir.path().join("coord.toml"))
    }

    const GOOD: &str = r#"
[[pipeline]]
name = "groom"
script = "coordinators/groom.rhai"
schedule = "0 9 * * 1-5"
timezone = "Europe/Berlin"
inputs = { repo = "acme/widgets" }
overlap = "queue"
scenario = "demo.toml"
catch_up = 3
webhook = { secret_env = "GROOM_SECRET", inputs = { repo = "repository.full_name", sha = "/after" } }

[[pipeline]]
name = "hook-only"
script = "coordinators/groom.rhai"
"#;

    #[test]
    fn a_full_pipeline_and_a_bare_one() {
        let set = load(GOOD).unwrap();
        assert_eq!(set.names(), ["groom", "hook-only"]);
        let p = set.get("groom").unwrap();
        assert_eq!(p.overlap, Overlap::Queue);
        assert_eq!(p.catch_up, 3);
        assert_eq!(p.inputs["repo"], "acme/widgets");
        assert_eq!(p.schedule.as_ref().unwrap().timezone(), chrono_tz::Tz::Europe__Berlin);
        assert_eq!(p.webhook.as_ref().unwrap().inputs.len(), 2);
        let bare = set.get("hook-only").unwrap();
        assert_eq!((bare.overlap, bare.catch_up), (Overlap::Skip, DEFAULT_CATCH_UP));
        assert!(bare.schedule.is_none() && bare.webhook.is_none());
        let plan =
            p.run_plan(&RunStore { root: "runs".into() }, [("repo".to_owned(), "x/y".into())].into_iter().collect());
        assert_eq!(plan.inputs["repo"], "x/y");
        assert_eq!(plan.pipeline.as_deref(), Some("groom"));
    }

    /// The diagnostic for `toml`, and the text its span points at.
    fn refused(toml: &str) -> (String, String) {
        let err = load(toml).unwrap_err();
        let start = err.span_start().expect("the diagnostic points into coord.toml");
        let len = err.span.map(|s| s.len()).unwrap_or(0);
        (err.to_string(), toml[start..start + len].to_owned())
    }

    #[test]
    fn errors_point_into_coord_toml() {
        let base = "[[pipeline]]\nname = \"groom\"\nscript = \"coordinators/groom.rhai\"\n";
        let (msg, at) = refused(&format!("{base}schedule = \"0 25 * * *\"\n"));
        assert!(msg.contains("coord.toml:4:") && msg.contains("not a cron expression"), "{msg}");
        assert_eq!(at, "\"0 25 * * *\"");
        let (msg, at) = refused(&format!("{base}schedule = \"0 9 * * *\"\ntimezone = \"Mars/Olympus\"\n"));
        assert!(msg.contains("IANA"), "{msg}");
        assert_eq!(at, "\"Mars/Olympus\"");
        let (msg, _) = refused(&format!("{base}overlap = \"sometimes\"\n"));
        assert!(msg.contains("unknown variant") && msg.contains("coord.toml:4:"), "{msg}");
        let (msg, _) = refused(&format!("{base}shedule = \"* * * * *\"\n"));
        assert!(msg.contains("unknown field"), "{msg}");
        let (msg, at) = refused("[[pipeline]]\nname = \"groom\"\nscript = \"nope.rhai\"\n");
        assert!(msg.contains("no script"), "{msg}");
        assert_eq!(at, "\"nope.rhai\"");
        let (msg, at) = refused(&format!("{base}{}", base.replace("[[pipeline]]", "\n[[pipeline]]")));
        assert!(msg.contains("a second pipeline named `groom`"), "{msg}");
        assert_eq!(at, "\"groom\"");
        let (msg, _) = refused("[[pipeline]]\nname = \"../up\"\nscript = \"coordinators/groom.rhai\"\n");
        assert!(msg.contains("cannot name a pipeline"), "{msg}");
        let (msg, _) = refused(&format!("{base}webhook = {{ secret_env = \"S\", inputs = {{ repo = \"a..b\" }} }}\n"));
        assert!(msg.contains("webhook input `repo`"), "{msg}");
    }
}
