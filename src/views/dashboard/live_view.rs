//! The model of `coord serve`'s run page, made from the run graph ([`RunGraph`]) the other
//! views read: a header (status, sessions by phase, effects, tokens, cost, outcome, errors) and
//! the tree of call sites, sessions and effects under the parent rule of [`super::super::run_graph`],
//! as JSON the page's script renders.
//!
//! Each node has a key (`site0`, `s3`, `e12`) and the key of its parent, and nodes come parents
//! first in the order the script made them, so the page can add a node under its parent as it
//! arrives. [`SentNodes`] remembers what a page was sent, so an update carries only the nodes
//! that are new or changed.
//!
//! A session's **phase** is what the page colours it by: `done` (its result is `ok`), `failed`
//! (any other result), `running`, `queued`, or `unfinished` (no result, and the run is over).
//! The journal records a spawn and a result, not when a leaf got a slot, so which sessions run
//! and which wait is estimated: of the sessions without a result, as many as the run's
//! `--max-parallel` run, taken in spawn order (the order the scheduler queues them in), and the
//! rest wait. The counts are right (but for a per-harness limit, which can hold back more);
//! which leaf holds a slot may differ, since leaves that queue together take their slots in
//! whatever order their tasks run. The page says so where it shows the phase.
//!
//! Pure: it only formats what the graph holds (with [`super::super::units`]); the caller masks
//! the JSON before serving it.

use super::super::html_report::{cost_card, Card};
use super::super::item_outcomes::{item_rows, ItemRow};
use super::super::run_graph::{NodeRef, Parent, RunGraph, SessionNode};
use super::super::run_tree::outcome_value;
use super::super::spend::Label;
use super::super::units;
use crate::journal::entry::{Entry, ParentRun, RunStatus};
use crate::journal::RecordedRun;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// How many items the header lists.
pub const ITEMS_SHOWN: usize = 200;

/// Sessions by phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseCounts {
    pub total: usize,
    pub queued: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub unfinished: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeaderView {
    pub run_id: String,
    pub coordinator: String,
    pub status: &'static str,
    /// The run has ended (its status is not `running`).
    pub ended: bool,
    pub mode: String,
    pub pipeline: Option<String>,
    pub script: String,
    /// `2026-11-21 09:00:00` (UTC).
    pub started: String,
    /// As recorded, for the page to count the time since.
    pub started_at: String,
    /// The run's wall time, once it ended.
    pub duration: Option<String>,
    /// `3 sessions`.
    pub sessions_text: String,
    pub sessions: PhaseCounts,
    pub effects: usize,
    pub effects_done: usize,
    pub tokens: String,
    /// `$0.2500`, `$1.3220 (simulated)` or `$0.2500 + $1.3220 simulated`.
    pub cost: String,
    /// The cost as the report's card shows it (label, value, note).
    pub cost_card: Card,
    /// Every dollar was simulated by mock leaves.
    pub simulated: bool,
    /// What of the cost was simulated, when any was.
    pub spend_note: Option<String>,
    pub max_parallel: Option<u64>,
    pub error: Option<String>,
    /// What the script returned, as `[name, value]` pairs.
    pub outcome: Vec<(String, String)>,
    /// What became of each item, the first [`ITEMS_SHOWN`] in first-seen order.
    pub items: Vec<ItemRow>,
    /// Items past the first [`ITEMS_SHOWN`], counted only: the header is sent whole on every
    /// change.
    pub items_more: usize,
    /// `redo of run ... from s7 (call 12)`.
    pub redo_of: Option<String>,
    pub redone_as: Vec<String>,
    pub warnings: Vec<String>,
    /// The timeline of the finished sessions as SVG (`views::timeline`), while it is small
    /// enough to send with every update; it grows as sessions finish.
    pub timeline_svg: Option<String>,
    /// Its totals and critical path, whenever a session has finished with timing.
    pub timeline_totals: Option<String>,
}

