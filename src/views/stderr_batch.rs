//! Stderr for log lines: each line is written at once, except on a thread inside [`batch`],
//! whose lines are gathered and written together when the batch ends. Lines go out through
//! [`console`](super::console), so a closed stderr drops them instead of failing the logger
//! (whose fallback, `eprintln!`, panics on a closed pipe).
//!
//! The progress display of a large run logs two lines per session; written one `write` each,
//! they are a measurable share of the run (docs/performance.md). Batching keeps every line whole and in
//! order on its own thread, and never holds a line back past its batch. It must not reorder
//! or drop anything while stderr is open, and it touches no other thread's output.

use super::console::Stream;
use std::cell::RefCell;
use std::io::{self, Write};

thread_local! {
    /// Lines this thread has logged inside [`batch`], not yet written.
    static PENDING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The writer `tracing`'s formatter logs to (see `cli::init_logging`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogStderr {
    type Writer = LogStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LogStderr
    }
}

/// Adds `buf` to this thread's batch, if it is inside one.
fn gather(buf: &[u8]) -> bool {
    PENDING.with(|p| match p.borrow_mut().as_mut() {
        Some(pending) => {
            pending.extend_from_slice(buf);
            true
        }
        None => false,
    })
}

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if !gather(buf) {
            Stream::Stderr.write_all(buf);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Stderr is unbuffered; a closed one has nothing to flush.
        Ok(())
    }
}

/// Runs `f` with this thread's log lines gathered, then writes them to stderr in one call.
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    let outer = PENDING.with(|p| p.borrow().is_some());
    if outer {
        return f();
    }
    PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
    // Written even if `f` panics, so no line is lost.
    struct WriteOnExit;
    impl Drop for WriteOnExit {
        fn drop(&mut self) {
            if let Some(lines) = PENDING.with(|p| p.borrow_mut().take()) {
                Stream::Stderr.write_all(&lines);
            }
        }
    }
    let _write = WriteOnExit;
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_inside_a_batch_wait_for_its_end() {
        batch(|| {
            LogStderr.write_all(b"one\n").unwrap();
            LogStderr.write_all(b"two\n").unwrap();
            let held = PENDING.with(|p| p.borrow().clone());
            assert_eq!(held.as_deref(), Some(&b"one\ntwo\n"[..]));
            // A nested batch joins the outer one.
            batch(|| LogStderr.write_all(b"three\n").unwrap());
            assert_eq!(PENDING.with(|p| p.borrow().as_ref().map(Vec::len)), Some(14));
            // Nothing for the test's own stderr.
            PENDING.with(|p| p.borrow_mut().as_mut().map(Vec::clear));
        });
        assert!(PENDING.with(|p| p.borrow().is_none()), "the batch was written and ended");
    }
}
