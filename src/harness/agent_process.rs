//! Runs an agent CLI as a leaf process: in its own process group under a leaf supervisor
//! (`process_group.rs`), its stdout read line by line and handed to the harness's
//! [`StreamReader`], it and everything it started killed at the timeout, once the final result
//! is in (after a short grace to exit by itself), when the future is dropped (cancellation), or
//! when coord dies.
//!
//! Owns the process lifecycle only. It must not interpret events: the harness's reader does.

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::time::Instant;

/// How long a process may take to exit by itself once its final result is in.
pub const AFTER_RESULT_GRACE: Duration = Duration::from_secs(2);

/// Most stderr kept for error messages.
const STDERR_KEEP: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct AgentCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The agent's whole environment: it inherits nothing of coord's (`leaf_environment.rs`).
    pub env: Vec<(String, String)>,
}

/// Reads an agent's event stream.
pub trait StreamReader: Send {
    /// One line of stdout, without its newline. Returns true once the final result is in.
    fn line(&mut self, line: &str) -> bool;
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProcessEnd {
    /// The program could not be started.
    NotStarted(String),
    /// It exited by itself: its exit code, or `None` when a signal ended it.
    Exited(Option<i32>),
    /// It lingered after its final result and was killed.
    KilledAfterResult,
    /// It outlived its timeout and was killed with its process group.
    TimedOut,
}

#[derive(Debug)]
pub struct AgentOutput {
    pub end: ProcessEnd,
    /// Every byte of stdout read (the transcript).
    pub stdout: Vec<u8>,
    /// The tail of stderr.
    pub stderr: Vec<u8>,
    /// The reader saw the final result.
    pub result_seen: bool,
}

impl AgentOutput {
    /// How the process ended, for an error message.
    pub fn describe_end(&self) -> String {
        match &self.end {
            ProcessEnd::NotStarted(e) => e.clone(),
            ProcessEnd::Exited(Some(code)) => format!("exit status {code}"),
            ProcessEnd::Exited(None) => "killed by a signal".into(),
            ProcessEnd::KilledAfterResult => "killed after its result".into(),
            ProcessEnd::TimedOut => "timed out".into(),
        }
    }
}

/// One invocation of an agent CLI: the first turn of a leaf, or a resumed conversation
/// carrying a repair request (`resume` is the provider's session or thread id).
pub struct AgentTurn {
    pub prompt: String,
    pub resume: Option<String>,
    /// The transcript of the turn being continued, kept in front of this one's.
    pub previous_transcript: Option<String>,
    /// What the turn being continued already reported, for agents whose usage after a resume
    /// covers the whole conversation (Codex): this turn's own usage is the difference.
    pub previous_usage: crate::leaf::session::Usage,
}

impl AgentTurn {
    pub fn first(request: &crate::leaf::session::LeafRequest) -> Self {
        AgentTurn {
            prompt: request.prompt.clone(),
            resume: None,
            previous_transcript: None,
            previous_usage: Default::default(),
        }
    }

