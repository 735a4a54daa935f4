//! PostgreSQL v3 wire framing: reading the untyped startup packet and typed messages from a socket
//! (cancel-safe, so the proxy can `select!` on both sides), and building the few messages the
//! emulator writes itself (errors, notices, command completion, COPY sub-protocol).

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Protocol code of an SSLRequest startup packet.
pub const SSL_REQUEST: i32 = 80877103;
/// Protocol code of a GSSENCRequest startup packet.
pub const GSSENC_REQUEST: i32 = 80877104;
/// Protocol code of a CancelRequest startup packet.
pub const CANCEL_REQUEST: i32 = 80877102;

/// Largest message accepted from either side; protects against garbage lengths.
const MAX_MESSAGE: usize = 1 << 30;

/// One typed message: tag byte plus body (without the length word).
#[derive(Debug, Clone)]
pub struct Message {
    /// The message type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// The body after the 4-byte length.
    pub body: BytesMut,
}

impl Message {
    /// Serialises the message back into wire form.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.tag);
        out.put_i32(self.body.len() as i32 + 4);
        out.extend_from_slice(&self.body);
    }
}

/// Buffered reader of wire messages whose `next_*` methods are cancel-safe: bytes already read stay
/// in the buffer when a `select!` drops the future.
pub struct MessageReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    async fn fill(&mut self, need: usize) -> std::io::Result<bool> {
        while self.buf.len() < need {
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(true)
    }

    /// Reads the untyped startup packet (length word included in the returned bytes).
    /// `None` at a clean end of stream.
    pub async fn next_startup(&mut self) -> std::io::Result<Option<BytesMut>> {
        if !self.fill(4).await? {
            return Ok(None);
        }
        let len = (&self.buf[..4]).get_i32() as usize;
        if !(8..=MAX_MESSAGE).contains(&len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "bad startup length",
            ));
        }
        self.fill(len).await?;
        Ok(Some(self.buf.split_to(len)))
    }

    /// Returns the next message if it is already complete in the buffer, without reading.
    pub fn next_buffered(&mut self) -> Option<Message> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = (&self.buf[1..5]).get_i32() as usize;
        if !(4..=MAX_MESSAGE).contains(&len) || self.buf.len() < 1 + len {
            return None;
        }
        let tag = self.buf[0];
        self.buf.advance(5);
        let body = self.buf.split_to(len - 4);
        Some(Message { tag, body })
    }

    /// Reads one typed message; `None` at a clean end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Message>> {
        if !self.fill(5).await? {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = (&self.buf[1..5]).get_i32() as usize;
        if !(4..=MAX_MESSAGE).contains(&len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "bad message length",
            ));
        }
        self.fill(1 + len).await?;
        self.buf.advance(5);
        let body = self.buf.split_to(len - 4);
        Ok(Some(Message { tag, body }))
    }
}

/// Reads the protocol code of a startup packet (bytes 4..8).
pub fn startup_code(packet: &[u8]) -> i32 {
    (&packet[4..8]).get_i32()
}

/// Protocol code of a v3.0 StartupMessage.
pub const PROTOCOL_3: i32 = 196608;

/// Adds `extra` (command-line style `-c name=value` switches) to the `options` parameter of a
/// v3 StartupMessage, creating the parameter if the client sent none. Switches appended after
/// the client's own win over them, so the emulator's settings hold.
pub fn add_startup_options(packet: &[u8], extra: &str) -> BytesMut {
    if extra.is_empty() || packet.len() < 8 || startup_code(packet) != PROTOCOL_3 {
        return BytesMut::from(packet);
    }
    let mut params: Vec<(&[u8], Vec<u8>)> = Vec::new();
    let mut rest = &packet[8..];
    while let Some(end) = rest.iter().position(|&b| b == 0) {
        if end == 0 {
            break;
        }
        let key = &rest[..end];
        let tail = &rest[end + 1..];
        let vend = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        params.push((key, tail[..vend].to_vec()));
        rest = tail.get(vend + 1..).unwrap_or(&[]);
    }
    match params.iter_mut().find(|(k, _)| *k == b"options") {
        Some((_, v)) => {
            if !v.is_empty() {
                v.push(b' ');
            }
            v.extend_from_slice(extra.as_bytes());
        }
        None => params.push((b"options", extra.as_bytes().to_vec())),
    }
    let mut body = BytesMut::new();
    body.put_i32(PROTOCOL_3);
    for (k, v) in &params {
        body.extend_from_slice(k);
        body.put_u8(0);
        body.extend_from_slice(v);
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32 + 4);
    out.extend_from_slice(&body);
    out
}

fn message(tag: u8, body: BytesMut) -> Message {
    Message { tag, body }
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.put_u8(0);
}

/// Fields of an ErrorResponse or NoticeResponse, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(u8, String)>);

impl Fields {
    /// Parses the body of an 'E' or 'N' message.
    pub fn parse(body: &[u8]) -> Self {
        let mut out = Vec::new();
        let mut rest = body;
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            out.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        Fields(out)
    }

