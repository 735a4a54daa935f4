//! Per-field validation and conversion with Redshift's load error codes (https://docs.aws.amazon.com/redshift/latest/dg/r_Load_Error_Reference.html): a raw
//! field from the input becomes either the canonical text PostgreSQL accepts or a [`FieldError`]
//! that ends up as one `stl_load_errors` row.

use crate::copy_parse::TimeSpec;
use crate::numbers::{boolean, float, int, numeric};
use crate::timefmt;

/// Target column type, from the table's catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    /// smallint.
    Int2,
    /// integer.
    Int4,
    /// bigint.
    Int8,
    /// numeric(p,s); `None` precision means unconstrained.
    Numeric {
        /// Total digits.
        precision: Option<u32>,
        /// Digits after the point.
        scale: u32,
    },
    /// real.
    Float4,
    /// double precision.
    Float8,
    /// boolean.
    Bool,
    /// varchar(n) (n in bytes, as Redshift counts).
    Varchar(Option<usize>),
    /// char(n).
    Char(usize),
    /// text (unbounded here; Redshift maps TEXT to VARCHAR(256)).
    Text,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    Timestamptz,
    /// Anything else: passed through as text and left to PostgreSQL.
    Other,
}

impl ColType {
    /// Maps a pg_type name and typmod to a column type.
    pub fn from_pg(typname: &str, typmod: i32) -> Self {
        match typname {
            "int2" => Self::Int2,
            "int4" => Self::Int4,
            "int8" => Self::Int8,
            "numeric" if typmod >= 4 => Self::Numeric {
                precision: Some(((typmod - 4) >> 16) as u32),
                scale: ((typmod - 4) & 0xffff) as u32,
            },
            "numeric" => Self::Numeric {
                precision: None,
                scale: 0,
            },
            "float4" => Self::Float4,
            "float8" => Self::Float8,
            "bool" => Self::Bool,
            "varchar" => Self::Varchar((typmod >= 4).then(|| (typmod - 4) as usize)),
            "bpchar" => Self::Char(if typmod >= 4 {
                (typmod - 4) as usize
            } else {
                1
            }),
            "text" => Self::Text,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::Timestamptz,
            _ => Self::Other,
        }
    }

    /// The `col_length` value stl_load_errors shows ("3" for character(3)).
    pub fn col_length(&self) -> String {
        match self {
            Self::Varchar(Some(n)) | Self::Char(n) => n.to_string(),
            Self::Numeric {
                precision: Some(p),
                scale,
            } => format!("{p},{scale}"),
            _ => String::new(),
        }
    }

    fn is_string(&self) -> bool {
        matches!(
            self,
            Self::Varchar(_) | Self::Char(_) | Self::Text | Self::Other
        )
    }
}

/// A target column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Parsed type.
    pub ty: ColType,
    /// pg_type name, shown as stl_load_errors.type.
    pub typname: String,
    /// NOT NULL constraint.
    pub not_null: bool,
    /// DEFAULT expression, as PostgreSQL prints it.
    pub default: Option<String>,
}

/// Conversion options taken from the COPY statement.
#[derive(Debug, Clone)]
pub struct ConvertOpts {
    /// EMPTYASNULL.
    pub empty_as_null: bool,
    /// BLANKSASNULL.
    pub blanks_as_null: bool,
    /// TRUNCATECOLUMNS.
    pub truncate_columns: bool,
    /// ACCEPTINVCHARS replacement.
    pub accept_inv_chars: Option<char>,
    /// TRIMBLANKS.
    pub trim_blanks: bool,
    /// DATEFORMAT.
    pub date_format: TimeSpec,
    /// TIMEFORMAT.
    pub time_format: TimeSpec,
}

/// One bad field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Redshift load error code.
    pub code: i32,
    /// Redshift's err_reason text.
    pub reason: String,
    /// Position of the error within the field.
    pub position: i32,
}

pub(crate) fn fe(code: i32, reason: impl Into<String>, position: usize) -> FieldError {
    FieldError {
        code,
        reason: reason.into(),
        position: position as i32,
    }
}

/// Converts one field; `Ok(None)` is SQL NULL.
pub fn convert(
    col: &Column,
    raw: Option<&[u8]>,
    o: &ConvertOpts,
) -> Result<Option<String>, FieldError> {
    let text = match raw {
        None => None,
        Some(b) => Some(utf8(b, &col.ty, o)?),
    };
    let out = match text {
        None => None,
        Some(s) => convert_text(col, s, o)?,
    };
    if out.is_none() && col.not_null {
        return Err(fe(1213, "Missing data for not-null field", 0));
    }
    Ok(out)
}

