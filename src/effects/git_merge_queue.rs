//! `merge(branch, opts)` on a local git repository: the merge queue for repositories without
//! a GitHub remote (scriptorium's model).
//!
//! One merge at a time, across every coord process on the machine (an `flock` on a file in
//! the repository's git directory): first the target itself (default `main`) must pass
//! `[merge] test_command`, else the result is `refused` with `main_red` (a red main fails every
//! branch's tests; blaming the branch would send good work back); then, in a scratch worktree,
//! merge the target into the branch, run the test command, and fast-forward the target to the
//! tested commit only when the tests pass. Otherwise the result is `refused` with
//! `tests_failed` (and the tail of the output) or `conflict`. A target commit that passed is
//! remembered (`green-targets` in the queue's folder), so main is tested once per commit, not
//! once per merge. Git runs as a process; the scratch worktree is removed whatever happens. It
//! must not touch the branch itself or any other worktree's files, except fast-forwarding the
//! target where it is checked out.

pub use crate::config::effect_settings::MergeQueueSettings;
use serde_json::{json, Value};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_TARGET: &str = "main";
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const OUTPUT_TAIL: usize = 2000;
const LOCK_FILE: &str = "coord-merge-queue.lock";
const SCRATCH_DIR: &str = "coord-merge-queue";
/// In the scratch folder: target commits that passed the test command, one `SHA COMMAND-HASH`
/// a line.
const GREEN_TARGETS_FILE: &str = "green-targets";
/// Lines `green-targets` keeps (the newest).
const GREEN_TARGETS_KEPT: usize = 200;

pub struct GitMergeQueue {
    repo_dir: PathBuf,
    settings: MergeQueueSettings,
}

#[derive(Debug)]
struct GitFailure(String);

struct GitOutput {
    ok: bool,
    code: Option<i32>,
    text: String,
}

fn git_in(dir: &Path, args: &[&str]) -> Result<GitOutput, GitFailure> {
    git_with_env(dir, args, &[])
}

fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<GitOutput, GitFailure> {
    let mut cmd = duct::cmd("git", args).dir(dir).stderr_to_stdout().stdout_capture().unchecked();
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run().map_err(|e| GitFailure(format!("cannot run git: {e}")))?;
    Ok(GitOutput {
        ok: out.status.success(),
        code: out.status.code(),
        text: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    })
}

fn git_ok(dir: &Path, args: &[&str]) -> Result<String, GitFailure> {
    let out = git_in(dir, args)?;
    if out.ok {
        Ok(out.text)
    } else {
        Err(GitFailure(format!("git {}: {}", args.join(" "), tail(&out.text, 400))))
    }
}

fn tail(text: &str, max: usize) -> String {
    crate::redaction::masked_tail(text.as_bytes(), max)
}

/// Branch names come from scripts: refuse anything git could read as an option or a range.
fn plausible_branch(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('-') && !name.contains("..") && !name.contains(char::is_whitespace)
}

/// Holds the queue's lock until dropped (closing the file releases an `flock`, even when the
/// process dies).
struct QueueLock {
    _file: std::fs::File,
}

