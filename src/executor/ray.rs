//! The Ray backend: Ray's Jobs REST API on the dashboard's address (`POST /api/jobs/`,
//! `GET /api/jobs/{id}`, `GET /api/jobs/{id}/logs`, `POST /api/jobs/{id}/stop`,
//! `GET /api/jobs/`), spoken with reqwest.
//!
//! The job's `submission_id` is coord's derived job name. Ray refuses a duplicate id with HTTP
//! 500 and "already exists" in the text (not 409): that answer is [`Submitted::AlreadyExists`],
//! which the caller adopts. It knows Ray's wire format only; what a job means to a run is
//! `remote_leaf`'s business.

use super::{EngineError, JobInfo, JobStatus, JobSubmission, Submitted};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RayEngine {
    base: String,
    client: reqwest::Client,
}

impl RayEngine {
    /// The Jobs API at `address` (the dashboard's, e.g. `http://127.0.0.1:8265`).
    pub fn new(address: &str) -> Result<Self, EngineError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(RayEngine { base: address.trim_end_matches('/').to_owned(), client })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/jobs/{path}", self.base)
    }

    pub async fn submit(&self, job: &JobSubmission) -> Result<Submitted, EngineError> {
        let body = json!({
            "entrypoint": job.entrypoint,
            "submission_id": job.name,
            "metadata": job.labels,
            "entrypoint_resources": job.resources,
            // Nothing secret: Ray shows a job's runtime_env to anyone who can list jobs.
            "runtime_env": {},
        });
        let response = self.client.post(self.url("")).json(&body).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match status {
            200..=299 => Ok(Submitted::Created),
            500 if text.contains("already exists") => Ok(Submitted::AlreadyExists),
            _ => Err(EngineError::Refused { status, text: cut(&text) }),
        }
    }

    /// The job's state; `None` when the head does not know it (HTTP 404).
    pub async fn status(&self, name: &str) -> Result<Option<JobInfo>, EngineError> {
        let response = self.client.get(self.url(name)).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(EngineError::Refused { status, text: cut(&text) });
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| EngineError::Unreadable(e.to_string()))?;
        job_info(&value).map(Some).ok_or_else(|| EngineError::Unreadable(format!("not a job: {}", cut(&text))))
    }

    /// The job's whole log (its entrypoint's stdout and stderr).
    pub async fn logs(&self, name: &str) -> Result<String, EngineError> {
        let response = self.client.get(self.url(&format!("{name}/logs"))).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(EngineError::Refused { status, text: cut(&text) });
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| EngineError::Unreadable(e.to_string()))?;
        Ok(value.get("logs").and_then(Value::as_str).unwrap_or_default().to_owned())
    }

    /// Stops the job: Ray sends SIGTERM to its process tree, SIGKILL 3 s later.
    pub async fn stop(&self, name: &str) -> Result<(), EngineError> {
        let response = self.client.post(self.url(&format!("{name}/stop"))).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(EngineError::Refused { status, text: cut(&response.text().await.unwrap_or_default()) }),
        }
    }

    /// Every job the head knows that carries `labels`' values (coord's jobs of one run).
    pub async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<JobInfo>, EngineError> {
        let response = self.client.get(self.url("")).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(EngineError::Refused { status, text: cut(&text) });
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| EngineError::Unreadable(e.to_string()))?;
        let jobs = value.as_array().cloned().unwrap_or_default();
        Ok(jobs
            .iter()
            .filter_map(job_info)
            .filter(|job| labels.iter().all(|(k, v)| job.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect())
    }
}

fn job_info(value: &Value) -> Option<JobInfo> {
    let name = value.get("submission_id").and_then(Value::as_str)?.to_owned();
    let status = match value.get("status").and_then(Value::as_str)? {
        "PENDING" => JobStatus::Pending,
        "RUNNING" => JobStatus::Running,
        "SUCCEEDED" => JobStatus::Succeeded,
        "STOPPED" => JobStatus::Stopped,
        _ => JobStatus::Failed,
    };
    let labels = value
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let message = value.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
    Some(JobInfo { name, status, labels, message })
}

fn unreachable(e: reqwest::Error) -> EngineError {
    EngineError::Unreachable(e.to_string())
}

fn cut(text: &str) -> String {
    crate::redaction::masked_tail(text.as_bytes(), 500)
}
