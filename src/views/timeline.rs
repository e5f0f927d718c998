//! The timeline of a run's leaves: when each was queued, ran (each turn: the first attempt,
//! retries, the repair) and ended, the critical path through them, and the time lost waiting
//! for `--max-parallel` permits. Drawn as text for `coord show --timeline` and as inline SVG
//! for the HTML report and the live page.
//!
//! It reads only the `timing` the scheduler journals beside each result (absent in journals
//! written before it was recorded: such sessions are counted, not drawn) and the run graph's
//! dependency edges, through [`dependencies_of`] alone. Times are observations: nothing here
//! may reach the routing trace or a snapshot, and nothing may decide anything from them.
//!
//! **The critical path** ends at the session that ended last and walks back: a session that
//! waited for a permit follows the session whose turn ended last before it started (the one
//! that freed the permit); one that started as soon as it was queued follows, of its
//! dependencies and the sessions that ended just before it was queued (the script spawned it
//! when the await that returned them did), the one that ended last. The walk stops at a
//! session with none.

use super::dag_svg::xml;
use super::run_graph::{Parent, RunGraph, SessionNode};
use super::units;
use crate::leaf::session::{Turn, TurnKind};
use std::fmt::Write;

/// Columns of the text Gantt's bars.
const TEXT_WIDTH: usize = 60;
/// Slack when matching a permit's release to the start it allowed: the waiting task wakes a
/// little after the turn that freed the permit ended, and both are rounded to milliseconds.
const RELEASE_SLACK_MS: u64 = 5;
/// How soon after a result came back a spawn counts as gated by it: the script spawns as soon
/// as the `await_sessions` that returned the result does, so a session queued this soon after
/// another ended was waiting for it, whatever the dependency edges say.
const SPAWN_SLACK_MS: u64 = 50;

/// One session on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    pub workflow: String,
    pub state: &'static str,
    pub queued_ms: u64,
    /// None when it never got a permit (cancelled while it waited).
    pub started_ms: Option<u64>,
    pub ended_ms: u64,
    pub turns: Vec<Turn>,
    pub critical: bool,
}

impl Row {
    /// When it got its permit, or when it ended without one.
    pub fn start_ms(&self) -> u64 {
        self.started_ms.unwrap_or(self.ended_ms)
    }

    /// Milliseconds it was blocked waiting for permits, over all its turns (for one that
    /// never got a permit, from its queueing to its end).
    pub fn waited_ms(&self) -> u64 {
        match self.started_ms {
            None => self.ended_ms.saturating_sub(self.queued_ms),
            Some(_) => self.turns.iter().map(|t| t.waited_ms).sum(),
        }
    }

    /// Whether it waited for a permit before its first turn: then what it followed is the
    /// session that freed the permit.
    fn waited_to_start(&self) -> bool {
        self.started_ms.is_none() || self.turns.first().is_some_and(|t| t.waited_ms > 0)
    }

    /// The spans it waited for permits, `[from, to)`.
    fn waits(&self) -> Vec<(u64, u64)> {
        match self.started_ms {
            None => vec![(self.queued_ms, self.ended_ms)],
            Some(_) => self.turns.iter().map(|t| (t.start_ms.saturating_sub(t.waited_ms), t.start_ms)).collect(),
        }
    }

    /// When it gave its last permit back: the end of its last turn, else its end.
    fn released_ms(&self) -> u64 {
        self.turns.last().map_or(self.ended_ms, |t| t.end_ms)
    }

    fn retries(&self) -> usize {
        self.turns.iter().filter(|t| t.kind == TurnKind::Retry).count()
    }

