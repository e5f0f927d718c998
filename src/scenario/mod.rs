//! Scenarios: TOML files describing the world of an offline run (inputs, GitHub-like fixtures,
//! leaf responses, expectations). See `docs/scenarios.md`.
//!
//! Owns parsing with source spans (so a bad scenario gets a diagnostic pointing into the file),
//! matching leaf requests to responses, and the in-memory world the run acts on. It must not
//! know any coordinator's routing.

pub mod mock_harness;
pub mod mock_responder;
pub mod world;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use crate::config::file_diagnostic::FileDiagnostic;
pub use mock_responder::MockResponder;
pub use world::ScenarioWorld;

/// Time a scenario run sees when the scenario sets no `now`.
pub const DEFAULT_NOW: &str = "2026-01-05T09:00:00Z";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    coordinator: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    now: Option<Spanned<String>>,
    #[serde(default)]
    inputs: toml::Table,
    #[serde(default)]
    github: GithubFixtures,
    #[serde(default)]
    git: world::GitFixtures,
    #[serde(default)]
    leaf: Vec<LeafRuleFile>,
    /// Repository files `read_file` finds: path -> text.
    #[serde(default)]
    files: IndexMap<String, String>,
    /// The state a previous run left (`state::get`): key -> value.
    #[serde(default)]
    state: toml::Table,
    #[serde(default)]
    signal: Vec<Spanned<SignalFile>>,
    /// Where the run's report is published, as `[run] url` in coord.toml says it (`{run}`
    /// stands for the run id, `scenario` in a scenario run).
    #[serde(default)]
    run_url: Option<String>,
    #[serde(default)]
    expect: Option<Spanned<Expectations>>,
}

/// `[[signal]]`: a signal the scenario delivers to its run, `after` this long on the run's
/// virtual clock (at its start when absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalFile {
    name: String,
    #[serde(default)]
    data: Option<toml::Value>,
    #[serde(default)]
    after: Option<toml::Value>,
}

/// A signal a scenario delivers: what `wait_signal` consumes in a scenario run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioSignal {
    pub name: String,
    pub data: Value,
    /// Milliseconds after the scenario's `now` at which it is delivered.
    pub after_ms: u64,
}

/// Scenarios at least this large are parsed in chunks (see `Scenario::parse`).
const SPLIT_PARSE_BYTES: usize = 256 * 1024;

/// About how much of a large scenario one chunk holds: small enough that a chunk's parsed
/// TOML is a small fraction of the fixtures it becomes.
const CHUNK_BYTES: usize = 128 * 1024;

/// The headers a chunk after the first may start with: one entry of a top-level array.
const ENTRY_HEADERS: [&str; 3] = ["[[github.prs]]", "[[github.issues]]", "[[leaf]]"];

/// Where a large file may be cut: the starts of lines that are exactly an entry header, about
/// `CHUNK_BYTES` apart. Empty for a small file.
fn split_points(source: &str) -> Vec<usize> {
    let mut points = Vec::new();
    if source.len() < SPLIT_PARSE_BYTES {
        return points;
    }
    let bytes = source.as_bytes();
    let mut from = CHUNK_BYTES;
    while from < bytes.len() {
        let Some(i) = memchr::memmem::find(&bytes[from..], b"\n[[") else { break };
        let at = from + i + 1;
        let line = source[at..].lines().next().unwrap_or("");
        if ENTRY_HEADERS.contains(&line.trim_end()) {
            points.push(at);
            from = at + CHUNK_BYTES;
        } else {
            from = at;
        }
    }
    points
}

