//! `type = "lambda"`: Firehose's data-transformation contract
//! (<https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html>), so a function
//! written for Firehose works unchanged. Records go in events of up to `buffer_size_mib`
//! (`invocationId`, `deliveryStreamArn`, `region`, `records` of `recordId`,
//! `approximateArrivalTimestamp` and base64 `data`); each answer record is `Ok` (its data
//! delivered), `Dropped`, or `ProcessingFailed`, and a record the answer leaves out or names
//! with an unknown `recordId` has failed. A function error, a throttle or a timeout is retried
//! `retries` times; then the invocation's records fail.

use crate::config::transform::LambdaStep;
use aws_sdk_lambda::primitives::Blob;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Lambda's synchronous request payload limit, in bytes.
pub const MAX_PAYLOAD: usize = 6_291_456;

/// Bytes an event spends around each record's base64 data (id, timestamp, keys).
const PER_RECORD_OVERHEAD: usize = 96;

/// What the function made of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver this data.
    Ok(Vec<u8>),
    /// Deliver nothing, and it is no error.
    Dropped,
    /// The record is rejected, for this reason.
    Failed(String),
}

/// A configured function and its client.
pub struct Lambda {
    client: aws_sdk_lambda::Client,
    function: String,
    buffer_bytes: usize,
    retries: u32,
    timeout: Duration,
    stream_arn: String,
    region: String,
    runtime: tokio::runtime::Handle,
    /// The pipeline and the step's label, for the invocation counter.
    pipeline: String,
    step: String,
}

impl std::fmt::Debug for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lambda")
            .field("function", &self.function)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    records: Vec<AnswerRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerRecord {
    record_id: String,
    result: String,
    #[serde(default)]
    data: Option<String>,
}