fn utf8(b: &[u8], ty: &ColType, o: &ConvertOpts) -> Result<String, FieldError> {
    let mut out = String::with_capacity(b.len());
    let mut rest = b;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                let bad_len = e.error_len().unwrap_or(rest.len() - good);
                let bad = &rest[good..good + bad_len];
                // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html: ACCEPTINVCHARS is "VARCHAR only; replace each invalid UTF-8
                // char with an equal-length run of the replacement char".
                match o.accept_inv_chars {
                    Some(c) if ty.is_string() => out.extend(std::iter::repeat_n(c, bad_len)),
                    _ => {
                        return Err(fe(
                            1220,
                            format!(
                                "String contains invalid or unsupported UTF-8 codepoints. Bad UTF-8 hex sequence: {} (error 3)",
                                hex(bad)
                            ),
                            out.len(),
                        ))
                    }
                }
                rest = &rest[good + bad_len..];
            }
        }
    }
    if out.contains('\0') {
        // PostgreSQL text cannot hold NUL; Redshift treats it as the end of the record.
        match o.accept_inv_chars {
            Some(c) if ty.is_string() => out = out.replace('\0', &c.to_string()),
            _ => return Err(fe(1220, "String contains invalid or unsupported UTF-8 codepoints. Bad UTF-8 hex sequence: 00 (error 3)", out.find('\0').unwrap_or(0))),
        }
    }
    Ok(out)
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn convert_text(
    col: &Column,
    mut s: String,
    o: &ConvertOpts,
) -> Result<Option<String>, FieldError> {
    if col.ty.is_string() {
        if o.trim_blanks {
            s.truncate(s.trim_end().len());
        }
        // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html: EMPTYASNULL / BLANKSASNULL act on CHAR/VARCHAR only.
        if (o.empty_as_null && s.is_empty()) || (o.blanks_as_null && s.trim().is_empty()) {
            return Ok(None);
        }
        return string(&col.ty, s, o).map(Some);
    }
    let t = s.trim();
    // "for other types empty → NULL" (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html), and BLANKSASNULL: "other types blank →
    // NULL anyway".
    if t.is_empty() {
        return Ok(None);
    }
    let v = match &col.ty {
        ColType::Int2 => int(t, i16::MIN as i128, i16::MAX as i128, "Short")?,
        ColType::Int4 => int(t, i32::MIN as i128, i32::MAX as i128, "Integer")?,
        ColType::Int8 => int(t, i64::MIN as i128, i64::MAX as i128, "Long")?,
        ColType::Numeric { precision, scale } => numeric(t, *precision, *scale)?,
        ColType::Float4 => float(t, true)?,
        ColType::Float8 => float(t, false)?,
        ColType::Bool => boolean(t)?,
        ColType::Date => timefmt::date(t, &o.date_format).map_err(|r| fe(1205, r, 0))?,
        ColType::Timestamp => {
            timefmt::timestamp(t, &o.time_format, false).map_err(|r| fe(1206, r, 0))?
        }
        ColType::Timestamptz => {
            timefmt::timestamp(t, &o.time_format, true).map_err(|r| fe(1206, r, 0))?
        }
        _ => unreachable!("string types handled above"),
    };
    Ok(Some(v))
}