/// Whether reading a large file in chunks could differ from reading it whole, judged from its
/// text alone: a line that could make `github` or `leaf` anything but arrays of entries
/// (`[github]`, `github.prs = ..`, `leaf = [..]`), or, after the first cut, a table header other
/// than an entry or a table inside one. Lines inside multi-line strings may match too; they
/// only send the file the slow way.
fn chunks_may_differ(source: &str, first_cut: usize) -> bool {
    // An entry (`[[leaf]]`) or a table inside the last entry (`[leaf.match]`, `[[leaf.sequence]]`).
    let entry_or_inside = |header: &str| {
        let inside = ["github.prs.", "github.issues.", "leaf."];
        let name = header.trim_start_matches('[');
        inside.iter().any(|p| name.starts_with(p)) || ENTRY_HEADERS.contains(&header)
    };
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let text = line.trim_start();
        let key_of_fixtures = ["github", "leaf", "\"github\"", "\"leaf\"", "'github'", "'leaf'"]
            .iter()
            .any(|k| text.strip_prefix(k).is_some_and(|rest| rest.trim_start().starts_with(['=', '.'])));
        let names_fixtures = text.contains("github") || text.contains("leaf");
        let odd_header =
            text.starts_with('[') && (offset >= first_cut || names_fixtures) && !entry_or_inside(text.trim_end());
        if key_of_fixtures || odd_header {
            return true;
        }
        offset += line.len();
    }
    false
}

/// What one chunk after the first yields, its spans already offsets into the whole file.
type ChunkEntries = (Vec<Value>, Vec<Value>, Vec<LeafRule>);

/// The entries of one chunk after the first, or `None` when it does not parse, sets anything
/// but entries, or its conversion refuses it.
fn parse_chunk(path: &Path, source: &str, range: std::ops::Range<usize>) -> Option<ChunkEntries> {
    let text = &source[range.clone()];
    let mut file = toml::from_str::<ScenarioFile>(text).ok()?;
    let only_entries = file.coordinator.is_none()
        && file.description.is_empty()
        && file.now.is_none()
        && file.inputs.is_empty()
        && file.git.main.is_none()
        && file.git.branches.is_empty()
        && file.expect.is_none();
    if !only_entries {
        return None;
    }
    let (prs, issues) = convert_fixtures(path, text, &mut file.github).ok()?;
    let mut rules = convert_rules(path, text, std::mem::take(&mut file.leaf)).ok()?;
    let shift = |span: &mut std::ops::Range<usize>| *span = span.start + range.start..span.end + range.start;
    for rule in &mut rules {
        shift(&mut rule.workflow_span);
        for span in rule.responses.iter_mut().filter_map(|r| r.output_span.as_mut()) {
            shift(span);
        }
    }
    Some((prs, issues, rules))
}

/// The GitHub fixtures as JSON. The tables are consumed one by one, so each is freed as soon
/// as its JSON form exists: a large scenario would otherwise hold both at once.
fn convert_fixtures(
    path: &Path,
    source: &str,
    github: &mut GithubFixtures,
) -> Result<(Vec<Value>, Vec<Value>), FileDiagnostic> {
    let to_json = |t: &toml::Table| serde_json::to_value(t).expect("TOML tables convert to JSON");
    let mut prs = Vec::with_capacity(github.prs.len());
    for (i, pr) in std::mem::take(&mut github.prs).into_iter().enumerate() {
        let mut value = to_json(&pr);
        drop(pr);
        world::normalize_pr(&mut value)
            .map_err(|msg| FileDiagnostic::at(path, source, 0..0, format!("github.prs[{i}]: {msg}"), None))?;
        prs.push(value);
    }
    let mut issues = Vec::with_capacity(github.issues.len());
    for (i, issue) in std::mem::take(&mut github.issues).into_iter().enumerate() {
        let mut value = to_json(&issue);
        world::normalize_issue(&mut value)
            .map_err(|msg| FileDiagnostic::at(path, source, 0..0, format!("github.issues[{i}]: {msg}"), None))?;
        issues.push(value);
    }
    Ok((prs, issues))
}