    fn repaired(&self) -> bool {
        self.turns.iter().any(|t| t.kind == TurnKind::Repair)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The timed sessions, in spawn order.
    pub rows: Vec<Row>,
    /// Indices into `rows`, first to last.
    pub critical: Vec<usize>,
    /// The run's wall time (start to its last entry), else the last session's end.
    pub wall_ms: u64,
    /// Wall time when at least one session ran.
    pub busy_ms: u64,
    /// Sum over sessions of the time each waited for a permit.
    pub waited_ms: u64,
    /// Wall time when at least one session waited for a permit (every permit was taken).
    pub contended_ms: u64,
    /// Sessions with no recorded timing (older journals, unfinished sessions).
    pub untimed: usize,
}

/// The sessions `s` depended on: the one place the timeline reads the graph's edges, so
/// truer edges change the critical path here and nowhere else.
pub fn dependencies_of<'g>(g: &'g RunGraph, s: &SessionNode) -> Vec<&'g str> {
    let parent = match &s.parent {
        Parent::Session(id) => g.session(id).map(|p| p.id.as_str()),
        Parent::CallSite(_) => None,
    };
    let mut deps: Vec<&'g str> = parent.into_iter().collect();
    for dep in &s.deps {
        if let Some(d) = g.session(dep).map(|d| d.id.as_str()) {
            if !deps.contains(&d) {
                deps.push(d);
            }
        }
    }
    deps
}

impl Timeline {
    pub fn of(g: &RunGraph) -> Timeline {
        let mut rows = Vec::new();
        let mut timed = Vec::new();
        for s in &g.sessions {
            let Some(t) = s.result.as_ref().and_then(|r| r.timing.as_ref()) else { continue };
            timed.push(s);
            rows.push(Row {
                id: s.id.clone(),
                workflow: s.workflow.clone(),
                state: s.state(),
                queued_ms: t.queued_ms,
                started_ms: t.started_ms,
                ended_ms: t.ended_ms.max(t.queued_ms),
                turns: t.turns.clone(),
                critical: false,
            });
        }
        let deps: Vec<Vec<usize>> = timed
            .iter()
            .map(|s| dependencies_of(g, s).iter().filter_map(|id| rows.iter().position(|r| r.id == *id)).collect())
            .collect();
        let last_end = rows.iter().map(|r| r.ended_ms).max().unwrap_or(0);
        let mut timeline = Timeline {
            critical: critical_path(&rows, &deps),
            wall_ms: g.duration_ms().unwrap_or(0).max(last_end),
            busy_ms: union_ms(rows.iter().map(|r| (r.start_ms(), r.ended_ms))),
            waited_ms: rows.iter().map(Row::waited_ms).sum(),
            contended_ms: union_ms(rows.iter().flat_map(Row::waits)),
            untimed: g.sessions.len() - rows.len(),
            rows,
        };
        for &i in &timeline.critical {
            timeline.rows[i].critical = true;
        }
        timeline
    }

    /// The critical path's length: from its first session's queueing to its last's end.
    pub fn critical_ms(&self) -> u64 {
        match (self.critical.first(), self.critical.last()) {
            (Some(&a), Some(&b)) => self.rows[b].ended_ms.saturating_sub(self.rows[a].queued_ms),
            _ => 0,
        }
    }

    /// `wall 2.1s · busy 2.0s · waited for a permit 1.0s (sum 1.5s)`.
    pub fn totals_text(&self) -> String {
        format!(
            "wall {} · busy {} · waiting for a permit {} of the wall time ({} summed over sessions)",
            units::duration(self.wall_ms),
            units::duration(self.busy_ms),
            units::duration(self.contended_ms),
            units::duration(self.waited_ms),
        )
    }

    /// `s1 review → s3 fix (2.0s)`.
    pub fn critical_text(&self) -> String {
        let chain: Vec<String> =
            self.critical.iter().map(|&i| format!("{} {}", self.rows[i].id, self.rows[i].workflow)).collect();
        format!("{} ({})", chain.join(" → "), units::duration(self.critical_ms()))
    }
}

