//! SQL quoting shared by config validation, the control database and the Redshift destination:
//! string literals and identifiers, so nothing a user writes can end a literal or a name.

/// A string literal: single quotes doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One identifier as SQL: an already double-quoted name is kept as written; a bare name folds
/// to lower case (as SQL folds unquoted names) and is quoted, so nothing in it can end the name.
pub fn quote_ident(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty identifier".into());
    }
    if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        if inner.is_empty() || inner.replace("\"\"", "").contains('"') {
            return Err(format!("malformed quoted identifier {name}"));
        }
        return Ok(name.to_string());
    }
    Ok(format!("\"{}\"", name.to_lowercase().replace('"', "\"\"")))
}

/// `schema.table` (or `table`) with each part quoted; dots inside double quotes do not split.
pub fn quote_qualified(name: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in name.trim().chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    if quoted || parts.len() > 3 {
        return Err(format!("{name:?} is not a table name"));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Result<Vec<_>, _>>()?
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_cannot_escape() {
        assert_eq!(quote_qualified("clicks").unwrap(), "\"clicks\"");
        assert_eq!(
            quote_qualified("\"My.Schema\".t").unwrap(),
            "\"My.Schema\".\"t\""
        );
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_ident("\"a\"b\"").is_err());
        assert!(quote_qualified("a.b.c.d").is_err());
        assert!(quote_qualified("\"open").is_err());
        assert!(quote_ident(" ").is_err());
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("s3://b/k"), "'s3://b/k'");
    }
}
