//! The COPY grammar itself: table, column list, `FROM`, authorization and the option list, with
//! Redshift's cross-option rules (exactly one authorization, JSON's incompatible options).

use crate::copy_args::{
    check_credentials, check_role_arn, json_mode, single_char, time_spec, unescape_null,
    INVALID_CREDENTIALS, MISSING_CREDENTIALS,
};
use crate::copy_parse::{
    syntax_at, Auth, Compression, CopyStmt, Format, JsonMode, ParseError, TimeSpec,
};
use crate::sqltok::{Tok, TokKind};

/// Recursive-descent parser over the tokens of one COPY statement.
pub struct Parser<'a> {
    sql: &'a str,
    toks: &'a [Tok],
    i: usize,
}

pub(crate) fn err(sqlstate: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        sqlstate,
        message: message.into(),
        position: None,
    }
}

/// Identifier folding: unquoted names are lowercased, as in Redshift.
fn ident(t: &Tok) -> Option<String> {
    match t.kind {
        TokKind::Word => Some(t.text.to_lowercase()),
        TokKind::QuotedIdent => Some(t.text.clone()),
        _ => None,
    }
}

impl<'a> Parser<'a> {
    /// Starts at the first token.
    pub fn new(sql: &'a str, toks: &'a [Tok]) -> Self {
        Self { sql, toks, i: 0 }
    }

    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.i)
    }

    fn bump(&mut self) -> Option<&'a Tok> {
        let t = self.toks.get(self.i);
        self.i += 1;
        t
    }

    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(t) => syntax_at(self.sql, t.start, Some(t)),
            None => syntax_at(self.sql, self.sql.trim_end().len(), None),
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.kind == TokKind::Punct(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(t) if t.kind == TokKind::Str => {
                self.i += 1;
                Ok(t.text.clone())
            }
            _ => Err(self.unexpected()),
        }
    }

    fn number(&mut self) -> Result<u64, ParseError> {
        match self.peek() {
            Some(t) if t.kind == TokKind::Number => {
                self.i += 1;
                t.text.parse().map_err(|_| self.unexpected())
            }
            _ => Err(self.unexpected()),
        }
    }

    fn ident(&mut self) -> Result<(String, &'a Tok), ParseError> {
        match self.peek().and_then(|t| ident(t).map(|s| (s, t))) {
            Some(x) => {
                self.i += 1;
                Ok(x)
            }
            None => Err(self.unexpected()),
        }
    }

    /// Parses the whole statement.
    pub fn parse(&mut self) -> Result<CopyStmt, ParseError> {
        self.expect_kw("copy")?;
        let (mut table_name, first) = self.ident()?;
        let mut table = first.raw.clone();
        while self.eat_punct('.') {
            let (name, t) = self.ident()?;
            table.push('.');
            table.push_str(&t.raw);
            table_name = name;
        }
        let mut columns = None;
        if self.eat_punct('(') {
            let mut cols = vec![self.ident()?.0];
            while self.eat_punct(',') {
                cols.push(self.ident()?.0);
            }
            if !self.eat_punct(')') {
                return Err(self.unexpected());
            }
            columns = Some(cols);
        }
        self.expect_kw("from")?;
        let from = self.string()?;
        let mut st = CopyStmt {
            table,
            table_name,
            columns,
            from,
            auth: Auth::Keys,
            format: Format::Text,
            delimiter: b'|',
            ignore_header: 0,
            compression: Compression::None,
            max_error: 0,
            time_format: TimeSpec::Default,
            date_format: TimeSpec::Default,
            null_as: "\\N".into(),
            empty_as_null: false,
            blanks_as_null: false,
            truncate_columns: false,
            accept_inv_chars: None,
            fill_record: false,
            region: None,
            manifest: false,
            escape: false,
            ignore_blank_lines: false,
            trim_blanks: false,
        };
        let mut auths: Vec<Auth> = Vec::new();
        let mut keys = (false, false, false);
        let mut delimiter = None;
        let mut seen: Vec<String> = Vec::new();
        while let Some(t) = self.bump() {
            if t.kind != TokKind::Word {
                self.i -= 1;
                return Err(self.unexpected());
            }
            let kw = t.text.to_ascii_lowercase();
            // Redshift rejects a parameter given twice: "conflicting or redundant options".
            if kw != "with" && kw != "format" {
                if seen.contains(&kw) {
                    return Err(err("42601", "conflicting or redundant options"));
                }
                seen.push(kw.clone());
            }
            match kw.as_str() {
                // "[WITH] CREDENTIALS [AS]" (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-authorization.html): WITH is a noise word.
                "with" => {}
                "iam_role" => {
                    let role = if self.eat_kw("default") {
                        "default".to_string()
                    } else {
                        let arn = self.string()?;
                        check_role_arn(&arn)?;
                        arn
                    };
                    auths.push(Auth::IamRole(role));
                }
                "credentials" => {
                    self.eat_kw("as");
                    let c = self.string()?;
                    check_credentials(&c)?;
                    auths.push(Auth::Credentials);
                }
                "access_key_id" => {
                    self.eat_kw("as");
                    self.string()?;
                    keys.0 = true;
                }
                "secret_access_key" => {
                    self.eat_kw("as");
                    self.string()?;
                    keys.1 = true;
                }
                "session_token" => {
                    self.eat_kw("as");
                    self.string()?;
                    keys.2 = true;
                }
                "format" => {
                    self.eat_kw("as");
                    if !self.peek().is_some_and(|t| {
                        ["json", "csv", "parquet", "orc"].iter().any(|f| t.is_kw(f))
                    }) {
                        return Err(self.unexpected());
                    }
                }
                "json" => {
                    self.eat_kw("as");
                    let mode = if self.peek().is_some_and(|t| t.kind == TokKind::Str) {
                        json_mode(&self.string()?)?
                    } else {
                        JsonMode::Auto
                    };
                    st.format = Format::Json(mode);
                }
                "csv" => {
                    let mut quote = b'"';
                    if self.eat_kw("quote") {
                        self.eat_kw("as");
                        quote = single_char(&self.string()?, "QUOTE")?;
                    }
                    st.format = Format::Csv { quote };
                }
                "delimiter" => {
                    self.eat_kw("as");
                    delimiter = Some(single_char(&self.string()?, "DELIMITER")?);
                }
                "ignoreheader" => {
                    self.eat_kw("as");
                    st.ignore_header = self.number()?;
                }
                "parquet" => st.format = Format::Parquet,
                "orc" => st.format = Format::Orc,
                "explicit_ids" => {}
                "gzip" => st.compression = Compression::Gzip,
                "zstd" => st.compression = Compression::Zstd,
                "bzip2" => st.compression = Compression::Bzip2,
                "maxerror" => {
                    self.eat_kw("as");
                    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-load.html: "maximum 100000".
                    st.max_error = self.number()?.min(100_000);
                }
                "timeformat" => {
                    self.eat_kw("as");
                    st.time_format = time_spec(&self.string()?, true);
                }
                "dateformat" => {
                    self.eat_kw("as");
                    st.date_format = time_spec(&self.string()?, false);
                }
                "null" => {
                    self.expect_kw("as")?;
                    st.null_as = unescape_null(&self.string()?);
                }
                "emptyasnull" => st.empty_as_null = true,
                "blanksasnull" => st.blanks_as_null = true,
                "truncatecolumns" => st.truncate_columns = true,
                "fillrecord" => st.fill_record = true,
                "escape" => st.escape = true,
                "ignoreblanklines" => st.ignore_blank_lines = true,
                "trimblanks" => st.trim_blanks = true,
                "manifest" => st.manifest = true,
                "acceptinvchars" => {
                    self.eat_kw("as");
                    let mut c = '?';
                    if self.peek().is_some_and(|t| t.kind == TokKind::Str) {
                        c = single_char(&self.string()?, "ACCEPTINVCHARS")? as char;
                    }
                    st.accept_inv_chars = Some(c);
                }
                "region" => {
                    self.eat_kw("as");
                    st.region = Some(self.string()?);
                }
                "compupdate" | "statupdate" => {
                    for v in ["on", "off", "true", "false", "preset"] {
                        if self.eat_kw(v) {
                            break;
                        }
                    }
                }
                "comprows" => {
                    self.number()?;
                }
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected());
                }
            }
        }
        match keys {
            (false, false, false) => {}
            (true, true, _) => auths.push(Auth::Keys),
            _ => return Err(err("XX000", INVALID_CREDENTIALS)),
        }
        st.auth = match auths.len() {
            1 => auths.remove(0),
            // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-authorization.html: exactly one authorization; IAM_ROLE "can't be combined with
            // ACCESS_KEY_ID / SECRET_ACCESS_KEY / SESSION_TOKEN / CREDENTIALS".
            0 => return Err(err("XX000", MISSING_CREDENTIALS)),
            _ => return Err(err("42601", "conflicting or redundant options")),
        };
        finish_format(&mut st, delimiter, &seen)?;
        Ok(st)
    }
}

