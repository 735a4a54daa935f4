//! The transform layer: a pipeline's `[[pipeline.transform]]` steps, run on the reading thread
//! over each block of records between framing and the destination.
//!
//! A record becomes zero, one or many records. Outputs keep deterministic ordinals, so a
//! retried batch produces the same ids and the destinations' "already delivered" checks hold:
//! output `k` of the record with ordinal `n` gets `n << OUTPUT_BITS | k`. A record whose step
//! fails is rejected alone with a `load_errors` row naming the step, the object and the line;
//! the records around it go on.

mod jq;
mod lambda;

use crate::codes;
use crate::config::transform::TransformConfig;
use crate::config::PipelineConfig;
use crate::source::framing::{RecordError, RAW_LIMIT};
use crate::source::reader::{BlockHook, RecordBlock, RecordRef};
use jaq_json::Val;
use std::sync::Arc;

/// Bits of an output ordinal that count a record's outputs: up to 1,048,575 outputs per input
/// record, and 2^44 input records per object.
pub const OUTPUT_BITS: u32 = 20;

/// Why the transforms could not be built.
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline:?}: transform[{step}]: {message}")]
pub struct TransformError {
    /// The pipeline.
    pub pipeline: String,
    /// The step's index.
    pub step: usize,
    /// What went wrong.
    pub message: String,
}

/// One compiled step.
#[derive(Debug)]
enum Step {
    Jq(jq::Program),
    Lambda(Box<lambda::Lambda>),
}

/// A record between steps: the record as read (its bytes in the block), JSON a jq step made,
/// or bytes as a Lambda answered.
enum Value {
    Source,
    Json(Val),
    /// Bytes, and whether they are JSON text (a `lines` record is not: jq gets it as a string).
    Raw(Vec<u8>, bool),
}

/// One value on its way, and the index (in the block) of the record it came from.
struct Item {
    src: usize,
    value: Value,
}

/// A pipeline's compiled steps, shared by every reading thread of the pipeline.
#[derive(Debug)]
pub struct Chain {
    pipeline: String,
    steps: Vec<(String, Step)>,
    /// Records are JSON values (every framing but `lines`, whose text becomes a JSON string).
    input_json: bool,
}

impl Chain {
    /// The pipeline's chain, built once; `None` when it has no steps. `sdk` is the AWS
    /// identity Lambda steps call with (none in tests of jq steps alone).
    pub fn for_pipeline(
        pipeline: &PipelineConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Option<Arc<Chain>>, TransformError> {
        if pipeline.transform.is_empty() {
            return Ok(None);
        }
        let mut steps = Vec::with_capacity(pipeline.transform.len());
        for (i, step) in pipeline.transform.iter().enumerate() {
            let fail = |message: String| TransformError {
                pipeline: pipeline.name.clone(),
                step: i,
                message,
            };
            let label = format!("transform[{i}] ({})", step.label());
            let compiled = match step {
                TransformConfig::Jq { program, .. } => {
                    Step::Jq(jq::Program::compile(program).map_err(fail)?)
                }
                TransformConfig::Lambda(l) => {
                    let sdk = sdk.ok_or_else(|| fail("no AWS configuration".into()))?;
                    Step::Lambda(Box::new(
                        lambda::Lambda::new(l, sdk, &pipeline.name, &label).map_err(fail)?,
                    ))
                }
            };
            steps.push((label, compiled));
        }
        Ok(Some(Arc::new(Chain {
            pipeline: pipeline.name.clone(),
            steps,
            input_json: pipeline.source.format.is_json(),
        })))
    }

    /// The chain as the reading threads take it.
    pub fn hook(chain: &Option<Arc<Chain>>) -> Option<Arc<dyn BlockHook>> {
        chain.clone().map(|c| c as Arc<dyn BlockHook>)
    }
}

/// What a step reads: the block's records, and whether they are JSON text.
struct Input<'a> {
    block: &'a RecordBlock,
    json: bool,
}

impl Input<'_> {
    fn bytes(&self, src: usize) -> &[u8] {
        let r = self.block.records[src];
        &self.block.data[r.start..r.end]
    }
}

/// Parses JSON text into jq's value (through serde_json's parser, faster than jaq's own).
fn parse(bytes: &[u8]) -> Result<Val, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("record is not JSON: {e}"))
}

/// Runs a jq step on every item; failures are recorded against their record.
fn run_jq(
    p: &jq::Program,
    label: &str,
    input: &Input,
    items: Vec<Item>,
    failed: &mut [Option<String>],
) -> Vec<Item> {
    let mut next = Vec::with_capacity(items.len());
    let mut out = Vec::new();
    for item in items {
        if failed[item.src].is_some() {
            continue;
        }
        let text = |bytes: &[u8]| Val::from(String::from_utf8_lossy(bytes).into_owned());
        let value = match item.value {
            Value::Json(v) => Ok(v),
            Value::Source if input.json => parse(input.bytes(item.src)),
            Value::Source => Ok(text(input.bytes(item.src))),
            Value::Raw(bytes, true) => parse(&bytes),
            Value::Raw(bytes, false) => Ok(text(&bytes)),
        };
        out.clear();
        let ran = value
            .and_then(|v| p.run(v, &mut out))
            .map_err(|e| format!("{label}: {e}"));
        match ran {
            Ok(()) => next.extend(out.drain(..).map(|v| Item {
                src: item.src,
                value: Value::Json(v),
            })),
            Err(reason) => failed[item.src] = Some(reason),
        }
    }
    next.retain(|i| failed[i.src].is_none());
    next
}

