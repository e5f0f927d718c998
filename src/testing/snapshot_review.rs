//! Reviewing pending snapshots without cargo: for each `.snap.new` beside its `.snap` (insta's
//! format, so `cargo insta review` still reads the same files), show the diff and take an answer:
//! accept (the `.snap.new` replaces the `.snap`), reject (the `.snap.new` is deleted), or skip.
//!
//! It reads answers from any line reader and writes to any writer, so it never asks the
//! terminal itself: the CLI wires stdin and stdout. It must not hang: when the answers run out
//! (stdin closed, as in CI) it stops and says how many it left, it never waits for a terminal.

use super::snapshot;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// A proposed snapshot waiting for a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSnapshot {
    /// The `.snap` it would replace (absent for a scenario with no snapshot yet).
    pub snap: PathBuf,
    /// The `.snap.new` beside it.
    pub proposed: PathBuf,
}

impl PendingSnapshot {
    pub fn of(snap: &Path) -> Option<Self> {
        let proposed = snapshot::pending_path(snap);
        proposed.is_file().then(|| PendingSnapshot { snap: snap.to_owned(), proposed })
    }

    /// The `.snap.new` replaces the `.snap`.
    pub fn accept(&self) -> std::io::Result<()> {
        std::fs::rename(&self.proposed, &self.snap)
    }

    /// The `.snap.new` is deleted; the `.snap` stays as it was.
    pub fn reject(&self) -> std::io::Result<()> {
        std::fs::remove_file(&self.proposed)
    }

    /// A unified diff from the snapshot to the proposal (all lines added for a new one).
    pub fn diff(&self) -> String {
        let old = snapshot::read_contents(&self.snap).unwrap_or_default();
        let new = snapshot::read_contents(&self.proposed).unwrap_or_default();
        snapshot::diff(&old, &new, &self.snap.display().to_string())
    }
}

/// One answer at the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reject,
    Skip,
    /// Accept this one and every one after it.
    AcceptAll,
    /// Leave this one and the rest undecided.
    Quit,
}

impl Answer {
    /// `a`, `r`, `s`, `A`, `q` (or the words); anything else is not an answer.
    pub fn parse(line: &str) -> Option<Answer> {
        match line.trim() {
            "a" | "accept" => Some(Answer::Accept),
            "r" | "reject" => Some(Answer::Reject),
            "s" | "skip" | "" => Some(Answer::Skip),
            "A" | "accept-all" => Some(Answer::AcceptAll),
            "q" | "quit" => Some(Answer::Quit),
            _ => None,
        }
    }
}

pub const PROMPT: &str = "accept, reject, skip? [a/r/s, A accept all, q quit] ";

/// What a review did, snapshot by snapshot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReviewSummary {
    pub accepted: Vec<PathBuf>,
    pub rejected: Vec<PathBuf>,
    pub skipped: Vec<PathBuf>,
}

impl ReviewSummary {
    pub fn line(&self) -> String {
        format!(
            "reviewed snapshots: {} accepted, {} rejected, {} left pending",
            self.accepted.len(),
            self.rejected.len(),
            self.skipped.len()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The answers ran out before every pending snapshot was decided.
    #[error(
        "no answer for {} (stdin is closed or not a terminal); {left} pending snapshot(s) left undecided: review on a terminal, or pass --accept or --reject to decide them all",
        .at.display()
    )]
    NoAnswer { at: PathBuf, left: usize, summary: ReviewSummary },
    #[error("cannot update {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Asks about each pending snapshot in turn. Writing to `out` may fail (a closed pipe): the
/// review goes on, since the answers decide, not the display.
pub fn review(
    pending: &[PendingSnapshot],
    answers: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<ReviewSummary, ReviewError> {
    let mut summary = ReviewSummary::default();
    let mut accept_rest = false;
    for (index, p) in pending.iter().enumerate() {
        let answer = if accept_rest {
            Answer::Accept
        } else {
            let _ = write!(out, "\n{} ({} of {})\n{}", p.proposed.display(), index + 1, pending.len(), p.diff());
            match ask(answers, out) {
                Some(a) => a,
                None => {
                    summary.skipped.extend(pending[index..].iter().map(|p| p.proposed.clone()));
                    return Err(ReviewError::NoAnswer { at: p.proposed.clone(), left: pending.len() - index, summary });
                }
            }
        };
        let io = |source| ReviewError::Io { path: p.proposed.clone(), source };
        match answer {
            Answer::Accept => p.accept().map(|()| summary.accepted.push(p.snap.clone())).map_err(io)?,
            Answer::AcceptAll => {
                accept_rest = true;
                p.accept().map(|()| summary.accepted.push(p.snap.clone())).map_err(io)?
            }
            Answer::Reject => p.reject().map(|()| summary.rejected.push(p.snap.clone())).map_err(io)?,
            Answer::Skip => summary.skipped.push(p.proposed.clone()),
            Answer::Quit => {
                summary.skipped.extend(pending[index..].iter().map(|p| p.proposed.clone()));
                break;
            }
        }
    }
    Ok(summary)
}

/// Reads lines until one is an answer; `None` at the end of the input.
fn ask(answers: &mut dyn BufRead, out: &mut dyn Write) -> Option<Answer> {
    loop {
        let _ = write!(out, "{PROMPT}");
        let _ = out.flush();
        let mut line = String::new();
        match answers.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out);
                return None;
            }
            Ok(_) => {}
        }
        match Answer::parse(&line) {
            Some(a) => return Some(a),
            None => {
                let _ = writeln!(out, "`{}` is not an answer", line.trim());
            }
        }
    }
}

