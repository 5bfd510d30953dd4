//! Splitting one line of assembly into tokens (words, punctuation,
//! arrows), each with its column for errors.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok<'a> {
    /// A slice of the line itself: a generated kernel's listing runs to
    /// millions of tokens, and copying each was much of a compile.
    Word(&'a str),
    Punct(char),
    Arrow,
    LArrow,
}

#[derive(Debug, Clone)]
pub(super) struct Token<'a> {
    pub(super) tok: Tok<'a>,
    /// 1-based, in characters.
    pub(super) col: usize,
}

/// Characters that end a word (and, but for `;` and `<`, are tokens).
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@' | ';' | '<')
}

pub(super) fn lex(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    // (byte offset, character) with the column counted alongside.
    let mut chars = line.char_indices().peekable();
    let mut col = 0;
    while let Some((at, c)) = chars.next() {
        col += 1;
        let next = chars.peek().map(|&(_, d)| d);
        if c == ';' {
            break;
        } else if c.is_whitespace() {
            continue;
        } else if c == '-' && next == Some('>') {
            out.push(Token {
                tok: Tok::Arrow,
                col,
            });
            chars.next();
            col += 1;
        } else if c == '<' && next == Some('-') {
            out.push(Token {
                tok: Tok::LArrow,
                col,
            });
            chars.next();
            col += 1;
        } else if matches!(c, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@') {
            out.push(Token {
                tok: Tok::Punct(c),
                col,
            });
        } else {
            // A word runs to the next character that ends one, or to an
            // arrow; a lone character no rule accepts (`<` alone) is a
            // word too, so the parser reports it in context.
            let start_col = col;
            let mut end = at + c.len_utf8();
            if !ends_word(c) {
                let mut rest = line[end..].char_indices().peekable();
                while let Some(&(i, d)) = rest.peek() {
                    let arrow = d == '-' && line[end + i + 1..].starts_with('>');
                    if ends_word(d) || arrow {
                        break;
                    }
                    rest.next();
                }
                let len = rest.peek().map_or(line.len() - end, |&(i, _)| i);
                let word_chars = line[end..end + len].chars().count();
                for _ in 0..word_chars {
                    chars.next();
                }
                col += word_chars;
                end += len;
            }
            out.push(Token {
                tok: Tok::Word(&line[at..end]),
                col: start_col,
            });
        }
    }
    out
}

pub(super) fn describe(t: Option<&Token<'_>>) -> String {
    match t.map(|t| &t.tok) {
        None => "end of line".into(),
        Some(Tok::Word(w)) => format!("`{w}`"),
        Some(Tok::Punct(c)) => format!("`{c}`"),
        Some(Tok::Arrow) => "`->`".into(),
        Some(Tok::LArrow) => "`<-`".into(),
    }
}
