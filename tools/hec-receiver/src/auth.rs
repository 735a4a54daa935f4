//! Tokens: the `--token` specification syntax, and authenticating a request from its
//! `Authorization` header (`Splunk <token>` or HTTP Basic) or `?token=` query parameter.

use std::collections::HashMap;
use std::str::FromStr;

use axum::http::{header, HeaderMap};

use crate::protocol::Code;

/// One configured HEC token and its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpec {
    pub token: String,
    /// Shown in stored events and used for the default source `http:<name>`; never the token.
    pub name: String,
    /// Allowed indexes; `None` allows any. The first is the default index.
    pub indexes: Option<Vec<String>>,
    pub ack: bool,
    pub disabled: bool,
    pub query_auth: bool,
}

/// A `--token` value that could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum TokenSpecError {
    #[error("empty token")]
    Empty,
    #[error("unknown token option {0:?} (expected ack, disabled, query, name=N, index=a,b)")]
    UnknownOption(String),
}

impl FromStr for TokenSpec {
    type Err = TokenSpecError;

    /// `TOKEN[:ack][:disabled][:query][:name=NAME][:index=a,b]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let token = parts.next().unwrap_or_default().trim().to_string();
        if token.is_empty() {
            return Err(TokenSpecError::Empty);
        }
        let mut spec = TokenSpec {
            token,
            name: String::new(),
            indexes: None,
            ack: false,
            disabled: false,
            query_auth: false,
        };
        for opt in parts {
            match opt.split_once('=') {
                None if opt == "ack" => spec.ack = true,
                None if opt == "disabled" => spec.disabled = true,
                None if opt == "query" => spec.query_auth = true,
                Some(("name", n)) => spec.name = n.to_string(),
                Some(("index", list)) => {
                    spec.indexes = Some(list.split(',').map(str::to_string).collect())
                }
                _ => return Err(TokenSpecError::UnknownOption(opt.to_string())),
            }
        }
        Ok(spec)
    }
}

impl TokenSpec {
    /// Whether events may name this index (6.4: "must be in the token's allowed index list").
    pub fn allows_index(&self, index: &str) -> bool {
        self.indexes
            .as_ref()
            .is_none_or(|list| list.iter().any(|i| i == index))
    }

    /// The index for events that name none.
    pub fn default_index(&self) -> &str {
        self.indexes
            .as_ref()
            .and_then(|l| l.first())
            .map_or("main", String::as_str)
    }
}

/// The configured tokens, looked up by value.
#[derive(Debug, Default)]
pub struct Tokens {
    by_value: HashMap<String, TokenSpec>,
}

impl Tokens {
    /// Builds the table; unnamed tokens get `token1`, `token2`, ... in command-line order.
    pub fn new(specs: Vec<TokenSpec>) -> Self {
        let by_value = specs
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                if s.name.is_empty() {
                    s.name = format!("token{}", i + 1);
                }
                (s.token.clone(), s)
            })
            .collect();
        Tokens { by_value }
    }

    /// Finds the request's token, or the code to refuse it with (reference 6.2).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<&TokenSpec, Code> {
        let (value, from_query) = match headers.get(header::AUTHORIZATION) {
            Some(h) => (
                parse_authorization(h.to_str().map_err(|_| Code::InvalidAuthorization)?)?,
                false,
            ),
            None => match query_token {
                Some(t) => (t.to_string(), true),
                // 6.2: "Missing → 401 code 2 \"Token is required\"".
                None => return Err(Code::TokenRequired),
            },
        };
        let spec = self.by_value.get(&value).ok_or(Code::InvalidToken)?;
        if spec.disabled {
            return Err(Code::TokenDisabled);
        }
        // 6.2: "`?token=` only if query-string auth is enabled on the token ...; otherwise 400 code 16".
        if from_query && !spec.query_auth {
            return Err(Code::QueryStringAuthDisabled);
        }
        Ok(spec)
    }
}

/// 6.2: "`Authorization: Splunk <hec_token>`" or "HTTP Basic: any username, token as password";
/// anything else is "malformed header ... → 401 code 3".
fn parse_authorization(value: &str) -> Result<String, Code> {
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or(Code::InvalidAuthorization)?;
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("splunk") {
        rest.to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest).ok_or(Code::InvalidAuthorization)?;
        let text = String::from_utf8(decoded).map_err(|_| Code::InvalidAuthorization)?;
        let (_, password) = text.split_once(':').ok_or(Code::InvalidAuthorization)?;
        password.to_string()
    } else {
        return Err(Code::InvalidAuthorization);
    };
    if token.is_empty() {
        return Err(Code::InvalidAuthorization);
    }
    Ok(token)
}

/// Standard-alphabet base64 with optional padding; small enough not to need a crate.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let data = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        Tokens::new(vec![
            "good:index=main,web".parse().unwrap(),
            "off:disabled".parse().unwrap(),
            "q:query:name=qq".parse().unwrap(),
        ])
    }

    fn auth(value: Option<&str>, query: Option<&str>) -> Result<String, Code> {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        tokens().authenticate(&h, query).map(|s| s.name.clone())
    }

    #[test]
    fn header_forms_and_codes() {
        assert_eq!(auth(Some("Splunk good"), None), Ok("token1".into()));
        // "x:good" in base64.
        assert_eq!(auth(Some("Basic eDpnb29k"), None), Ok("token1".into()));
        assert_eq!(auth(None, None), Err(Code::TokenRequired));
        assert_eq!(auth(Some("good"), None), Err(Code::InvalidAuthorization));
        assert_eq!(
            auth(Some("Bearer good"), None),
            Err(Code::InvalidAuthorization)
        );
        assert_eq!(auth(Some("Splunk bad"), None), Err(Code::InvalidToken));
        assert_eq!(auth(Some("Splunk off"), None), Err(Code::TokenDisabled));
        assert_eq!(auth(None, Some("good")), Err(Code::QueryStringAuthDisabled));
        assert_eq!(auth(None, Some("q")), Ok("qq".into()));
    }

    #[test]
    fn spec_syntax_and_indexes() {
        let t = tokens();
        let spec = &t.by_value["good"];
        assert!(spec.allows_index("web") && !spec.allows_index("other"));
        assert_eq!(spec.default_index(), "main");
        assert!("x:bogus".parse::<TokenSpec>().is_err());
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    }
}
