//! A miette diagnostic pointing into a file the user wrote (coord.toml, a scenario, a pipeline).

use miette::{NamedSource, SourceSpan};
use std::path::Path;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(coord::file))]
pub struct FileDiagnostic {
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("here")]
    pub span: Option<SourceSpan>,
    #[help]
    pub help: Option<String>,
}

impl FileDiagnostic {
    pub fn at(path: &Path, source: &str, span: std::ops::Range<usize>, message: String, help: Option<String>) -> Self {
        let (line, col) = line_col(source, span.start);
        FileDiagnostic {
            message: format!("{}:{line}:{col}: {message}", path.display()),
            src: NamedSource::new(path.display().to_string(), source.to_owned()),
            span: Some(SourceSpan::from(span.start..span.end.max(span.start))),
            help,
        }
    }

    pub fn io(path: &Path, message: &str) -> Self {
        FileDiagnostic {
            message: format!("{}: {message}", path.display()),
            src: NamedSource::new(path.display().to_string(), String::new()),
            span: None,
            help: None,
        }
    }

    pub fn span_start(&self) -> Option<usize> {
        self.span.map(|s| s.offset())
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}
