//! The cost-over-time chart of the runs index, as inline SVG: one bar per run in start order
//! (coloured by status) against the left axis, and the running total of real spend as a line
//! against the right axis. Simulated dollars (mock leaves) are drawn pale and dashed (the whole
//! bar, or the top part of a run that also had real leaves), are named in the tooltip, and add
//! nothing to the running total. Pure: rows in, SVG text out.

use super::dag_svg::xml;
use super::graph_export::status_colours;
use super::run_listing::RunRow;
use super::spend::Label;
use std::fmt::Write;

const W: f64 = 960.0;
const H: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 72.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 54.0;
const TICKS: usize = 4;

pub fn render_cost_chart(rows: &[RunRow]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="Cost per run over time" viewBox="0 0 {W} {H}" width="100%" preserveAspectRatio="xMidYMid meet">"#
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max_cost = nice_ceiling(rows.iter().map(|r| r.cost_usd).fold(0.0, f64::max));
    let total: f64 = rows.iter().map(|r| r.spend.real_usd).sum();
    let max_total = nice_ceiling(total);
    for t in 0..=TICKS {
        let frac = t as f64 / TICKS as f64;
        let y = TOP + plot_h * (1.0 - frac);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text><text x="{:.1}" y="{:.1}" class="axis total" text-anchor="start">{}</text>"##,
            W - RIGHT,
            LEFT - 8.0,
            y + 4.0,
            xml(&short_cost(max_cost * frac)),
            W - RIGHT + 8.0,
            y + 4.0,
            xml(&short_cost(max_total * frac))
        );
    }
    if rows.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">no runs yet</text>"#,
            W / 2.0,
            H / 2.0
        );
        svg.push_str("</svg>");
        return svg;
    }
    let slot = plot_w / rows.len() as f64;
    let bar_w = (slot * 0.62).clamp(2.0, 48.0);
    let label_every = ((rows.len() as f64 * 70.0) / plot_w).ceil().max(1.0) as usize;
    let mut line = String::new();
    let mut dots = String::new();
    let mut running = 0.0;
    let mut last_label: Option<(String, String)> = None;
    for (i, r) in rows.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let h = if max_cost > 0.0 { plot_h * r.cost_usd / max_cost } else { 0.0 };
        let (_, colour) = status_colours(match r.status.as_str() {
            "succeeded" => "ok",
            "failed" => "failed",
            "running" => "running",
            _ => "unfinished",
        });
        let title = format!("{} · {} · {} · {}", xml(&r.id), xml(&r.coordinator), xml(&r.status), r.cost_text());
        let x = cx - bar_w / 2.0;
        let pale = format!(r#" data-spend="simulated" fill-opacity="0.3" stroke="{colour}" stroke-dasharray="3 2""#);
        match r.label() {
            // Drawn whole, pale and dashed when every dollar of it was simulated.
            Label::Real | Label::Simulated => {
                let style = if r.label() == Label::Simulated { pale.as_str() } else { "" };
                let _ = write!(
                    svg,
                    r#"<rect class="cost-bar" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}" rx="2" fill="{colour}"{style}><title>{title}</title></rect>"#,
                    TOP + plot_h - h,
                );
            }
            // The real part solid, the simulated part pale on top of it.
            Label::Mixed => {
                let real_h = if r.cost_usd > 0.0 { h * r.spend.real_usd / r.cost_usd } else { 0.0 };
                let _ = write!(
                    svg,
                    r#"<rect class="cost-bar" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{real_h:.1}" rx="2" fill="{colour}"><title>{title}</title></rect><rect class="cost-bar-part" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" rx="2" fill="{colour}"{pale}><title>{title}</title></rect>"#,
                    TOP + plot_h - real_h,
                    TOP + plot_h - h,
                    h - real_h,
                );
            }
        }
        running += r.spend.real_usd;
        let y = TOP + plot_h * (1.0 - if max_total > 0.0 { running / max_total } else { 0.0 });
        line.push_str(&format!("{}{cx:.1} {y:.1}", if i == 0 { "M" } else { " L" }));
        let _ = write!(dots, r##"<circle cx="{cx:.1}" cy="{y:.1}" r="3" fill="#7c3aed"/>"##);
        if i % label_every == 0 {
            if let Some(label) = axis_label(&r.started_at, &mut last_label) {
                let _ = write!(
                    svg,
                    r#"<text x="{cx:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#,
                    H - BOTTOM + 18.0,
                    xml(&label)
                );
            }
        }
    }
    let _ = write!(svg, r##"<path d="{line}" fill="none" stroke="#7c3aed" stroke-width="2"/>{dots}"##);
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="{:.1}" class="axis">bars: cost per run (left axis; pale dashed bars are simulated) · line: running total of real spend (right axis)</text>"##,
        H - 8.0
    );
    svg.push_str("</svg>");
    svg
}

/// The smallest 1, 2 or 5 times a power of ten at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|v| *v >= x).unwrap_or(10.0 * magnitude)
}

fn short_cost(usd: f64) -> String {
    if usd >= 10.0 {
        format!("${usd:.0}")
    } else {
        format!("${usd:.2}")
    }
}

/// The x-axis label of a run started at `started_at` (RFC 3339), given the last label drawn
/// (its day and its minute): `11-21 08:00` on a new day, `08:05` later that day, and nothing
/// when it would repeat the last label (runs started within the same minute).
fn axis_label(started_at: &str, last: &mut Option<(String, String)>) -> Option<String> {
    let (day, minute) = match chrono::DateTime::parse_from_rfc3339(started_at) {
        Ok(t) => {
            let t = t.with_timezone(&chrono::Utc);
            (t.format("%m-%d").to_string(), t.format("%H:%M").to_string())
        }
        Err(_) => (started_at.chars().take(10).collect(), String::new()),
    };
    let label = match last.as_ref() {
        Some((d, m)) if *d == day && *m == minute => return None,
        Some((d, _)) if *d == day && !minute.is_empty() => minute.clone(),
        _ if minute.is_empty() => day.clone(),
        _ => format!("{day} {minute}"),
    };
    *last = Some((day, minute));
    Some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_name_a_day_once_and_never_repeat() {
        let mut last = None;
        let labels: Vec<Option<String>> = [
            "2026-11-21T08:00:05Z",
            "2026-11-21T08:00:40Z",
            "2026-11-21T08:05:00Z",
            "2026-11-22T08:05:00Z",
            "not a time",
            "not a time",
        ]
        .iter()
        .map(|t| axis_label(t, &mut last))
        .collect();
        let want = [Some("11-21 08:00"), None, Some("08:05"), Some("11-22 08:05"), Some("not a time"), None];
        assert_eq!(labels, want.map(|l| l.map(str::to_owned)));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(1.196), 2.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
    }
}
