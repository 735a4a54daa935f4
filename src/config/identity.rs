//! Checks of the AWS identity settings a pipeline may carry: `[pipeline.source] region`,
//! `role_arn`, `external_id` and `session_name`, and a destination's `aws_role_arn` and
//! `aws_external_id` (see [`crate::aws`]).

use crate::aws::{role_arn_problem, sts_string_problem};

/// Checks a role, its external id and session name; returns the field (named with `prefix`)
/// and the problem.
pub fn check_role(
    prefix: &str,
    role_arn: Option<&str>,
    external_id: Option<&str>,
    session_name: Option<&str>,
) -> Result<(), (String, String)> {
    let field = |f: &str| format!("{prefix}{f}");
    if role_arn.is_none() {
        for (f, v) in [("external_id", external_id), ("session_name", session_name)] {
            if v.is_some() {
                return Err((field(f), "is only read with a role_arn".into()));
            }
        }
        return Ok(());
    }
    if let Some(p) = role_arn.and_then(role_arn_problem) {
        return Err((field("role_arn"), p));
    }
    if let Some(p) = external_id.and_then(|v| sts_string_problem(v, 1224, ":/")) {
        return Err((field("external_id"), p));
    }
    if let Some(p) = session_name.and_then(|v| sts_string_problem(v, 64, "")) {
        return Err((field("session_name"), p));
    }
    Ok(())
}

/// Checks a region name (`eu-west-1`): lowercase letters, digits and dashes.
pub fn check_region(field: &str, region: Option<&str>) -> Result<(), (String, String)> {
    match region {
        Some(r)
            if r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
        {
            Err((
                field.to_string(),
                format!("{r:?} is not an AWS region name (eu-west-1)"),
            ))
        }
        _ => Ok(()),
    }
}