fn string(ty: &ColType, mut s: String, o: &ConvertOpts) -> Result<String, FieldError> {
    let (limit, what) = match ty {
        ColType::Varchar(Some(n)) => (*n, "String"),
        ColType::Char(n) => {
            if let Some(pos) = s.bytes().position(|b| b >= 0x80) {
                // https://docs.aws.amazon.com/redshift/latest/dg/r_Load_Error_Reference.html: "CHAR accepts only single-byte (≤0x7F)".
                let ch = s[pos..]
                    .chars()
                    .next()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                return Err(fe(
                    1220,
                    format!(
                        "Multibyte character not supported for CHAR (Hint: Try using VARCHAR). Invalid char: {}",
                        hex(ch.as_bytes())
                    ),
                    pos,
                ));
            }
            (*n, "Char")
        }
        _ => return Ok(s),
    };
    if s.len() > limit {
        if !o.truncate_columns {
            return Err(fe(1204, format!("{what} length exceeds DDL length"), 0));
        }
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConvertOpts {
        ConvertOpts {
            empty_as_null: false,
            blanks_as_null: false,
            truncate_columns: false,
            accept_inv_chars: None,
            trim_blanks: false,
            date_format: TimeSpec::Default,
            time_format: TimeSpec::Default,
        }
    }

    fn col(typname: &str, typmod: i32) -> Column {
        Column {
            name: "c".into(),
            ty: ColType::from_pg(typname, typmod),
            typname: typname.into(),
            not_null: false,
            default: None,
        }
    }

    fn ok(c: &Column, v: &str) -> Option<String> {
        convert(c, Some(v.as_bytes()), &opts()).unwrap()
    }

    fn code(c: &Column, v: &[u8], o: &ConvertOpts) -> (i32, String) {
        let e = convert(c, Some(v), o).unwrap_err();
        (e.code, e.reason)
    }

    #[test]
    fn integers() {
        let c = col("int4", -1);
        assert_eq!(ok(&c, " 42 "), Some("42".into()));
        assert_eq!(ok(&c, ""), None);
        assert_eq!(
            code(&c, b"a", &opts()),
            (
                1207,
                "Invalid digit, Value 'a', Pos 0, Type: Integer".into()
            )
        );
        assert_eq!(
            code(&c, b"1.5", &opts()).1,
            "Invalid digit, Value '.', Pos 1, Type: Integer"
        );
        assert_eq!(code(&c, b"2147483648", &opts()).0, 1204);
        assert_eq!(code(&col("int2", -1), b"40000", &opts()).0, 1204);
        assert_eq!(
            ok(&col("int8", -1), "-9223372036854775808"),
            Some("-9223372036854775808".into())
        );
    }

    #[test]
    fn numerics_and_floats() {
        let c = col("numeric", ((8 << 16) | 2) + 4);
        assert_eq!(c.ty.col_length(), "8,2");
        assert_eq!(ok(&c, "20.259"), Some("20.25".into()));
        assert_eq!(ok(&c, "-007.5"), Some("-7.5".into()));
        assert_eq!(code(&c, b"1234567", &opts()).0, 1204);
        assert_eq!(code(&c, b"1x", &opts()).0, 1207);
        assert_eq!(ok(&col("float8", -1), "1.5e3"), Some("1.5e3".into()));
        assert_eq!(code(&col("float8", -1), b"abc", &opts()).0, 1208);
        assert_eq!(code(&col("float4", -1), b"1e300", &opts()).0, 1204);
    }

    #[test]
    fn strings() {
        let c = col("varchar", 3 + 4);
        assert_eq!(ok(&c, "abc"), Some("abc".into()));
        assert_eq!(ok(&c, ""), Some("".into()));
        assert_eq!(
            code(&c, b"abcd", &opts()),
            (1204, "String length exceeds DDL length".into())
        );
        // Redshift counts VARCHAR length in bytes.
        assert_eq!(code(&c, "é€".as_bytes(), &opts()).0, 1204);
        let mut o = opts();
        o.truncate_columns = true;
        assert_eq!(
            convert(&c, Some("aé€".as_bytes()), &o).unwrap(),
            Some("aé".into())
        );
        let ch = col("bpchar", 2 + 4);
        assert_eq!(
            code(&ch, b"abc", &opts()),
            (1204, "Char length exceeds DDL length".into())
        );
        assert_eq!(code(&ch, "é".as_bytes(), &opts()).0, 1220);
        o.empty_as_null = true;
        o.blanks_as_null = true;
        assert_eq!(convert(&c, Some(b""), &o).unwrap(), None);
        assert_eq!(convert(&c, Some(b"  "), &o).unwrap(), None);
    }

    #[test]
    fn invalid_utf8() {
        let c = col("varchar", 20 + 4);
        let (code_, reason) = code(&c, b"ab\xa4c", &opts());
        assert_eq!(code_, 1220);
        assert!(reason.contains("Bad UTF-8 hex sequence: a4"));
        let mut o = opts();
        o.accept_inv_chars = Some('?');
        assert_eq!(
            convert(&c, Some(b"ab\xa4c"), &o).unwrap(),
            Some("ab?c".into())
        );
    }

    #[test]
    fn booleans_dates_and_not_null() {
        let b = col("bool", -1);
        assert_eq!(ok(&b, "TRUE"), Some("true".into()));
        assert_eq!(ok(&b, "0"), Some("false".into()));
        assert_eq!(code(&b, b"maybe", &opts()).0, 1210);
        assert_eq!(code(&col("date", -1), b"2020-13-01", &opts()).0, 1205);
        assert_eq!(code(&col("timestamp", -1), b"yesterday", &opts()).0, 1206);
        let mut nn = col("int4", -1);
        nn.not_null = true;
        assert_eq!(convert(&nn, None, &opts()).unwrap_err().code, 1213);
        assert_eq!(convert(&nn, Some(b""), &opts()).unwrap_err().code, 1213);
    }
}
