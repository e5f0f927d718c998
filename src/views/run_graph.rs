//! The run graph: a recorded run's sessions and effects, each hung under what led to it. Every
//! view of one run (`coord show`, `coord graph`, `coord report`, `coord runs`) reads this.
//!
//! **The parent rule.** The journal records what the script asked and what it got back, not
//! which value flowed where, so data dependencies are inferred, soundly but conservatively:
//!
//! - A node's *subject* is the PR or issue it is about: its inputs' (or, for an effect, its
//!   arguments') `pr`, `number`, `issue` or `pr_number`, else the first `#N` in its goal.
//! - A session or effect is the child of session X when X's result reached the script (an
//!   `await_sessions` that returned X came earlier in the journal) and X has the same subject.
//!   When several qualify, the most recently awaited wins: the fix hangs under the review that
//!   asked for it, the re-review under the fix.
//! - Otherwise a session hangs under the latest session it took a value from (its
//!   dependencies, [`super::provenance`], and the sessions its `after` option names), else
//!   under the latest `classify` about the same item (or about none) whose answer reached the
//!   script before it: a classification's labels are too short to be traced as values, but
//!   what the script spawns next is what they decided.
//! - Otherwise (no subject, or nothing awaited about it) its parent is the script call site
//!   `file:line` that made it.
//!
//! Every node also carries its *item* (`pr#13`, [`super::item_outcomes`]), and the graph the
//! outcomes the script declared with `item_outcome`.
//!
//! It only reads: the journal, the blobs (large outputs), and the run's pid file (is the owner
//! alive). It must not write, and it must not guess anything the rule above does not say.

use super::item_outcomes;
use super::provenance::Provenance;
use super::spend::{self, Spend};
use crate::effects::EffectKind;
use crate::journal::blob_store::BlobStore;
use crate::journal::entry::{self, CallEntry, Entry, ParentRun};
use crate::journal::run_dir::{owner_alive, RunLookupError, RunStore};
use crate::journal::{JournalError, RecordedRun, RunStatus};
use crate::leaf::session::{SessionResult, SessionStatus, Usage};
use crate::redaction::Redactor;
use crate::script::host::EffectRecord;
use indexmap::IndexMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// Output fields that carry a session's decision, in the order they are looked for.
const VERDICT_FIELDS: [&str; 7] = ["verdict", "decision", "status", "label", "category", "outcome", "result"];
/// Output fields that carry a one-line explanation.
const SUMMARY_FIELDS: [&str; 4] = ["summary", "title", "reason", "message"];
/// Input (and effect argument) fields that name what a node is about.
const SUBJECT_FIELDS: [&str; 4] = ["pr", "number", "issue", "pr_number"];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Parent {
    /// The session whose result led to this node.
    Session(String),
    /// Index into [`RunGraph::call_sites`]: the script made it with no session input.
    CallSite(usize),
}

/// A `file:line` of the script where root nodes were made.
#[derive(Clone, Debug)]
pub struct CallSite {
    pub label: String,
    /// The host function called there (`spawn_session`, `notify`, ...).
    pub function: String,
}

#[derive(Clone, Debug)]
pub struct SessionNode {
    pub id: String,
    pub call: u64,
    pub workflow: String,
    pub goal: String,
    pub inputs: Value,
    /// The rendered prompt, when the journal holds it.
    pub prompt: Option<String>,
    /// `file:line:col` of the `spawn_session` (or `classify`) call.
    pub site: String,
    pub subject: Option<String>,
    /// The item it is about: `pr#13` ([`super::item_outcomes`]).
    pub item: Option<String>,
    /// Sessions a value of its goal or inputs came from, or that its `after` option names, in
    /// the order their results reached the script.
    pub deps: Vec<String>,
    /// None while it runs, or when the run stopped before it finished.
    pub result: Option<SessionResult>,
    pub parent: Parent,
    /// Call sites are depth 0; a root session is depth 1.
    pub depth: usize,
    /// The run is still going, so a session without a result is running, not unfinished.
    pub run_alive: bool,
    /// A mock leaf: its usage and cost are simulated ([`super::spend`]).
    pub simulated: bool,
}

#[derive(Clone, Debug)]
pub struct EffectNode {
    pub call: u64,
    pub function: String,
    pub args: Value,
    /// None when the intent was journaled but the run stopped before the result.
    pub result: Option<Value>,
    pub site: String,
    pub subject: Option<String>,
    /// The item it is about: `pr#13` ([`super::item_outcomes`]).
    pub item: Option<String>,
    pub parent: Parent,
    pub depth: usize,
}

/// What the script said became of an item: `item_outcome(item, outcome, reason)`.
#[derive(Clone, Debug)]
pub struct DeclaredOutcome {
    pub call: u64,
    pub item: String,
    pub outcome: String,
    pub reason: Option<String>,
}

