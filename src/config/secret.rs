//! Values that must never reach a log line, an error message or `Debug` output.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A password, token or key. `Debug` and `Display` print `***`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (a header, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A PostgreSQL connection string that may carry a password: a URL
/// (`postgres://user:pass@host/db`, or `?password=` in its query) or the libpq key=value form
/// (`host=h user=u password=p`). `Debug` and `Display` show it with the password replaced by
/// `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnUrl(String);

impl ConnUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        ConnUrl(url.into())
    }

    /// The URL with its password, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

/// Replaces every password in a PostgreSQL-style connection string with `***`: the userinfo
/// password of a URL (`scheme://user:password@host...`), a `password=` query parameter, and the
/// `password` keyword of the libpq key=value form (`host=h password='p w'`). Other strings are
/// returned unchanged.
pub fn redact_url(url: &str) -> String {
    if url.contains("://") {
        redact_query(&redact_userinfo(url))
    } else {
        redact_keyvalue(url)
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// `?...&password=secret&...` to `password=***`.
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// The libpq key=value form: `key = value` pairs separated by whitespace, a value either
/// single-quoted (with `\'` and `\\` escapes) or a run of non-blank characters. The value of
/// every `password` key becomes `***`; anything after a `password` key that does not parse is
/// masked too, since it may be the password.
fn redact_keyvalue(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let blank = |c: u8| c.is_ascii_whitespace();
    while i < b.len() {
        let start = i;
        while i < b.len() && blank(b[i]) {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && !blank(b[i]) && b[i] != b'=' {
            i += 1;
        }
        let key = &s[key_start..i];
        let secret = key.eq_ignore_ascii_case("password");
        while i < b.len() && blank(b[i]) {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            // Not key=value: keep what is there unless it follows a password key.
            if secret {
                out.push_str(&s[start..key_start]);
                out.push_str(key);
                if i < b.len() {
                    out.push_str(" ***");
                }
                return out;
            }
            out.push_str(&s[start..i]);
            continue;
        }
        i += 1;
        while i < b.len() && blank(b[i]) {
            i += 1;
        }
        out.push_str(&s[start..i]);
        let value_start = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !blank(b[i]) {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(b.len());
        }
        if secret {
            out.push_str("***");
        } else {
            out.push_str(&s[value_start..i]);
        }
    }
    out
}

impl fmt::Debug for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for ConnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for ConnUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ConnUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_password() {
        let u = ConnUrl::new("postgres://loader:p%40ss@cluster:5439/dev?sslmode=require");
        assert_eq!(
            u.to_string(),
            "postgres://loader:***@cluster:5439/dev?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("p%40ss"));
        assert_eq!(redact_url("http://host:9200/x"), "http://host:9200/x");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("https://a:b@h"), "https://a:***@h");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
    }

    #[test]
    fn keyvalue_strings_lose_their_password() {
        let cases = [
            (
                "host=db.internal port=5432 user=loader password=hunter2 dbname=control",
                "host=db.internal port=5432 user=loader password=*** dbname=control",
            ),
            (
                "host=h password = 'hun ter\\'2' user=u",
                "host=h password = *** user=u",
            ),
            ("PASSWORD=hunter2", "PASSWORD=***"),
            ("password=hunter2\\ x user=u", "password=*** user=u"),
            ("host=h password", "host=h password"),
            ("host=h password hunter2", "host=h password ***"),
            ("host=h user=u", "host=h user=u"),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_url(raw), want, "{raw}");
            let u = ConnUrl::new(raw);
            for shown in [u.to_string(), format!("{u:?}")] {
                assert!(
                    !shown.contains("hunter2") && !shown.contains("hun"),
                    "{shown}"
                );
            }
        }
    }
}
