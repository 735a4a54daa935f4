//! A small SQL tokenizer, just enough to recognise and parse Redshift COPY statements: words,
//! quoted identifiers, string literals, numbers and punctuation; comments are skipped.

/// Token kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokKind {
    /// Unquoted identifier or keyword.
    Word,
    /// `"quoted identifier"`.
    QuotedIdent,
    /// `'string literal'` (text holds the value with `''` undoubled).
    Str,
    /// Unsigned integer literal.
    Number,
    /// One punctuation character.
    Punct(char),
}

/// One token with its source span.
#[derive(Debug, Clone, PartialEq)]
pub struct Tok {
    /// Kind.
    pub kind: TokKind,
    /// Value: identifier/literal contents.
    pub text: String,
    /// Source text of the token, for error messages.
    pub raw: String,
    /// Byte offset in the statement.
    pub start: usize,
}

impl Tok {
    /// True when this is the unquoted keyword `kw` (case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        self.kind == TokKind::Word && self.text.eq_ignore_ascii_case(kw)
    }
}

/// Splits `sql` into tokens; `Err(byte offset)` on an unterminated literal or a stray character.
pub fn tokenize(sql: &str) -> Result<Vec<Tok>, usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match sql[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => return Err(start),
            }
        } else if c == b'\'' || c == b'"' {
            let (text, end) = quoted(sql, i, c).ok_or(start)?;
            let kind = if c == b'\'' {
                TokKind::Str
            } else {
                TokKind::QuotedIdent
            };
            out.push(tok(kind, text, &sql[start..end], start));
            i = end;
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(tok(
                TokKind::Word,
                sql[start..i].to_string(),
                &sql[start..i],
                start,
            ));
        } else if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push(tok(
                TokKind::Number,
                sql[start..i].to_string(),
                &sql[start..i],
                start,
            ));
        } else if b"(),;.=".contains(&c) {
            i += 1;
            out.push(tok(
                TokKind::Punct(c as char),
                String::new(),
                &sql[start..i],
                start,
            ));
        } else {
            return Err(start);
        }
    }
    Ok(out)
}

fn tok(kind: TokKind, text: String, raw: &str, start: usize) -> Tok {
    Tok {
        kind,
        text,
        raw: raw.to_string(),
        start,
    }
}

/// Reads a literal quoted with `q` starting at `i`; a doubled quote stands for one.
fn quoted(sql: &str, i: usize, q: u8) -> Option<(String, usize)> {
    let b = sql.as_bytes();
    let mut j = i + 1;
    let mut text = String::new();
    let mut seg = j;
    while j < b.len() {
        if b[j] == q {
            text.push_str(&sql[seg..j]);
            if b.get(j + 1) == Some(&q) {
                text.push(q as char);
                j += 2;
                seg = j;
                continue;
            }
            return Some((text, j + 1));
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_copy() {
        let t = tokenize("COPY \"My\".t (a) FROM 's3://b/it''s' -- c\n MAXERROR 5;").unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.kind).collect();
        assert_eq!(kinds[1], TokKind::QuotedIdent);
        assert_eq!(t[1].text, "My");
        assert_eq!(t[8].text, "s3://b/it's");
        assert_eq!(t[10].kind, TokKind::Number);
        assert_eq!(t.last().unwrap().kind, TokKind::Punct(';'));
        assert!(tokenize("copy 'open").is_err());
    }
}