/// A node of the graph, in the order the script made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRef {
    Session(usize),
    Effect(usize),
}

#[derive(Clone, Debug)]
pub struct RunGraph {
    pub dir: PathBuf,
    pub run_id: String,
    pub coordinator: String,
    pub script: String,
    pub mode: String,
    /// The run ran in a scenario world, where leaves are mock unless overridden
    /// ([`super::spend`]).
    pub scenario: bool,
    pub inputs: Value,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    /// What an unfinished run is waiting for (`waiting until <time>`), from its last call.
    pub waiting: Option<String>,
    pub error: Option<String>,
    /// What the script returned.
    pub result: Option<Value>,
    pub call_sites: Vec<CallSite>,
    /// In spawn order.
    pub sessions: Vec<SessionNode>,
    /// In call order.
    pub effects: Vec<EffectNode>,
    /// `item_outcome` calls, in call order.
    pub declared: Vec<DeclaredOutcome>,
    /// The repository the run worked on (`owner/name`), when its inputs say.
    pub repo: Option<String>,
    pub warnings: Vec<String>,
    /// The `coord.toml` pipeline the run belongs to (daemon, `coord trigger`).
    pub pipeline: Option<String>,
    /// A redo's parent run and where it branched.
    pub parent: Option<ParentRun>,
    /// The redos of this run found beside it, oldest first.
    pub redos: Vec<(String, ParentRun)>,
    /// The nodes under each parent, in call order: made on the first [`RunGraph::children`]
    /// (a graph is built whole and never changed after), so a view walking the tree reads
    /// each node's children without scanning every node.
    children_by_parent: std::sync::OnceLock<HashMap<Parent, Vec<NodeRef>>>,
}