/// The most sessions the live page draws on its timeline: the SVG goes out with every update.
const LIVE_TIMELINE_ROWS: usize = 300;

/// One node of the tree.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum NodeView<'a> {
    /// A script line that made root nodes.
    Site {
        key: String,
        label: &'a str,
        function: &'a str,
    },
    Session {
        key: &'a str,
        parent: String,
        id: &'a str,
        call: u64,
        workflow: &'a str,
        goal: &'a str,
        /// `ok`, `failed`, `timeout`, `cancelled`, ..., `running`, `unfinished`.
        state: &'static str,
        phase: &'static str,
        verdict: Option<String>,
        summary: Option<String>,
        duration: Option<String>,
        tokens: Option<String>,
        cost: Option<String>,
        /// A mock leaf in a run that had real leaves too.
        simulated: bool,
        error: Option<&'a str>,
    },
    Effect {
        key: String,
        parent: String,
        call: u64,
        line: String,
        status: &'a str,
        succeeded: bool,
    },
}

/// The page's model of one run: its header, and its nodes as (key, JSON) in page order.
pub struct RunView {
    pub header: HeaderView,
    pub nodes: Vec<(String, String)>,
}

pub fn run_view(g: &RunGraph, max_parallel: Option<u64>) -> RunView {
    let phases = session_phases(g, max_parallel);
    let spent = g.spend();
    let mixed = spent.label(g.scenario) == Label::Mixed;
    let mut counts = PhaseCounts { total: g.sessions.len(), ..Default::default() };
    for phase in &phases {
        match *phase {
            "queued" => counts.queued += 1,
            "running" => counts.running += 1,
            "done" => counts.done += 1,
            "failed" => counts.failed += 1,
            _ => counts.unfinished += 1,
        }
    }
    let usage = g.usage();
    let timeline = super::super::timeline::Timeline::of(g);
    let mut items = item_rows(g);
    let items_more = items.len().saturating_sub(ITEMS_SHOWN);
    items.truncate(ITEMS_SHOWN);
    let header = HeaderView {
        run_id: g.run_id.clone(),
        coordinator: g.coordinator.clone(),
        status: g.status.as_str(),
        ended: g.status != RunStatus::Running,
        mode: g.mode.clone(),
        pipeline: g.pipeline.clone(),
        script: g.script.clone(),
        started: units::timestamp(&g.started_at),
        started_at: g.started_at.clone(),
        duration: g.duration_ms().map(units::duration),
        sessions_text: units::count(g.sessions.len(), "session"),
        sessions: counts,
        effects: g.effects.len(),
        effects_done: g.effects.iter().filter(|e| e.succeeded()).count(),
        tokens: units::tokens(usage.input_tokens + usage.output_tokens),
        cost: g.cost_text(),
        cost_card: cost_card(g),
        simulated: spent.label(g.scenario) == Label::Simulated,
        spend_note: spent.run_note(g.scenario),
        max_parallel,
        error: g.error.clone(),
        outcome: match &g.result {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), outcome_value(v))).collect(),
            _ => Vec::new(),
        },
        items,
        items_more,
        redo_of: g.parent.as_ref().map(ToString::to_string),
        redone_as: g
            .redos
            .iter()
            .map(|(id, link)| ParentRun { run_id: id.clone(), ..link.clone() }.to_string())
            .collect(),
        warnings: g.warnings.clone(),
        timeline_svg: (!timeline.rows.is_empty() && timeline.rows.len() <= LIVE_TIMELINE_ROWS)
            .then(|| super::super::timeline::render_svg(&timeline)),
        timeline_totals: (!timeline.rows.is_empty())
            .then(|| format!("{} · critical path: {}", timeline.totals_text(), timeline.critical_text())),
    };
    let mut nodes = Vec::with_capacity(g.call_sites.len() + g.sessions.len() + g.effects.len());
    for (i, site) in g.call_sites.iter().enumerate() {
        let node = NodeView::Site { key: site_key(i), label: &site.label, function: &site.function };
        nodes.push((site_key(i), to_json(&node)));
    }
    // Parents before children: a session's children were made after it, so call order does it.
    let mut made: Vec<(u64, NodeRef)> = g
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.call, NodeRef::Session(i)))
        .chain(g.effects.iter().enumerate().map(|(i, e)| (e.call, NodeRef::Effect(i))))
        .collect();
    made.sort_by_key(|(call, _)| *call);
    for (_, node) in made {
        match node {
            NodeRef::Session(i) => {
                let s = &g.sessions[i];
                nodes.push((s.id.clone(), to_json(&session_node(s, phases[i], mixed))));
            }
            NodeRef::Effect(i) => {
                let e = &g.effects[i];
                let key = format!("e{}", e.call);
                let node = NodeView::Effect {
                    key: key.clone(),
                    parent: parent_key(&e.parent),
                    call: e.call,
                    line: e.line(),
                    status: e.status(),
                    succeeded: e.succeeded(),
                };
                nodes.push((key, to_json(&node)));
            }
        }
    }
    RunView { header, nodes }
}

