//! `path_bench`'s queues for `--via sqs`: the in-memory stand-in or a moto queue, how the
//! notifications are put on each, and a plain client's drain of the same notifications.

use super::{notify, sqs_standin};
use std::time::Duration;

/// The queue the notifications go to.
pub enum Queue {
    /// The in-memory stand-in.
    StandIn(sqs_standin::StandIn),
    /// A queue on the stack's moto server: its client and URL.
    Moto(aws_sdk_sqs::Client, String),
}

impl Queue {
    /// The queue's URL.
    pub fn url(&self) -> &str {
        match self {
            Queue::StandIn(s) => &s.queue_url,
            Queue::Moto(_, url) => url,
        }
    }

    /// Puts the notifications on the queue: SendMessageBatch to moto, in memory to the stand-in.
    pub async fn send(&self, bodies: Vec<String>, at_once: usize) -> anyhow::Result<()> {
        match self {
            Queue::StandIn(s) => s.push(bodies),
            Queue::Moto(sqs, url) => notify::send_all(sqs, url, bodies, at_once).await?,
        }
        Ok(())
    }

    /// Deletes a moto queue.
    pub async fn remove(&self) {
        if let Queue::Moto(sqs, url) = self {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
    }
}

/// A plain client's receive-and-delete time over the same notifications, on a queue of the same
/// kind, with as many receives in flight as the loader makes.
pub async fn raw(
    queue: &Queue,
    bucket: &str,
    bodies: Vec<String>,
    send_concurrency: usize,
    delay: Duration,
) -> anyhow::Result<f64> {
    let n = bodies.len();
    let at_once = stageload::discovery::sqs::RECEIVES_AT_ONCE;
    let raw = match queue {
        Queue::StandIn(_) => Queue::StandIn(sqs_standin::StandIn::start(delay).await?),
        Queue::Moto(sqs, _) => {
            let url = notify::create_queue(sqs, &format!("{bucket}-raw")).await?;
            Queue::Moto(sqs.clone(), url)
        }
    };
    raw.send(bodies, send_concurrency).await?;
    let origin = raw
        .url()
        .rsplitn(3, '/')
        .last()
        .unwrap_or_default()
        .to_string();
    let s = notify::raw_drain(&notify::client(&origin)?, raw.url(), n, at_once).await?;
    raw.remove().await;
    Ok(s)
}