/// Sessions, tokens and cost of a group of sessions (a workflow, a model).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostLine {
    pub name: String,
    pub sessions: usize,
    pub tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenRunError {
    #[error(transparent)]
    Lookup(#[from] RunLookupError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Resolves `run` in `store`, reads its journal, masks it and builds its graph. The masked
/// journal comes back too, for views that read entries (the trace).
pub fn open_run(store: &RunStore, run: &str, redactor: &Redactor) -> Result<(RecordedRun, RunGraph), OpenRunError> {
    let dir = store.resolve(run)?;
    let mut recorded = RecordedRun::read(&dir)?;
    mask_recorded_run(redactor, &mut recorded);
    // One run shown: its redos are worth the read of every header in the store.
    let beside = dir.parent().map(|root| RunStore { root: root.to_owned() });
    let redos = crate::journal::run_dir::redos_of(beside.as_ref().unwrap_or(store), &recorded.header.run_id);
    let graph = RunGraph::build_with_redos(&recorded, redactor, redos);
    Ok((recorded, graph))
}

/// Masks everything a view could show of a recorded run: the second line of defence, for
/// journals written before coord masked when writing, and secrets known only where the view
/// is made.
pub fn mask_recorded_run(redactor: &Redactor, run: &mut RecordedRun) {
    if redactor.knows_no_values() {
        return;
    }
    redactor.mask_value(&mut run.header.inputs);
    redactor.mask_string(&mut run.header.script);
    for line in run.entries.iter_mut().chain(run.calls.iter_mut()) {
        mask_entry(redactor, &mut line.entry);
    }
    if let Some(finished) = &mut run.finished {
        finished.result.iter_mut().for_each(|v| redactor.mask_value(v));
        finished.error.iter_mut().for_each(|e| redactor.mask_string(e));
    }
    run.sessions.values_mut().for_each(|v| redactor.mask_value(v));
    run.effect_results.values_mut().for_each(|v| redactor.mask_value(v));
    run.warnings.iter_mut().for_each(|w| redactor.mask_string(w));
}

/// Masks what a view could show of one entry, as [`mask_recorded_run`] does for each: for
/// views that take a journal's entries one by one as it grows (`coord serve`).
pub fn mask_entry(redactor: &Redactor, entry: &mut Entry) {
    if redactor.knows_no_values() {
        return;
    }
    match entry {
        Entry::RunStarted { header } => {
            redactor.mask_value(&mut header.inputs);
            redactor.mask_string(&mut header.script);
        }
        Entry::Call(c) => {
            redactor.mask_value(&mut c.args);
            redactor.mask_value(&mut c.result);
            c.source.iter_mut().for_each(|s| redactor.mask_string(s));
        }
        Entry::EffectIntent(e) => {
            redactor.mask_value(&mut e.args);
            e.source.iter_mut().for_each(|s| redactor.mask_string(s));
        }
        Entry::Session(s) => redactor.mask_value(&mut s.result),
        Entry::EffectResult(r) => redactor.mask_value(&mut r.result),
        Entry::RunFinished(f) => {
            f.result.iter_mut().for_each(|v| redactor.mask_value(v));
            f.error.iter_mut().for_each(|e| redactor.mask_string(e));
        }
    }
}

/// How a run looks from outside: its last entry, else whether its process still lives.
pub fn observed_status(run: &RecordedRun) -> RunStatus {
    match run.finished.as_ref().map(|f| f.status) {
        Some(status) => status,
        None if owner_alive(&run.dir) => RunStatus::Running,
        None => RunStatus::Interrupted,
    }
}

/// What an unfinished run waits for, when its last call is a wait (`sleep`, `sleep_until`,
/// `wait_signal` not yet answered by its `signal` call): `waiting until <time>`, or
/// `waiting for signal <name> until <time>`. None for a finished run (a parked one still waits).
pub fn waiting_for(run: &RecordedRun) -> Option<String> {
    if run.finished.as_ref().is_some_and(|f| f.status != RunStatus::Parked) {
        return None;
    }
    let Entry::Call(call) = &run.calls.last()?.entry else { return None };
    let until = call.result.get("until").and_then(Value::as_str).map(|t| format!(" until {t}"));
    match call.function.as_str() {
        "sleep" | "sleep_until" => until.map(|u| format!("waiting{u}")),
        "wait_signal" => {
            let name = call.args.get("name").and_then(Value::as_str).unwrap_or("?");
            Some(format!("waiting for signal `{name}`{}", until.unwrap_or_default()))
        }
        _ => None,
    }
}

impl RunGraph {
    /// Builds the graph of `run` (already masked); large outputs are read from its blobs and
    /// masked with `redactor`. Its redos are not looked for (listings build thousands of graphs).
    pub fn build(run: &RecordedRun, redactor: &Redactor) -> Self {
        Self::build_with_redos(run, redactor, Vec::new())
    }

    /// [`RunGraph::build`] with the run's redos, found by the caller: finding them reads the
    /// header of every run in the store, which a view of one run (`coord show`) can afford once.
    pub fn build_with_redos(run: &RecordedRun, redactor: &Redactor, redos: Vec<(String, ParentRun)>) -> Self {
        let blobs = BlobStore::new(&run.dir);
        let status = observed_status(run);
        let mut warnings = run.warnings.clone();
        let mut graph = RunGraph::empty(run, status, redos);
        let mut site_index: IndexMap<String, usize> = IndexMap::new();
        let mut session_index: IndexMap<String, usize> = IndexMap::new();
        let mut effect_calls: IndexMap<u64, usize> = IndexMap::new();
        // Per subject, the session about it whose result reached the script last.
        let mut awaited: HashMap<String, String> = HashMap::new();
        let mut provenance = Provenance::default();
        // The latest `classify` result that reached the script, per item: a routing decision.
        let mut decisions: HashMap<Option<String>, String> = HashMap::new();

        for line in &run.entries {
            match &line.entry {
                Entry::Call(entry @ CallEntry { session: Some(id), .. }) => {
                    let id = id.clone();
                    if session_index.contains_key(&id) {
                        continue;
                    }
                    let args = entry.args.clone();
                    let goal = args.get("goal").and_then(Value::as_str).unwrap_or("").to_owned();
                    let inputs = args.get("inputs").cloned().unwrap_or_else(|| json!({}));
                    let subject = subject_of(&inputs, &goal);
                    let item = item_outcomes::item_of(&inputs, args.get("subject"), &goal);
                    let mut deps = dependencies(&provenance, &goal, &inputs, args.get("after"));
                    // A value shared by sessions about different items is a coincidence.
                    deps.retain(|d| graph.same_item(d, item.as_deref(), &session_index));
                    let result = run.sessions.get(&id).and_then(|v| {
                        session_result(v, &blobs, redactor)
                            .map_err(|e| warnings.push(format!("session {id}: {e}")))
                            .ok()
                    });
                    let workflow = result
                        .as_ref()
                        .map(|r| r.workflow.clone())
                        .unwrap_or_else(|| workflow_from_key(entry).unwrap_or_else(|| "?".into()));
                    let decision = decisions.get(&item).filter(|_| deps.is_empty());
                    let parent = graph.parent_for(
                        (subject.as_deref(), &deps, decision),
                        &awaited,
                        entry.asked(),
                        &mut site_index,
                    );
                    let simulated =
                        result.as_ref().is_some_and(|r| spend::leaf_simulated(r.harness.as_deref(), graph.scenario));
                    session_index.insert(id.clone(), graph.sessions.len());
                    graph.sessions.push(SessionNode {
                        id,
                        call: entry.call,
                        workflow,
                        goal,
                        prompt: args.get("prompt").and_then(Value::as_str).map(str::to_owned),
                        inputs,
                        site: site_label(&entry.site(), &run.header.script, true),
                        subject,
                        item,
                        deps,
                        result,
                        depth: 0,
                        parent,
                        run_alive: status == RunStatus::Running,
                        simulated,
                    });
                }
                Entry::Call(entry) if entry.function == "await_sessions" => {
                    graph.note_awaited(entry, &session_index, &mut awaited, (&mut provenance, &mut decisions));
                }
                Entry::Call(entry) if entry.function == "item_outcome" => graph.note_declared(entry),
                Entry::EffectIntent(entry) => {
                    let call = entry.call;
                    if effect_calls.contains_key(&call) {
                        continue;
                    }
                    let args = entry.args.clone();
                    let subject = subject_of(&args, "");
                    let item = item_outcomes::item_of(&args, args.get("subject"), "");
                    let parent =
                        graph.parent_for((subject.as_deref(), &[], None), &awaited, entry.asked(), &mut site_index);
                    effect_calls.insert(call, graph.effects.len());
                    graph.effects.push(EffectNode {
                        call,
                        function: entry.function.clone(),
                        result: run.effect_results.get(&call).cloned(),
                        args,
                        site: site_label(&entry.site(), &run.header.script, true),
                        subject,
                        item,
                        parent,
                        depth: 0,
                    });
                }
                _ => {}
            }
        }
        // Parents always come first in the journal, so one pass sets every depth.
        for i in 0..graph.sessions.len() {
            graph.sessions[i].depth = graph.depth_under(&graph.sessions[i].parent);
        }
        for i in 0..graph.effects.len() {
            graph.effects[i].depth = graph.depth_under(&graph.effects[i].parent);
        }
        graph.resolve_bare_items();
        graph.warnings = warnings;
        graph
    }

    /// An `await_sessions`: its sessions' results reached the script, in this order.
    fn note_awaited(
        &self,
        entry: &CallEntry,
        sessions: &IndexMap<String, usize>,
        awaited: &mut HashMap<String, String>,
        (provenance, decisions): (&mut Provenance, &mut HashMap<Option<String>, String>),
    ) {
        let ids = entry.args.get("sessions").and_then(Value::as_array);
        for id in ids.into_iter().flatten().filter_map(Value::as_str) {
            if let Some(s) = sessions.get(id).map(|&i| &self.sessions[i]) {
                if let Some(r) = &s.result {
                    provenance.awaited(id, &r.output, &r.text, &[&json!(s.goal), &s.inputs]);
                }
                if s.workflow == "classify" {
                    decisions.insert(s.item.clone(), id.to_owned());
                }
                if let Some(subject) = &s.subject {
                    awaited.insert(subject.clone(), id.to_owned());
                }
            }
        }
    }

    /// Session `id` is about `item`, or one of the two is about no item in particular.
    fn same_item(&self, id: &str, item: Option<&str>, sessions: &IndexMap<String, usize>) -> bool {
        let theirs = sessions.get(id).and_then(|&i| self.sessions[i].item.as_deref());
        matches!((theirs, item), (Some(a), Some(b)) if a == b) || theirs.is_none() || item.is_none()
    }

    /// An `item_outcome` call: what the script said became of an item.
    fn note_declared(&mut self, entry: &CallEntry) {
        let text = |key: &str| entry.args.get(key).and_then(Value::as_str).map(str::to_owned);
        if let (Some(item), Some(outcome)) = (text("item"), text("outcome")) {
            self.declared.push(DeclaredOutcome { call: entry.call, item, outcome, reason: text("reason") });
        }
    }

    /// The graph's header, from the run's, before any node.
    fn empty(run: &RecordedRun, status: RunStatus, redos: Vec<(String, ParentRun)>) -> Self {
        RunGraph {
            dir: run.dir.clone(),
            run_id: run.header.run_id.clone(),
            coordinator: run.header.coordinator.clone(),
            script: run.header.script.clone(),
            mode: run.header.mode.to_string(),
            scenario: spend::scenario_mode(run.header.mode, run.header.scenario.as_deref()),
            inputs: run.header.inputs.clone(),
            started_at: run.header.started_at.clone(),
            finished_at: run.finished.as_ref().map(|f| f.at.clone()),
            status,
            error: run.finished.as_ref().and_then(|f| f.error.clone()),
            result: run.finished.as_ref().and_then(|f| f.result.clone()),
            call_sites: Vec::new(),
            sessions: Vec::new(),
            effects: Vec::new(),
            declared: Vec::new(),
            repo: item_outcomes::repo_of(&run.header.inputs),
            warnings: Vec::new(),
            pipeline: run.header.pipeline.clone(),
            parent: run.header.parent.clone(),
            redos,
            waiting: waiting_for(run),
            children_by_parent: Default::default(),
        }
    }

    /// A bare `#N` (a comment's number) joins the PR or issue first seen with that number.
    fn resolve_bare_items(&mut self) {
        let mut known: std::collections::HashMap<String, String> = Default::default();
        let tags = self.sessions.iter().filter_map(|s| s.item.as_deref());
        let tags = tags.chain(self.effects.iter().filter_map(|e| e.item.as_deref()));
        for tag in tags.chain(self.declared.iter().map(|d| d.item.as_str())) {
            if let Some(at) = tag.find('#').filter(|&at| at > 0) {
                known.entry(tag[at..].to_owned()).or_insert_with(|| tag.to_owned());
            }
        }
        let items = self.sessions.iter_mut().map(|s| &mut s.item).chain(self.effects.iter_mut().map(|e| &mut e.item));
        for item in items.flatten() {
            if let Some(tag) = known.get(item.as_str()) {
                *item = tag.clone();
            }
        }
    }

    /// `about`: the node's subject, the sessions it took values from, and the classification
    /// that decided it.
    fn parent_for(
        &mut self,
        (subject, deps, decision): (Option<&str>, &[String], Option<&String>),
        awaited: &HashMap<String, String>,
        asked: entry::Asked<'_>,
        sites: &mut IndexMap<String, usize>,
    ) -> Parent {
        if let Some(id) = subject.and_then(|subject| awaited.get(subject)) {
            return Parent::Session(id.clone());
        }
        if let Some(id) = deps.last().or(decision) {
            return Parent::Session(id.clone());
        }
        let label = site_label(&asked.site(), &self.script, false);
        let next = self.call_sites.len();
        let index = *sites.entry(label.clone()).or_insert(next);
        if index == next {
            self.call_sites.push(CallSite { label, function: asked.function.to_owned() });
        }
        Parent::CallSite(index)
    }

    fn depth_under(&self, parent: &Parent) -> usize {
        match parent {
            Parent::CallSite(_) => 1,
            Parent::Session(id) => self.session(id).map(|s| s.depth + 1).unwrap_or(1),
        }
    }

    pub fn session(&self, id: &str) -> Option<&SessionNode> {
        // Sessions are in spawn order, so `sN` is nearly always the N-th.
        let at = id.strip_prefix('s').and_then(|n| n.parse::<usize>().ok()).and_then(|n| n.checked_sub(1));
        match at.and_then(|i| self.sessions.get(i)) {
            Some(s) if s.id == id => Some(s),
            _ => self.sessions.iter().find(|s| s.id == id),
        }
    }

    /// The nodes hung directly under `parent`, in the order the script made them.
    pub fn children(&self, parent: &Parent) -> Vec<NodeRef> {
        let by_parent = self.children_by_parent.get_or_init(|| {
            let mut nodes: Vec<(u64, &Parent, NodeRef)> = self
                .sessions
                .iter()
                .enumerate()
                .map(|(i, s)| (s.call, &s.parent, NodeRef::Session(i)))
                .chain(self.effects.iter().enumerate().map(|(i, e)| (e.call, &e.parent, NodeRef::Effect(i))))
                .collect();
            nodes.sort_by_key(|(call, _, _)| *call);
            let mut by_parent: HashMap<Parent, Vec<NodeRef>> = HashMap::new();
            for (_, parent, node) in nodes {
                by_parent.entry(parent.clone()).or_default().push(node);
            }
            by_parent
        });
        by_parent.get(parent).cloned().unwrap_or_default()
    }

    pub fn usage(&self) -> Usage {
        let mut total = Usage::default();
        for r in self.sessions.iter().filter_map(|s| s.result.as_ref()) {
            total.add(&r.usage);
        }
        total
    }

    /// The leaves' dollars, real and simulated apart.
    pub fn spend(&self) -> Spend {
        let mut total = Spend::default();
        for s in &self.sessions {
            total.add(Spend::leaf(s.cost_usd(), s.simulated));
        }
        total
    }

    /// The run's cost as views write it: `$0.2500`, `$1.3220 (simulated)`, or both parts.
    pub fn cost_text(&self) -> String {
        self.spend().run_text(self.scenario)
    }

    /// Wall time from start to the last entry, when the run finished.
    pub fn duration_ms(&self) -> Option<u64> {
        let start = chrono::DateTime::parse_from_rfc3339(&self.started_at).ok()?;
        let end = chrono::DateTime::parse_from_rfc3339(self.finished_at.as_deref()?).ok()?;
        u64::try_from((end - start).num_milliseconds()).ok()
    }

    pub fn failed_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.state() != "ok").count()
    }

    /// The session that ran longest (the first of equals); None when no session took a
    /// measurable time (mock leaves answer in 0ms, and a 0ms "longest" would say nothing).
    pub fn longest_session(&self) -> Option<&SessionNode> {
        self.sessions
            .iter()
            .fold(None, |best: Option<&SessionNode>, s| match best {
                Some(b) if b.duration_ms() >= s.duration_ms() => Some(b),
                _ => Some(s),
            })
            .filter(|s| s.duration_ms() > 0)
    }

    pub fn cost_by_workflow(&self) -> Vec<CostLine> {
        self.cost_by(|s| s.workflow.clone())
    }

    pub fn cost_by_model(&self) -> Vec<CostLine> {
        self.cost_by(|s| s.result.as_ref().and_then(|r| r.model.clone()).unwrap_or_else(|| "(default)".into()))
    }

    /// Most expensive first; ties by name, so the order is stable.
    fn cost_by(&self, key: impl Fn(&SessionNode) -> String) -> Vec<CostLine> {
        let mut groups: IndexMap<String, CostLine> = IndexMap::new();
        for s in &self.sessions {
            let name = key(s);
            let line = groups.entry(name.clone()).or_insert_with(|| CostLine { name, ..Default::default() });
            line.sessions += 1;
            line.tokens += s.tokens();
            line.cost_usd += s.cost_usd();
        }
        let mut lines: Vec<CostLine> = groups.into_values().collect();
        lines.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then_with(|| a.name.cmp(&b.name)));
        lines
    }

    /// Sessions that did not end ok and effects that failed, in the order they happened.
    pub fn errors(&self) -> Vec<(NodeRef, String)> {
        let mut errors: Vec<(u64, NodeRef, String)> = Vec::new();
        for (i, s) in self.sessions.iter().enumerate() {
            if s.state() != "ok" {
                let why = s.result.as_ref().and_then(|r| r.error.clone()).unwrap_or_else(|| s.state().to_owned());
                errors.push((s.call, NodeRef::Session(i), why));
            }
        }
        for (i, e) in self.effects.iter().enumerate() {
            if matches!(e.status(), "failed" | "unfinished") {
                let why = e.result.as_ref().and_then(|r| r.get("error")).and_then(Value::as_str).unwrap_or(e.status());
                errors.push((e.call, NodeRef::Effect(i), why.to_owned()));
            }
        }
        errors.sort_by_key(|(call, _, _)| *call);
        errors.into_iter().map(|(_, n, why)| (n, why)).collect()
    }

    /// A short name of what `parent` is: `s3` or `groom-prs.rhai:16`.
    pub fn parent_label(&self, parent: &Parent) -> String {
        match parent {
            Parent::Session(id) => id.clone(),
            Parent::CallSite(i) => self.call_sites.get(*i).map(|c| c.label.clone()).unwrap_or_default(),
        }
    }

    /// The session ids hung under session `id`.
    pub fn child_sessions(&self, id: &str) -> Vec<&str> {
        let parent = Parent::Session(id.to_owned());
        self.sessions.iter().filter(|s| s.parent == parent).map(|s| s.id.as_str()).collect()
    }
}

