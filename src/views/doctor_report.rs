//! `coord doctor`'s report: one block per harness the project's workflows use, one line per
//! check, and the fix under each problem.

use crate::harness::readiness::HarnessReport;
use std::fmt::Write;

pub fn render(reports: &[HarnessReport]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no workflows found: nothing to check (workflows live in workflows/*.toml)\n");
    }
    for report in reports {
        let mark = if report.ok() { "ok" } else { "PROBLEM" };
        let kind = if report.kind == report.harness { String::new() } else { format!(" (kind {})", report.kind) };
        let _ = writeln!(out, "{}{kind}: {mark}", report.harness);
        let _ = writeln!(out, "  used by: {}", report.workflows.join(", "));
        for f in &report.findings {
            let _ = writeln!(out, "  {} {:<11} {}", if f.ok { "✓" } else { "✗" }, f.check, f.detail);
            if let Some(fix) = &f.fix {
                let _ = writeln!(out, "      fix: {fix}");
            }
        }
    }
    let problems = reports.iter().filter(|r| !r.ok()).count();
    let _ = match problems {
        0 if reports.len() == 1 => writeln!(out, "1 harness ready"),
        0 => writeln!(out, "all {} harnesses ready", reports.len()),
        1 => writeln!(out, "1 harness not ready"),
        n => writeln!(out, "{n} harnesses not ready"),
    };
    out
}
