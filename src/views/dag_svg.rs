//! The run's DAG drawn as inline SVG for the HTML report, laid out here: a layered layout
//! where a node's column is its depth (call sites, then the sessions they started, then what
//! each result led to) and rows come from a tidy-tree pass (leaves take the next free row, a
//! parent sits midway along its children). The graph is a forest, so no edge ever crosses.
//! Each column is as wide as its widest label, within limits.
//!
//! Pure: graph in, SVG text out. No font is measured: widths come from an average glyph width
//! per text style, and a label longer than its column's limit is cut with an ellipsis.

use super::graph_export::{node_id, node_lines, status_colours};
use super::run_graph::{NodeRef, Parent, RunGraph};
use std::fmt::Write;

const MARGIN: f64 = 16.0;
/// Between the call-site column and the first sessions: room for the fan of dashed edges.
const SITE_GAP: f64 = 44.0;
const COL_GAP: f64 = 30.0;
const ROW_PITCH: f64 = 58.0;
const SESSION_H: f64 = 46.0;
const EFFECT_H: f64 = 30.0;
const SITE_H: f64 = 26.0;
const PAD_X: f64 = 11.0;
const MIN_W: f64 = 96.0;
const MAX_W: f64 = 230.0;
/// Extra space between the trees of two call sites, in rows.
const GROUP_GAP: f64 = 0.35;

/// Average glyph widths of the text styles in `report.css` (`.n1`, `.n2`, `.n1.e`, `.site-label`),
/// on the wide side (DejaVu Sans, Linux's usual fallback), so labels never spill out of boxes.
#[derive(Clone, Copy)]
enum TextStyle {
    Title,
    Detail,
    Effect,
    Site,
}

impl TextStyle {
    fn char_width(self) -> f64 {
        match self {
            TextStyle::Title => 8.4,
            TextStyle::Detail => 6.9,
            TextStyle::Effect => 8.2,
            TextStyle::Site => 6.8,
        }
    }

    fn class(self) -> &'static str {
        match self {
            TextStyle::Title => "n1",
            TextStyle::Detail => "n2",
            TextStyle::Effect => "n1 e",
            TextStyle::Site => "site-label",
        }
    }

    fn width(self, text: &str) -> f64 {
        text.chars().count() as f64 * self.char_width()
    }
}

enum Item {
    Site(usize),
    Node(NodeRef),
}

struct Placed {
    item: Item,
    depth: usize,
    /// Row of the centre line (rows become pixels once every row is known).
    row: f64,
    h: f64,
    parent: Option<usize>,
    /// Label lines and their styles.
    lines: Vec<(String, TextStyle)>,
}

impl Placed {
    fn wanted_width(&self) -> f64 {
        let text = self.lines.iter().map(|(t, s)| s.width(t)).fold(0.0, f64::max);
        let pad = if matches!(self.item, Item::Node(NodeRef::Effect(_))) { 2.0 * PAD_X + 6.0 } else { 2.0 * PAD_X };
        // A little slack, so a label estimated to fit exactly is not cut.
        (text + pad + 4.0).clamp(MIN_W, MAX_W)
    }
}

struct Layout {
    placed: Vec<Placed>,
    next_row: f64,
}

impl Layout {
    /// Places `parent`'s subtree; returns the rows of its first and last child.
    fn place_children(
        &mut self,
        g: &RunGraph,
        parent: &Parent,
        parent_index: usize,
        depth: usize,
    ) -> Option<(f64, f64)> {
        let mut first = None;
        let mut last = None;
        for child in g.children(parent) {
            let row = self.place_node(g, child, parent_index, depth);
            first.get_or_insert(row);
            last = Some(row);
        }
        first.zip(last)
    }

    fn place_node(&mut self, g: &RunGraph, node: NodeRef, parent_index: usize, depth: usize) -> f64 {
        let index = self.placed.len();
        let (lines, _) = node_lines(g, node);
        let (h, lines) = match node {
            NodeRef::Session(_) => {
                let cost = lines.get(2).map(|l| l.rsplit(" · ").next().unwrap_or(l).to_owned());
                let detail = match cost {
                    Some(cost) => format!("{} · {cost}", lines[1]),
                    None => lines[1].clone(),
                };
                (SESSION_H, vec![(lines[0].clone(), TextStyle::Title), (detail, TextStyle::Detail)])
            }
            NodeRef::Effect(_) => (EFFECT_H, vec![(format!("{} → {}", lines[0], lines[1]), TextStyle::Effect)]),
        };
        self.placed.push(Placed { item: Item::Node(node), depth, row: 0.0, h, parent: Some(parent_index), lines });
        let row = match node {
            NodeRef::Session(i) => {
                let under = Parent::Session(g.sessions[i].id.clone());
                match self.place_children(g, &under, index, depth + 1) {
                    Some((a, b)) => (a + b) / 2.0,
                    None => self.take_row(),
                }
            }
            NodeRef::Effect(_) => self.take_row(),
        };
        self.placed[index].row = row;
        row
    }

    fn take_row(&mut self) -> f64 {
        let row = self.next_row;
        self.next_row += 1.0;
        row
    }
}

