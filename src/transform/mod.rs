//! The transform layer: a pipeline's `[[pipeline.transform]]` steps, run on the reading thread
//! over each block of records between framing and the destination.
//!
//! A record becomes zero, one or many records. Outputs keep deterministic ordinals, so a
//! retried batch produces the same ids and the destinations' "already delivered" checks hold:
//! output `k` of the record with ordinal `n` gets `n << OUTPUT_BITS | k`. A record whose step
//! fails is rejected alone with a `load_errors` row naming the step, the object and the line;
//! the records around it go on.

mod jq;

use crate::codes;
use crate::config::transform::TransformConfig;
use crate::config::PipelineConfig;
use crate::source::framing::{RecordError, RAW_LIMIT};
use crate::source::reader::{BlockHook, RecordBlock, RecordRef};
use jaq_json::Val;
use std::io::Write;
use std::sync::Arc;

/// Bits of an output ordinal that count a record's outputs: up to 1,048,576 outputs per input
/// record, and 2^44 input records per object.
pub const OUTPUT_BITS: u32 = 20;

/// Why the transforms could not be built (a program that passed the config check always does).
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline:?}: transform[{step}] does not compile: {message}")]
pub struct TransformError {
    /// The pipeline.
    pub pipeline: String,
    /// The step's index.
    pub step: usize,
    /// The compiler's message.
    pub message: String,
}

/// One compiled step.
#[derive(Debug)]
enum Step {
    Jq(jq::Program),
}

/// A pipeline's compiled steps, shared by every reading thread of the pipeline.
#[derive(Debug)]
pub struct Chain {
    steps: Vec<(String, Step)>,
    /// Records are JSON values (every framing but `lines`, whose text becomes a JSON string).
    input_json: bool,
}

impl Chain {
    /// The pipeline's chain, compiled once; `None` when it has no steps.
    pub fn for_pipeline(pipeline: &PipelineConfig) -> Result<Option<Arc<Chain>>, TransformError> {
        if pipeline.transform.is_empty() {
            return Ok(None);
        }
        let mut steps = Vec::with_capacity(pipeline.transform.len());
        for (i, step) in pipeline.transform.iter().enumerate() {
            let compiled = match step {
                TransformConfig::Jq { program, .. } => Step::Jq(
                    jq::Program::compile(program).map_err(|message| TransformError {
                        pipeline: pipeline.name.clone(),
                        step: i,
                        message,
                    })?,
                ),
            };
            steps.push((format!("transform[{i}] ({})", step.label()), compiled));
        }
        Ok(Some(Arc::new(Chain {
            steps,
            input_json: pipeline.source.format.is_json(),
        })))
    }

    /// The chain as the reading threads take it.
    pub fn hook(chain: &Option<Arc<Chain>>) -> Option<Arc<dyn BlockHook>> {
        chain.clone().map(|c| c as Arc<dyn BlockHook>)
    }

    /// Runs every step on one record; the outputs, or the failing step's name and message.
    fn run(&self, bytes: &[u8]) -> Result<Vec<Val>, String> {
        let input = if self.input_json {
            jaq_json::read::parse_single(bytes)
                .map_err(|e| format!("record is not JSON for the transform: {e}"))?
        } else {
            Val::from(String::from_utf8_lossy(bytes).into_owned())
        };
        let mut values = vec![input];
        for (label, step) in &self.steps {
            let mut next = Vec::with_capacity(values.len());
            for v in values {
                match step {
                    Step::Jq(p) => p.run(v, &mut next).map_err(|e| format!("{label}: {e}"))?,
                }
            }
            values = next;
        }
        if values.len() >= 1 << OUTPUT_BITS {
            return Err(format!(
                "the transforms made {} records of one, more than the limit of {}",
                values.len(),
                (1u64 << OUTPUT_BITS) - 1
            ));
        }
        Ok(values)
    }
}

impl BlockHook for Chain {
    fn apply(&self, block: &mut RecordBlock, spare: &mut RecordBlock) {
        spare.clear();
        spare.errors.extend(block.errors.drain(..).map(|mut e| {
            e.ordinal <<= OUTPUT_BITS;
            e
        }));
        for (r, bytes) in block.iter() {
            match self.run(bytes) {
                Ok(outputs) => {
                    for (k, v) in outputs.iter().enumerate() {
                        let start = spare.data.len();
                        write!(spare.data, "{v}").expect("writing to a Vec cannot fail");
                        spare.records.push(RecordRef {
                            start,
                            end: spare.data.len(),
                            line: r.line,
                            ordinal: r.ordinal << OUTPUT_BITS | k as u64,
                        });
                    }
                }
                Err(reason) => spare.errors.push(RecordError {
                    err_code: codes::TRANSFORM_FAILED,
                    reason,
                    line: r.line,
                    ordinal: r.ordinal << OUTPUT_BITS,
                    raw: bytes[..bytes.len().min(RAW_LIMIT)].to_vec(),
                }),
            }
        }
        spare.errors.sort_by_key(|e| e.ordinal);
        std::mem::swap(block, spare);
    }
}

#[cfg(test)]
mod tests;
