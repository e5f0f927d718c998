//! Test support: a throwaway project folder and a builder that runs the real `coord` binary in
//! it. Every integration test goes through the binary, as a user would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    /// An empty project with a `workflows/` folder.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
        TestProject { dir }
    }

    /// A copy of the repository's coordinators, workflows and stdlib.
    pub fn with_repo_files() -> Self {
        let p = TestProject::new();
        for folder in ["coordinators", "workflows", "stdlib", "scripts"] {
            let from = repo_root().join(folder);
            if from.is_dir() {
                copy_dir(&from, &p.path().join(folder));
            }
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes an executable file (a fake leaf or agent).
    pub fn write_executable(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.write(rel, contents);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn coord(&self) -> CoordCommand {
        CoordCommand::new(self.path())
    }

    /// `git init` and one commit of everything in the project, as a repository leaves clone.
    pub fn commit_all(&self) {
        for args in [
            &["init", "-q"][..],
            &["add", "."],
            &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"],
        ] {
            let ok = std::process::Command::new("git")
                .current_dir(self.path())
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        }
    }

    /// Run directories, oldest first (not the store's own `.waits/` index).
    pub fn runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.path().join(".coord/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        runs.sort();
        runs
    }
}

/// Every entry of a run's journal, as JSON (a torn last line left out).
pub fn journal_lines(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub struct CoordCommand {
    cmd: std::process::Command,
}

impl CoordCommand {
    pub fn new(cwd: &Path) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_coord"));
        cmd.current_dir(cwd).env_remove("COORD_RUNS_DIR").env_remove("COORD_PATH").env_remove("CI");
        cmd.env("NO_COLOR", "1");
        CoordCommand { cmd }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn run(mut self) -> Outcome {
        let output = self.cmd.output().expect("coord runs");
        Outcome::from(output)
    }

    /// Runs it with `input` on its stdin (a pipe, not a terminal), then closes it.
    pub fn run_with_stdin(mut self, input: &str) -> Outcome {
        use std::io::Write;
        self.cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = self.cmd.spawn().expect("coord starts");
        child.stdin.take().expect("stdin piped").write_all(input.as_bytes()).expect("stdin written");
        Outcome::from(child.wait_with_output().expect("coord runs"))
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        self.cmd.spawn().expect("coord starts")
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Outcome {
    fn from(o: Output) -> Self {
        Outcome {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Fluent checks of a finished command, each showing the whole stdout and stderr when it fails:
/// `p.coord().args(["check"]).run().code(2).stderr_has("coord.toml:3:1").stdout_lacks("panicked");`
impl Outcome {
    /// The exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n{}", self.both());
        self
    }

    /// Stdout contains `text`.
    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(self.stdout.contains(text), "stdout lacks {text:?}\n{}", self.both());
        self
    }

    /// Stdout does not contain `text`.
    #[track_caller]
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(!self.stdout.contains(text), "stdout has {text:?}\n{}", self.both());
        self
    }

    /// Stderr contains `text`.
    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "stderr lacks {text:?}\n{}", self.both());
        self
    }

    /// Stderr does not contain `text`.
    #[track_caller]
    pub fn stderr_lacks(&self, text: &str) -> &Self {
        assert!(!self.stderr.contains(text), "stderr has {text:?}\n{}", self.both());
        self
    }

    fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A workflow file using the command harness.
pub fn command_workflow(program: &str, timeout: &str, schema: &str) -> String {
    format!(
        "harness = \"command\"\ncommand = [\"{program}\"]\ntimeout = \"{timeout}\"\nprompt = \"{{{{ goal }}}}\"\nschema = {schema}\n"
    )
}

/// True when `pid` runs (a zombie waiting for a reaper counts as dead: it runs nothing).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|rest| rest.trim().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
    }
}
