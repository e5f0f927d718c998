//! Trace snapshots in insta's `.snap` format (`snapshots/<coordinator>__<scenario>.snap`), so
//! `coord test` and `cargo insta review` read and write the same files.

use similar::TextDiff;
use std::path::{Path, PathBuf};

pub fn snapshot_path(snapshots_dir: &Path, coordinator: &str, scenario: &str) -> PathBuf {
    snapshots_dir.join(format!("{coordinator}__{scenario}.snap"))
}

/// The `.snap.new` beside a snapshot, where a changed or missing snapshot is proposed.
pub fn pending_path(snap: &Path) -> PathBuf {
    let mut p = snap.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

/// A snapshot file's contents without its header.
pub fn read_contents(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(contents_of(&text))
}

fn contents_of(text: &str) -> String {
    // Header: a `---` line, YAML, a `---` line; the contents follow.
    let mut rest = text;
    if let Some(after) = rest.strip_prefix("---\n") {
        if let Some(end) = after.find("\n---\n") {
            rest = &after[end + 5..];
        }
    }
    rest.trim_end().to_owned()
}

/// Renders a snapshot file: insta's header (source, expression), then the contents.
pub fn render(source: &str, contents: &str) -> String {
    format!("---\nsource: {source}\nexpression: trace\n---\n{}\n", contents.trim_end())
}

pub fn matches(existing: &str, trace: &str) -> bool {
    existing.trim_end() == trace.trim_end()
}

/// A unified diff from the snapshot to the new trace.
pub fn diff(existing: &str, trace: &str, snap_name: &str) -> String {
    let old = format!("{}\n", existing.trim_end());
    let new = format!("{}\n", trace.trim_end());
    TextDiff::from_lines(&old, &new).unified_diff().context_radius(3).header(snap_name, "this run").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_diff() {
        let file = render("coordinators/x/scenarios/demo.toml", "a\nb\n");
        assert_eq!(contents_of(&file), "a\nb");
        assert!(matches("a\nb", "a\nb\n"));
        let d = diff("a\nb", "a\nc", "x.snap");
        assert!(d.contains("-b") && d.contains("+c") && d.contains("x.snap"), "{d}");
    }
}
