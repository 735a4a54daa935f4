//! Test hooks: pauses at chosen points of a load, so the integration tests can kill the process
//! exactly there. Set `STAGELOAD_TEST_REDSHIFT_PAUSE=<point>:<ms>[,<point>:<ms>...]` with points
//! `before_copy` (manifest written, no transaction yet), `before_commit` (COPY and marker insert
//! done inside the open transaction) and `after_commit` (committed, not yet settled). Never set
//! in production; unset, nothing pauses.

use std::time::Duration;
use tracing::warn;

/// The environment variable read once when the destination is built.
pub const ENV: &str = "STAGELOAD_TEST_REDSHIFT_PAUSE";

/// Where a load can pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// After the manifest is written, before `BEGIN`.
    BeforeCopy,
    /// Inside the transaction, after COPY and the marker insert, before `COMMIT`.
    BeforeCommit,
    /// After `COMMIT`, before the dispatcher settles the batch.
    AfterCommit,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::BeforeCopy => "before_copy",
            Point::BeforeCommit => "before_commit",
            Point::AfterCommit => "after_commit",
        }
    }
}

/// The configured pauses.
#[derive(Debug, Default)]
pub struct Hooks(Vec<(Point, Duration)>);

impl Hooks {
    /// Reads [`ENV`].
    pub fn from_env() -> Hooks {
        std::env::var(ENV)
            .map(|v| Hooks::parse(&v))
            .unwrap_or_default()
    }

    fn parse(spec: &str) -> Hooks {
        let points = [Point::BeforeCopy, Point::BeforeCommit, Point::AfterCommit];
        Hooks(
            spec.split(',')
                .filter_map(|item| {
                    let (name, ms) = item.trim().split_once(':')?;
                    let point = points.into_iter().find(|p| p.name() == name)?;
                    Some((point, Duration::from_millis(ms.parse().ok()?)))
                })
                .collect(),
        )
    }

    /// Sleeps if a pause is set for `point`, saying so in the log first.
    pub async fn pause(&self, point: Point, pipeline: &str, batch_id: i64) {
        for (p, d) in &self.0 {
            if *p == point {
                warn!(
                    pipeline,
                    batch_id,
                    point = point.name(),
                    ms = d.as_millis() as u64,
                    "test hook: pausing"
                );
                tokio::time::sleep(*d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        let h = Hooks::parse("before_copy:10, after_commit:2000,bogus:1,before_commit:x");
        assert_eq!(
            h.0,
            vec![
                (Point::BeforeCopy, Duration::from_millis(10)),
                (Point::AfterCommit, Duration::from_millis(2000))
            ]
        );
    }
}