    /// A repair turn continuing `previous`'s conversation; `None` when the agent gave no id
    /// to continue.
    pub fn repair(previous: &crate::leaf::session::SessionResult, feedback: &str) -> Option<Self> {
        Some(AgentTurn {
            prompt: super::repair_prompt(feedback),
            resume: Some(previous.provider_session_id.clone()?),
            previous_transcript: previous.transcript.clone(),
            previous_usage: previous.usage.clone(),
        })
    }
}

pub async fn run(cmd: AgentCommand, timeout: Duration, reader: &mut dyn StreamReader) -> AgentOutput {
    let mut command = super::process_group::LeafCommand::new(&cmd.program);
    command.args(&cmd.args).current_dir(&cmd.cwd).envs(cmd.env.iter().map(|(k, v)| (k, v)));
    let (mut child, mut group) = match super::process_group::spawn_leaf(&command).await {
        Ok(started) => started,
        Err(e) => {
            return AgentOutput {
                end: ProcessEnd::NotStarted(format!("cannot start `{}`: {e}", cmd.program.display())),
                stdout: Vec::new(),
                stderr: Vec::new(),
                result_seen: false,
            }
        }
    };
    // Dropping `group` (a cancelled leaf) kills the whole tree, grandchildren included.
    let deadline = Instant::now() + timeout;

    let mut stderr = child.stderr.take().expect("stderr is piped");
    let err_task = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > STDERR_KEEP * 2 {
                kept.drain(..kept.len() - STDERR_KEEP);
            }
        }
        kept
    });

    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut transcript = Vec::new();
    let mut line = Vec::new();
    let mut result_seen = false;
    let mut timed_out = false;
    loop {
        line.clear();
        match tokio::time::timeout_at(deadline, lines.read_until(b'\n', &mut line)).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {
                transcript.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if !text.is_empty() && reader.line(text) {
                    result_seen = true;
                    break;
                }
            }
        }
    }

    let end = if timed_out {
        ProcessEnd::TimedOut
    } else if result_seen {
        // The answer is in; a process that lingers now (a known agent failure) is killed.
        let grace = (Instant::now() + AFTER_RESULT_GRACE).min(deadline);
        match tokio::time::timeout_at(grace, child.wait()).await {
            Ok(Ok(status)) => ProcessEnd::Exited(status.code()),
            _ => ProcessEnd::KilledAfterResult,
        }
    } else {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => ProcessEnd::Exited(status.code()),
            Ok(Err(e)) => ProcessEnd::NotStarted(format!("waiting for `{}` failed: {e}", cmd.program.display())),
            Err(_) => ProcessEnd::TimedOut,
        }
    };
    // Whatever happened, nothing of the leaf outlives it.
    group.kill();
    let _ = child.wait().await;
    let stderr =
        tokio::time::timeout(Duration::from_secs(1), err_task).await.ok().and_then(Result::ok).unwrap_or_default();
    AgentOutput { end, stdout: transcript, stderr, result_seen }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct UntilResult(Vec<String>);

    impl StreamReader for UntilResult {
        fn line(&mut self, line: &str) -> bool {
            self.0.push(line.to_owned());
            line == "RESULT"
        }
    }

    fn sh(script: &str) -> AgentCommand {
        AgentCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![
                ("COORD_TEST_VAR".into(), "set".into()),
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ],
        }
    }

    #[tokio::test]
    async fn lines_reach_the_reader_and_a_lingering_process_is_killed_after_its_result() {
        let mut reader = UntilResult(Vec::new());
        let started = std::time::Instant::now();
        let out =
            run(sh("echo one; echo $COORD_TEST_VAR; echo RESULT; sleep 30"), Duration::from_secs(20), &mut reader)
                .await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(reader.0, vec!["one", "set", "RESULT"]);
        assert!(out.result_seen);
        assert_eq!(out.end, ProcessEnd::KilledAfterResult);
        assert_eq!(out.stdout, b"one\nset\nRESULT\n");
    }

    #[tokio::test]
    async fn timeouts_exits_and_missing_programs() {
        let mut reader = UntilResult(Vec::new());
        let out = run(sh("echo partial; sleep 30"), Duration::from_millis(300), &mut reader).await;
        assert_eq!(out.end, ProcessEnd::TimedOut);
        assert!(!out.result_seen);

        let out = run(sh("echo oops >&2; exit 3"), Duration::from_secs(10), &mut reader).await;
        assert_eq!(out.end, ProcessEnd::Exited(Some(3)));
        assert_eq!(out.stderr, b"oops\n");

        let mut cmd = sh("");
        cmd.program = "/definitely/not/here".into();
        let out = run(cmd, Duration::from_secs(1), &mut reader).await;
        assert!(matches!(out.end, ProcessEnd::NotStarted(ref e) if e.contains("cannot start")));
    }
}