fn session_node<'a>(s: &'a SessionNode, phase: &'static str, mixed: bool) -> NodeView<'a> {
    let finished = s.result.is_some();
    NodeView::Session {
        key: &s.id,
        parent: parent_key(&s.parent),
        id: &s.id,
        call: s.call,
        workflow: &s.workflow,
        goal: &s.goal,
        state: s.state(),
        phase,
        verdict: s.verdict_text(),
        summary: s.summary(),
        duration: finished.then(|| units::duration(s.duration_ms())),
        tokens: finished.then(|| units::tokens(s.tokens())),
        cost: finished.then(|| units::cost(s.cost_usd())),
        simulated: mixed && s.simulated,
        error: s.error(),
    }
}

/// Each session's phase, in spawn order (see the module header for `queued`).
fn session_phases(g: &RunGraph, max_parallel: Option<u64>) -> Vec<&'static str> {
    let mut slots = max_parallel.map(|n| usize::try_from(n).unwrap_or(usize::MAX)).unwrap_or(usize::MAX);
    g.sessions
        .iter()
        .map(|s| match s.state() {
            "ok" => "done",
            "running" if slots > 0 => {
                slots -= 1;
                "running"
            }
            "running" => "queued",
            "unfinished" => "unfinished",
            _ => "failed",
        })
        .collect()
}

fn site_key(i: usize) -> String {
    format!("site{i}")
}

fn parent_key(parent: &Parent) -> String {
    match parent {
        Parent::Session(id) => id.clone(),
        Parent::CallSite(i) => site_key(*i),
    }
}

fn to_json(node: &NodeView<'_>) -> String {
    serde_json::to_string(node).expect("node views serialize")
}

/// The `--max-parallel` a run was started with, from its header.
pub fn max_parallel(run: &RecordedRun) -> Option<u64> {
    crate::journal::recorded_options::RecordedOptions::from_header(&run.header.options).max_parallel
}

/// What a page was last sent of each node.
#[derive(Default)]
pub struct SentNodes {
    sent: HashMap<String, String>,
}

impl SentNodes {
    /// The nodes of `view` the page does not have as they are now, in page order; remembers
    /// them as sent.
    pub fn changed<'v>(&mut self, view: &'v RunView) -> Vec<&'v str> {
        let mut changed = Vec::new();
        for (key, json) in &view.nodes {
            if self.sent.get(key) != Some(json) {
                self.sent.insert(key.clone(), json.clone());
                changed.push(json.as_str());
            }
        }
        changed
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

/// `{"header": ..., "nodes": [...]}`: a snapshot (every node) or an update (the changed ones).
pub fn payload(header: &HeaderView, nodes: &[&str]) -> String {
    let header = serde_json::to_string(header).expect("header views serialize");
    format!("{{\"header\":{header},\"nodes\":[{}]}}", nodes.join(","))
}