impl Lambda {
    /// The step's client, from the pipeline's AWS identity; must run inside the runtime.
    pub fn new(
        step: &LambdaStep,
        sdk: &aws_config::SdkConfig,
        pipeline: &str,
        label: &str,
    ) -> Result<Lambda, String> {
        let region = step
            .region()
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .ok_or_else(|| "no region: set region or [s3] region".to_string())?;
        let mut b = aws_sdk_lambda::config::Builder::from(sdk)
            .region(aws_sdk_lambda::config::Region::new(region.clone()))
            // Retries are counted here, against `retries`, as Firehose counts them.
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled());
        if let Some(url) = &step.endpoint_url {
            b = b.endpoint_url(url);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "a lambda step is built inside the daemon's runtime".to_string())?;
        Ok(Lambda {
            client: aws_sdk_lambda::Client::from_conf(b.build()),
            function: step.function_name.clone(),
            buffer_bytes: (step.buffer_size_mib * 1_048_576.0) as usize,
            retries: step.retries,
            timeout: Duration::from_secs(step.timeout_s),
            stream_arn: step.delivery_stream_arn.clone().unwrap_or_else(|| {
                format!("arn:aws:firehose:{region}:000000000000:deliverystream/{pipeline}")
            }),
            region,
            runtime,
            pipeline: pipeline.to_string(),
            step: label.to_string(),
        })
    }

    /// One verdict per record, in order; `arrival_ms` is every record's arrival time. Blocks
    /// the calling (reading) thread while the invocations run.
    pub fn run(&self, records: &[&[u8]], arrival_ms: i64) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(records.len());
        let mut start = 0;
        while start < records.len() {
            let (mut end, mut raw, mut payload) = (start, 0usize, 256usize);
            while end < records.len() {
                let encoded = records[end].len().div_ceil(3) * 4 + PER_RECORD_OVERHEAD;
                let fits = raw + records[end].len() <= self.buffer_bytes
                    && payload + encoded <= MAX_PAYLOAD;
                if end > start && !fits {
                    break;
                }
                raw += records[end].len();
                payload += encoded;
                end += 1;
            }
            if payload > MAX_PAYLOAD {
                // One record alone is past the limit: Lambda would refuse the request.
                verdicts.push(Verdict::Failed(format!(
                    "the record makes an invocation of {payload} bytes, past Lambda's {MAX_PAYLOAD}-byte payload limit"
                )));
            } else {
                let chunk = &records[start..end];
                verdicts.extend(self.runtime.block_on(self.invoke(chunk, arrival_ms)));
            }
            start = end;
        }
        verdicts
    }

    /// One invocation of `records`, retried; one verdict per record.
    async fn invoke(&self, records: &[&[u8]], arrival_ms: i64) -> Vec<Verdict> {
        let event = serde_json::json!({
            "invocationId": uuid::Uuid::new_v4().to_string(),
            "deliveryStreamArn": self.stream_arn,
            "region": self.region,
            "records": records.iter().enumerate().map(|(i, r)| serde_json::json!({
                "recordId": i.to_string(),
                "approximateArrivalTimestamp": arrival_ms,
                "data": B64.encode(r),
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec(&event).expect("an event serializes");
        let mut wait = Duration::from_millis(200);
        let mut last = String::new();
        let count = |outcome: &'static str| {
            metrics::counter!(crate::telemetry::LAMBDA_INVOCATIONS,
                "pipeline" => self.pipeline.clone(), "step" => self.step.clone(), "outcome" => outcome)
            .increment(1);
        };
        for attempt in 0..=self.retries {
            if attempt > 0 {
                count("retried");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            let call = self
                .client
                .invoke()
                .function_name(&self.function)
                .payload(Blob::new(body.clone()))
                .send();
            let out = match tokio::time::timeout(self.timeout, call).await {
                Err(_) => {
                    last = format!("no answer within {} s", self.timeout.as_secs());
                    continue;
                }
                Ok(Err(e)) => {
                    last = aws_sdk_lambda::error::DisplayErrorContext(&e).to_string();
                    continue;
                }
                Ok(Ok(out)) => out,
            };
            let payload = out.payload().map(|p| p.as_ref()).unwrap_or_default();
            if let Some(kind) = out.function_error() {
                last = format!(
                    "function error ({kind}): {}",
                    String::from_utf8_lossy(&payload[..payload.len().min(512)])
                );
                continue;
            }
            count("ok");
            return match serde_json::from_slice::<Answer>(payload) {
                Ok(answer) => verdicts(records.len(), answer),
                Err(e) => {
                    let why = format!(
                        "the function's answer is not a Firehose transformation result: {e}"
                    );
                    vec![Verdict::Failed(why); records.len()]
                }
            };
        }
        count("failed");
        let why = format!(
            "invoking {} failed {} time(s): {last}",
            self.function,
            self.retries + 1
        );
        vec![Verdict::Failed(why); records.len()]
    }
}

/// Maps an answer back onto the `n` records sent (ids `0..n`).
fn verdicts(n: usize, answer: Answer) -> Vec<Verdict> {
    let mut by_id: HashMap<String, AnswerRecord> = answer
        .records
        .into_iter()
        .map(|r| (r.record_id.clone(), r))
        .collect();
    (0..n)
        .map(|i| match by_id.remove(&i.to_string()) {
            None => Verdict::Failed(format!(
                "the function's answer has no record with recordId \"{i}\""
            )),
            Some(r) => match r.result.as_str() {
                "Ok" => match B64.decode(r.data.unwrap_or_default()) {
                    Ok(data) => Verdict::Ok(data),
                    Err(e) => Verdict::Failed(format!("the function's data is not base64: {e}")),
                },
                "Dropped" => Verdict::Dropped,
                "ProcessingFailed" => {
                    Verdict::Failed("the function answered ProcessingFailed".into())
                }
                other => Verdict::Failed(format!(
                    "the function answered result {other:?} (not Ok, Dropped or ProcessingFailed)"
                )),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn answers_map_back_by_record_id() {
        let a = answer(
            r#"{"records":[
                {"recordId":"1","result":"Dropped","data":""},
                {"recordId":"0","result":"Ok","data":"eyJhIjoxfQo="},
                {"recordId":"9","result":"Ok","data":"eA=="},
                {"recordId":"3","result":"ProcessingFailed","data":"eA=="},
                {"recordId":"4","result":"Maybe"}
            ]}"#,
        );
        let v = verdicts(6, a);
        assert_eq!(v[0], Verdict::Ok(b"{\"a\":1}\n".to_vec()));
        assert_eq!(v[1], Verdict::Dropped);
        assert!(matches!(&v[2], Verdict::Failed(m) if m.contains("recordId \"2\"")));
        assert!(matches!(&v[3], Verdict::Failed(m) if m.contains("ProcessingFailed")));
        assert!(matches!(&v[4], Verdict::Failed(m) if m.contains("Maybe")));
        assert!(matches!(&v[5], Verdict::Failed(m) if m.contains("recordId \"5\"")));
    }
}
