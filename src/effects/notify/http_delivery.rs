//! Delivering a JSON payload over HTTP POST: the Slack and webhook channels.
//!
//! Sends the exact bytes it signs (HMAC-SHA256 of the body, as `X-Coord-Signature-256:
//! sha256=<hex>`, the way GitHub signs its webhooks), an `Idempotency-Key` header so a receiver
//! can drop a duplicate after a resume, and retries 5xx, 429 and connection failures a few
//! times. Errors never contain the URL (a Slack webhook URL is a credential), and what a
//! receiver answers is masked (`crate::redaction`): Slack quotes the webhook's path back
//! (`404 no_team for /services/T…/B…/<secret>`), a proxy may quote the signature.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "x-coord-signature-256";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const ATTEMPTS: u32 = 3;

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct HttpDelivery {
    client: reqwest::Client,
    retry_delay: Duration,
}

impl Default for HttpDelivery {
    fn default() -> Self {
        HttpDelivery::new(Duration::from_millis(500))
    }
}

impl HttpDelivery {
    pub fn new(retry_delay: Duration) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("coord/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        HttpDelivery { client, retry_delay }
    }

    /// POSTs `payload`; Ok with the HTTP status once the receiver accepts it (2xx).
    pub async fn post_json(
        &self,
        url: &str,
        payload: &Value,
        idempotency_key: &str,
        secret: Option<&[u8]>,
    ) -> Result<u16, String> {
        let body = serde_json::to_vec(payload).map_err(|e| format!("cannot encode the payload: {e}"))?;
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(IDEMPOTENCY_HEADER, idempotency_key)
                .body(body.clone());
            if let Some(secret) = secret {
                request = request.header(SIGNATURE_HEADER, signature(secret, &body));
            }
            let retryable = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(status.as_u16());
                    }
                    let text = response.text().await.unwrap_or_default();
                    // Masked before it is cut: a cut through a secret would leave a piece no
                    // mask recognises.
                    let text: String = crate::redaction::mask(text.trim()).chars().take(200).collect();
                    last_error = format!(
                        "HTTP {}{}",
                        status.as_u16(),
                        if text.is_empty() { String::new() } else { format!(": {text}") }
                    );
                    status.is_server_error() || status.as_u16() == 429
                }
                Err(e) => {
                    last_error = crate::redaction::mask(&format!("cannot deliver: {}", error_chain(&e.without_url())));
                    true
                }
            };
            if !retryable {
                break;
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(self.retry_delay * attempt).await;
            } else {
                last_error = format!("{last_error} (after {ATTEMPTS} attempts)");
            }
        }
        Err(last_error)
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231, test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