/// One line of the page's activity list for an appended entry: the routing trace's line for
/// calls and effects, a result line for sessions. Entries that say nothing new alone (an
/// effect's intent, before its result) have none.
pub fn activity_line(run: &RecordedRun, entry: &Entry) -> Option<String> {
    let trace_of = |entries: &[&Entry]| {
        let text = super::super::trace::render_entries(entries.iter().copied(), &run.sessions);
        let line = text.lines().next().unwrap_or("").trim().to_owned();
        (!line.is_empty()).then_some(line)
    };
    match entry {
        Entry::RunStarted { .. } => Some(format!("run started: {}", run.header.coordinator)),
        Entry::Session(session) => {
            let (id, result) = (&session.session, &session.result);
            let status = result.get("status").and_then(Value::as_str).unwrap_or("?");
            let workflow = result.get("workflow").and_then(Value::as_str).unwrap_or("?");
            let took = result.get("duration_ms").and_then(Value::as_u64).map(units::duration);
            Some(match took {
                Some(took) => format!("{id} {workflow} finished: {status} in {took}"),
                None => format!("{id} {workflow} finished: {status}"),
            })
        }
        Entry::EffectIntent(_) => None,
        Entry::EffectResult(r) => {
            let intent = run.calls.get(usize::try_from(r.call).ok()?)?;
            trace_of(&[&intent.entry, entry])
        }
        Entry::Call(_) | Entry::RunFinished(_) => trace_of(&[entry]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::entry::{CallSite, RunHeader};
    use crate::journal::{CallKey, JournalWriter, JOURNAL_VERSION};
    use crate::redaction::Redactor;
    use serde_json::json;

    #[test]
    fn phases_and_updates_follow_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path()).unwrap();
        let header = RunHeader {
            version: JOURNAL_VERSION,
            script: "c.rhai".into(),
            options: json!({"max_parallel": 2}),
            ..Default::default()
        };
        w.append(Entry::run_started(header)).unwrap();
        for call in 0..3u64 {
            let id = format!("s{}", call + 1);
            let key = CallKey::new("spawn_session", Some("wf"), &json!({"n": call}));
            let site = CallSite { line: 3, col: 1, source: None };
            let args = json!({"goal": format!("Review #{}", call + 1), "inputs": {"pr": call + 1}});
            w.append(Entry::call(call, "spawn_session", key, &site, args, Value::Null, Some(id))).unwrap();
        }
        w.sync().unwrap();
        crate::journal::run_dir::write_pid(dir.path()).unwrap();
        let graph = |dir: &std::path::Path| {
            let run = RecordedRun::read(dir).unwrap();
            let g = RunGraph::build_with_redos(&run, &Redactor::default(), Vec::new());
            run_view(&g, max_parallel(&run))
        };
        let before = graph(dir.path());
        assert_eq!(before.header.sessions, PhaseCounts { total: 3, queued: 1, running: 2, ..Default::default() });
        assert_eq!(before.header.sessions_text, "3 sessions");
        let keys: Vec<&str> = before.nodes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["site0", "s1", "s2", "s3"]);
        let mut sent = SentNodes::default();
        assert_eq!(sent.changed(&before).len(), 4);

        w.append(Entry::session("s1", json!({"id": "s1", "workflow": "wf", "status": "ok", "duration_ms": 1500})))
            .unwrap();
        w.sync().unwrap();
        let after = graph(dir.path());
        assert_eq!(after.header.sessions, PhaseCounts { total: 3, running: 2, done: 1, ..Default::default() });
        let changed = sent.changed(&after);
        assert_eq!(changed.len(), 2, "s1 finished and s3 got a slot: {changed:?}");
        assert!(changed[0].contains("\"phase\":\"done\"") && changed[0].contains("\"duration\":\"1.5s\""));
        assert!(changed[1].contains("\"key\":\"s3\"") && changed[1].contains("\"phase\":\"running\""));
        crate::journal::run_dir::clear_pid(dir.path());
    }
}