    /// Returns a field's value.
    #[cfg(test)]
    pub fn get(&self, code: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or adds) a field.
    pub fn set(&mut self, code: u8, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = value,
            None => self.0.push((code, value)),
        }
    }

    /// Drops fields that would reveal the emulator's internals (PL/pgSQL context, source file).
    pub fn strip_internal(&mut self) {
        self.0
            .retain(|(c, _)| !matches!(c, b'W' | b'F' | b'L' | b'R' | b'q' | b'p'));
    }

    /// Encodes as an ErrorResponse ('E') or NoticeResponse ('N').
    pub fn to_message(&self, tag: u8) -> Message {
        let mut b = BytesMut::new();
        for (code, value) in &self.0 {
            b.put_u8(*code);
            put_cstr(&mut b, value);
        }
        b.put_u8(0);
        message(tag, b)
    }
}

/// Builds an ErrorResponse with severity ERROR.
pub fn error_fields(sqlstate: &str, msg: &str, detail: Option<&str>) -> Fields {
    let mut f = Fields(vec![
        (b'S', "ERROR".into()),
        (b'V', "ERROR".into()),
        (b'C', sqlstate.into()),
        (b'M', msg.into()),
    ]);
    if let Some(d) = detail {
        f.set(b'D', d);
    }
    f
}

/// Builds an INFO NoticeResponse, as Redshift sends after a COPY.
pub fn info_notice(msg: &str) -> Message {
    Fields(vec![
        (b'S', "INFO".into()),
        (b'V', "INFO".into()),
        (b'C', "00000".into()),
        (b'M', msg.into()),
    ])
    .to_message(b'N')
}

/// Builds a CommandComplete with the given tag.
pub fn command_complete(tag: &str) -> Message {
    let mut b = BytesMut::new();
    put_cstr(&mut b, tag);
    message(b'C', b)
}

/// Builds a simple Query message.
pub fn query(sql: &str) -> Message {
    let mut b = BytesMut::new();
    put_cstr(&mut b, sql);
    message(b'Q', b)
}

/// Builds a CopyData message.
pub fn copy_data(data: &[u8]) -> Message {
    message(b'd', BytesMut::from(data))
}

/// Builds a CopyDone message.
pub fn copy_done() -> Message {
    message(b'c', BytesMut::new())
}

/// Builds a CopyFail message.
pub fn copy_fail(reason: &str) -> Message {
    let mut b = BytesMut::new();
    put_cstr(&mut b, reason);
    message(b'f', b)
}

/// Extracts the SQL text of a 'Q' message body.
pub fn query_text(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// Parses a DataRow body into text columns.
pub fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut b = body;
    if b.len() < 2 {
        return Vec::new();
    }
    let n = b.get_i16().max(0) as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if b.len() < 4 {
            break;
        }
        let len = b.get_i32();
        if len < 0 {
            out.push(None);
        } else {
            let len = (len as usize).min(b.len());
            out.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
            b.advance(len);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_split_messages() {
        let mut wire = BytesMut::new();
        query("select 1").encode(&mut wire);
        command_complete("COPY").encode(&mut wire);
        let mut r = MessageReader::new(&wire[..]);
        let m = r.next().await.unwrap().unwrap();
        assert_eq!(m.tag, b'Q');
        assert_eq!(query_text(&m.body), "select 1");
        let m = r.next().await.unwrap().unwrap();
        assert_eq!(m.tag, b'C');
        assert!(r.next().await.unwrap().is_none());
    }

    #[test]
    fn startup_options_are_added_or_appended() {
        let mut body = BytesMut::new();
        body.put_i32(PROTOCOL_3);
        body.extend_from_slice(b"user\0u\0database\0d\0\0");
        let mut pkt = BytesMut::new();
        pkt.put_i32(body.len() as i32 + 4);
        pkt.extend_from_slice(&body);
        let out = add_startup_options(&pkt, "-c a=b");
        assert_eq!(
            &out[8..],
            b"user\0u\0database\0d\0options\0-c a=b\0\0".as_slice()
        );
        assert_eq!((&out[..4]).get_i32() as usize, out.len());
        let again = add_startup_options(&out, "-c x=y");
        assert!(again.ends_with(b"options\0-c a=b -c x=y\0\0"));
        assert_eq!(&add_startup_options(&pkt, "")[..], &pkt[..]);
    }

    #[test]
    fn error_fields_roundtrip() {
        let mut f = error_fields("XX000", "boom", Some("d"));
        f.0.push((b'W', "PL/pgSQL".into()));
        let m = f.to_message(b'E');
        let mut back = Fields::parse(&m.body);
        assert_eq!(back.get(b'W'), Some("PL/pgSQL"));
        back.strip_internal();
        assert_eq!(back.get(b'W'), None);
        assert_eq!(back.get(b'C'), Some("XX000"));
        assert_eq!(back.get(b'D'), Some("d"));
    }
}