/// See the module's header: the chain that ends last, walked back.
pub fn critical_path(rows: &[Row], deps: &[Vec<usize>]) -> Vec<usize> {
    let gated_by = |current: usize, j: usize, end: u64| {
        let r = &rows[current];
        deps[current].contains(&j) || (end + SPAWN_SLACK_MS >= r.queued_ms)
    };
    let Some(mut current) = (0..rows.len()).max_by_key(|&i| (rows[i].ended_ms, std::cmp::Reverse(i))) else {
        return Vec::new();
    };
    let mut path = vec![current];
    loop {
        let r = &rows[current];
        let before = |j: usize, at: u64, end: u64| j != current && end <= at && rows[j].start_ms() < r.start_ms();
        let candidates: Vec<(usize, u64)> = if r.waited_to_start() {
            let at = r.start_ms() + RELEASE_SLACK_MS;
            (0..rows.len()).map(|j| (j, rows[j].released_ms())).filter(|&(j, end)| before(j, at, end)).collect()
        } else {
            let at = r.queued_ms + RELEASE_SLACK_MS;
            (0..rows.len())
                .map(|j| (j, rows[j].ended_ms))
                .filter(|&(j, end)| before(j, at, end) && gated_by(current, j, end))
                .collect()
        };
        // The latest to end; the earliest spawned of equals, so the path is stable.
        let Some((next, _)) = candidates.into_iter().max_by_key(|&(j, end)| (end, std::cmp::Reverse(j))) else {
            break;
        };
        if path.contains(&next) {
            break;
        }
        path.push(next);
        current = next;
    }
    path.reverse();
    path
}

/// The length of the union of half-open intervals `[from, to)`.
pub fn union_ms(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut spans: Vec<(u64, u64)> = intervals.filter(|(a, b)| b > a).collect();
    spans.sort_unstable();
    let (mut total, mut reach) = (0, 0);
    for (from, to) in spans {
        let from = from.max(reach);
        if to > from {
            total += to - from;
            reach = to;
        }
    }
    total
}

/// `coord show RUN --timeline`: one row per timed session, bars scaled to the run's wall time.
pub fn render_text(t: &Timeline) -> String {
    let mut out = String::new();
    if t.rows.is_empty() {
        out.push_str("No session timing recorded (runs before coord recorded it, or no session finished).\n");
        return out;
    }
    let scale = t.wall_ms.max(1) as f64 / TEXT_WIDTH as f64;
    let col = |ms: u64| ((ms as f64 / scale) as usize).min(TEXT_WIDTH);
    let id_w = t.rows.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let wf_w = t.rows.iter().map(|r| r.workflow.chars().count()).max().unwrap_or(0).min(24);
    for r in &t.rows {
        let mut bar = vec![' '; TEXT_WIDTH];
        let mut paint = |from: u64, to: u64, c: char| {
            let (a, b) = (col(from), col(to).max(col(from) + 1).min(TEXT_WIDTH));
            bar.iter_mut().take(b).skip(a.min(TEXT_WIDTH - 1)).for_each(|x| *x = c);
        };
        for (from, to) in r.waits() {
            if to > from {
                paint(from, to, '░');
            }
        }
        if r.started_ms.is_some() {
            paint(r.start_ms(), r.ended_ms, '·');
        }
        for turn in &r.turns {
            paint(turn.start_ms, turn.end_ms, turn_char(turn.kind));
        }
        let mut notes = vec![units::duration(r.ended_ms.saturating_sub(r.start_ms()))];
        if r.waited_ms() > 0 {
            notes.push(format!("waited {}", units::duration(r.waited_ms())));
        }
        if r.retries() > 0 {
            notes.push(units::count(r.retries(), "retry").replace("retrys", "retries"));
        }
        if r.repaired() {
            notes.push("repaired".into());
        }
        if r.state != "ok" {
            notes.push(r.state.to_owned());
        }
        let bar: String = bar.into_iter().collect();
        let mark = if r.critical { '*' } else { ' ' };
        let workflow: String = r.workflow.chars().take(wf_w).collect();
        let _ = writeln!(out, "{mark} {:<id_w$} {workflow:<wf_w$} |{bar}| {}", r.id, notes.join(", "));
    }
    let _ = writeln!(out, "  0{:>w$}", units::duration(t.wall_ms), w = id_w + wf_w + TEXT_WIDTH + 3);
    let _ = writeln!(out, "\n{}", t.totals_text());
    let _ = writeln!(out, "critical path (*): {}", t.critical_text());
    if t.untimed > 0 {
        let _ = writeln!(out, "{} without recorded timing, not drawn", units::count(t.untimed, "session"));
    }
    out.push_str("legend: ░ waiting for a permit  █ running  ▓ retry  ▒ repair  · between turns\n");
    out
}