/// The leaf rules with their responses.
fn convert_rules(path: &Path, source: &str, leaf: Vec<LeafRuleFile>) -> Result<Vec<LeafRule>, FileDiagnostic> {
    let mut rules = Vec::with_capacity(leaf.len());
    for mut rule in leaf {
        let mut responses = Vec::new();
        let inline = rule.take_inline_response();
        let inline_given =
            inline.status.is_some() || inline.output.is_some() || inline.text.is_some() || inline.error.is_some();
        if inline_given && !rule.sequence.is_empty() {
            return Err(FileDiagnostic::at(
                path,
                source,
                rule.workflow.span(),
                "a leaf rule gives both an inline response and a `sequence`".into(),
                Some("put every answer in `sequence`, in the order the calls will come".into()),
            ));
        }
        if rule.sequence.is_empty() {
            responses.push(response_from(path, source, &inline, rule.workflow.span())?);
        } else {
            for item in std::mem::take(&mut rule.sequence) {
                // Rule-level usage and delay are the defaults of every item in the sequence.
                let span = item.span();
                let mut fields = item.into_inner();
                fields.usage = fields.usage.or_else(|| inline.usage.clone());
                fields.delay_ms = fields.delay_ms.or(inline.delay_ms);
                responses.push(response_from(path, source, &fields, span)?);
            }
        }
        let conditions = std::mem::take(&mut rule.conditions)
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("TOML converts to JSON")))
            .collect();
        rules.push(LeafRule {
            workflow_span: rule.workflow.span(),
            workflow: rule.workflow.into_inner(),
            conditions,
            goal_contains: rule.goal_contains,
            responses,
        });
    }
    Ok(rules)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubFixtures {
    #[serde(default)]
    prs: Vec<toml::Table>,
    #[serde(default)]
    issues: Vec<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafRuleFile {
    workflow: Spanned<String>,
    #[serde(default, rename = "match")]
    conditions: toml::Table,
    #[serde(default)]
    goal_contains: Option<String>,
    #[serde(default)]
    status: Option<Spanned<String>>,
    #[serde(default)]
    output: Option<Spanned<toml::Value>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    usage: Option<crate::leaf::session::Usage>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    invalid: bool,
    #[serde(default)]
    sequence: Vec<Spanned<ResponseFields>>,
}

impl LeafRuleFile {
    /// The rule's own response fields, moved out (the rule is consumed as it is converted).
    fn take_inline_response(&mut self) -> ResponseFields {
        ResponseFields {
            status: self.status.take(),
            output: self.output.take(),
            text: self.text.take(),
            error: self.error.take(),
            usage: self.usage.clone(),
            delay_ms: self.delay_ms,
            invalid: self.invalid,
        }
    }
}

/// One canned leaf answer. Every field is optional: a bare `{}` is an ok result with no output.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseFields {
    #[serde(default)]
    pub status: Option<Spanned<String>>,
    #[serde(default)]
    pub output: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub usage: Option<crate::leaf::session::Usage>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Marks an output that deliberately violates its schema, to test that routing copes.
    #[serde(default)]
    pub invalid: bool,
}

/// Assertions checked by `coord test` beside the snapshot.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    #[serde(default)]
    pub merged: Option<Vec<Value>>,
    #[serde(default)]
    pub not_merged: Option<Vec<Value>>,
    #[serde(default)]
    pub notified: Option<Vec<String>>,
    #[serde(default)]
    pub max_sessions: Option<u64>,
    #[serde(default)]
    pub min_sessions: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Fields the script's returned map must hold, compared as JSON.
    #[serde(default)]
    pub result: Option<toml::Table>,
}

/// A leaf rule: which requests it answers and with what, in order.
#[derive(Debug, Clone)]
pub struct LeafRule {
    pub workflow: String,
    pub workflow_span: std::ops::Range<usize>,
    pub conditions: Vec<(String, Value)>,
    pub goal_contains: Option<String>,
    pub responses: Vec<MockResponse>,
}

