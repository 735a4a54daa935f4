//! Where a queue's notifications go: the running pipelines that name the queue ([`Route`]), and
//! for one created object, which of them stage it, or whether it is the loader's own output
//! (acknowledged and dropped) or a key nobody watches (left for the redrive policy).

use crate::config::PipelineConfig;
use crate::source::s3::S3;
use std::sync::Arc;
use tokio::sync::Notify;

/// One running pipeline a queue's notifications can go to.
#[derive(Clone)]
pub struct Route {
    /// Pipeline name.
    pub pipeline: String,
    /// Its queue (`source.sqs_queue_url`).
    pub queue_url: String,
    /// Its bucket.
    pub bucket: String,
    /// Its prefix.
    pub prefix: String,
    /// Its error and manifest prefixes, whose keys are never staged.
    pub own_prefixes: Vec<String>,
    /// `source.start_at = "now"`: objects created before the pipeline first started are not
    /// staged.
    pub start_at_now: bool,
    /// `source.key_time_zone`: the time zone of the dates in its keys.
    pub key_time_zone: chrono_tz::Tz,
    /// Woken when objects are recorded for it, so it seals without waiting for its tick.
    pub sealer: Arc<Notify>,
    /// Its S3 identity (role and region): the queue is read, and objects HEADed, with it;
    /// `[s3]`'s when None.
    pub s3: Option<S3>,
}

impl Route {
    /// The route to a pipeline that has a queue; None when it has none.
    pub fn of(config: &PipelineConfig, sealer: Arc<Notify>, s3: Option<S3>) -> Option<Route> {
        Some(Route {
            pipeline: config.name.clone(),
            queue_url: config.source.sqs_queue_url.clone()?,
            bucket: config.source.bucket.clone(),
            prefix: config.source.prefix.clone(),
            own_prefixes: config.own_prefixes(),
            start_at_now: config.source.start_at == crate::config::StartAt::Now,
            key_time_zone: config.source.key_time_zone,
            sealer,
            s3,
        })
    }

    /// Whether this pipeline stages `key` of `bucket`.
    fn watches(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(self.prefix.as_str()) && !self.is_own(bucket, key)
    }

    /// Whether `key` of `bucket` is this pipeline's own output (an error artifact, a manifest).
    fn is_own(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket
            && self
                .own_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str()))
    }
}

/// Where one created object goes among a queue's routes.
#[derive(Debug, PartialEq)]
pub(super) enum Destinations {
    /// To these routes (indexes), at least one.
    Pipelines(Vec<usize>),
    /// Nowhere: the loader's own output, acknowledged and dropped.
    Own,
    /// Nowhere: no pipeline watches it, so the message stays for the redrive policy.
    Unwatched,
}

/// Where a created object of `bucket` named `key` goes among `routes`.
pub(super) fn destinations(routes: &[Route], bucket: &str, key: &str) -> Destinations {
    let to: Vec<usize> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.watches(bucket, key))
        .map(|(i, _)| i)
        .collect();
    if !to.is_empty() {
        Destinations::Pipelines(to)
    } else if routes.iter().any(|r| r.is_own(bucket, key)) {
        Destinations::Own
    } else {
        Destinations::Unwatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_queue_urls_origin() {
        assert_eq!(
            crate::config::sqs_endpoint(
                "https://sqs.us-east-1.amazonaws.com/123456789012/stage-events"
            )
            .unwrap(),
            "https://sqs.us-east-1.amazonaws.com"
        );
        assert_eq!(
            crate::config::sqs_endpoint("http://127.0.0.1:5000/123456789012/q").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert!(crate::config::sqs_endpoint("sqs://queue").is_err());
        assert!(crate::config::sqs_endpoint("stage-events").is_err());
    }

    fn route(name: &str, bucket: &str, prefix: &str, own: &[&str]) -> Route {
        Route {
            pipeline: name.into(),
            queue_url: "http://127.0.0.1:1/1/q".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            own_prefixes: own.iter().map(|s| s.to_string()).collect(),
            start_at_now: false,
            key_time_zone: chrono_tz::UTC,
            sealer: Arc::new(Notify::new()),
            s3: None,
        }
    }

    #[test]
    fn a_record_goes_to_every_pipeline_watching_its_key() {
        let routes = vec![
            route("a", "stage", "in/a/", &["errors/a/"]),
            route("b", "stage", "in/b/", &["errors/b/"]),
            route("all", "stage", "in/", &["in/a/errors/"]),
            route("other", "elsewhere", "in/a/", &[]),
        ];
        assert_eq!(
            destinations(&routes, "stage", "in/a/x.json"),
            Destinations::Pipelines(vec![0, 2])
        );
        assert_eq!(
            destinations(&routes, "stage", "in/b/x.json"),
            Destinations::Pipelines(vec![1, 2])
        );
        assert_eq!(
            destinations(&routes, "elsewhere", "in/a/x.json"),
            Destinations::Pipelines(vec![3])
        );
        // Under one pipeline's own prefix: the others that watch it still get it.
        assert_eq!(
            destinations(&routes, "stage", "in/a/errors/x.json"),
            Destinations::Pipelines(vec![0])
        );
        // The loader's own output that no pipeline watches is not left for the redrive policy.
        assert_eq!(
            destinations(&routes, "stage", "errors/a/x.json"),
            Destinations::Own
        );
        assert_eq!(
            destinations(&routes, "stage", "out/x.json"),
            Destinations::Unwatched
        );
        assert_eq!(
            destinations(&routes, "third", "in/a/x.json"),
            Destinations::Unwatched
        );
    }
}
