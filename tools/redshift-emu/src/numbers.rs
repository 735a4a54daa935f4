//! Numeric and boolean fields: integers, DECIMAL(p,s), REAL/DOUBLE and BOOLEAN literals, with
//! Redshift's `Invalid digit, Value 'x', Pos n, Type: Integer` style reasons and codes 1204/1207-1210.

use crate::convert::{fe, FieldError};

fn invalid_digit(c: char, pos: usize, ty: &str, code: i32) -> FieldError {
    fe(
        code,
        format!("Invalid digit, Value '{c}', Pos {pos}, Type: {ty}"),
        pos,
    )
}

/// A smallint/int/bigint within `min..=max`; `ty` is Redshift's type word (Short, Integer, Long).
pub fn int(t: &str, min: i128, max: i128, ty: &str) -> Result<String, FieldError> {
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let off = t.len() - body.len();
    if body.is_empty() {
        return Err(invalid_digit(t.chars().next().unwrap_or(' '), 0, ty, 1207));
    }
    for (i, c) in body.char_indices() {
        if !c.is_ascii_digit() {
            return Err(invalid_digit(c, i + off, ty, 1207));
        }
    }
    match t.parse::<i128>() {
        Ok(v) if v >= min && v <= max => Ok(v.to_string()),
        _ => Err(fe(
            1204,
            format!("Overflow, Value '{t}', Pos 0, Type: {ty}"),
            0,
        )),
    }
}

/// A DECIMAL; extra scale digits are truncated as Redshift does without ROUNDEC.
pub fn numeric(t: &str, precision: Option<u32>, scale: u32) -> Result<String, FieldError> {
    let neg = t.starts_with('-');
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let off = t.len() - body.len();
    let (ip, fp) = body.split_once('.').unwrap_or((body, ""));
    for (i, c) in body.char_indices() {
        if !(c.is_ascii_digit() || (c == '.' && i == ip.len())) {
            return Err(invalid_digit(c, i + off, "Decimal", 1207));
        }
    }
    if ip.is_empty() && fp.is_empty() {
        return Err(invalid_digit('.', off, "Decimal", 1207));
    }
    let ip = ip.trim_start_matches('0');
    let Some(p) = precision else {
        return Ok(format!(
            "{}{}{}{}",
            if neg { "-" } else { "" },
            if ip.is_empty() { "0" } else { ip },
            if fp.is_empty() { "" } else { "." },
            fp
        ));
    };
    if ip.len() as u32 > p.saturating_sub(scale) {
        return Err(fe(1204, "Numeric data overflow (result precision)", 0));
    }
    // Redshift truncates extra scale digits by default (ROUNDEC rounds; the emulator does not).
    let fp: String = fp.chars().take(scale as usize).collect();
    Ok(format!(
        "{}{}{}{}",
        if neg { "-" } else { "" },
        if ip.is_empty() { "0" } else { ip },
        if fp.is_empty() { "" } else { "." },
        fp
    ))
}

/// A REAL (`single`) or DOUBLE PRECISION.
pub fn float(t: &str, single: bool) -> Result<String, FieldError> {
    let ty = if single { "Float" } else { "Double" };
    let lower = t.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "nan" | "inf" | "+inf" | "-inf" | "infinity" | "+infinity" | "-infinity"
    ) {
        return Ok(t.to_string());
    }
    for (i, c) in t.char_indices() {
        if !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E')) {
            return Err(invalid_digit(c, i, ty, 1208));
        }
    }
    let v: f64 = t.parse().map_err(|_| {
        fe(
            1208,
            format!("Invalid floating point value '{t}', Type: {ty}"),
            0,
        )
    })?;
    if !v.is_finite() || (single && (v.abs() > f32::MAX as f64)) {
        return Err(fe(
            1204,
            format!("Overflow, Value '{t}', Pos 0, Type: {ty}"),
            0,
        ));
    }
    Ok(t.to_string())
}

/// A BOOLEAN literal.
pub fn boolean(t: &str) -> Result<String, FieldError> {
    match t.to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "1" | "on" => Ok("true".into()),
        "f" | "false" | "n" | "no" | "0" | "off" => Ok("false".into()),
        _ => Err(fe(
            1210,
            format!("Invalid boolean value, Value '{t}', Type: Boolean"),
            0,
        )),
    }
}
