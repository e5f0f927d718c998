//! Whether the harnesses a project's workflows use can run on this machine: the agent CLI's
//! binary and version, the credentials it would use, whether each workflow's schema can be
//! sent to it, and, when asked, one tiny real call. `coord doctor` prints it.
//!
//! Owns these checks. It never prints a credential (it says which variable or login file it
//! found, never a value), and it starts a leaf only for an explicit probe.

use super::profile::HarnessProfile;
use super::schema_form;
use super::HarnessSet;
use crate::config::Config;
use crate::leaf::session::{LeafRequest, SessionStatus};
use crate::workflow::{Workflow, WorkflowSet};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One thing checked about one harness.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `binary`, `credentials`, `schema`, `pricing` or `probe`.
    pub check: &'static str,
    pub ok: bool,
    /// What was found (`/usr/bin/claude, 2.1.197 (Claude Code)`, `ANTHROPIC_API_KEY is set`).
    pub detail: String,
    /// How to fix it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding { check, ok: true, detail: detail.into(), fix: None }
    }
    fn problem(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { check, ok: false, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Everything found about one harness.
#[derive(Clone, Debug, Serialize)]
pub struct HarnessReport {
    pub harness: String,
    pub kind: String,
    /// The workflows that run on it.
    pub workflows: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub findings: Vec<Finding>,
}

impl HarnessReport {
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }
}

/// The harness each workflow of the project runs on (after `coord.toml`'s overrides), with
/// the workflows that do not load left out (`coord check` reports those).
pub fn harnesses_in_use(workflows: &WorkflowSet) -> BTreeMap<String, Vec<Arc<Workflow>>> {
    let mut by_harness: BTreeMap<String, Vec<Arc<Workflow>>> = BTreeMap::new();
    for name in workflows.names() {
        if let Ok(w) = workflows.get(&name) {
            by_harness.entry(w.harness.clone()).or_default().push(w);
        }
    }
    by_harness
}

/// Checks every harness in `in_use`; with `probe`, also makes one tiny real call on each
/// (this spends a few tokens).
pub async fn examine(
    harnesses: &HarnessSet,
    config: &Config,
    in_use: &BTreeMap<String, Vec<Arc<Workflow>>>,
    probe: bool,
) -> Vec<HarnessReport> {
    let mut reports = Vec::new();
    for (name, workflows) in in_use {
        let kind = config.harness_kind(name);
        let mut report = HarnessReport {
            harness: name.clone(),
            kind: kind.clone(),
            workflows: workflows.iter().map(|w| w.name.clone()).collect(),
            version: None,
            findings: Vec::new(),
        };
        match (kind.as_str(), harnesses.profile(name)) {
            ("mock", _) => {}
            ("command", _) => report.findings.extend(workflows.iter().map(|w| command_finding(w))),
            (_, None) => report.findings.push(Finding::problem(
                "binary",
                format!("no harness named `{name}`"),
                format!("add [harness.{name}] with a `kind` to coord.toml, or fix the workflows' `harness`"),
            )),
            (_, Some(profile)) => {
                if let Some(default_binary) = cli_binary(&kind) {
                    let (finding, version) = binary_finding(&profile, default_binary).await;
                    report.findings.push(finding);
                    report.version = version;
                }
                report.findings.push(credentials_finding(&profile));
                let strict = profile.settings.strict.unwrap_or(false);
                for w in workflows {
                    report.findings.push(schema_finding(&kind, strict, name, w));
                }
                report.findings.extend(pricing_finding(&profile, workflows));
                let usable = report.ok();
                if probe && usable {
                    report.findings.push(probe_finding(harnesses, name).await);
                }
            }
        }
        reports.push(report);
    }
    reports
}

/// What a run checks before its first leaf, for one harness and the workflows the script
/// names on it: the binary is there (not run: a run must start fast), credentials are
/// configured, a `command` leaf's program exists. The problems only; spends nothing.
pub fn preflight(harnesses: &HarnessSet, config: &Config, harness: &str, workflows: &[Arc<Workflow>]) -> Vec<Finding> {
    let kind = config.harness_kind(harness);
    let mut findings = Vec::new();
    match (kind.as_str(), harnesses.profile(harness)) {
        ("mock", _) => {}
        ("command", _) => findings.extend(workflows.iter().map(|w| command_finding(w))),
        (_, None) => {}
        (_, Some(profile)) => {
            if let Some(default_binary) = cli_binary(&kind) {
                let program = profile.binary(default_binary);
                if locate(&program).is_none() {
                    findings.push(Finding::problem(
                        "binary",
                        format!("`{}` not found", program.display()),
                        profile.install_hint(default_binary),
                    ));
                }
            }
            findings.push(credentials_finding(&profile));
        }
    }
    findings.retain(|f| !f.ok);
    findings
}

/// The program an agent kind runs when `binary` is not configured.
pub fn cli_binary(kind: &str) -> Option<&'static str> {
    match kind {
        "claude-code" => Some("claude"),
        "codex" => Some("codex"),
        "gemini" => Some("gemini"),
        _ => None,
    }
}

