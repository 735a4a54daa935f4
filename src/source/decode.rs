//! Decompression of staged objects: resolving `compression = "auto"` and wrapping a byte stream in
//! the right streaming decoder (gzip with several members, zstd with several frames, framed snappy,
//! zip entries in order, or none), with errors that say whether the data or the stream failed.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::config::Compression;

/// Number of leading bytes [`detect`] looks at; [`open`] peeks this many.
pub const MAGIC_LEN: usize = 10;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const SNAPPY_MAGIC: &[u8] = &[0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY_MAGIC: &[u8] = b"PK\x05\x06";

/// Resolves `Auto` for one object; never returns `Auto`.
///
/// The first bytes win when they carry a known signature, because they are the truth about the
/// content (a `.gz` key holding zstd is read as zstd). Without a signature the key's extension
/// decides, then `Content-Encoding`; so a `.gz` key holding plain text is read as gzip and fails
/// as a decompression error rather than being guessed into records. Otherwise: `None`.
pub fn detect(key: &str, content_encoding: Option<&str>, head: &[u8]) -> Compression {
    if let Some(c) = from_magic(head) {
        return c;
    }
    if let Some(c) = from_extension(key) {
        return c;
    }
    content_encoding
        .and_then(from_content_encoding)
        .unwrap_or(Compression::None)
}

fn from_magic(head: &[u8]) -> Option<Compression> {
    if head.starts_with(GZIP_MAGIC) {
        Some(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Some(Compression::Zstd)
    } else if head.starts_with(SNAPPY_MAGIC) {
        Some(Compression::Snappy)
    } else if head.starts_with(ZIP_MAGIC) || head.starts_with(ZIP_EMPTY_MAGIC) {
        Some(Compression::Zip)
    } else {
        None
    }
}

fn from_extension(key: &str) -> Option<Compression> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "gz" | "gzip" => Some(Compression::Gzip),
        "zst" | "zstd" => Some(Compression::Zstd),
        "snappy" | "sz" => Some(Compression::Snappy),
        "zip" => Some(Compression::Zip),
        _ => None,
    }
}

fn from_content_encoding(value: &str) -> Option<Compression> {
    // The last coding listed was applied last, so it is the one to undo first.
    let last = value.rsplit(',').next()?.trim().to_ascii_lowercase();
    match last.as_str() {
        "gzip" | "x-gzip" => Some(Compression::Gzip),
        "zstd" => Some(Compression::Zstd),
        "snappy" | "x-snappy-framed" => Some(Compression::Snappy),
        "zip" => Some(Compression::Zip),
        _ => None,
    }
}

/// What failed when reading a decoded stream returned an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// The data is corrupt or truncated: `DECOMPRESSION_FAILED`, not worth re-reading.
    Decompress,
    /// The underlying stream failed (connection reset, timeout): `READ_FAILED`, transient.
    Io,
}

/// Marks an error that came from the underlying stream rather than from a decoder.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StreamError(#[source] io::Error);

/// Tells an error from a stream built by [`decoder`] or [`open`] apart: stream failures are
/// tagged on their way in, anything else the decoder raised about the data.
pub fn classify(e: &io::Error) -> ReadErrorKind {
    match e.get_ref() {
        Some(inner) if inner.is::<StreamError>() => ReadErrorKind::Io,
        _ => ReadErrorKind::Decompress,
    }
}

fn tag(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::Interrupted || e.get_ref().is_some_and(|r| r.is::<StreamError>())
    {
        return e;
    }
    io::Error::new(e.kind(), StreamError(e))
}

/// Tags every error of the wrapped reader as a stream error for [`classify`].
struct Tagged<R>(R);

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(tag)
    }
}

/// Wraps `input` in the decoder for `c` (which must be resolved; `Auto` is treated as `None`).
pub fn decoder(c: Compression, input: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    let input = Tagged(input);
    Ok(match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input).map_err(tag)?),
        Compression::Snappy => Box::new(snap::read::FrameDecoder::new(input)),
        Compression::Zip => Box::new(ZipEntries::spool(input)?),
        Compression::None | Compression::Auto => Box::new(input),
    })
}

/// Peeks the first bytes of `input` when `c` is `Auto`, resolves it with [`detect`] and returns
/// the resolved compression with the decoded stream.
pub fn open(
    c: Compression,
    key: &str,
    content_encoding: Option<&str>,
    mut input: Box<dyn Read + Send>,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    if c != Compression::Auto {
        return Ok((c, decoder(c, input)?));
    }
    let mut head = Vec::with_capacity(MAGIC_LEN);
    (&mut input)
        .take(MAGIC_LEN as u64)
        .read_to_end(&mut head)
        .map_err(tag)?;
    let c = detect(key, content_encoding, &head);
    let chained: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(input));
    Ok((c, decoder(c, chained)?))
}