impl SessionNode {
    /// `ok`, `failed`, `timeout`, ... or `running` / `unfinished` when it has no result.
    pub fn state(&self) -> &'static str {
        match &self.result {
            Some(r) => r.status.as_str(),
            None if self.run_alive => "running",
            None => "unfinished",
        }
    }

    pub fn status(&self) -> Option<SessionStatus> {
        self.result.as_ref().map(|r| r.status)
    }

    pub fn duration_ms(&self) -> u64 {
        self.result.as_ref().map(|r| r.duration_ms).unwrap_or(0)
    }

    pub fn tokens(&self) -> u64 {
        self.result.as_ref().map(|r| r.usage.input_tokens + r.usage.output_tokens).unwrap_or(0)
    }

    pub fn cost_usd(&self) -> f64 {
        self.result.as_ref().map(|r| r.usage.cost_usd).unwrap_or(0.0)
    }

    pub fn error(&self) -> Option<&str> {
        self.result.as_ref().and_then(|r| r.error.as_deref())
    }

    pub fn output(&self) -> Option<&Value> {
        self.result.as_ref().map(|r| &r.output).filter(|o| !o.is_null())
    }

    /// The decision the session's output carries: `("verdict", "clean")`.
    pub fn verdict(&self) -> Option<(&'static str, String)> {
        let output = self.output()?;
        if let Value::String(s) = output {
            return Some(("output", one_line(s, 40)));
        }
        VERDICT_FIELDS.iter().find_map(|f| match output.get(*f)? {
            Value::String(s) => Some((*f, one_line(s, 40))),
            v @ (Value::Bool(_) | Value::Number(_)) => Some((*f, v.to_string())),
            _ => None,
        })
    }

    /// The output's one-line explanation, if it has one.
    pub fn summary(&self) -> Option<String> {
        let output = self.output()?;
        SUMMARY_FIELDS.iter().find_map(|f| output.get(*f).and_then(Value::as_str)).map(|s| one_line(s, 100))
    }

    /// `verdict: clean`, for one-line views.
    pub fn verdict_text(&self) -> Option<String> {
        self.verdict().map(|(f, v)| format!("{f}: {v}"))
    }
}

