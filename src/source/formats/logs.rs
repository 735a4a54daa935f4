//! AWS log layouts (`alb`, `elb`, `vpc_flow`, `cloudfront`, `s3_access`).

use std::collections::VecDeque;

use super::Convert;
use crate::source::framing::{Framing, RecordError};

/// A log-layout converter.
pub struct Log {
    framing: Framing,
}

impl Log {
    /// A converter for `framing`.
    pub fn new(framing: Framing) -> Self {
        Log { framing }
    }
}

impl Convert for Log {
    fn line(
        &mut self,
        _line: u64,
        _gap: u64,
        _bytes: &[u8],
        _out: &mut Vec<u8>,
        _rows: &mut VecDeque<RecordError>,
    ) -> Option<u64> {
        let _ = self.framing;
        None
    }

    fn finish(&mut self, _out: &mut Vec<u8>, _rows: &mut VecDeque<RecordError>) -> Option<u64> {
        None
    }
}