#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: crate::leaf::session::SessionStatus,
    pub output: Value,
    pub output_span: Option<std::ops::Range<usize>>,
    pub text: Option<String>,
    pub error: Option<String>,
    pub usage: crate::leaf::session::Usage,
    pub delay_ms: u64,
    pub invalid: bool,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    pub source: String,
    pub name: String,
    pub coordinator: Option<String>,
    pub coordinator_span: Option<std::ops::Range<usize>>,
    pub description: String,
    pub now_unix: i64,
    pub now_rfc3339: String,
    pub inputs: IndexMap<String, Value>,
    pub prs: Vec<Value>,
    pub issues: Vec<Value>,
    /// `[git]`: branches the local merge queue knows, and whether main is red.
    pub git: world::GitFixtures,
    pub rules: Vec<LeafRule>,
    /// `[files]`: the repository files `read_file` finds.
    pub files: IndexMap<String, String>,
    /// `[state]`: what `state::get` finds, as a previous run left it.
    pub state: IndexMap<String, Value>,
    /// `[[signal]]` entries, in file order (the order deliveries of one name are consumed in).
    pub signals: Vec<ScenarioSignal>,
    /// `run_url`: what `[run] url` would be for this run.
    pub run_url: Option<String>,
    pub expect: Option<Expectations>,
    pub expect_span: Option<std::ops::Range<usize>>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, FileDiagnostic> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| FileDiagnostic::io(path, &format!("cannot read scenario: {e}")))?;
        Self::parse(path, source)
    }

    /// Parses a scenario file. A large one (thousands of PRs) is read in chunks cut before
    /// entry headers (`[[github.prs]]`, `[[leaf]]`, ...), several at a time on a few threads,
    /// so the parsed TOML of only a few chunks exists at once beside the fixtures they become:
    /// the whole file's TOML is several times its size. Whenever that could differ from reading
    /// the whole file (a chunk fails to parse or convert, a later chunk sets anything but
    /// entries, or the text could make the fixtures anything but arrays of entries), the whole
    /// file is read instead, so every error is the whole file's own, with its own spans.
    pub fn parse(path: &Path, source: String) -> Result<Self, FileDiagnostic> {
        let cuts = split_points(&source);
        if let Some(&first) = cuts.first() {
            if !chunks_may_differ(&source, first) {
                if let Some(scenario) = Self::parse_in_chunks(path, &source, &cuts) {
                    return Ok(Scenario { source, ..scenario });
                }
            }
        }
        let file: ScenarioFile = toml::from_str(&source).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            FileDiagnostic::at(path, &source, span, e.message().to_owned(), None)
        })?;
        let scenario = Self::from_file(path, &source, file)?;
        Ok(Scenario { source, ..scenario })
    }

    /// The file read as its first chunk (everything before `cuts[0]`, as a whole scenario) and
    /// the entries of the chunks after it, taken in turn by a few threads and joined in order.
    fn parse_in_chunks(path: &Path, source: &str, cuts: &[usize]) -> Option<Scenario> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ends: Vec<usize> = cuts[1..].iter().copied().chain([source.len()]).collect();
        let ranges: Vec<_> = cuts.iter().zip(&ends).map(|(&a, &b)| a..b).collect();
        let next = AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        let work = || {
            let mut done = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = ranges.get(i) else { break };
                match parse_chunk(path, source, range.clone()) {
                    Some(entries) => done.push((i, entries)),
                    None => failed.store(true, Ordering::Relaxed),
                }
            }
            done
        };
        let (head, mut chunks) = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            // A cut inside a multi-line string leaves the head unterminated: it fails here.
            // `from_file` keeps no source of its own; the caller puts the whole file back.
            let head = toml::from_str::<ScenarioFile>(&source[..cuts[0]])
                .ok()
                .and_then(|file| Self::from_file(path, source, file).ok());
            if head.is_none() {
                failed.store(true, Ordering::Relaxed);
            }
            let mut chunks = work();
            for helper in helpers {
                chunks.extend(helper.join().ok()?);
            }
            Some((head, chunks))
        })?;
        let mut scenario = head?;
        if failed.into_inner() || chunks.len() != ranges.len() {
            return None;
        }
        chunks.sort_unstable_by_key(|(i, _)| *i);
        for (_, (prs, issues, rules)) in chunks.drain(..) {
            scenario.prs.extend(prs);
            scenario.issues.extend(issues);
            scenario.rules.extend(rules);
        }
        Some(scenario)
    }

    /// A parsed file as a scenario; errors point into `source`. The scenario's own `source` is
    /// left empty for the caller to fill.
    fn from_file(path: &Path, source: &str, mut file: ScenarioFile) -> Result<Self, FileDiagnostic> {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();

        let (now_rfc3339, now_unix) = match &file.now {
            None => (DEFAULT_NOW.to_owned(), parse_time(DEFAULT_NOW).expect("default time parses")),
            Some(s) => {
                let unix = parse_time(s.get_ref()).ok_or_else(|| {
                    FileDiagnostic::at(
                        path,
                        source,
                        s.span(),
                        format!("`now` must be an RFC 3339 time, not `{}`", s.get_ref()),
                        Some("write e.g. now = \"2026-11-21T09:00:00Z\"".into()),
                    )
                })?;
                (s.get_ref().clone(), unix)
            }
        };

        let inputs = file
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("TOML converts to JSON")))
            .collect();
        let (prs, issues) = convert_fixtures(path, source, &mut file.github)?;
        file.git.validate().map_err(|(span, msg, help)| FileDiagnostic::at(path, source, span, msg, Some(help)))?;
        let rules = convert_rules(path, source, std::mem::take(&mut file.leaf))?;
        let signals = convert_signals(path, source, std::mem::take(&mut file.signal))?;

        Ok(Scenario {
            path: path.to_owned(),
            name,
            coordinator: file.coordinator.as_ref().map(|c| c.get_ref().clone()),
            coordinator_span: file.coordinator.as_ref().map(|c| c.span()),
            description: file.description,
            now_unix,
            now_rfc3339,
            inputs,
            prs,
            issues,
            git: file.git,
            rules,
            files: std::mem::take(&mut file.files),
            state: file
                .state
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).expect("TOML converts to JSON")))
                .collect(),
            signals,
            run_url: file.run_url.take(),
            expect_span: file.expect.as_ref().map(|e| e.span()),
            expect: file.expect.map(|e| e.into_inner()),
            source: String::new(),
        })
    }

    /// Checks a scenario against the workflows it names: every rule's workflow exists, and every
    /// canned output fits the workflow's schema (unless marked `invalid`).
    pub fn validate(&self, workflows: &crate::workflow::WorkflowSet) -> Result<(), FileDiagnostic> {
        let scenario = self;
        for rule in &scenario.rules {
            let wf = match workflows.get(&rule.workflow) {
                Ok(wf) => wf,
                Err(e) => {
                    return Err(scenario.diagnostic(
                        rule.workflow_span.clone(),
                        format!("unknown workflow `{}`", rule.workflow),
                        Some(e.to_string()),
                    ))
                }
            };
            // classify() gives its leaf a schema per call; the file's schema is only a default.
            if rule.workflow == "classify" {
                continue;
            }
            for response in &rule.responses {
                if response.invalid || response.status != crate::leaf::session::SessionStatus::Ok {
                    continue;
                }
                if let Err(violation) = crate::workflow::validate(&wf.validator, &response.output) {
                    return Err(scenario.diagnostic(
                        response.output_span.clone().unwrap_or(rule.workflow_span.clone()),
                        format!("this output of `{}` does not fit its schema: {violation}", rule.workflow),
                        Some(format!(
                            "fix the output, or mark it `invalid = true` to test how routing copes (schema: {})",
                            wf.path.display()
                        )),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A diagnostic pointing at `span` in this scenario's file.
    pub fn diagnostic(&self, span: std::ops::Range<usize>, message: String, help: Option<String>) -> FileDiagnostic {
        FileDiagnostic::at(&self.path, &self.source, span, message, help)
    }
}

fn response_from(
    path: &Path,
    source: &str,
    fields: &ResponseFields,
    span: std::ops::Range<usize>,
) -> Result<MockResponse, FileDiagnostic> {
    use crate::leaf::session::SessionStatus;
    let status = match &fields.status {
        None => SessionStatus::Ok,
        Some(s) => match SessionStatus::parse(s.get_ref()) {
            Some(
                st @ (SessionStatus::Ok | SessionStatus::Failed | SessionStatus::Timeout | SessionStatus::Cancelled),
            ) => st,
            _ => {
                return Err(FileDiagnostic::at(
                    path,
                    source,
                    s.span(),
                    format!("unknown leaf status `{}`", s.get_ref()),
                    Some("use one of: ok, failed, timeout, cancelled".into()),
                ))
            }
        },
    };
    Ok(MockResponse {
        status,
        output: fields
            .output
            .as_ref()
            .map(|o| serde_json::to_value(o.get_ref()).expect("TOML converts to JSON"))
            .unwrap_or(Value::Null),
        output_span: fields.output.as_ref().map(|o| o.span()).or(Some(span)),
        text: fields.text.clone(),
        error: fields.error.clone(),
        usage: fields.usage.clone().unwrap_or_default(),
        delay_ms: fields.delay_ms.unwrap_or(0),
        invalid: fields.invalid,
    })
}

/// `[[signal]]` entries as signals: a name a run can wait for, and an `after` that reads as a
/// duration (`"30m"`, or seconds).
fn convert_signals(
    path: &Path,
    source: &str,
    signals: Vec<Spanned<SignalFile>>,
) -> Result<Vec<ScenarioSignal>, FileDiagnostic> {
    signals
        .into_iter()
        .map(|spanned| {
            let span = spanned.span();
            let file = spanned.into_inner();
            let fail = |message: String, help: &str| {
                FileDiagnostic::at(path, source, span.clone(), message, Some(help.into()))
            };
            if !crate::journal::signal_box::valid_name(&file.name) {
                return Err(fail(
                    format!("`{}` is not a signal name", file.name),
                    "a signal name is 1 to 64 letters, digits, `_`, `-` or `.`",
                ));
            }
            let after_ms = match &file.after {
                None => 0,
                Some(toml::Value::Integer(n)) if *n >= 0 => (*n as u64).saturating_mul(1000),
                Some(toml::Value::String(s)) => match humantime::parse_duration(s) {
                    Ok(d) => d.as_millis() as u64,
                    Err(e) => {
                        return Err(fail(
                            format!("`after = \"{s}\"` is not a duration: {e}"),
                            "write e.g. after = \"30m\"",
                        ))
                    }
                },
                Some(other) => {
                    return Err(fail(
                        format!("`after` must be a duration, not `{other}`"),
                        "write e.g. after = \"30m\"",
                    ))
                }
            };
            let data =
                file.data.map(|v| serde_json::to_value(v).expect("TOML converts to JSON")).unwrap_or(Value::Null);
            Ok(ScenarioSignal { name: file.name, data, after_ms })
        })
        .collect()
}

pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Scenario, FileDiagnostic> {
        Scenario::parse(Path::new("t.toml"), src.to_owned())
    }

    #[test]
    fn parses_fixtures_rules_and_sequences() {
        let s = parse(
            r#"
coordinator = "groom-prs"
now = "2026-11-21T09:00:00Z"
[inputs]
repo = "acme/widgets"
[[github.prs]]
number = 12
title = "Add retry"
[[leaf]]
workflow = "mr-review"
match = { pr = 12 }
sequence = [ { output = { verdict = "minor" } }, { output = { verdict = "clean" } } ]
[[leaf]]
workflow = "mr-review"
status = "timeout"
"#,
        )
        .unwrap();
        assert_eq!(s.coordinator.as_deref(), Some("groom-prs"));
        assert_eq!(s.prs[0]["checks"], "green");
        assert_eq!(s.prs[0]["state"], "open");
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].responses.len(), 2);
        assert_eq!(s.inputs["repo"], "acme/widgets");
    }

    #[test]
    fn git_branches_are_validated() {
        let s = parse(
            "[git]\nmain = \"red\"\nbranches = { \"ticket/T1\" = \"green\", \"ticket/T2\" = [\"red\", \"green\"] }\n",
        )
        .unwrap();
        assert!(s.git.main_is_red());
        assert_eq!(s.git.branches.len(), 2);
        let err = parse("[git]\nbranches = { \"t\" = \"purple\" }\n").unwrap_err();
        assert!(err.to_string().contains("purple"), "{err}");
        assert!(parse("[git]\nmain = \"amber\"\n").is_err());
        assert!(parse("[git]\nbranches = { \"t\" = [] }\n").is_err());
    }

    #[test]
    fn errors_point_into_the_file() {
        let err = parse("[[leaf]]\nworkflow = \"x\"\nstatus = \"exploded\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown leaf status"), "{err}");
        assert_eq!(err.span_start(), Some(33));
        let err = parse("[[leaf]]\nworkflw = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = parse("not toml [").unwrap_err();
        assert!(err.span_start().is_some());
    }

    /// A scenario large enough to be parsed in chunks: `n` PRs, then one leaf rule per PR.
    fn large(n: usize) -> String {
        let mut s =
            String::from("coordinator = \"groom-prs\"\nnow = \"2026-11-21T09:00:00Z\"\n[inputs]\nrepo = \"a/b\"\n");
        for pr in 1..=n {
            s.push_str(&format!("[[github.prs]]\nnumber = {pr}\ntitle = \"Change {pr}\"\nhead_sha = \"{pr:07x}\"\n"));
        }
        for pr in 1..=n {
            s.push_str(&format!(
                "[[leaf]]\nworkflow = \"mr-review\"\nmatch = {{ pr = {pr} }}\noutput = {{ verdict = \"clean\" }}\n"
            ));
        }
        s
    }

    #[test]
    fn a_large_scenario_parsed_in_chunks_equals_the_whole() {
        let src = large(3_000);
        let cuts = split_points(&src);
        assert!(cuts.len() > 2, "large enough to cut");
        assert!(!chunks_may_differ(&src, cuts[0]));
        let chunked = parse(&src).unwrap();
        let whole: ScenarioFile = toml::from_str(&src).unwrap();
        assert_eq!(chunked.prs.len(), 3_000);
        assert_eq!(chunked.rules.len(), whole.leaf.len());
        assert_eq!(chunked.prs[2_999]["number"], 3_000);
        assert_eq!(
            chunked.prs.iter().map(|p| p["number"].as_u64().unwrap()).collect::<Vec<_>>(),
            (1..=3_000).collect::<Vec<_>>()
        );
        // Spans in later chunks are offsets into the whole file.
        for (rule, file_rule) in chunked.rules.iter().zip(&whole.leaf) {
            assert_eq!(rule.workflow_span, file_rule.workflow.span());
            assert_eq!(rule.responses[0].output_span, file_rule.output.as_ref().map(Spanned::span));
        }
        assert_eq!(chunked.inputs["repo"], "a/b");
    }

    #[test]
    fn a_large_scenario_whose_chunks_disagree_with_the_whole_is_read_whole() {
        // An error in the second half is the whole file's error, at its place in the file.
        let mut src = large(3_000);
        let bad = src.rfind("workflow = ").unwrap();
        src.replace_range(bad..bad + "workflow".len(), "workflw!");
        let err = parse(&src).unwrap_err();
        assert_eq!(err.span_start().map(|s| (s as isize - bad as isize).abs() < 16), Some(true), "{err}");

        // A multi-line string across the split point: the head alone does not parse.
        let mut src = large(3_000);
        let at = split_points(&src)[0];
        src.insert_str(at - 1, "\n[[leaf]]\nworkflow = \"w\"\ntext = \"\"\"\n");
        let at = split_points(&src)[0];
        src.insert_str(at + 2, "\n\"\"\"\n");
        let _ = parse(&src); // whatever the whole file says, the halves never decide it
        assert_eq!(parse(&src).is_ok(), toml::from_str::<ScenarioFile>(&src).is_ok());

        // A rule in the second half that the conversion refuses: the whole file's error.
        let mut src = large(3_000);
        let last = src.rfind("output = ").unwrap();
        src.insert_str(last, "sequence = [ { status = \"timeout\" } ]\n");
        let err = parse(&src).unwrap_err();
        assert!(err.to_string().contains("both an inline response and a `sequence`"), "{err}");
        assert!(err.span_start().unwrap() > *split_points(&src).last().unwrap(), "points into the last chunk");

        // A second half that sets a top-level key is read whole (here: a duplicate key).
        let mut src = large(3_000);
        src.push_str("coordinator = \"again\"\n");
        assert!(parse(&src).is_err());

        // Fixtures that are not only arrays of entries are read whole: `[github]` with an inline
        // array clashes with the `[[github.prs]]` entries after it.
        let mut src = large(3_000);
        src.insert_str(src.find("[[github.prs]]").unwrap(), "[github]\nprs = [{ number = 0 }]\n");
        assert!(chunks_may_differ(&src, split_points(&src)[0]));
        assert!(parse(&src).is_err());
        // A table that is not inside an entry, after the first cut.
        let mut src = large(3_000);
        src.push_str("[git.branches]\n");
        assert!(chunks_may_differ(&src, split_points(&src)[0]));
    }
}
