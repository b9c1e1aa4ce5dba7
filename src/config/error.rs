//! Errors from loading the business-rules file, each pinned to a file, line and column.

use std::fmt;
use std::path::PathBuf;

/// One problem found in a configuration file.
///
/// Displays as `origin:line:column: field: message`, or `origin:line:column: message` when
/// the problem is not about one field (TOML syntax errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name (or other origin) the text came from.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Dotted path of the field, e.g. `calendars.default.mon[1]`; `None` for syntax errors.
    pub field: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    // The I/O error is part of the message rather than a `source`, so that printing the
    // error chain does not say it twice.
    #[error("{}: cannot read configuration: {error}", path.display())]
    Read {
        /// The path that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// The text was read but is not a valid configuration. Holds every problem found, in
    /// file order; displayed one per line.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The problems found in the text (empty for [`ConfigError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Read { .. } => &[],
            Self::Invalid(list) => list,
        }
    }
}

fn join_lines(list: &[Diagnostic]) -> String {
    list.iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// 1-based line and column (in characters) of byte `offset` in `text`. Offsets past the end
/// or inside a character are moved back to the nearest character start, so any offset works.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let line = before.matches('\n').count() + 1;
    let mut column = before[line_start..].chars().count() + 1;
    // Editors do not show a byte-order mark, so it should not shift the first line.
    if line_start == 0 && before.starts_with('\u{feff}') {
        column -= 1;
    }
    (line, column)
}
