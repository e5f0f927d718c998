//! `coord graph RUN --format mermaid|dot`: the run's DAG as text another tool draws. Nodes are
//! the call sites, sessions and effects, labelled with their item and a short goal; edges follow
//! the parent rule of [`super::run_graph`] (which result led to which spawn or effect), and a
//! dotted `uses` edge joins a session to each other session it took a value from; colours say
//! each node's status.
//!
//! Output is deterministic for a given journal: no durations, timestamps or run ids. A
//! scenario run's graph says its costs are simulated (a Mermaid comment, a DOT graph label).

use super::item_outcomes::item_label;
use super::run_graph::{one_line, NodeRef, Parent, RunGraph};
use super::units;

/// Fill and stroke colours of a status, shared with the HTML report.
pub fn status_colours(status: &str) -> (&'static str, &'static str) {
    match status {
        "ok" => ("#dcfce7", "#16a34a"),
        "failed" | "refused" | "conflict" => ("#fee2e2", "#dc2626"),
        "timeout" => ("#ffedd5", "#ea580c"),
        "running" => ("#dbeafe", "#2563eb"),
        "unfinished" | "cancelled" | "skipped_budget" | "not_recorded" | "dry_run" => ("#f3f4f6", "#6b7280"),
        // Effects that acted: merged, done, sent, closed...
        _ => ("#e0f2fe", "#0284c7"),
    }
}

/// Node ids: `s3` for sessions, `e12` for the effect of call 12, `site0` for call sites.
pub fn node_id(g: &RunGraph, node: NodeRef) -> String {
    match node {
        NodeRef::Session(i) => g.sessions[i].id.clone(),
        NodeRef::Effect(i) => format!("e{}", g.effects[i].call),
    }
}

fn parent_id(parent: &Parent) -> String {
    match parent {
        Parent::Session(id) => id.clone(),
        Parent::CallSite(i) => format!("site{i}"),
    }
}

/// Label lines of a node, plain text.
pub fn node_lines(g: &RunGraph, node: NodeRef) -> (Vec<String>, String) {
    match node {
        NodeRef::Session(i) => {
            let s = &g.sessions[i];
            let mut first = format!("{} {}", s.id, s.workflow);
            if let Some(item) = &s.item {
                first.push_str(&format!(" · {}", item_label(item)));
            }
            let mut second = s.state().to_owned();
            if let Some((_, v)) = s.verdict() {
                second.push_str(&format!(" · {v}"));
            }
            let mut lines = vec![first];
            if !s.goal.is_empty() {
                lines.push(one_line(&s.goal, 40));
            }
            lines.push(second);
            if s.result.is_some() {
                lines.push(format!("{} tokens · {}", units::tokens(s.tokens()), units::cost(s.cost_usd())));
            }
            (lines, s.state().to_owned())
        }
        NodeRef::Effect(i) => {
            let e = &g.effects[i];
            (vec![e.short_label(), e.status().to_owned()], e.status().to_owned())
        }
    }
}

fn all_nodes(g: &RunGraph) -> Vec<NodeRef> {
    let mut nodes: Vec<(u64, NodeRef)> = g
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.call, NodeRef::Session(i)))
        .chain(g.effects.iter().enumerate().map(|(i, e)| (e.call, NodeRef::Effect(i))))
        .collect();
    nodes.sort_by_key(|(call, _)| *call);
    nodes.into_iter().map(|(_, n)| n).collect()
}

/// Dependencies the parent edges do not already draw: `(from, to)` session ids.
fn extra_dependencies(g: &RunGraph) -> Vec<(&str, &str)> {
    let mut edges = Vec::new();
    for s in &g.sessions {
        for dep in &s.deps {
            if s.parent != Parent::Session(dep.clone()) {
                edges.push((dep.as_str(), s.id.as_str()));
            }
        }
    }
    edges
}

fn parent_of(g: &RunGraph, node: NodeRef) -> &Parent {
    match node {
        NodeRef::Session(i) => &g.sessions[i].parent,
        NodeRef::Effect(i) => &g.effects[i].parent,
    }
}

