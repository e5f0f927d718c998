//! How large a journaled payload is, measured without writing it out: whether an answer or a
//! leaf's output stays in its journal line or becomes a blob, and the start of a long text.
//!
//! It must not write the journal or the blobs; it only measures.

use crate::journal::blob_store::INLINE_LIMIT;
use serde_json::Value;

/// Whether a leaf's output is small enough to stay in the journal line (else it becomes a
/// blob). Measured by serializing into a counter that gives up past the limit, so neither a
/// small output nor a huge one is written out just to be measured.
pub(super) fn fits_inline(output: &Value) -> bool {
    fits_within(output, INLINE_LIMIT)
}

/// Whether `value` serializes to at most `limit` bytes.
pub(super) fn fits_within(value: &Value, limit: usize) -> bool {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { written: 0, limit }, value).is_ok()
}

/// The start of a text too long for a journal line: what views show in its place.
pub(super) fn text_start(text: &str) -> String {
    const SHOWN: usize = 1024;
    let end = (0..=SHOWN.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::{fits_inline, INLINE_LIMIT};
    use serde_json::json;

    #[test]
    fn outputs_up_to_the_limit_stay_inline() {
        assert!(fits_inline(&json!(null)));
        assert!(fits_inline(&json!({"verdict": "clean", "findings": []})));
        // A string of n characters serializes to n + 2 bytes (its quotes).
        assert!(fits_inline(&json!("x".repeat(INLINE_LIMIT - 2))));
        assert!(!fits_inline(&json!("x".repeat(INLINE_LIMIT - 1))));
        assert!(!fits_inline(&json!({ "big": vec!["y".repeat(100); 100] })));
    }
}