impl QueueLock {
    fn acquire(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(QueueLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// The scratch worktree; removed on drop.
struct ScratchWorktree {
    repo_dir: PathBuf,
    path: PathBuf,
}

impl ScratchWorktree {
    fn create(repo_dir: &Path, path: &Path, commit: &str) -> Result<Self, GitFailure> {
        Self::remove_at(repo_dir, path);
        let p = path.to_string_lossy().into_owned();
        git_ok(repo_dir, &["worktree", "add", "--detach", &p, commit])?;
        Ok(ScratchWorktree { repo_dir: repo_dir.to_owned(), path: path.to_owned() })
    }

    fn remove_at(repo_dir: &Path, path: &Path) {
        let p = path.to_string_lossy().into_owned();
        let _ = git_in(repo_dir, &["worktree", "remove", "--force", &p]);
        let _ = std::fs::remove_dir_all(path);
        let _ = git_in(repo_dir, &["worktree", "prune"]);
    }
}

impl Drop for ScratchWorktree {
    fn drop(&mut self) {
        Self::remove_at(&self.repo_dir, &self.path);
    }
}

impl GitMergeQueue {
    /// The queue of the git repository containing `repo_dir`.
    pub fn new(repo_dir: &Path, settings: MergeQueueSettings) -> Self {
        GitMergeQueue { repo_dir: repo_dir.to_owned(), settings }
    }

    fn target<'a>(&'a self, args: &'a Value) -> &'a str {
        args.get("into").and_then(Value::as_str).or(self.settings.target.as_deref()).unwrap_or(DEFAULT_TARGET)
    }

    /// Merges `branch` through the queue. Never an error: every outcome is a result.
    pub fn merge(&self, branch: &str, args: &Value) -> Value {
        let target = self.target(args).to_owned();
        match self.merge_locked(branch, &target) {
            Ok(v) => v,
            Err(GitFailure(e)) => {
                json!({"status": "failed", "branch": branch, "into": target, "error": e})
            }
        }
    }

    /// The `merged` result when `branch` is already contained in the target.
    pub fn already_merged(&self, branch: &str, args: &Value) -> Result<Option<Value>, String> {
        let target = self.target(args);
        if !plausible_branch(branch) || !plausible_branch(target) {
            return Ok(None);
        }
        let (Some(branch_sha), Some(target_sha)) =
            (self.resolve(branch).map_err(|e| e.0)?, self.resolve(target).map_err(|e| e.0)?)
        else {
            return Ok(None);
        };
        if self.is_ancestor(&branch_sha, &target_sha).map_err(|e| e.0)? {
            return Ok(Some(
                json!({"status": "merged", "branch": branch, "into": target, "sha": target_sha, "method": "merge"}),
            ));
        }
        Ok(None)
    }

    fn resolve(&self, branch: &str) -> Result<Option<String>, GitFailure> {
        let spec = format!("refs/heads/{branch}^{{commit}}");
        let out = git_in(&self.repo_dir, &["rev-parse", "--verify", "--quiet", &spec])?;
        Ok(out.ok.then_some(out.text))
    }

    fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitFailure> {
        let out = git_in(&self.repo_dir, &["merge-base", "--is-ancestor", a, b])?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(GitFailure(format!("git merge-base: {}", tail(&out.text, 400)))),
        }
    }

    fn git_dir(&self) -> Result<PathBuf, GitFailure> {
        let dir = git_ok(&self.repo_dir, &["rev-parse", "--git-common-dir"])
            .map_err(|_| GitFailure(format!("{} is not in a git repository", self.repo_dir.display())))?;
        let dir = PathBuf::from(dir);
        Ok(if dir.is_absolute() { dir } else { self.repo_dir.join(dir) })
    }

    fn merge_locked(&self, branch: &str, target: &str) -> Result<Value, GitFailure> {
        let refused = |reason: &str, extra: Value| {
            let mut v = json!({"status": "refused", "reason": reason, "branch": branch, "into": target});
            if let (Some(o), Value::Object(more)) = (v.as_object_mut(), extra) {
                o.extend(more);
            }
            v
        };
        if !plausible_branch(branch) || !plausible_branch(target) {
            return Ok(refused("not_found", json!({"message": "not a branch name"})));
        }
        let Some(command) = self.settings.test_command.clone().filter(|c| !c.trim().is_empty()) else {
            return Err(GitFailure(
                "merge(branch) needs a test command: set [merge] test_command in coord.toml (it must pass before the target moves)".into(),
            ));
        };
        let git_dir = self.git_dir()?;
        std::fs::create_dir_all(git_dir.join(SCRATCH_DIR))
            .map_err(|e| GitFailure(format!("cannot create the merge queue's scratch folder: {e}")))?;
        let _lock = QueueLock::acquire(&git_dir.join(LOCK_FILE))
            .map_err(|e| GitFailure(format!("cannot take the merge queue lock: {e}")))?;

        let Some(branch_sha) = self.resolve(branch)? else {
            return Ok(refused("not_found", json!({"message": format!("no branch `{branch}`")})));
        };
        let Some(target_sha) = self.resolve(target)? else {
            return Ok(refused("not_found", json!({"message": format!("no target branch `{target}`")})));
        };
        if self.is_ancestor(&branch_sha, &target_sha)? {
            return Ok(refused(
                "not_mergeable",
                json!({"message": format!("`{branch}` is already contained in `{target}`")}),
            ));
        }

        let timeout = self.settings.test_timeout.unwrap_or(DEFAULT_TEST_TIMEOUT);
        let green_targets =
            GreenTargets { path: git_dir.join(SCRATCH_DIR).join(GREEN_TARGETS_FILE), command: &command };
        if !green_targets.contains(&target_sha) {
            let scratch =
                ScratchWorktree::create(&self.repo_dir, &git_dir.join(SCRATCH_DIR).join("worktree"), &target_sha)?;
            let log = git_dir.join(SCRATCH_DIR).join("test-output.log");
            let tested = run_tests(&command, &scratch.path, &log, timeout, target, target)?;
            if !tested.passed {
                let short_sha = &target_sha[..target_sha.len().min(12)];
                let why = if tested.timed_out {
                    format!("ran past {}", humantime::format_duration(timeout))
                } else {
                    "fails".to_owned()
                };
                return Ok(refused(
                    "main_red",
                    json!({
                        "sha": target_sha,
                        "output_tail": tested.output_tail,
                        "exit_code": tested.exit_code,
                        "message": format!("the test command {why} on `{target}` itself (at {short_sha}): nothing merges until `{target}` is green"),
                    }),
                ));
            }
            green_targets.insert(&target_sha);
        }

        let scratch =
            ScratchWorktree::create(&self.repo_dir, &git_dir.join(SCRATCH_DIR).join("worktree"), &branch_sha)?;
        let message = format!("Merge {target} into {branch}");
        let identity = self.fallback_identity()?;
        let merged = git_with_env(&scratch.path, &["merge", "--no-edit", "-m", &message, &target_sha], &identity)?;
        if !merged.ok {
            let _ = git_in(&scratch.path, &["merge", "--abort"]);
            return Ok(refused("conflict", json!({"output_tail": tail(&merged.text, OUTPUT_TAIL)})));
        }

        let log = git_dir.join(SCRATCH_DIR).join("test-output.log");
        let tested = run_tests(&command, &scratch.path, &log, timeout, branch, target)?;
        if !tested.passed {
            let mut extra = json!({"output_tail": tested.output_tail, "exit_code": tested.exit_code});
            if tested.timed_out {
                extra["message"] = json!(format!("the test command ran past {}", humantime::format_duration(timeout)));
            }
            return Ok(refused("tests_failed", extra));
        }

        let new_sha = git_ok(&scratch.path, &["rev-parse", "HEAD"])?;
        drop(scratch);
        self.fast_forward(target, &target_sha, &new_sha)?;
        // The target now is the commit that just passed: no need to test it again.
        green_targets.insert(&new_sha);
        Ok(json!({"status": "merged", "branch": branch, "into": target, "sha": new_sha, "method": "merge"}))
    }

    /// Merge commits need an author: when git has none configured, coord signs as itself.
    fn fallback_identity(&self) -> Result<Vec<(&'static str, &'static str)>, GitFailure> {
        let configured = git_in(&self.repo_dir, &["config", "--get", "user.email"])?.ok;
        Ok(if configured {
            Vec::new()
        } else {
            vec![
                ("GIT_AUTHOR_NAME", "coord"),
                ("GIT_AUTHOR_EMAIL", "coord@localhost"),
                ("GIT_COMMITTER_NAME", "coord"),
                ("GIT_COMMITTER_EMAIL", "coord@localhost"),
            ]
        })
    }

    /// Moves `target` from `old` to `new` (a descendant): in the worktree that has it checked
    /// out, so its files follow; else by updating the ref, only if it still points at `old`.
    fn fast_forward(&self, target: &str, old: &str, new: &str) -> Result<(), GitFailure> {
        let list = git_ok(&self.repo_dir, &["worktree", "list", "--porcelain"])?;
        let wanted = format!("branch refs/heads/{target}");
        let mut current: Option<&str> = None;
        let mut checked_out: Option<PathBuf> = None;
        for line in list.lines() {
            if let Some(p) = line.strip_prefix("worktree ") {
                current = Some(p);
            } else if line == wanted {
                checked_out = current.map(PathBuf::from);
            }
        }
        match checked_out {
            Some(dir) => git_ok(&dir, &["merge", "--ff-only", new]).map(|_| ()).map_err(|GitFailure(e)| {
                GitFailure(format!(
                    "`{target}` is checked out in {} and could not be fast-forwarded: {e}",
                    dir.display()
                ))
            }),
            None => {
                let r = format!("refs/heads/{target}");
                git_ok(&self.repo_dir, &["update-ref", "-m", "coord merge queue", &r, new, old]).map(|_| ())
            }
        }
    }
}

/// Target commits known to pass the test command. Read and written under the queue's lock.
struct GreenTargets<'a> {
    path: PathBuf,
    command: &'a str,
}

impl GreenTargets<'_> {
    fn line(&self, sha: &str) -> String {
        use sha2::Digest;
        let command = hex::encode(sha2::Sha256::digest(self.command.as_bytes()));
        format!("{sha} {}", &command[..16])
    }

