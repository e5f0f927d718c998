//! One problem `coord check` found: a miette diagnostic pointing into the user's file (script,
//! module, workflow, schema, scenario or config) with `file:line:col` in its message.

use crate::config::file_diagnostic::line_col;
use crate::config::file_diagnostic::FileDiagnostic;
use crate::script::ScriptDiagnostic;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub struct Problem {
    /// Starts with `file:line:col: `.
    pub message: String,
    /// A stable code, e.g. `coord::check::unknown-function`.
    pub code: &'static str,
    pub file: String,
    pub offset: usize,
    src: NamedSource<String>,
    span: Option<SourceSpan>,
    label: String,
    pub help: Option<String>,
}

impl Problem {
    /// A problem at a byte range of `text`, the contents of `file`.
    pub fn at(
        code: &'static str,
        file: &Path,
        text: &str,
        span: std::ops::Range<usize>,
        message: String,
        help: Option<String>,
    ) -> Self {
        let name = file.display().to_string();
        let start = span.start.min(text.len());
        let end = span.end.clamp(start, text.len());
        let (line, col) = line_col(text, start);
        Problem {
            message: format!("{name}:{line}:{col}: {message}"),
            code,
            file: name.clone(),
            offset: start,
            src: NamedSource::new(name, text.to_owned()),
            span: Some(SourceSpan::from(start..end)),
            label: "here".into(),
            help,
        }
    }

    /// A problem at a Rhai position (1-based line and column) of `text`.
    pub fn at_position(
        code: &'static str,
        file: &Path,
        text: &str,
        pos: rhai::Position,
        len: usize,
        message: String,
        help: Option<String>,
    ) -> Self {
        let start = offset_of(text, pos.line().unwrap_or(1), pos.position().unwrap_or(1));
        Self::at(code, file, text, start..start + len.max(1), message, help)
    }

    pub fn from_script(code: &'static str, d: ScriptDiagnostic) -> Self {
        let file = d.src.name().to_owned();
        let offset = d.span.map(|s| s.offset()).unwrap_or(0);
        Problem { message: d.message, code, file, offset, src: d.src, span: d.span, label: d.label, help: d.help }
    }

    pub fn from_file(code: &'static str, d: FileDiagnostic) -> Self {
        let file = d.src.name().to_owned();
        let offset = d.span.map(|s| s.offset()).unwrap_or(0);
        Problem { message: d.message, code, file, offset, src: d.src, span: d.span, label: "here".into(), help: d.help }
    }
}

/// Byte offset of a 1-based line and character column.
pub fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within: usize = l.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
            return (offset + within).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some(self.label.clone()), span))))
    }
}