/// A zip archive spooled to an unlinked temporary file, read entry by entry.
///
/// The central directory comes from the `zip` crate; entry data is inflated here with flate2 so
/// that one reader can own the file across entries (the crate's entry reader borrows the archive).
struct ZipEntries {
    file: File,
    entries: std::vec::IntoIter<ZipEntry>,
    current: Option<EntryReader>,
}

struct ZipEntry {
    data_start: u64,
    compressed_size: u64,
    size: u64,
    crc32: u32,
    deflated: bool,
}

struct EntryReader {
    inner: Box<dyn Read + Send>,
    crc: flate2::Crc,
    size: u64,
    crc32: u32,
}

impl ZipEntries {
    fn spool(mut input: impl Read) -> io::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "stageload-zip-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(tag)?;
        // Unlinked at once: the data lives only as long as the open file.
        let _ = std::fs::remove_file(&path);
        io::copy(&mut input, &mut file).map_err(tag)?;
        let mut archive =
            zip::ZipArchive::new(file.try_clone().map_err(tag)?).map_err(invalid_data)?;
        let mut entries = Vec::with_capacity(archive.len());
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).map_err(invalid_data)?;
            if f.is_dir() {
                continue;
            }
            let deflated = match f.compression() {
                zip::CompressionMethod::STORE => false,
                zip::CompressionMethod::DEFLATE => true,
                other => {
                    return Err(invalid_data(format!(
                        "zip entry {:?} uses unsupported method {other}",
                        f.name()
                    )))
                }
            };
            if f.encrypted() {
                return Err(invalid_data(format!(
                    "zip entry {:?} is encrypted",
                    f.name()
                )));
            }
            entries.push(ZipEntry {
                data_start: f.data_start(),
                compressed_size: f.compressed_size(),
                size: f.size(),
                crc32: f.crc32(),
                deflated,
            });
        }
        Ok(ZipEntries {
            file,
            entries: entries.into_iter(),
            current: None,
        })
    }

    fn open_entry(&mut self, e: ZipEntry) -> io::Result<EntryReader> {
        let mut file = self.file.try_clone().map_err(tag)?;
        file.seek(SeekFrom::Start(e.data_start)).map_err(tag)?;
        let raw = Tagged(file).take(e.compressed_size);
        let inner: Box<dyn Read + Send> = if e.deflated {
            Box::new(flate2::read::DeflateDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(EntryReader {
            inner,
            crc: flate2::Crc::new(),
            size: e.size,
            crc32: e.crc32,
        })
    }
}

impl Read for ZipEntries {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = &mut self.current {
                let n = cur.inner.read(buf)?;
                if n > 0 {
                    cur.crc.update(&buf[..n]);
                    return Ok(n);
                }
                // A truncated deflate stream ends quietly; size and CRC catch it.
                if u64::from(cur.crc.amount()) != cur.size & 0xffff_ffff
                    || cur.crc.sum() != cur.crc32
                {
                    return Err(invalid_data("zip entry is truncated or fails its CRC"));
                }
                self.current = None;
            }
            match self.entries.next() {
                Some(e) => self.current = Some(self.open_entry(e)?),
                None => return Ok(0),
            }
        }
    }
}