    fn contains(&self, sha: &str) -> bool {
        let wanted = self.line(sha);
        std::fs::read_to_string(&self.path).is_ok_and(|text| text.lines().any(|l| l == wanted))
    }

    /// Best effort: a commit not remembered is only tested again.
    fn insert(&self, sha: &str) {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        let line = self.line(sha);
        lines.push(&line);
        let start = lines.len().saturating_sub(GREEN_TARGETS_KEPT);
        let _ = std::fs::write(&self.path, lines[start..].join("\n") + "\n");
    }
}

struct TestRun {
    passed: bool,
    timed_out: bool,
    exit_code: Option<i32>,
    output_tail: String,
}

/// Runs the test command in its own process group, output to a file (no pipe a grandchild
/// could hold open), killing the whole group past the timeout.
fn run_tests(
    command: &str,
    dir: &Path,
    log: &Path,
    timeout: Duration,
    branch: &str,
    target: &str,
) -> Result<TestRun, GitFailure> {
    let io = |e: std::io::Error| GitFailure(format!("cannot run the test command: {e}"));
    let out = std::fs::File::create(log).map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("COORD_MERGE_BRANCH", branch)
        .env("COORD_MERGE_TARGET", target)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io)?;
    let started = Instant::now();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().map_err(io)? {
            break (Some(status), false);
        }
        if started.elapsed() > timeout {
            // The test command leads its own process group (`process_group(0)` above): kill
            // the whole group, so nothing it started outlives the refused merge.
            unsafe {
                libc::killpg(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    Ok(TestRun {
        passed: status.is_some_and(|s| s.success()),
        timed_out,
        exit_code: status.and_then(|s| s.code()),
        output_tail: crate::redaction::masked_tail(&output, OUTPUT_TAIL),
    })
}