pub fn mermaid(g: &RunGraph) -> String {
    let mut out = String::from("flowchart LR\n");
    if let Some(note) = g.spend().run_note(g.scenario) {
        out.push_str(&format!("  %% costs {note}\n"));
    }
    for (i, site) in g.call_sites.iter().enumerate() {
        out.push_str(&format!("  site{i}[/\"{}\"/]:::site\n", mermaid_text(&site.label)));
    }
    let nodes = all_nodes(g);
    for &n in &nodes {
        let (lines, status) = node_lines(g, n);
        let label = lines.iter().map(|l| mermaid_text(l)).collect::<Vec<_>>().join("<br/>");
        let (open, close) = if matches!(n, NodeRef::Effect(_)) { ("([", "])") } else { ("[", "]") };
        out.push_str(&format!("  {}{open}\"{label}\"{close}:::{}\n", node_id(g, n), class_name(&status)));
    }
    for &n in &nodes {
        let arrow = if matches!(parent_of(g, n), Parent::CallSite(_)) { "-.->" } else { "-->" };
        out.push_str(&format!("  {} {arrow} {}\n", parent_id(parent_of(g, n)), node_id(g, n)));
    }
    for (from, to) in extra_dependencies(g) {
        out.push_str(&format!("  {from} -. uses .-> {to}\n"));
    }
    let mut classes: Vec<String> = nodes.iter().map(|&n| node_lines(g, n).1).collect();
    classes.sort();
    classes.dedup();
    for status in classes {
        let (fill, stroke) = status_colours(&status);
        out.push_str(&format!("  classDef {} fill:{fill},stroke:{stroke},color:#111827\n", class_name(&status)));
    }
    out.push_str("  classDef site fill:#ffffff,stroke:#9ca3af,stroke-dasharray:4 3,color:#4b5563\n");
    out
}

/// Mermaid class names are identifiers; statuses are already snake_case words.
fn class_name(status: &str) -> String {
    let name: String = status.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("st_{name}")
}

/// Mermaid reads `#` as the start of an entity and `"` as the end of a label.
fn mermaid_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('#', "#35;").replace('"', "#quot;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn dot(g: &RunGraph) -> String {
    let mut out = String::new();
    out.push_str(&format!("digraph \"{}\" {{\n", dot_text(&g.coordinator)));
    out.push_str("  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11, style=\"filled,rounded\", shape=box];\n");
    out.push_str("  edge [color=\"#6b7280\"];\n");
    if let Some(note) = g.spend().run_note(g.scenario) {
        out.push_str(&format!(
            "  label=\"costs {}\";\n  labelloc=t;\n  fontname=\"Helvetica\";\n  fontsize=11;\n",
            dot_text(&note)
        ));
    }
    for (i, site) in g.call_sites.iter().enumerate() {
        out.push_str(&format!(
            "  site{i} [label=\"{}\", shape=note, style=\"dashed\", color=\"#9ca3af\", fontcolor=\"#4b5563\"];\n",
            dot_text(&site.label)
        ));
    }
    let nodes = all_nodes(g);
    for &n in &nodes {
        let (lines, status) = node_lines(g, n);
        let (fill, stroke) = status_colours(&status);
        let label = lines.iter().map(|l| dot_text(l)).collect::<Vec<_>>().join("\\n");
        let shape = if matches!(n, NodeRef::Effect(_)) { ", shape=ellipse, style=filled" } else { "" };
        out.push_str(&format!(
            "  {} [label=\"{label}\", fillcolor=\"{fill}\", color=\"{stroke}\"{shape}];\n",
            node_id(g, n)
        ));
    }
    for &n in &nodes {
        let style = if matches!(parent_of(g, n), Parent::CallSite(_)) { " [style=dashed]" } else { "" };
        out.push_str(&format!("  {} -> {}{style};\n", parent_id(parent_of(g, n)), node_id(g, n)));
    }
    for (from, to) in extra_dependencies(g) {
        out.push_str(&format!("  {from} -> {to} [style=dotted, label=\"uses\"];\n"));
    }
    out.push_str("}\n");
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
