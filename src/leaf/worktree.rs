//! A leaf's own git worktree: `<run_dir>/worktrees/<session>` on branch
//! `coord/<run-id>/<session>`, made from the project's `HEAD` before the leaf starts.
//!
//! Policy: the worktree folder is removed when the leaf ends `ok` (its branch, and so its
//! commits, stay), and kept when it fails, times out or is cancelled, for inspection;
//! `[worktrees] keep = true` keeps every one. The branch is never deleted by coord. A resumed
//! run that finds the folder of an interrupted leaf reuses it.
//!
//! Owns the git commands for this. It must not decide a leaf's result.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Git serializes worktree bookkeeping badly under concurrent `worktree add`: one at a time.
static GIT_WORKTREE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Debug, PartialEq)]
pub struct WorktreePlan {
    /// The folder of the worktree.
    pub path: PathBuf,
    pub branch: String,
    /// The top of the project's repository, when the project is in one.
    pub repo: Option<PathBuf>,
    /// Where the leaf runs: the project root's place inside the worktree.
    pub workdir: PathBuf,
    /// Keep the folder even when the leaf succeeds.
    pub keep: bool,
}

impl WorktreePlan {
    pub fn for_session(run_dir: &Path, run_id: &str, session: &str, project_root: &Path, keep: bool) -> Self {
        // Absolute, so git (run in the repository) and the leaf (run in the worktree) agree.
        let run_dir = std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_owned());
        let path = run_dir.join("worktrees").join(session);
        let repo = project_root.ancestors().find(|d| d.join(".git").exists()).map(Path::to_path_buf);
        let prefix =
            repo.as_deref().and_then(|r| project_root.strip_prefix(r).ok()).map(Path::to_path_buf).unwrap_or_default();
        WorktreePlan { workdir: path.join(prefix), path, branch: format!("coord/{run_id}/{session}"), repo, keep }
    }

    /// Creates the worktree (or reuses the folder an interrupted run left behind).
    pub async fn create(&self) -> Result<(), String> {
        let Some(repo) = &self.repo else {
            return Err("the workflow asks for a git worktree, but the project is not in a git repository".into());
        };
        if self.path.join(".git").exists() {
            return Ok(());
        }
        let _lock = GIT_WORKTREE_LOCK.lock().await;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let path = self.path.display().to_string();
        let branch_exists =
            git(repo, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{}", self.branch)]).await.is_ok();
        let args: Vec<&str> = if branch_exists {
            vec!["worktree", "add", &path, &self.branch]
        } else {
            vec!["worktree", "add", "-b", &self.branch, &path, "HEAD"]
        };
        git(repo, &args).await.map_err(|e| format!("cannot create the leaf's worktree: {e}"))?;
        tracing::info!(branch = %self.branch, path = %path, "worktree created");
        Ok(())
    }

    /// Applies the cleanup policy once the leaf's result is final.
    pub async fn finish(&self, succeeded: bool) {
        let Some(repo) = &self.repo else { return };
        if !succeeded || self.keep || !self.path.exists() {
            return;
        }
        let _lock = GIT_WORKTREE_LOCK.lock().await;
        let path = self.path.display().to_string();
        match git(repo, &["worktree", "remove", "--force", &path]).await {
            Ok(_) => tracing::info!(path = %path, "worktree removed"),
            Err(e) => tracing::warn!(path = %path, "cannot remove the leaf's worktree: {e}"),
        }
    }
}

/// Runs `git -C repo ARGS` (stdin closed) and returns its stdout, or its stderr as the error.
pub async fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_sync(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().unwrap().status.success();
        assert!(ok, "git {args:?}");
    }

    #[tokio::test]
    async fn created_on_a_session_branch_removed_on_success_kept_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().canonicalize().unwrap();
        git_sync(&repo, &["init", "-q"]);
        git_sync(&repo, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "root"]);
        std::fs::create_dir_all(repo.join("proj")).unwrap();
        let run_dir = repo.join(".coord/runs/r1");

        let plan = WorktreePlan::for_session(&run_dir, "r1", "s1", &repo.join("proj"), false);
        assert_eq!(plan.branch, "coord/r1/s1");
        assert_eq!(plan.workdir, run_dir.join("worktrees/s1/proj"));
        plan.create().await.unwrap();
        assert!(plan.path.join(".git").exists());
        plan.create().await.unwrap();
        plan.finish(true).await;
        assert!(!plan.path.exists());

        let failed = WorktreePlan::for_session(&run_dir, "r1", "s2", &repo, false);
        failed.create().await.unwrap();
        failed.finish(false).await;
        assert!(failed.path.exists());

        let outside = tempfile::tempdir().unwrap();
        let none = WorktreePlan::for_session(&run_dir, "r1", "s3", outside.path(), false);
        assert!(none.create().await.unwrap_err().contains("not in a git repository"));
    }
}
