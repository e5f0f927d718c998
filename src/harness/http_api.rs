//! One JSON POST to a model API, and what its failures mean: 429 and 5xx (and 529, Anthropic's
//! "overloaded") are transient, with the server's `retry-after` when it sent one; other
//! non-2xx answers are failures carrying the provider's own error message; a body that is not
//! JSON is a failure too.
//!
//! Owns the HTTP exchange only; the request and response shapes belong to each API harness.
//! It must not log headers (they carry keys).

use crate::harness::class_of_status;
use crate::leaf::session::FailureClass;
use crate::redaction::masked_tail;
use serde_json::Value;
use std::time::Duration;

/// A failed exchange, as it reaches a result.
#[derive(Debug)]
pub struct ApiFailure {
    pub message: String,
    /// What the failure says about the leaf, from the HTTP status.
    pub class: FailureClass,
    /// The server's `retry-after`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The raw body, for the transcript.
    pub body: Vec<u8>,
}

/// A successful exchange: the parsed body and its raw bytes.
#[derive(Debug)]
pub struct ApiReply {
    pub json: Value,
    pub body: Vec<u8>,
}

pub async fn post_json(
    client: &reqwest::Client,
    provider: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &Value,
) -> Result<ApiReply, ApiFailure> {
    let mut request = client.post(url).json(body);
    for (name, value) in headers {
        match reqwest::header::HeaderValue::from_str(value) {
            Ok(mut v) => {
                // Keeps keys out of any debug output of the request.
                v.set_sensitive(true);
                request = request.header(*name, v);
            }
            Err(_) => {
                return Err(ApiFailure {
                    message: format!("{provider}: the `{name}` header value is not valid in HTTP"),
                    class: FailureClass::Configuration,
                    retry_after: None,
                    body: Vec::new(),
                })
            }
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            // Unreachable or reset: the server may be starting or briefly down.
            return Err(ApiFailure {
                message: format!("{provider}: cannot reach {url}: {}", without_url(&e)),
                class: FailureClass::Transient,
                retry_after: None,
                body: Vec::new(),
            });
        }
    };
    let status = response.status();
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let bytes = match response.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return Err(ApiFailure {
                message: format!("{provider}: reading the response failed: {}", without_url(&e)),
                class: FailureClass::Transient,
                retry_after: None,
                body: Vec::new(),
            })
        }
    };
    if !status.is_success() {
        let code = status.as_u16();
        let detail = error_message(&bytes);
        return Err(ApiFailure {
            message: format!("{provider}: HTTP {code}: {detail}"),
            class: class_of_status(code),
            retry_after,
            body: bytes,
        });
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(json) => Ok(ApiReply { json, body: bytes }),
        Err(e) => Err(ApiFailure {
            message: format!("{provider}: the response is not JSON ({e}): {}", masked_tail(&bytes, 200)),
            class: FailureClass::Permanent,
            retry_after: None,
            body: bytes,
        }),
    }
}

/// The provider's own error message (`{"error": {"message": ...}}`, both Anthropic and OpenAI
/// shapes), else the body's tail.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) =
            v["error"]["message"].as_str().or_else(|| v["error"].as_str()).or_else(|| v["message"].as_str())
        {
            return m.to_owned();
        }
    }
    let t = masked_tail(body, 300);
    if t.is_empty() {
        "(empty body)".into()
    } else {
        t
    }
}

/// `retry-after` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A reqwest error's message without its URL (which is in ours already).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" ({url})"), "").replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_messages_come_from_either_shape() {
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            "Overloaded"
        );
        assert_eq!(
            error_message(br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#),
            "Rate limit reached"
        );
        assert_eq!(error_message(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert_eq!(error_message(b""), "(empty body)");
    }
}
