//! What an Elasticsearch batch keeps between attempts: the documents to send again and where
//! reading stopped, so a retry never re-reads what was delivered nor reports a rejection twice.

use super::bulk::Pending;
use crate::destination::Resume;
use std::collections::HashSet;

/// What is left of a batch between attempts (the payload of [`Resume`]).
#[derive(Debug, Clone)]
pub struct Progress {
    /// Documents to send again, with their action lines.
    pub retry: Vec<Pending>,
    /// (object index, ordinal) of the first record never sent; `None` once all were read.
    pub cursor: Option<(usize, u64)>,
    /// Framing rejections before this (object index, ordinal) were already reported.
    pub errors_before: (usize, u64),
    /// Objects already skipped on their own (missing, corrupt) and reported.
    pub settled: HashSet<usize>,
}

impl Progress {
    /// Nothing sent yet.
    pub fn start() -> Self {
        Progress {
            retry: Vec::new(),
            cursor: Some((0, 0)),
            errors_before: (0, 0),
            settled: HashSet::new(),
        }
    }

    /// The progress a resume carries, or a fresh start.
    pub fn from_resume(resume: Option<Resume>) -> Self {
        resume
            .and_then(|r| r.0.downcast::<Progress>().ok())
            .map(|p| *p)
            .unwrap_or_else(Progress::start)
    }
}