/// Decides every pending snapshot the same way (`--accept` / `--reject` with `--review`).
pub fn decide_all(pending: &[PendingSnapshot], accept: bool) -> Result<ReviewSummary, ReviewError> {
    let mut summary = ReviewSummary::default();
    for p in pending {
        let io = |source| ReviewError::Io { path: p.proposed.clone(), source };
        if accept {
            p.accept().map_err(io)?;
            summary.accepted.push(p.snap.clone());
        } else {
            p.reject().map_err(io)?;
            summary.rejected.push(p.snap.clone());
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(dir: &Path, name: &str, old: Option<&str>, new: &str) -> PendingSnapshot {
        let snap = dir.join(format!("{name}.snap"));
        if let Some(old) = old {
            std::fs::write(&snap, snapshot::render("s.toml", old)).unwrap();
        }
        std::fs::write(snapshot::pending_path(&snap), snapshot::render("s.toml", new)).unwrap();
        PendingSnapshot::of(&snap).unwrap()
    }

    #[test]
    fn accept_reject_skip_and_running_out_of_answers() {
        let dir = tempfile::tempdir().unwrap();
        let a = pending(dir.path(), "a", Some("x"), "y");
        let b = pending(dir.path(), "b", Some("x"), "z");
        let c = pending(dir.path(), "c", None, "new");
        let mut out = Vec::new();
        let summary = review(&[a.clone(), b.clone(), c.clone()], &mut "huh\na\nr\ns\n".as_bytes(), &mut out).unwrap();
        assert_eq!(summary.accepted, vec![a.snap.clone()]);
        assert_eq!(summary.rejected, vec![b.snap.clone()]);
        assert_eq!(summary.skipped, vec![c.proposed.clone()]);
        assert_eq!(snapshot::read_contents(&a.snap).unwrap(), "y");
        assert!(!a.proposed.exists() && !b.proposed.exists() && c.proposed.exists());
        assert_eq!(snapshot::read_contents(&b.snap).unwrap(), "x");
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.contains("-x") && shown.contains("+y") && shown.contains("`huh` is not an answer"), "{shown}");

        let err = review(&[c.clone()], &mut "".as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ReviewError::NoAnswer { left: 1, .. }), "{err}");
        assert!(c.proposed.exists());
    }

    #[test]
    fn accept_all_and_quit() {
        let dir = tempfile::tempdir().unwrap();
        let a = pending(dir.path(), "a", Some("x"), "y");
        let b = pending(dir.path(), "b", None, "z");
        let summary = review(&[a.clone(), b.clone()], &mut "A\n".as_bytes(), &mut Vec::new()).unwrap();
        assert_eq!(summary.accepted.len(), 2);
        let c = pending(dir.path(), "c", None, "w");
        let summary = review(&[c.clone()], &mut "q\n".as_bytes(), &mut Vec::new()).unwrap();
        assert_eq!(summary.skipped, vec![c.proposed.clone()]);
        assert_eq!(Answer::parse("A"), Some(Answer::AcceptAll));
        assert_eq!(Answer::parse("x"), None);
    }
}
