//! An assembly error: where (file, line, column) and what was expected,
//! shown with the line and a caret.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct AsmError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole program.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    pub message: String,
    /// The offending source line, for the caret display.
    pub source_line: String,
}

impl fmt::Display for AsmError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let message = clip_quoted(&self.message);
        if self.line == 0 {
            return write!(f, "{}: {message}", self.file);
        }
        writeln!(f, "{}:{}:{}: {message}", self.file, self.line, self.col)?;
        let (shown, caret) = window(&self.source_line, self.col.saturating_sub(1));
        writeln!(f, "  | {shown}")?;
        write!(f, "  | {}^", " ".repeat(caret))
    }
}

/// A message with every `quoted` part cut to 60 characters: a 10 MB token
/// is not worth echoing.
fn clip_quoted(message: &str) -> String {
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && part.chars().count() > 60 {
                format!("{}…", part.chars().take(60).collect::<String>())
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// At most 120 characters of `line` around character `at`, and where `at`
/// is in them.
fn window(line: &str, at: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= 120 {
        return (line.to_string(), at);
    }
    let start = at.saturating_sub(60).min(chars.len());
    let end = (start + 120).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret = at - start;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}

impl std::error::Error for AsmError {}

pub(super) type R<T> = Result<T, AsmError>;
