//! Packing records into request bodies of at most `max_request_bytes`: envelopes are
//! appended to a pooled buffer; the record that overflows it starts the next body. Bodies of
//! delivered requests come back to the pool when nothing else holds them.

use super::encode::ObjectMeta;
use super::state::{Chunk, RecordSpan};
use super::SplunkDestination;
use crate::config::HecEndpoint;
use crate::source::reader::RecordRef;
use bytes::BytesMut;

/// Packs records into request bodies of at most `max` bytes.
pub struct Builder {
    buf: BytesMut,
    records: Vec<RecordSpan>,
    object: Option<u32>,
    max: usize,
    free: Vec<BytesMut>,
}

impl Builder {
    pub fn new(max: usize) -> Builder {
        Builder {
            buf: BytesMut::new(),
            records: Vec::new(),
            object: None,
            max,
            free: Vec::new(),
        }
    }

    fn fresh(&mut self) -> BytesMut {
        self.free
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.max + self.max / 8))
    }

    /// Takes back a delivered body for reuse when nothing else holds it.
    pub fn recycle(&mut self, body: bytes::Bytes) {
        if let Ok(mut b) = body.try_into_mut() {
            if b.capacity() >= self.max && self.free.len() < 4 {
                b.clear();
                self.free.push(b);
            }
        }
    }

    /// The request built so far, if it holds records.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.records.is_empty() {
            return None;
        }
        let next = self.fresh();
        let body = std::mem::replace(&mut self.buf, next).freeze();
        Some(Chunk {
            body,
            records: std::mem::take(&mut self.records),
            ack: None,
            maybe_indexed: false,
            sent: 0,
        })
    }

    /// Adds a record; returns a full request when this record did not fit in it (the record
    /// then starts the next one).
    pub fn push(
        &mut self,
        dest: &SplunkDestination,
        meta: &ObjectMeta,
        object: u32,
        r: RecordRef,
        bytes: &[u8],
    ) -> Option<Chunk> {
        let enc = &dest.encoder;
        let mut full = None;
        if enc.endpoint() == HecEndpoint::Raw
            && enc.source_per_object()
            && self.object.is_some_and(|o| o != object)
        {
            full = self.finish();
        }
        self.object = Some(object);
        if self.buf.capacity() == 0 {
            self.buf = self.fresh();
        }
        let start = self.buf.len();
        let event = enc.push(meta, bytes, &mut self.buf);
        let mut span = RecordSpan {
            object,
            line: r.line,
            ordinal: r.ordinal,
            start: start as u32,
            event: (event.start as u32, event.end as u32),
        };
        if self.buf.len() > self.max && !self.records.is_empty() {
            let mut next = self.fresh();
            next.extend_from_slice(&self.buf[start..]);
            self.buf.truncate(start);
            let body = std::mem::replace(&mut self.buf, next).freeze();
            full = Some(Chunk {
                body,
                records: std::mem::take(&mut self.records),
                ack: None,
                maybe_indexed: false,
                sent: 0,
            });
            let d = start as u32;
            span.start -= d;
            span.event = (span.event.0 - d, span.event.1 - d);
        }
        self.records.push(span);
        full
    }
}