fn finish_format(
    st: &mut CopyStmt,
    delimiter: Option<u8>,
    seen: &[String],
) -> Result<(), ParseError> {
    if let Some(kind) = st.format.columnar() {
        // https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html:
        // "Only the following COPY parameters are supported"; the refusal's wording is
        // Redshift's for the parameters it does not take with a columnar format.
        const ALLOWED: [&str; 13] = [
            "iam_role",
            "credentials",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "manifest",
            "acceptinvchars",
            "fillrecord",
            "statupdate",
            "explicit_ids",
            "parquet",
            "orc",
            "with",
        ];
        if let Some(bad) = seen.iter().find(|s| !ALLOWED.contains(&s.as_str())) {
            return Err(err(
                "0A000",
                format!(
                    "{} argument is not supported for {kind} based COPY",
                    bad.to_uppercase()
                ),
            ));
        }
        return Ok(());
    }
    match st.format {
        Format::Json(_) => {
            // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html: "Not supported with JSON: CSV, DELIMITER, ESCAPE, FILLRECORD,
            // FIXEDWIDTH, IGNOREBLANKLINES, NULL AS, READRATIO, REMOVEQUOTES".
            for bad in [
                "csv",
                "delimiter",
                "escape",
                "fillrecord",
                "ignoreblanklines",
                "null",
            ] {
                if seen.iter().any(|s| s == bad) {
                    return Err(err(
                        "0A000",
                        format!(
                            "{} argument is not supported for JSON based COPY",
                            bad.to_uppercase()
                        ),
                    ));
                }
            }
        }
        Format::Csv { .. } => {
            // CSV is "incompatible with FIXEDWIDTH, REMOVEQUOTES, ESCAPE"; its default delimiter is ','.
            if st.escape {
                return Err(err("0A000", "CSV is not compatible with ESCAPE"));
            }
            st.delimiter = delimiter.unwrap_or(b',');
        }
        Format::Text => st.delimiter = delimiter.unwrap_or(b'|'),
        Format::Parquet | Format::Orc => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::copy_parse::*;

    fn p(sql: &str) -> CopyStmt {
        parse_copy(sql).unwrap()
    }

    #[test]
    fn json_auto_with_noise_words() {
        let st = p("COPY public.\"Ev\" (a, \"B\") FROM 's3://b/p/' WITH CREDENTIALS AS 'aws_iam_role=arn:aws:iam::123456789012:role/r' FORMAT AS JSON 'auto ignorecase' GZIP MAXERROR AS 5 TIMEFORMAT 'auto';");
        assert_eq!(st.table, "public.\"Ev\"");
        assert_eq!(st.table_name, "Ev");
        assert_eq!(st.columns, Some(vec!["a".into(), "B".into()]));
        assert_eq!(st.format, Format::Json(JsonMode::AutoIgnoreCase));
        assert_eq!(st.compression, Compression::Gzip);
        assert_eq!(st.max_error, 5);
        assert_eq!(st.time_format, TimeSpec::Auto);
        assert_eq!(st.auth, Auth::Credentials);
    }

    #[test]
    fn csv_defaults_and_options() {
        let st = p("copy t from 's3://b/k' iam_role default csv quote as '''' ignoreheader 1 null as 'NULL' emptyasnull blanksasnull truncatecolumns acceptinvchars as '^' fillrecord region 'us-east-1' manifest bzip2 dateformat 'MM/DD/YYYY' compupdate off statupdate on");
        assert_eq!(st.format, Format::Csv { quote: b'\'' });
        assert_eq!(st.delimiter, b',');
        assert_eq!(st.ignore_header, 1);
        assert_eq!(st.null_as, "NULL");
        assert!(st.empty_as_null && st.blanks_as_null && st.truncate_columns && st.fill_record);
        assert_eq!(st.accept_inv_chars, Some('^'));
        assert!(st.manifest);
        assert_eq!(st.compression, Compression::Bzip2);
        assert_eq!(st.date_format, TimeSpec::Pattern("MM/DD/YYYY".into()));
        assert_eq!(st.auth, Auth::IamRole("default".into()));
    }

    #[test]
    fn text_delimiters() {
        let st = p("copy t from 's3://b/k' access_key_id 'a' secret_access_key 's' session_token 't' delimiter '\\t' zstd");
        assert_eq!(st.delimiter, b'\t');
        assert_eq!(st.format, Format::Text);
        assert_eq!(st.auth, Auth::Keys);
        assert_eq!(p("copy t from 's3://b/k' iam_role default").delimiter, b'|');
        assert_eq!(
            p("copy t from 's3://b/k' iam_role default delimiter '\\001'").delimiter,
            1
        );
        assert_eq!(
            p("copy t from 's3://b/k' iam_role default json").format,
            Format::Json(JsonMode::Auto)
        );
    }

    #[test]
    fn unknown_option_is_a_syntax_error() {
        let e = parse_copy("copy t from 's3://b/k' iam_role default frobnicate").unwrap_err();
        assert_eq!(e.sqlstate, "42601");
        assert_eq!(e.message, "syntax error at or near \"frobnicate\"");
        assert_eq!(e.position, Some(41));
        let e = parse_copy("copy t from 's3://b/k' iam_role default maxerror").unwrap_err();
        assert_eq!(e.message, "syntax error at end of input");
    }

    #[test]
    fn authorization_rules() {
        let none = parse_copy("copy t from 's3://b/k' json 'auto'").unwrap_err();
        assert!(none.message.starts_with("Missing credentials"));
        let two = parse_copy("copy t from 's3://b/k' iam_role default credentials 'aws_iam_role=arn:aws:iam::123456789012:role/r'").unwrap_err();
        assert_eq!(two.message, "conflicting or redundant options");
        let bad =
            parse_copy("copy t from 's3://b/k' credentials 'aws_access_key_id=a'").unwrap_err();
        assert!(bad.message.starts_with("Invalid credentials"));
        let half = parse_copy("copy t from 's3://b/k' access_key_id 'a'").unwrap_err();
        assert!(half.message.starts_with("Invalid credentials"));
        let arn = parse_copy("copy t from 's3://b/k' iam_role 'nope'").unwrap_err();
        assert!(arn.message.contains("IAM role"));
        p("copy t from 's3://b/k' credentials 'aws_access_key_id=a;aws_secret_access_key=b;token=c'");
    }

    #[test]
    fn columnar_takes_only_its_options() {
        let st = p("copy t from 's3://b/m' iam_role default manifest format as parquet acceptinvchars as '^' fillrecord statupdate off explicit_ids");
        assert_eq!(st.format, Format::Parquet);
        assert!(st.manifest && st.fill_record);
        assert_eq!(
            p("copy t from 's3://b/m' iam_role default format orc").format,
            Format::Orc
        );
        for (opt, name) in [
            ("maxerror 5", "MAXERROR"),
            ("ignoreheader 1", "IGNOREHEADER"),
            ("gzip", "GZIP"),
            ("timeformat 'auto'", "TIMEFORMAT"),
            ("region 'us-east-1'", "REGION"),
        ] {
            let e = parse_copy(&format!(
                "copy t from 's3://b/m' iam_role default format as parquet {opt}"
            ))
            .unwrap_err();
            assert_eq!(
                e.message,
                format!("{name} argument is not supported for PARQUET based COPY")
            );
        }
        assert_eq!(
            p("copy t from 's3://b/k' iam_role default format as json 'noshred'").format,
            Format::Json(JsonMode::Noshred)
        );
    }

    #[test]
    fn json_rejects_text_options() {
        let e = parse_copy("copy t from 's3://b/k' iam_role default json 'auto' delimiter ','")
            .unwrap_err();
        assert!(e.message.contains("DELIMITER"));
        let e = parse_copy("copy t from 's3://b/k' iam_role default gzip gzip").unwrap_err();
        assert_eq!(e.message, "conflicting or redundant options");
    }
}
