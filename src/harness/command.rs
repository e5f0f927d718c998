//! The command harness: runs any executable as a leaf.
//!
//! The request goes to the process's stdin as one JSON object (`session`, `workflow`, `goal`,
//! `inputs`, `prompt`, `schema`, `model`); its stdout must be JSON: either a result envelope
//! `{"output": ..., "text": ..., "usage": {...}}` or the bare output object. A non-zero exit,
//! unparsable stdout or a timeout is a failed result carrying the reason. Exit status 75
//! (`EX_TEMPFAIL`) or death by a signal marks the failure transient, so the scheduler may retry
//! it. The process runs in the leaf's directory (its worktree, when it has one), in its own
//! process group under a leaf supervisor (`process_group.rs`): it and everything it started are
//! killed when it ends, times out or is cancelled, or when coord dies. Its environment is
//! not coord's (`leaf_environment.rs`): a command that needs a credential has it passed by name.

use super::leaf_environment::LeafEnvironment;
use super::{Harness, HarnessLimits, LeafFuture};
use crate::config::leaf_settings::HarnessSettings;
use crate::leaf::session::{FailureClass, LeafRequest, SessionResult, SessionStatus, Usage};
use crate::redaction::masked_tail;
use serde_json::{json, Value};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit status a command leaf uses to say "try me again" (sysexits' `EX_TEMPFAIL`).
pub const EXIT_TRANSIENT: i32 = 75;

#[derive(Default)]
pub struct CommandHarness {
    limits: HarnessLimits,
    /// `[harness.command]`: its `env` and `pass_env` shape every command leaf's environment.
    settings: std::sync::Arc<HarnessSettings>,
}

impl CommandHarness {
    pub fn new(limits: HarnessLimits, settings: HarnessSettings) -> Self {
        CommandHarness { limits, settings: std::sync::Arc::new(settings) }
    }
}

impl Harness for CommandHarness {
    fn name(&self) -> &str {
        "command"
    }

    fn start(&self, req: LeafRequest) -> LeafFuture {
        Box::pin(run(req, self.settings.clone()))
    }

    fn limits(&self) -> HarnessLimits {
        self.limits
    }

    fn runs_in_workdir(&self) -> bool {
        true
    }
}

/// Resolves a workflow's program: a path with a slash is relative to the project root,
/// a bare name is looked up on PATH.
pub fn resolve_program(program: &str, root: &Path) -> std::path::PathBuf {
    if program.contains('/') && !Path::new(program).is_absolute() {
        root.join(program)
    } else {
        std::path::PathBuf::from(program)
    }
}

async fn run(req: LeafRequest, settings: std::sync::Arc<HarnessSettings>) -> SessionResult {
    let id = req.session_id.clone();
    let wf = req.workflow.name.clone();
    let fail = |status, msg: String| SessionResult::failed(&id, &wf, status, msg);

    let argv = match req.overrides.get("command").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        None => req.workflow.command.clone().unwrap_or_default(),
    };
    let Some((program, args)) = argv.split_first() else {
        return SessionResult::failed_as(
            &id,
            &wf,
            FailureClass::Configuration,
            format!("workflow `{wf}` uses the command harness but sets no `command`. Fix: set `command = [...]` in the workflow"),
            None,
        );
    };
    let program_path = resolve_program(program, &req.project_root);

    let mut cmd = super::process_group::LeafCommand::new(&program_path);
    // Not coord's environment: only what every leaf needs and what is passed by name.
    let environment = LeafEnvironment {
        kind: "command",
        settings: &settings,
        workflow_pass_env: &req.workflow.pass_env,
        withheld: &req.withheld_env,
    };
    cmd.envs(environment.from_process([]));
    cmd.args(args)
        .current_dir(&req.workdir)
        .env("COORD_SESSION_ID", &id)
        .env("COORD_WORKFLOW", &wf)
        .env("COORD_RUN_DIR", std::path::absolute(&req.run_dir).unwrap_or_else(|_| req.run_dir.clone()))
        .stdin_piped();
    let (mut child, mut group) = match super::process_group::spawn_leaf(&cmd).await {
        Ok(started) => started,
        Err(e) => {
            return SessionResult::failed_as(
                &id,
                &wf,
                FailureClass::Configuration,
                format!(
                    "cannot start `{}`: {e}. Fix: check workflow `{wf}`'s `command` (relative paths start at the project root)",
                    program_path.display()
                ),
                None,
            )
        }
    };

    let stdin_task = feed_request(&mut child, &req);
    let out_task = read_all(child.stdout.take().expect("stdout is piped"));
    let err_task = read_all(child.stderr.take().expect("stderr is piped"));

    let waited = tokio::time::timeout(req.timeout, child.wait()).await;
    // Whatever happened, nothing of the leaf may outlive it: grandchildren holding the pipes
    // open would otherwise keep the reads below from finishing.
    group.kill();
    stdin_task.abort();
    let status = match waited {
        Err(_) => {
            let _ = child.wait().await;
            out_task.abort();
            err_task.abort();
            return fail(
                SessionStatus::Timeout,
                format!("timed out after {}; process tree killed", humantime::format_duration(req.timeout)),
            );
        }
        Ok(Err(e)) => return fail(SessionStatus::Failed, format!("waiting for the leaf failed: {e}")),
        Ok(Ok(status)) => status,
    };
    let stdout = out_task.await.unwrap_or_default();
    let stderr = err_task.await.unwrap_or_default();
    if !status.success() {
        return exited_unsuccessfully(&id, &wf, status, &stderr);
    }
    match parse_stdout(&stdout) {
        Ok(parsed) => {
            let mut result = SessionResult::new(&id, &wf, SessionStatus::Ok);
            result.text = parsed.text;
            result.output = parsed.output;
            result.usage = parsed.usage;
            result
        }
        Err(msg) => fail(SessionStatus::Failed, msg),
    }
}

