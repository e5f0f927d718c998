//! The process's stdout and stderr, for everything coord prints while a run goes on: a closed
//! pipe (a pager that quit, `| head`) ends the printing, not the run.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE`, and `println!` and
//! `eprintln!` panic on it. A panic in a leaf's task or on the script's way out left the run
//! waiting for a result that never came, deaf to SIGTERM. Every write here that fails closes
//! its stream for good: later writes to it are dropped, and report success, so nothing that
//! prints (a log formatter, the summary, a diagnostic) ever sees an error it could act on.
//!
//! It must never panic, block on a closed stream, write to a stream it was not asked to, or
//! print a secret the process's redactor knows.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

impl Stream {
    fn closed(self) -> &'static AtomicBool {
        match self {
            Stream::Stdout => &STDOUT_CLOSED,
            Stream::Stderr => &STDERR_CLOSED,
        }
    }

    /// True once a write to this stream failed: what is written to it now is dropped.
    pub fn is_closed(self) -> bool {
        self.closed().load(Ordering::Relaxed)
    }

    /// Writes all of `bytes` (stdout is flushed, so a line is out before the run goes on), or
    /// closes the stream if that fails. Never fails. What is written is masked first
    /// (`crate::redaction`): nothing printed carries a credential, whoever formatted it.
    pub fn write_all(self, bytes: &[u8]) {
        if bytes.is_empty() || self.is_closed() {
            return;
        }
        let masked = crate::redaction::process().mask_bytes(bytes);
        let bytes = &*masked;
        let written = match self {
            Stream::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => io::stderr().lock().write_all(bytes),
        };
        if written.is_err() {
            // A closed pipe, a terminal that went away, a full disk: nobody is reading, or
            // nobody can. Printing ends here; the run goes on.
            self.closed().store(true, Ordering::Relaxed);
        }
    }

    pub fn write_fmt(self, args: std::fmt::Arguments<'_>) {
        match args.as_str() {
            Some(text) => self.write_all(text.as_bytes()),
            None => self.write_all(args.to_string().as_bytes()),
        }
    }
}

/// `print!` to stdout that a closed stdout cannot make panic ([`Stream::write_all`]).
macro_rules! stdout {
    ($($arg:tt)*) => { $crate::views::console::Stream::Stdout.write_fmt(format_args!($($arg)*)) };
}
/// `println!` to stdout that a closed stdout cannot make panic.
macro_rules! stdoutln {
    () => { $crate::views::console::Stream::Stdout.write_all(b"\n") };
    ($($arg:tt)*) => { $crate::views::console::Stream::Stdout.write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
/// `eprint!` that a closed stderr cannot make panic.
macro_rules! stderr {
    ($($arg:tt)*) => { $crate::views::console::Stream::Stderr.write_fmt(format_args!($($arg)*)) };
}
/// `eprintln!` that a closed stderr cannot make panic.
macro_rules! stderrln {
    () => { $crate::views::console::Stream::Stderr.write_all(b"\n") };
    ($($arg:tt)*) => { $crate::views::console::Stream::Stderr.write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use {stderr, stderrln, stdout, stdoutln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stream_drops_what_is_written_to_it() {
        // A stream marked closed is never written again (nothing reaches the test's output).
        STDERR_CLOSED.store(true, Ordering::Relaxed);
        Stream::Stderr.write_all(b"dropped\n");
        stderrln!("dropped too: {}", 1);
        assert!(Stream::Stderr.is_closed());
        STDERR_CLOSED.store(false, Ordering::Relaxed);
        assert!(!Stream::Stdout.is_closed());
    }
}
