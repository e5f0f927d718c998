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
        // The canonical JSON is fed to the hash as it is written, never held whole.
        let mut hasher = HashWriter(Sha256::new());
        serde_json::to_writer(&mut hasher, args).expect("JSON values always serialize");
        let digest = hasher.0.finalize();
        let mut hex = [0u8; 16];
        hex::encode_to_slice(&digest[..8], &mut hex).expect("8 bytes are 16 hex digits");
        let hash = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        let mut key = String::with_capacity(function.len() + workflow.map_or(0, |w| w.len() + 1) + 17);
        key.push_str(function);
        if let Some(w) = workflow {
            key.push(':');
            key.push_str(w);
        }
        key.push(':');
        key.push_str(hash);
        CallKey(key)
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

/// Bytes written into it go into a SHA-256 hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
        // The hash is of the arguments' canonical JSON, as journals have always recorded it.
        let args = json!({"goal": "g", "inputs": {"pr": 12}});
        let canonical = serde_json::to_vec(&args).unwrap();
        assert_eq!(CallKey::new("merge", None, &args).0, format!("merge:{}", short_hash(&canonical)));
    }
}