fn invalid_data(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode_all(c: Compression, key: &str, data: Vec<u8>) -> io::Result<(Compression, Vec<u8>)> {
        let (c, mut r) = open(c, key, None, Box::new(Cursor::new(data)))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok((c, out))
    }

    /// Fails with a connection reset after `ok` bytes.
    struct Failing {
        data: Cursor<Vec<u8>>,
        ok: u64,
    }
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.position() >= self.ok {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
            }
            let max = (self.ok - self.data.position()) as usize;
            let n = buf.len().min(max);
            self.data.read(&mut buf[..n])
        }
    }

    #[test]
    fn detect_order() {
        let gz = gzip(b"x");
        assert_eq!(detect("a/b.json", None, &gz), Compression::Gzip);
        assert_eq!(detect("a/b.json.GZ", None, b"{"), Compression::Gzip);
        assert_eq!(detect("a/b.zst", None, b""), Compression::Zstd);
        assert_eq!(detect("a/b.sz", None, b""), Compression::Snappy);
        assert_eq!(detect("a/b.zip", None, b""), Compression::Zip);
        assert_eq!(detect("a.gz/b", None, b"{}"), Compression::None);
        assert_eq!(detect("b", Some("gzip"), b"{}"), Compression::Gzip);
        assert_eq!(detect("b", Some("identity"), b"{}"), Compression::None);
        assert_eq!(detect("b", None, ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(detect("b", None, SNAPPY_MAGIC), Compression::Snappy);
        assert_eq!(detect("b", None, b"PK\x03\x04rest"), Compression::Zip);
        // Magic bytes win over a disagreeing extension.
        assert_eq!(detect("b.gz", None, ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(detect("b.json", Some("zstd"), &gz), Compression::Gzip);
    }

    #[test]
    fn serde_names() {
        let c: Compression = serde_json::from_str("\"snappy\"").unwrap();
        assert_eq!(c, Compression::Snappy);
        assert_eq!(
            serde_json::to_string(&Compression::None).unwrap(),
            "\"none\""
        );
        assert_eq!(Compression::default(), Compression::Auto);
    }

    #[test]
    fn gzip_multi_member() {
        let mut data = gzip(b"{\"a\":1}\n");
        data.extend(gzip(b"{\"b\":2}\n"));
        let (c, out) = decode_all(Compression::Auto, "x", data).unwrap();
        assert_eq!(c, Compression::Gzip);
        assert_eq!(out, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn truncated_gzip_is_a_decompression_error() {
        let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut data = gzip(&body);
        data.truncate(data.len() - 20);
        let e = decode_all(Compression::Gzip, "x", data).unwrap_err();
        assert_eq!(classify(&e), ReadErrorKind::Decompress, "{e}");
        // Only the 8-byte trailer missing.
        let mut data = gzip(b"hello");
        data.truncate(data.len() - 4);
        let e = decode_all(Compression::Gzip, "x", data).unwrap_err();
        assert_eq!(classify(&e), ReadErrorKind::Decompress);
    }

    #[test]
    fn gz_key_with_plain_content_fails_as_gzip() {
        let e = decode_all(Compression::Auto, "k.gz", b"{\"a\":1}\n".to_vec()).unwrap_err();
        assert_eq!(classify(&e), ReadErrorKind::Decompress);
    }

    #[test]
    fn zstd_frames_and_truncation() {
        let mut data = zstd::encode_all(&b"one\n"[..], 1).unwrap();
        data.extend(zstd::encode_all(&b"two\n"[..], 1).unwrap());
        let (c, out) = decode_all(Compression::Auto, "x", data.clone()).unwrap();
        assert_eq!((c, out.as_slice()), (Compression::Zstd, &b"one\ntwo\n"[..]));
        data.truncate(data.len() - 3);
        let e = decode_all(Compression::Zstd, "x", data).unwrap_err();
        assert_eq!(classify(&e), ReadErrorKind::Decompress);
    }

    #[test]
    fn snappy_framed() {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(b"line\n").unwrap();
        let data = w.into_inner().unwrap();
        let (c, out) = decode_all(Compression::Auto, "x", data).unwrap();
        assert_eq!((c, out.as_slice()), (Compression::Snappy, &b"line\n"[..]));
    }

    #[test]
    fn zip_entries_in_order() {
        let mut data = zip_archive(&[
            ("a.json", b"{\"a\":1}\n", true),
            ("b.json", b"{\"b\":2}\n", false),
        ]);
        let (c, out) = decode_all(Compression::Auto, "x", data.clone()).unwrap();
        assert_eq!(c, Compression::Zip);
        assert_eq!(out, b"{\"a\":1}\n{\"b\":2}\n");
        // Corrupt a byte of the first (stored? no: deflated) entry's data: CRC or inflate fails.
        data[40] ^= 0xff;
        let e = decode_all(Compression::Zip, "x", data).unwrap_err();
        assert_eq!(classify(&e), ReadErrorKind::Decompress);
    }

    /// A minimal zip writer for tests (the zip crate is built without its writer features).
    fn zip_archive(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, deflate) in files {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let body = if *deflate {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            let common = |v: &mut Vec<u8>| {
                v.extend(20u16.to_le_bytes());
                v.extend(0u16.to_le_bytes());
                v.extend(method.to_le_bytes());
                v.extend([0u8; 4]);
                v.extend(crc.sum().to_le_bytes());
                v.extend((body.len() as u32).to_le_bytes());
                v.extend((data.len() as u32).to_le_bytes());
                v.extend((name.len() as u16).to_le_bytes());
                v.extend(0u16.to_le_bytes());
            };
            out.extend(b"PK\x03\x04");
            common(&mut out);
            out.extend(name.as_bytes());
            out.extend(&body);
            central.extend(b"PK\x01\x02");
            central.extend(20u16.to_le_bytes());
            common(&mut central);
            central.extend([0u8; 6]);
            central.extend(0u32.to_le_bytes());
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend(&central);
        out.extend(b"PK\x05\x06");
        out.extend([0u8; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn stream_errors_are_io_for_every_codec() {
        let body: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut snappy = snap::write::FrameEncoder::new(Vec::new());
        snappy.write_all(&body).unwrap();
        let cases = [
            (Compression::Gzip, gzip(&body)),
            (Compression::Zstd, zstd::encode_all(&body[..], 1).unwrap()),
            (Compression::Snappy, snappy.into_inner().unwrap()),
            (Compression::None, body.clone()),
        ];
        for (c, data) in cases {
            let ok = data.len() as u64 / 2;
            let input = Failing {
                data: Cursor::new(data),
                ok,
            };
            let (_, mut r) = open(Compression::Auto, "x", None, Box::new(input)).unwrap();
            let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
            assert_eq!(classify(&e), ReadErrorKind::Io, "{c:?}: {e}");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        }
    }
}
