//! Splitting one line of assembly into tokens (words, punctuation,
//! arrows), each with its column for errors.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Punct(char),
    Arrow,
    LArrow,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) col: usize,
}

pub(super) fn lex(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c == ';' {
            break;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            out.push(Token {
                tok: Tok::Arrow,
                col,
            });
            i += 2;
        } else if c == '<' && chars.get(i + 1) == Some(&'-') {
            out.push(Token {
                tok: Tok::LArrow,
                col,
            });
            i += 2;
        } else if matches!(c, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@') {
            out.push(Token {
                tok: Tok::Punct(c),
                col,
            });
            i += 1;
        } else {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                if d.is_whitespace()
                    || matches!(d, ',' | '[' | ']' | '(' | ')' | ':' | '=' | '@' | ';' | '<')
                    || (d == '-' && chars.get(i + 1) == Some(&'>'))
                {
                    break;
                }
                i += 1;
            }
            if i == start {
                // A lone character no rule accepts; make it a word so the
                // parser reports it in context.
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                col,
            });
        }
    }
    out
}

pub(super) fn describe(t: Option<&Token>) -> String {
    match t.map(|t| &t.tok) {
        None => "end of line".into(),
        Some(Tok::Word(w)) => format!("`{w}`"),
        Some(Tok::Punct(c)) => format!("`{c}`"),
        Some(Tok::Arrow) => "`->`".into(),
        Some(Tok::LArrow) => "`<-`".into(),
    }
}
