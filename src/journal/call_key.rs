//! Stable call keys: `function[:workflow]:hash-of-arguments`.
//!
//! A key identifies *what* the script asked for, independent of when. Replay compares keys
//! position by position; what-if replay looks answers up by key. The hash covers the canonical
//! JSON of the arguments, which is deterministic because script maps are ordered.

use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CallKey(pub String);

impl CallKey {
    pub fn new(function: &str, workflow: Option<&str>, args: &serde_json::Value) -> Self {
        let canonical = serde_json::to_vec(args).expect("JSON values always serialize");
        let hash = short_hash(&canonical);
        match workflow {
            Some(w) => CallKey(format!("{function}:{w}:{hash}")),
            None => CallKey(format!("{function}:{hash}")),
        }
    }

    pub fn function(&self) -> &str {
        self.0.split(':').next().unwrap_or("")
    }
}

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// First 16 hex digits of SHA-256: short enough to read, long enough never to collide within a run.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_is_stable_and_sensitive_to_arguments() {
        let a = CallKey::new("spawn_session", Some("mr-review"), &json!({"pr": 12}));
        let b = CallKey::new("spawn_session", Some("mr-review"), &json!({"pr": 12}));
        let c = CallKey::new("spawn_session", Some("mr-review"), &json!({"pr": 13}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.0.starts_with("spawn_session:mr-review:"));
        assert_eq!(a.function(), "spawn_session");
    }
}