fn turn_char(kind: TurnKind) -> char {
    match kind {
        TurnKind::First => '█',
        TurnKind::Retry => '▓',
        TurnKind::Repair => '▒',
    }
}

const SVG_LABEL_W: f64 = 190.0;
const SVG_CHART_W: f64 = 640.0;
const SVG_ROW_H: f64 = 20.0;
const SVG_AXIS_H: f64 = 22.0;

/// The timeline as inline SVG (no script, no external asset): a row per session, the wait
/// for a permit hatched, each turn a bar, the critical path outlined.
pub fn render_svg(t: &Timeline) -> String {
    let height = SVG_AXIS_H + t.rows.len() as f64 * SVG_ROW_H + 8.0;
    let width = SVG_LABEL_W + SVG_CHART_W + 70.0;
    let scale = SVG_CHART_W / t.wall_ms.max(1) as f64;
    let x = |ms: u64| SVG_LABEL_W + ms as f64 * scale;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="timeline of the run's sessions">"#
    );
    svg.push_str(r##"<defs><pattern id="tl-wait" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eef0f3"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b8bec8" stroke-width="2"/></pattern></defs>"##);
    for i in 0..=4u64 {
        let ms = t.wall_ms * i / 4;
        let _ = write!(
            svg,
            r##"<line class="tl-grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{height:.0}" stroke="#e3e6ea"/><text class="tl-tick" x="{x:.1}" y="14" text-anchor="middle" font-size="11" fill="#6b7280">{}</text>"##,
            units::duration(ms),
            x = x(ms),
            top = SVG_AXIS_H - 4.0,
        );
    }
    for (i, r) in t.rows.iter().enumerate() {
        let y = SVG_AXIS_H + i as f64 * SVG_ROW_H;
        let label = format!("{} {}", r.id, r.workflow);
        let weight = if r.critical { r##" font-weight="bold" fill="#b42318""## } else { r##" fill="#1f2937""## };
        let _ = write!(
            svg,
            r#"<g class="tl-row{crit}" data-session="{id}"><title>{title}</title><text x="4" y="{ty:.1}" font-size="12"{weight}>{label}</text>"#,
            crit = if r.critical { " critical" } else { "" },
            id = xml(&r.id),
            title = xml(&row_title(r)),
            ty = y + 14.0,
            label = xml(&super::run_graph::one_line(&label, 26)),
        );
        for (from, to) in r.waits().into_iter().filter(|(from, to)| to > from) {
            let _ = write!(
                svg,
                r#"<rect class="tl-wait" x="{:.1}" y="{:.1}" width="{:.1}" height="12" fill="url(#tl-wait)"/>"#,
                x(from),
                y + 4.0,
                (x(to) - x(from)).max(1.0),
            );
        }
        let turns = if r.turns.is_empty() && r.started_ms.is_some() {
            vec![Turn { kind: TurnKind::First, start_ms: r.start_ms(), end_ms: r.ended_ms, waited_ms: 0 }]
        } else {
            r.turns.clone()
        };
        for turn in &turns {
            let (class, fill) = match turn.kind {
                TurnKind::First => ("tl-run", if r.state == "ok" { "#3b82f6" } else { "#ef4444" }),
                TurnKind::Retry => ("tl-retry", "#8b5cf6"),
                TurnKind::Repair => ("tl-repair", "#f59e0b"),
            };
            let stroke = if r.critical { r##" stroke="#b42318" stroke-width="2""## } else { "" };
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="12" rx="2" fill="{fill}"{stroke}/>"#,
                x(turn.start_ms),
                y + 4.0,
                (x(turn.end_ms) - x(turn.start_ms)).max(2.0),
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#6b7280">{}</text></g>"##,
            x(r.ended_ms) + 4.0,
            y + 14.0,
            units::duration(r.ended_ms.saturating_sub(r.start_ms())),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `s2 review: waited 1.0s, ran 1.0s, ok`: the hover text of a row.
fn row_title(r: &Row) -> String {
    let mut parts = vec![format!("ran {}", units::duration(r.ended_ms.saturating_sub(r.start_ms())))];
    if r.waited_ms() > 0 {
        parts.insert(0, format!("waited {}", units::duration(r.waited_ms())));
    }
    if r.retries() > 0 {
        parts.push(units::count(r.retries(), "retry").replace("retrys", "retries"));
    }
    if r.repaired() {
        parts.push("repaired".into());
    }
    parts.push(r.state.to_owned());
    if r.critical {
        parts.push("on the critical path".into());
    }
    format!("{} {}: {}", r.id, r.workflow, parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, queued: u64, started: u64, ended: u64) -> Row {
        Row {
            id: id.into(),
            workflow: "wf".into(),
            state: "ok",
            queued_ms: queued,
            started_ms: Some(started),
            ended_ms: ended,
            turns: vec![Turn { kind: TurnKind::First, start_ms: started, end_ms: ended, waited_ms: started - queued }],
            critical: false,
        }
    }

    #[test]
    fn the_critical_path_follows_the_permit_that_freed_a_waiting_session() {
        // One permit: s1 runs, s2 waits for it, s3 waits for s2's.
        let rows = [row("s1", 0, 0, 1000), row("s2", 0, 1001, 2000), row("s3", 1, 2002, 3000)];
        assert_eq!(critical_path(&rows, &[vec![], vec![], vec![]]), [0, 1, 2]);
    }

    #[test]
    fn the_critical_path_follows_dependencies_when_nothing_waited() {
        // s3 depends on s1 and is spawned a while after it came back; s2 ran beside them.
        let rows = [row("s1", 0, 0, 1000), row("s2", 0, 0, 400), row("s3", 1500, 1500, 2500)];
        assert_eq!(critical_path(&rows, &[vec![], vec![], vec![0]]), [0, 2]);
        // Without the edge, s3 starts the path: nothing says what it waited for.
        assert_eq!(critical_path(&rows, &[vec![], vec![], vec![]]), [2]);
        // Spawned as s1 came back, it waited for s1 (the await that returned it), edge or not.
        let rows = [row("s1", 0, 0, 1000), row("s2", 0, 0, 400), row("s3", 1003, 1003, 2500)];
        assert_eq!(critical_path(&rows, &[vec![], vec![], vec![]]), [0, 2]);
        assert!(critical_path(&[], &[]).is_empty());
    }

    #[test]
    fn queueing_is_summed_per_session_and_as_wall_time() {
        assert_eq!(union_ms([(0, 10), (5, 20), (30, 40), (40, 40)].into_iter()), 30);
        assert_eq!(union_ms(std::iter::empty()), 0);
        let rows = [row("s1", 0, 0, 1000), row("s2", 0, 1000, 2000), row("s3", 0, 1000, 2000)];
        let waited: u64 = rows.iter().map(Row::waited_ms).sum();
        assert_eq!(waited, 2000);
        assert_eq!(union_ms(rows.iter().flat_map(Row::waits)), 1000);
    }

    #[test]
    fn the_text_gantt_draws_waiting_apart_from_running_and_marks_the_path() {
        let mut rows = vec![row("s1", 0, 0, 1000), row("s2", 0, 1000, 2000)];
        rows[1].turns.push(Turn { kind: TurnKind::Repair, start_ms: 1800, end_ms: 2000, waited_ms: 0 });
        rows[1].turns[0].end_ms = 1700;
        let critical = critical_path(&rows, &[vec![], vec![]]);
        for &i in &critical {
            rows[i].critical = true;
        }
        let t =
            Timeline { critical, wall_ms: 2000, busy_ms: 2000, waited_ms: 1000, contended_ms: 1000, untimed: 1, rows };
        let text = render_text(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("* s1 wf |██████"), "{text}");
        assert!(lines[1].starts_with("* s2 wf |░░░░"), "{text}");
        assert!(lines[1].contains("▒") && lines[1].contains("waited 1.0s, repaired"), "{text}");
        assert!(text.contains("critical path (*): s1 wf → s2 wf (2.0s)"), "{text}");
        assert!(text.contains("1 session without recorded timing"), "{text}");
        let svg = render_svg(&t);
        assert!(svg.contains("class=\"tl-wait\"") && svg.contains("class=\"tl-repair\""), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