impl EffectNode {
    /// The result's status, or `unfinished` when only the intent was journaled.
    pub fn status(&self) -> &str {
        match &self.result {
            Some(r) => r.get("status").and_then(Value::as_str).unwrap_or("done"),
            None => "unfinished",
        }
    }

    /// True when the world changed (or, in a dry run, would have) as asked.
    pub fn succeeded(&self) -> bool {
        !matches!(self.status(), "failed" | "unfinished" | "not_recorded" | "conflict" | "refused")
    }

    pub fn kind(&self) -> Option<EffectKind> {
        EffectKind::from_function(&self.function)
    }

    /// As the run summary has it: `merge PR #12 squash -> merged`.
    pub fn line(&self) -> String {
        let Some(kind) = self.kind() else {
            return format!("{} {} -> {}", self.function, self.args, self.status());
        };
        let result = self.result.clone().unwrap_or_else(|| json!({ "status": "unfinished" }));
        let record = EffectRecord::new(self.call, kind, self.args.clone(), result, Default::default());
        let mut line = super::effect_view::effect_line(&record);
        if kind == EffectKind::Comment {
            if let Some(body) = self.args.get("body").and_then(Value::as_str) {
                line.push_str(&format!(" {:?}", one_line(body, 80)));
            }
        }
        line
    }

