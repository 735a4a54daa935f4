//! `[[pipeline.transform]]`: the steps run on every record between framing and the
//! destination, and the check that compiles each jq program once at startup, so a typo is
//! refused with the field that holds it instead of rejecting every record.

use serde::Deserialize;

/// One step of a pipeline's transform chain, run in the order written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// `type = "jq"`: a jq program (the jq dialect of the `jaq` crates) that maps each record
    /// to zero, one or many records.
    Jq {
        /// The program, e.g. `del(.debug) | .host = .hostname`; `.Records[]` splits an array.
        program: String,
        /// A name for logs and `load_errors` rows; `jq` when absent.
        #[serde(default)]
        name: Option<String>,
    },
}

impl TransformConfig {
    /// The name rows and logs give the step: the configured one, else its type.
    pub fn label(&self) -> &str {
        match self {
            TransformConfig::Jq { name, .. } => name.as_deref().unwrap_or("jq"),
        }
    }
}

/// A compiled jq program, ready to run on any thread.
pub type JqFilter =
    jaq_core::compile::Filter<jaq_core::Native<jaq_core::data::JustLut<jaq_json::Val>>>;

/// Compiles a jq program with jq's standard library; the error names what is wrong and where.
pub fn compile_jq(program: &str) -> Result<JqFilter, String> {
    use jaq_core::load::{Arena, File, Loader};
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let loader = Loader::new(defs);
    let file = File {
        code: program,
        path: (),
    };
    let modules = loader.load(&arena, file).map_err(|errs| {
        let all = errs
            .into_iter()
            .flat_map(|(_, e)| load_problems(program, e));
        describe(program, all)
    })?;
    jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            let all = errs.into_iter().flat_map(|(_, undefined)| {
                undefined.into_iter().map(|(name, u)| match u {
                    jaq_core::compile::Undefined::Filter(arity) => {
                        format!("undefined filter {name}/{arity}")
                    }
                    u => format!("undefined {} {name}", u.as_str()),
                })
            });
            describe(program, all)
        })
}

/// Byte offset of `at` (a slice of `program`) in `program`.
fn offset(program: &str, at: &str) -> usize {
    (at.as_ptr() as usize)
        .saturating_sub(program.as_ptr() as usize)
        .min(program.len())
}

fn load_problems(program: &str, e: jaq_core::load::Error<&str>) -> Vec<String> {
    use jaq_core::load::Error;
    match e {
        Error::Io(v) => v
            .into_iter()
            .map(|(path, e)| format!("{path}: {e}"))
            .collect(),
        Error::Lex(v) => v
            .into_iter()
            .map(|(expect, at)| {
                format!(
                    "expected {} at byte {}",
                    expect.as_str(),
                    offset(program, at)
                )
            })
            .collect(),
        Error::Parse(v) => v
            .into_iter()
            .map(|(expect, at)| {
                format!(
                    "expected {} at byte {}",
                    expect.as_str(),
                    offset(program, at)
                )
            })
            .collect(),
    }
}

fn describe(program: &str, errors: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = errors.collect();
    format!(
        "jq program {program:?} does not compile: {}",
        all.join("; ")
    )
}

/// Checks a pipeline's steps; returns the field (relative to the pipeline) and the problem.
pub fn validate(steps: &[TransformConfig], redshift: bool) -> Result<(), (String, String)> {
    if redshift && !steps.is_empty() {
        return Err((
            "transform".into(),
            "a redshift destination COPYs the staged objects as they are, so it cannot run \
             transforms yet; use a file, elasticsearch or splunk destination, or transform \
             before staging"
                .into(),
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        match step {
            TransformConfig::Jq { program, .. } => {
                if program.trim().is_empty() {
                    return Err((
                        format!("transform[{i}].program"),
                        "must not be empty".into(),
                    ));
                }
                compile_jq(program).map_err(|e| (format!("transform[{i}].program"), e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jq(program: &str) -> TransformConfig {
        TransformConfig::Jq {
            program: program.into(),
            name: None,
        }
    }

    #[test]
    fn programs_compile_or_are_refused_with_the_field() {
        assert!(validate(&[jq("del(.debug)"), jq(".Records[]")], false).is_ok());
        let (field, problem) = validate(&[jq("."), jq(".a |")], false).unwrap_err();
        assert_eq!(field, "transform[1].program");
        assert!(
            problem.ends_with("does not compile: expected term at byte 4"),
            "{problem}"
        );
        let (field, problem) = validate(&[jq("nosuchfunction(1)")], false).unwrap_err();
        assert_eq!(field, "transform[0].program");
        assert!(
            problem.ends_with("undefined filter nosuchfunction/1"),
            "{problem}"
        );
        let (field, _) = validate(&[jq("  ")], false).unwrap_err();
        assert_eq!(field, "transform[0].program");
        let (field, problem) = validate(&[jq(".")], true).unwrap_err();
        assert_eq!(field, "transform");
        assert!(problem.contains("redshift"), "{problem}");
    }
}