pub fn render_dag(g: &RunGraph) -> String {
    let mut layout = Layout { placed: Vec::new(), next_row: 0.0 };
    for (i, site) in g.call_sites.iter().enumerate() {
        if i > 0 {
            layout.next_row += GROUP_GAP;
        }
        let index = layout.placed.len();
        let short = site.label.rsplit('/').next().unwrap_or(&site.label);
        layout.placed.push(Placed {
            item: Item::Site(i),
            depth: 0,
            row: 0.0,
            h: SITE_H,
            parent: None,
            lines: vec![(short.to_owned(), TextStyle::Site)],
        });
        let row = match layout.place_children(g, &Parent::CallSite(i), index, 1) {
            Some((a, b)) => (a + b) / 2.0,
            None => layout.take_row(),
        };
        layout.placed[index].row = row;
    }

    // Column widths, then positions.
    let columns = layout.placed.iter().map(|p| p.depth + 1).max().unwrap_or(0);
    let mut widths = vec![MIN_W; columns];
    for p in &layout.placed {
        widths[p.depth] = widths[p.depth].max(p.wanted_width());
    }
    let mut xs = Vec::with_capacity(columns);
    let mut x = MARGIN;
    for (depth, w) in widths.iter().enumerate() {
        xs.push(x);
        x += w + if depth == 0 { SITE_GAP } else { COL_GAP };
    }
    let width = xs.last().zip(widths.last()).map(|(x, w)| x + w).unwrap_or(0.0) + MARGIN;
    let y_of = |row: f64| MARGIN + ROW_PITCH / 2.0 + row * ROW_PITCH;
    let height = layout.placed.iter().map(|p| y_of(p.row) + p.h / 2.0).fold(0.0, f64::max) + MARGIN;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="dag" style="max-width:100%;height:auto" role="img" aria-label="Sessions and effects of the run" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">"#
    );
    svg.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9ca3af"/></marker></defs>"##);
    for p in &layout.placed {
        if let Some(parent) = p.parent.map(|i| &layout.placed[i]) {
            let x1 = xs[parent.depth] + widths[parent.depth];
            let (y1, x2, y2) = (y_of(parent.row), xs[p.depth], y_of(p.row));
            let bend = (x2 - x1) / 2.0;
            let dashed = if matches!(parent.item, Item::Site(_)) { r#" stroke-dasharray="4 3""# } else { "" };
            let _ = write!(
                svg,
                r##"<path class="edge" d="M{x1:.1} {y1:.1} C{:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}" fill="none" stroke="#9ca3af" stroke-width="1.4"{dashed} marker-end="url(#arrow)"/>"##,
                x1 + bend,
                x2 - bend
            );
        }
    }
    for p in &layout.placed {
        let (x, w, cy) = (xs[p.depth], widths[p.depth], y_of(p.row));
        let top = cy - p.h / 2.0;
        match p.item {
            Item::Site(i) => {
                let site = &g.call_sites[i];
                let _ = write!(
                    svg,
                    r##"<g class="site" id="dag-site{i}"><title>{} ({})</title><rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" rx="4" fill="#ffffff" stroke="#9ca3af" stroke-dasharray="4 3"/>"##,
                    xml(&site.label),
                    xml(&site.function),
                    p.h,
                );
                text(&mut svg, x + PAD_X, cy + 4.0, w - 2.0 * PAD_X, &p.lines[0]);
                svg.push_str("</g>");
            }
            Item::Node(node) => {
                let (_, status) = node_lines(g, node);
                let (fill, stroke) = status_colours(&status);
                let (kind, rx, pad) = match node {
                    NodeRef::Session(_) => ("session", 8.0, PAD_X),
                    NodeRef::Effect(_) => ("effect", p.h / 2.0, PAD_X + 3.0),
                };
                let _ = write!(
                    svg,
                    r##"<g class="node {kind}" id="dag-{}" data-status="{}"><title>{}</title><rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" rx="{rx:.1}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"##,
                    node_id(g, node),
                    xml(&status),
                    xml(&tooltip(g, node)),
                    p.h,
                );
                let baselines: &[f64] = match node {
                    NodeRef::Session(_) => &[top + 19.0, top + 36.0],
                    NodeRef::Effect(_) => &[cy + 4.5],
                };
                for (line, y) in p.lines.iter().zip(baselines) {
                    text(&mut svg, x + pad, *y, w - 2.0 * pad, line);
                }
                svg.push_str("</g>");
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn text(svg: &mut String, x: f64, y: f64, room: f64, (line, style): &(String, TextStyle)) {
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" class="{}">{}</text>"#,
        style.class(),
        xml(&fit(line, room, *style))
    );
}

fn tooltip(g: &RunGraph, node: NodeRef) -> String {
    match node {
        NodeRef::Session(i) => {
            let s = &g.sessions[i];
            let mut t = format!("{} {} — {}\n{}", s.id, s.workflow, s.state(), s.goal);
            if let Some(v) = s.verdict_text() {
                t.push_str(&format!("\n{v}"));
            }
            if let Some(e) = s.error() {
                t.push_str(&format!("\nerror: {e}"));
            }
            t
        }
        NodeRef::Effect(i) => g.effects[i].line(),
    }
}

/// `text` cut with an ellipsis to fit `room` pixels in `style`.
fn fit(text: &str, room: f64, style: TextStyle) -> String {
    let max = (room / style.char_width()).floor().max(1.0) as usize;
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

/// Escapes text for XML (and so for HTML).
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