    /// `merge #12`: what it did to what, for narrow places (graph nodes).
    pub fn short_label(&self) -> String {
        let verb = self.function.strip_prefix("github.").unwrap_or(&self.function);
        match (&self.subject, self.args.get("channel").and_then(Value::as_str)) {
            (Some(n), _) => format!("{verb} #{n}"),
            (None, Some(channel)) => format!("{verb} {channel}"),
            (None, None) => verb.to_owned(),
        }
    }
}

fn session_result(value: &Value, blobs: &BlobStore, redactor: &Redactor) -> Result<SessionResult, String> {
    let mut result: SessionResult =
        serde_json::from_value(value.clone()).map_err(|e| format!("unreadable session result: {e}"))?;
    if let Some(hash) = result.output.get("$blob").and_then(Value::as_str).map(str::to_owned) {
        let mut output = blobs.get(&hash).map_err(|e| format!("output blob {hash}: {e}")).and_then(|bytes| {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("output blob {hash} is not JSON: {e}"))
        })?;
        redactor.mask_value(&mut output);
        result.output = output;
    }
    Ok(result)
}

/// The sessions a spawn took values from ([`Provenance`]) and those its `after` option names
/// (when their results had reached the script), in the order their results did.
fn dependencies(provenance: &Provenance, goal: &str, inputs: &Value, after: Option<&Value>) -> Vec<String> {
    let mut deps = provenance.sources(goal, inputs);
    let named: Vec<&str> = match after {
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(id)) => vec![id.as_str()],
        _ => Vec::new(),
    };
    if named.is_empty() {
        return deps;
    }
    for id in named {
        if !deps.iter().any(|d| d == id) && provenance.order(id).is_some() {
            deps.push(id.to_owned());
        }
    }
    // In the order the results came back, so the last is the latest.
    deps.sort_by_key(|d| provenance.order(d));
    deps
}

