//! Content-addressed blobs (`blobs/<sha256>`) for large outputs and transcripts, so the journal
//! stays small and fast to replay. Writing the same content twice is a no-op. Content is masked
//! (`crate::redaction`) before it is hashed and written: a blob never holds a credential.

use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// Outputs larger than this are stored as blobs and referenced from the journal.
pub const INLINE_LIMIT: usize = 4096;

/// A call's answer larger than this (a long list of PRs) is stored as a blob, so no journal
/// line nears a megabyte.
pub const ANSWER_INLINE_LIMIT: usize = 256 * 1024;

/// What the journal holds in place of a payload stored as a blob.
pub fn marker(hash: &str) -> serde_json::Value {
    serde_json::json!({ "$blob": hash })
}

/// The blob hash a payload's journal text names, if it is a blob marker.
pub fn marked_hash(text: &str) -> Option<&str> {
    let hash = text.strip_prefix("{\"$blob\":\"")?.strip_suffix("\"}")?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

/// The blob hash a parsed payload names, if it is a blob marker (as [`marked_hash`] reads its
/// text).
pub fn marked_hash_of(value: &serde_json::Value) -> Option<&str> {
    let fields = value.as_object().filter(|o| o.len() == 1)?;
    let hash = fields.get("$blob")?.as_str()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn new(run_dir: &Path) -> Self {
        BlobStore { dir: run_dir.join("blobs") }
    }

    pub fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let bytes = crate::redaction::process().mask_bytes(bytes);
        let bytes = &*bytes;
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.dir.join(&hash);
        if !path.exists() {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = self.dir.join(format!(".{hash}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(hash)
    }

    pub fn get(&self, hash: &str) -> io::Result<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a blob hash: {hash}")));
        }
        std::fs::read(self.dir.join(hash))
    }

    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let a = store.put(b"hello").unwrap();
        let b = store.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(store.get(&a).unwrap(), b"hello");
        assert!(store.get("../etc/passwd").is_err());
    }

    #[test]
    fn put_masks_token_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let hash = store.put(b"Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789\n").unwrap();
        assert_eq!(store.get(&hash).unwrap(), b"Authorization: Bearer [redacted]\n");
    }
}