/// Runs a Lambda step on every item: data holding several lines becomes several records.
fn run_lambda(
    l: &lambda::Lambda,
    label: &str,
    input: &Input,
    items: Vec<Item>,
    failed: &mut [Option<String>],
) -> Vec<Item> {
    let items: Vec<Item> = items
        .into_iter()
        .filter(|i| failed[i.src].is_none())
        .collect();
    // Only values a jq step made need writing out; the others are sent as they are.
    let bytes: Vec<std::borrow::Cow<[u8]>> = items
        .iter()
        .map(|i| match &i.value {
            Value::Source => input.bytes(i.src).into(),
            Value::Json(v) => v.to_string().into_bytes().into(),
            Value::Raw(b, _) => b.as_slice().into(),
        })
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_ref()).collect();
    let arrival_ms = chrono::Utc::now().timestamp_millis();
    let mut next = Vec::with_capacity(items.len());
    for (item, verdict) in items.iter().zip(l.run(&refs, arrival_ms)) {
        match verdict {
            lambda::Verdict::Ok(data) => next.extend(
                data.split(|b| *b == b'\n')
                    .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                    .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                    .map(|line| Item {
                        src: item.src,
                        value: Value::Raw(line.to_vec(), true),
                    }),
            ),
            lambda::Verdict::Dropped => {}
            lambda::Verdict::Failed(reason) => {
                failed[item.src].get_or_insert(format!("{label}: {reason}"));
            }
        }
    }
    next.retain(|i| failed[i.src].is_none());
    next
}

impl BlockHook for Chain {
    fn apply(&self, block: &mut RecordBlock, spare: &mut RecordBlock) {
        spare.clear();
        spare.errors.extend(block.errors.drain(..).map(|mut e| {
            e.ordinal <<= OUTPUT_BITS;
            e
        }));
        let mut failed: Vec<Option<String>> = vec![None; block.records.len()];
        let input = Input {
            block,
            json: self.input_json,
        };
        let mut items: Vec<Item> = (0..block.records.len())
            .map(|src| Item {
                src,
                value: Value::Source,
            })
            .collect();
        let mut failed_so_far = 0;
        for (label, step) in &self.steps {
            let entering = items.len() as u64;
            items = match step {
                Step::Jq(p) => run_jq(p, label, &input, items, &mut failed),
                Step::Lambda(l) => run_lambda(l, label, &input, items, &mut failed),
            };
            let failed_now = failed.iter().filter(|f| f.is_some()).count();
            let counts = [
                ("in", entering),
                ("out", items.len() as u64),
                ("failed", (failed_now - failed_so_far) as u64),
            ];
            failed_so_far = failed_now;
            for (outcome, n) in counts {
                metrics::counter!(crate::telemetry::TRANSFORM_RECORDS,
                    "pipeline" => self.pipeline.clone(), "step" => label.clone(), "outcome" => outcome)
                .increment(n);
            }
        }
        let mut counts = vec![0u64; block.records.len()];
        for item in &items {
            counts[item.src] += 1;
        }
        for (src, n) in counts.iter().enumerate() {
            if *n >= 1 << OUTPUT_BITS && failed[src].is_none() {
                failed[src] = Some(format!(
                    "the transforms made {n} records of one, more than the limit of {}",
                    (1u64 << OUTPUT_BITS) - 1
                ));
            }
        }
        // One JSON value per line, no spaces: jq's `-c`.
        let compact = jaq_json::write::Pp::default();
        let mut k = 0u64;
        let mut last = usize::MAX;
        for item in items {
            if failed[item.src].is_some() {
                continue;
            }
            k = if item.src == last { k + 1 } else { 0 };
            last = item.src;
            let r = block.records[item.src];
            let start = spare.data.len();
            match item.value {
                Value::Source => spare.data.extend_from_slice(input.bytes(item.src)),
                Value::Json(v) => jaq_json::write::write(&mut spare.data, &compact, 0, &v)
                    .expect("writing to a Vec cannot fail"),
                Value::Raw(bytes, _) => spare.data.extend_from_slice(&bytes),
            }
            spare.records.push(RecordRef {
                start,
                end: spare.data.len(),
                line: r.line,
                ordinal: r.ordinal << OUTPUT_BITS | k,
            });
        }
        for (src, reason) in failed.into_iter().enumerate() {
            if let Some(reason) = reason {
                let r = block.records[src];
                let raw = &block.data[r.start..r.end];
                spare.errors.push(RecordError {
                    err_code: codes::TRANSFORM_FAILED,
                    reason,
                    line: r.line,
                    ordinal: r.ordinal << OUTPUT_BITS,
                    raw: raw[..raw.len().min(RAW_LIMIT)].to_vec(),
                });
            }
        }
        spare.errors.sort_by_key(|e| e.ordinal);
        std::mem::swap(block, spare);
    }
}

#[cfg(test)]
mod tests;