/// `spawn_session:mr-review:4de8…` names the workflow when no result does.
fn workflow_from_key(entry: &CallEntry) -> Option<String> {
    let key = &entry.key;
    let mut parts = key.0.split(':');
    let _function = parts.next();
    let workflow = parts.next()?;
    parts.next().map(|_| workflow.to_owned())
}

/// `file:line` (or `file:line:col` with `col`) of an entry's call.
fn site_label(site: &entry::CallSite, script: &str, col: bool) -> String {
    let file = site.source.as_deref().unwrap_or(script);
    match (site.line, col) {
        (0, _) => file.to_owned(),
        (line, false) => format!("{file}:{line}"),
        (line, true) => format!("{file}:{line}:{}", site.col),
    }
}

/// What a node is about: `12` for PR #12.
pub fn subject_of(fields: &Value, goal: &str) -> Option<String> {
    let from_fields = SUBJECT_FIELDS.iter().find_map(|f| match fields.get(*f)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().trim_start_matches('#').to_owned()),
        _ => None,
    });
    from_fields.or_else(|| {
        let at = goal.find('#')?;
        let digits: String = goal[at + 1..].chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then_some(digits)
    })
}

/// The first line of `text`, at most `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{CallSite, RunHeader};
    use crate::journal::{CallKey, JournalWriter, JOURNAL_VERSION};

    /// A journal written by hand: spawns, awaits and effects in the order given.
    fn graph_of(steps: &[(&str, Value)]) -> RunGraph {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        let header = RunHeader { version: JOURNAL_VERSION, script: "c.rhai".into(), ..Default::default() };
        w.append(Entry::run_started(header)).unwrap();
        let mut sessions = 0;
        for (call, (function, args)) in steps.iter().enumerate() {
            let call = call as u64;
            let site = CallSite { line: 10 + call as usize, col: 1, source: None };
            let key = CallKey::new(function, Some("wf"), args);
            match *function {
                "spawn" => {
                    sessions += 1;
                    let id = format!("s{sessions}");
                    let entry =
                        Entry::call(call, "spawn_session", key, &site, args.clone(), Value::Null, Some(id.clone()));
                    w.append(entry).unwrap();
                    let result = json!({"id": id, "workflow": "wf", "status": "ok", "output": {"verdict": "clean"}});
                    w.append(Entry::session(&id, result)).unwrap();
                }
                "await" => {
                    let entry =
                        Entry::call(call, "await_sessions", key, &site, json!({ "sessions": args }), json!([]), None);
                    w.append(entry).unwrap();
                }
                effect => {
                    w.append(Entry::effect_intent(call, effect, key, &site, args.clone(), String::new())).unwrap();
                    w.append(Entry::effect_result(call, effect, json!({"status": "done"}))).unwrap();
                }
            }
        }
        w.sync().unwrap();
        let run = RecordedRun::read(dir.path()).unwrap();
        RunGraph::build(&run, &Redactor::default())
    }

    fn parent(g: &RunGraph, id: &str) -> String {
        g.parent_label(&g.session(id).unwrap().parent)
    }

    #[test]
    fn children_hang_under_the_latest_awaited_session_about_the_same_subject() {
        let g = graph_of(&[
            ("spawn", json!({"goal": "Review", "inputs": {"pr": 1}})),
            ("spawn", json!({"goal": "Summarize the week", "inputs": {}})),
            ("await", json!(["s1", "s2"])),
            // After s1 came back: about PR 1, so under s1.
            ("spawn", json!({"goal": "Fix PR #1", "inputs": {}})),
            // PR 2 was never awaited: under its call site.
            ("spawn", json!({"goal": "Review", "inputs": {"pr": 2}})),
            // s3 is spawned but not awaited yet: the merge still hangs under s1.
            ("merge", json!({"pr": 1})),
            ("await", json!(["s3"])),
            ("merge", json!({"pr": 1})),
            ("notify", json!({"channel": "c", "message": "done"})),
        ]);
        assert_eq!(parent(&g, "s1"), "c.rhai:10");
        assert_eq!(parent(&g, "s2"), "c.rhai:11");
        assert_eq!(parent(&g, "s3"), "s1");
        assert_eq!(parent(&g, "s4"), "c.rhai:14");
        let effect_parents: Vec<String> = g.effects.iter().map(|e| g.parent_label(&e.parent)).collect();
        assert_eq!(effect_parents, ["s1", "s3", "c.rhai:18"]);
        assert_eq!(g.session("s3").unwrap().depth, 2);
        assert_eq!(g.child_sessions("s1"), ["s3"]);
    }

    #[test]
    fn a_session_without_a_subject_hangs_under_what_it_follows() {
        let g = graph_of(&[
            ("spawn", json!({"goal": "Classify", "inputs": {}})),
            ("await", json!(["s1"])),
            // `after` names s1: nothing in its inputs shows it.
            ("spawn", json!({"goal": "Discover", "inputs": {}, "after": ["s1"]})),
            // Named but never awaited: no dependency.
            ("spawn", json!({"goal": "Design", "inputs": {}, "after": ["s3"]})),
            ("spawn", json!({"goal": "Code", "inputs": {}, "subject": "task#dark-mode"})),
        ]);
        assert_eq!(parent(&g, "s2"), "s1");
        assert_eq!(g.session("s2").unwrap().deps, ["s1"]);
        assert_eq!(parent(&g, "s3"), "c.rhai:13");
        assert_eq!(g.session("s4").unwrap().item.as_deref(), Some("task#dark-mode"));
    }

    #[test]
    fn subject_comes_from_inputs_then_goal() {
        assert_eq!(subject_of(&json!({"pr": 12}), "Review PR #13"), Some("12".into()));
        assert_eq!(subject_of(&json!({"number": "#7"}), ""), Some("7".into()));
        assert_eq!(subject_of(&json!({}), "Fix PR #13: x"), Some("13".into()));
        assert_eq!(subject_of(&json!({}), "Tidy # things"), None);
        assert_eq!(subject_of(&json!({"channel": "slack:#eng"}), ""), None);
    }

    #[test]
    fn one_line_cuts_on_characters() {
        assert_eq!(one_line("héllo wörld\nmore", 5), "héll…");
        assert_eq!(one_line("\n  short  ", 10), "short");
    }
}