/// Where `program` is: itself when it names a path, else the first match on PATH.
pub fn locate(program: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.is_file() && p.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

async fn binary_finding(profile: &HarnessProfile, default_binary: &str) -> (Finding, Option<String>) {
    let program = profile.binary(default_binary);
    let Some(found) = locate(&program) else {
        return (
            Finding::problem(
                "binary",
                format!("`{}` not found", program.display()),
                profile.install_hint(default_binary),
            ),
            None,
        );
    };
    match profile.cli_version(default_binary).await {
        Some(version) => (Finding::ok("binary", format!("{} ({version})", found.display())), Some(version)),
        None => (
            Finding::problem(
                "binary",
                format!("{} does not answer `--version`", found.display()),
                profile.install_hint(default_binary),
            ),
            None,
        ),
    }
}

/// The variables and login files each kind's CLI or API reads its credentials from.
fn credential_sources(profile: &HarnessProfile) -> (Vec<String>, Vec<PathBuf>) {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let env_dir = |var: &str, default: &str| std::env::var_os(var).map(PathBuf::from).unwrap_or(home.join(default));
    let configured = profile.settings.api_key_env.clone();
    let mut vars: Vec<String> = configured.into_iter().collect();
    let (usual, files): (&[&str], Vec<PathBuf>) = match profile.kind.as_str() {
        "claude-code" => (
            &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"],
            vec![env_dir("CLAUDE_CONFIG_DIR", ".claude").join(".credentials.json")],
        ),
        // `codex exec` reads CODEX_API_KEY; a configured provider (`base_url`) reads the
        // variable coord names for it, OPENAI_API_KEY unless `api_key_env` says otherwise.
        "codex" if profile.settings.base_url.is_some() => (&["OPENAI_API_KEY"], vec![]),
        "codex" => (&["CODEX_API_KEY", "OPENAI_API_KEY"], vec![env_dir("CODEX_HOME", ".codex").join("auth.json")]),
        "gemini" => (&["GEMINI_API_KEY", "GOOGLE_API_KEY"], vec![home.join(".gemini/oauth_creds.json")]),
        "anthropic" => (&["ANTHROPIC_API_KEY"], Vec::new()),
        _ => (&["OPENAI_API_KEY"], Vec::new()),
    };
    if vars.is_empty() {
        vars.extend(usual.iter().map(|v| v.to_string()));
    }
    (vars, files)
}

fn credentials_finding(profile: &HarnessProfile) -> Finding {
    let (vars, files) = credential_sources(profile);
    if let Some(var) = vars.iter().find(|v| std::env::var(v).is_ok_and(|x| !x.is_empty())) {
        return Finding::ok("credentials", format!("{var} is set"));
    }
    if let Some(file) = files.iter().find(|f| f.is_file()) {
        return Finding::ok("credentials", format!("logged in ({})", file.display()));
    }
    // A local OpenAI-compatible server (Ollama, vLLM) needs no key.
    if profile.kind == "openai" && profile.settings.base_url.is_some() && profile.settings.api_key_env.is_none() {
        return Finding::ok("credentials", "none needed for a configured base_url");
    }
    let login = match profile.kind.as_str() {
        "claude-code" => ", or log in with `claude /login`",
        "codex" => ", or log in with `codex login`",
        "gemini" => ", or log in by running `gemini` once",
        _ => "",
    };
    Finding::problem(
        "credentials",
        format!("none found ({} unset{})", vars.join(", "), if files.is_empty() { "" } else { ", no login file" }),
        format!("export {}{login}", vars[0]),
    )
}

/// Whether the cost of this harness's leaves can be priced: Claude Code reports its own; the
/// others report tokens, priced from the rate table by model name, so every workflow's model
/// must be named and priced (a local OpenAI-compatible server is free).
fn pricing_finding(profile: &HarnessProfile, workflows: &[Arc<Workflow>]) -> Option<Finding> {
    if profile.kind == "claude-code" || (profile.kind == "openai" && profile.settings.base_url.is_some()) {
        return None;
    }
    let mut unpriced = Vec::new();
    let mut priced = Vec::new();
    for w in workflows {
        match w.model.clone().or_else(|| profile.settings.model.clone()) {
            None => unpriced.push(format!("`{}` names no model (the CLI picks one, unknown to coord)", w.name)),
            Some(m) if profile.rates.rates(Some(&m)).is_none() => {
                unpriced.push(format!("`{}` uses {m}, which has no price", w.name))
            }
            Some(m) => priced.push(m),
        }
    }
    priced.sort();
    priced.dedup();
    Some(if unpriced.is_empty() {
        Finding::ok("pricing", format!("priced from the rate table ({})", priced.join(", ")))
    } else {
        Finding::problem(
            "pricing",
            format!("{}: their cost counts as $0, also against --budget-usd", unpriced.join("; ")),
            format!("name the model and give its price in [harness.{}.rates.\"<model>\"] (input, output, cache_read per million tokens)", profile.name),
        )
    })
}

fn schema_finding(kind: &str, strict: bool, harness: &str, workflow: &Workflow) -> Finding {
    let problems = schema_form::problems(kind, strict, &workflow.schema);
    if problems.is_empty() {
        return Finding::ok("schema", format!("workflow `{}` fits", workflow.name));
    }
    let list: Vec<String> = problems.iter().map(|p| format!("at {}: {}", p.path, p.message)).collect();
    Finding::problem(
        "schema",
        format!("workflow `{}`: {}", workflow.name, list.join("; ")),
        format!("change the schema, or run `{}` on another harness than {harness}", workflow.name),
    )
}

fn command_finding(workflow: &Workflow) -> Finding {
    let Some(program) = workflow.command.as_ref().and_then(|c| c.first()) else {
        return Finding::problem(
            "binary",
            format!("workflow `{}` sets no `command`", workflow.name),
            "set `command = [...]` in the workflow",
        );
    };
    let root = workflow.path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let path = if program.contains('/') && !Path::new(program).is_absolute() {
        root.join(program)
    } else {
        PathBuf::from(program)
    };
    match locate(&path) {
        Some(found) => Finding::ok("binary", format!("workflow `{}`: {}", workflow.name, found.display())),
        None => Finding::problem(
            "binary",
            format!("workflow `{}`: `{program}` is not an executable file", workflow.name),
            format!("create it (and `chmod +x` it), or fix `command` in {}", workflow.path.display()),
        ),
    }
}

/// One real call: a one-field answer through the harness, as a leaf would make it.
async fn probe_finding(harnesses: &HarnessSet, name: &str) -> Finding {
    let Some(harness) = harnesses.get(name) else {
        return Finding::problem("probe", format!("no harness `{name}`"), "fix coord.toml");
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Finding::problem("probe", format!("no scratch folder: {e}"), "free disk space"),
    };
    let schema = json!({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}, "additionalProperties": false});
    let prompt = "This is a connectivity check. Do not use any tool. Answer with {\"ok\": true}.";
    let Ok(workflow) = Workflow::new("doctor-probe", name, prompt, schema.clone()) else {
        return Finding::problem("probe", "cannot build the probe", "report this as a bug");
    };
    let request = LeafRequest {
        session_id: "probe".into(),
        workflow: Arc::new(workflow),
        goal: String::new(),
        inputs: json!({}),
        prompt: prompt.into(),
        schema: Arc::new(schema),
        model: None,
        timeout: Duration::from_secs(120),
        run_dir: dir.path().to_owned(),
        project_root: dir.path().to_owned(),
        overrides: json!({}),
        workdir: dir.path().to_owned(),
        worktree: None,
        withheld_env: Arc::from(Vec::<String>::new()),
    };
    let result = harness.start(request).await;
    match result.status {
        SessionStatus::Ok => Finding::ok(
            "probe",
            format!(
                "answered{} ({} in, {} out tokens, ${:.4})",
                result.model.map(|m| format!(" by {m}")).unwrap_or_default(),
                result.usage.input_tokens + result.usage.cache_read_tokens,
                result.usage.output_tokens,
                result.usage.cost_usd
            ),
        ),
        status => Finding::problem(
            "probe",
            format!("{}: {}", status.as_str(), result.error.unwrap_or_default()),
            "see the error; `coord -vv doctor --probe` logs the call",
        ),
    }
}