/// Writes the leaf's request to its stdin and closes it, on a task of its own.
fn feed_request(child: &mut super::process_group::LeafProcess, req: &LeafRequest) -> tokio::task::JoinHandle<()> {
    let request = json!({
        "session": req.session_id,
        "workflow": req.workflow.name,
        "goal": req.goal,
        "inputs": req.inputs,
        "prompt": req.prompt,
        "schema": req.schema,
        "model": req.model,
    });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    tokio::spawn(async move {
        // A leaf that never reads its stdin is allowed; ignore a broken pipe.
        let _ = stdin.write_all(request.to_string().as_bytes()).await;
        let _ = stdin.shutdown().await;
    })
}

/// Reads one of the leaf's output pipes to its end, on a task of its own.
fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf).await;
        buf
    })
}

/// A leaf that exited non-zero or was killed: failed, with its stderr's tail; transient when
/// it asked to be retried (exit 75) or a signal ended it.
fn exited_unsuccessfully(id: &str, wf: &str, status: std::process::ExitStatus, stderr: &[u8]) -> SessionResult {
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let detail = masked_tail(stderr, 400);
    let msg = if detail.is_empty() { how } else { format!("{how}: {detail}") };
    let mut result = SessionResult::failed(id, wf, SessionStatus::Failed, msg);
    let class = if matches!(status.code(), None | Some(EXIT_TRANSIENT)) {
        FailureClass::Transient
    } else {
        FailureClass::Permanent
    };
    result.set_failure(class, None);
    result
}

#[derive(Debug)]
struct ParsedOutput {
    output: Value,
    text: String,
    usage: Usage,
}

/// Reads the leaf's stdout: the whole of it as JSON, or else its last non-empty line (so a
/// leaf may log above its answer).
fn parse_stdout(stdout: &[u8]) -> Result<ParsedOutput, String> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the leaf printed nothing on stdout; expected a JSON result".into());
    }
    let value: Value = serde_json::from_str(trimmed)
        .or_else(|first| {
            trimmed.lines().rev().find(|l| !l.trim().is_empty()).ok_or(first).and_then(|l| {
                serde_json::from_str(l.trim()).map_err(|_| serde_json::from_str::<Value>(trimmed).unwrap_err())
            })
        })
        .map_err(|e| format!("stdout is not JSON ({e}): {}", masked_tail(stdout, 200)))?;
    match value {
        Value::Object(mut obj) if obj.contains_key("output") => {
            let output = obj.remove("output").unwrap_or(Value::Null);
            let text = match obj.remove("text") {
                Some(Value::String(s)) => s,
                _ => output.to_string(),
            };
            let usage = obj
                .remove("usage")
                .map(serde_json::from_value::<Usage>)
                .transpose()
                .map_err(|e| format!("stdout `usage` is malformed: {e}"))?
                .unwrap_or_default();
            Ok(ParsedOutput { output, text, usage })
        }
        other => Ok(ParsedOutput { text: other.to_string(), output: other, usage: Usage::default() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_shapes() {
        let p = parse_stdout(br#"{"verdict":"clean"}"#).unwrap();
        assert_eq!(p.output["verdict"], "clean");
        let p = parse_stdout(b"log line\n{\"output\":{\"a\":1},\"usage\":{\"input_tokens\":5,\"cost_usd\":0.5}}\n")
            .unwrap();
        assert_eq!(p.output["a"], 1);
        assert_eq!(p.usage.input_tokens, 5);
        assert!(parse_stdout(b"").unwrap_err().contains("nothing"));
        assert!(parse_stdout(b"{broken").unwrap_err().contains("not JSON"));
        assert!(parse_stdout(br#"{"output":1,"usage":"lots"}"#).unwrap_err().contains("usage"));
    }
}
