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
    /// `type = "lambda"`: an AWS Lambda function called with Firehose's data-transformation
    /// event, so a Firehose transform Lambda works unchanged.
    Lambda(LambdaStep),
}

/// `[[pipeline.transform]] type = "lambda"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaStep {
    /// The function: a name, a name with `:alias`, or an ARN.
    pub function_name: String,
    /// A name for logs and `load_errors` rows; `lambda` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Records' bytes per invocation, MiB (0.2 to 3, as Firehose's processor buffer size);
    /// an invocation never exceeds Lambda's 6 MB request payload.
    #[serde(default = "default_buffer_size_mib")]
    pub buffer_size_mib: f64,
    /// Invocations retried after a function error, a throttle or a timeout (0 to 300, 3 by
    /// default as in Firehose); then the invocation's records are rejected.
    #[serde(default = "default_lambda_retries")]
    pub retries: u32,
    /// Seconds to wait for one invocation's answer (1 to 900).
    #[serde(default = "default_lambda_timeout_s")]
    pub timeout_s: u64,
    /// The function's region; `[s3] region` when absent (an ARN's region wins).
    #[serde(default)]
    pub region: Option<String>,
    /// Another Lambda endpoint (a VPC endpoint, a local stand-in).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The `deliveryStreamArn` the event carries, for functions that read it;
    /// `arn:aws:firehose:<region>:000000000000:deliverystream/<pipeline>` when absent.
    #[serde(default)]
    pub delivery_stream_arn: Option<String>,
}

fn default_buffer_size_mib() -> f64 {
    1.0
}

fn default_lambda_retries() -> u32 {
    3
}

fn default_lambda_timeout_s() -> u64 {
    60
}

impl LambdaStep {
    /// The region to call: the ARN's, else the configured one.
    pub fn region(&self) -> Option<String> {
        let arn: Vec<&str> = self.function_name.split(':').collect();
        if arn.len() >= 7 && arn[0] == "arn" && arn[2] == "lambda" {
            return Some(arn[3].to_string());
        }
        self.region.clone()
    }
}

impl TransformConfig {
    /// The name rows and logs give the step: the configured one, else its type.
    pub fn label(&self) -> &str {
        match self {
            TransformConfig::Jq { name, .. } => name.as_deref().unwrap_or("jq"),
            TransformConfig::Lambda(l) => l.name.as_deref().unwrap_or("lambda"),
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
    let expected =
        |what: &str, at: &str| format!("expected {what} at byte {}", offset(program, at));
    match e {
        Error::Io(v) => v
            .into_iter()
            .map(|(path, e)| format!("{path}: {e}"))
            .collect(),
        Error::Lex(v) => v.iter().map(|(x, at)| expected(x.as_str(), at)).collect(),
        Error::Parse(v) => v.iter().map(|(x, at)| expected(x.as_str(), at)).collect(),
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
            TransformConfig::Lambda(l) => {
                let at = |f: &str| format!("transform[{i}].{f}");
                if l.function_name.trim().is_empty() {
                    return Err((at("function_name"), "must not be empty".into()));
                }
                if !(0.2..=3.0).contains(&l.buffer_size_mib) {
                    return Err((at("buffer_size_mib"), "must be 0.2 to 3".into()));
                }
                if l.retries > 300 {
                    return Err((at("retries"), "must be 0 to 300".into()));
                }
                if !(1..=900).contains(&l.timeout_s) {
                    return Err((at("timeout_s"), "must be 1 to 900".into()));
                }
                if let Some(u) = &l.endpoint_url {
                    if !u.starts_with("http://") && !u.starts_with("https://") {
                        return Err((at("endpoint_url"), format!("{u:?} is not an http(s) URL")));
                    }
                }
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
        let lambda = |extra: &str| -> TransformConfig {
            toml::from_str(&format!(
                "type = \"lambda\"\nfunction_name = \"f\"\n{extra}"
            ))
            .unwrap()
        };
        let TransformConfig::Lambda(l) = lambda("") else {
            panic!("a lambda step")
        };
        assert_eq!((l.buffer_size_mib, l.retries, l.timeout_s), (1.0, 3, 60));
        assert!(validate(&[lambda("buffer_size_mib = 3")], false).is_ok());
        for (extra, field) in [
            ("buffer_size_mib = 0.1", "buffer_size_mib"),
            ("buffer_size_mib = 4", "buffer_size_mib"),
            ("retries = 301", "retries"),
            ("timeout_s = 0", "timeout_s"),
            ("endpoint_url = \"localhost:9\"", "endpoint_url"),
        ] {
            let (f, _) = validate(&[jq("."), lambda(extra)], false).unwrap_err();
            assert_eq!(f, format!("transform[1].{field}"), "{extra}");
        }
        let arn = LambdaStep {
            function_name: "arn:aws:lambda:eu-west-1:1:function:f".into(),
            region: Some("us-east-1".into()),
            ..l
        };
        assert_eq!(
            arn.region().as_deref(),
            Some("eu-west-1"),
            "the ARN's region wins"
        );
        let (field, problem) = validate(&[jq(".")], true).unwrap_err();
        assert_eq!(field, "transform");
        assert!(problem.contains("redshift"), "{problem}");
    }
}
