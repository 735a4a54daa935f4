//! The fast accept of a JSON record: one pass over the bytes that says "certainly one valid JSON
//! value" for records of the usual shape, so the framer runs serde_json (and the separate UTF-8
//! check) only on the records this pass does not accept.
//!
//! Why it exists: validating every record was about a quarter of the daemon's CPU on the
//! Elasticsearch and HEC paths, half of it in serde_json's visitor and a sixth in the UTF-8
//! check. Three maintained validators were measured on 300-byte records and were slower than
//! serde_json (`simd-json`, `sonic-rs`; `simdutf8` for UTF-8, no faster than std): their
//! per-document setup costs more than they save on records this small. This pass runs about 1.5
//! times as fast as `from_utf8` plus serde_json's `IgnoredAny` on those records.
//!
//! It only ever accepts: anything it does not accept goes to serde_json, whose verdict and
//! message stand. Its grammar is RFC 8259's (as serde_json applies it when ignoring values: any
//! `\uXXXX` escape is accepted, lone surrogates included; numbers are checked for shape, not
//! range); UTF-8 is checked by std only when a string holds a non-ASCII byte (outside strings
//! the grammar admits none). Nesting deeper than [`MAX_DEPTH`] is left to serde_json (its own
//! limit is 128). The unit tests compare it with serde_json on generated and mutated documents.

/// Containers nested deeper than this are not accepted here (serde_json decides them).
pub const MAX_DEPTH: u32 = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// True only when `bytes` is certainly one JSON value with optional whitespace around it
/// (valid UTF-8 included). False means "ask serde_json", not "invalid".
pub fn accepts(bytes: &[u8]) -> bool {
    let mut seen = 0u64;
    value(bytes, &mut seen).is_some() && (seen & HIGH == 0 || std::str::from_utf8(bytes).is_ok())
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
            break;
        }
        i += 1;
    }
    i
}

/// `i` is just past an opening quote; returns the index just past the closing one. Every byte
/// of the string is or-ed into `seen` so the caller knows whether one was non-ASCII.
#[inline(always)]
fn string(b: &[u8], mut i: usize, seen: &mut u64) -> Option<usize> {
    loop {
        // Eight bytes at a time: stop at a quote, a backslash or a control character.
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            let quote = w ^ (ONES * b'"' as u64);
            let backslash = w ^ (ONES * b'\\' as u64);
            let hit = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGH;
            *seen |= w;
            if hit != 0 {
                i += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let c = *b.get(i)?;
        match c {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                _ => return None,
            },
            0..=0x1f => return None,
            _ => {
                *seen |= c as u64;
                i += 1;
            }
        }
    }
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b'0'..=b'9')) {
        i += 1;
    }
    i
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` from `i`; returns its end.
#[inline(always)]
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

/// A key, its colon and the whitespace up to the member's value, from the key's opening quote.
#[inline(always)]
fn key(b: &[u8], i: usize, seen: &mut u64) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let i = skip_ws(b, string(b, i + 1, seen)?);
    (*b.get(i)? == b':').then(|| skip_ws(b, i + 1))
}

/// The whole document: one value, then only whitespace. Containers are kept as a bit stack
/// (1 = object) instead of by recursion.
fn value(b: &[u8], seen: &mut u64) -> Option<()> {
    let (mut objects, mut depth) = (0u64, 0u32);
    let mut i = skip_ws(b, 0);
    loop {
        // A value starts at `i`.
        match *b.get(i)? {
            open @ (b'{' | b'[') => {
                i = skip_ws(b, i + 1);
                let close = if open == b'{' { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                } else {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    depth += 1;
                    objects = (objects << 1) | u64::from(open == b'{');
                    if open == b'{' {
                        i = key(b, i, seen)?;
                    }
                    continue;
                }
            }
            b'"' => i = string(b, i + 1, seen)?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            b't' if b.get(i..i + 4)? == b"true" => i += 4,
            b'f' if b.get(i..i + 5)? == b"false" => i += 5,
            b'n' if b.get(i..i + 4)? == b"null" => i += 4,
            _ => return None,
        }
        // After a value: close containers until a comma asks for the next value.
        loop {
            i = skip_ws(b, i);
            if depth == 0 {
                return (i == b.len()).then_some(());
            }
            let in_object = objects & 1 == 1;
            match (*b.get(i)?, in_object) {
                (b',', true) => {
                    i = key(b, skip_ws(b, i + 1), seen)?;
                    break;
                }
                (b',', false) => {
                    i = skip_ws(b, i + 1);
                    break;
                }
                (b'}', true) | (b']', false) => {
                    objects >>= 1;
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    /// What the framer accepted before this pass: std's UTF-8 check, then serde_json.
    fn serde_accepts(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes)
            .is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok())
    }

    #[test]
    fn accepts_the_usual_shapes() {
        for doc in [
            r#"{"event_id":"a-1","ts":1700000000000,"price":12.50,"ok":true,"x":null}"#,
            r#"{"viewport":{"w":1920,"h":1080},"tags":["a","b"],"n":-0.5e+3}"#,
            r#"  {"k" : [ 1 , 2 , { } , [ ] ] }  "#,
            r#""just a string""#,
            "0",
            "-12.25E-7",
            "[]",
            r#"{"esc":"line\nnext \"quoted\" \\ \/ \u00e9 \ud83d"}"#,
            "{\"utf8\":\"caf\u{e9} \u{1f600}\"}",
            "[true,false,null]\n",
        ] {
            assert!(accepts(doc.as_bytes()), "{doc}");
            assert!(serde_accepts(doc.as_bytes()), "{doc}");
        }
    }

    #[test]
    fn leaves_bad_documents_to_serde() {
        for doc in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{a:1}",
            b"[1,]",
            b"[1 2]",
            b"01",
            b"1.",
            b"1e",
            b"-",
            b"+1",
            b".5",
            b"tru",
            b"nul",
            b"\"unterminated",
            b"\"tab\tinside\"",
            b"\"bad \\x escape\"",
            b"\"short \\u12\"",
            b"{\"a\":1}{\"b\":2}",
            b"{\"a\":1} x",
            b"\"\xff\xfe\"",
            b"\"\xc3\"",
            b"{\"a\":\"\xe9t\xe9\"}",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(!accepts(doc), "{}", String::from_utf8_lossy(doc));
            assert!(!serde_accepts(doc), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn deep_nesting_is_left_to_serde() {
        let doc = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(accepts(doc(MAX_DEPTH as usize).as_bytes()));
        assert!(!accepts(doc(MAX_DEPTH as usize + 1).as_bytes()));
        assert!(serde_accepts(doc(MAX_DEPTH as usize + 1).as_bytes()));
        let unbalanced = format!("{}]", "[".repeat(MAX_DEPTH as usize + 1));
        assert!(!accepts(unbalanced.as_bytes()));
    }

    /// xorshift: deterministic, so a failure names a reproducible case.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn gen_value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        const STRINGS: &[&str] = &[
            "",
            "a",
            "event_id",
            "u-004211",
            "caf\u{e9}",
            "\u{1f600}!",
            "tab\\t",
            "q\\\"q",
            "\\u0041\\u00e9",
            "/p-00042 long enough to take the eight-byte loop",
        ];
        const NUMBERS: &[&str] = &["0", "-0", "7", "1700000000000", "-12.5", "3.0e10", "1E-7"];
        let ws = |rng: &mut Rng, out: &mut Vec<u8>| {
            if rng.below(6) == 0 {
                out.extend_from_slice([&b" "[..], b"\n", b"\t ", b"\r\n"][rng.below(4)]);
            }
        };
        ws(rng, out);
        match if depth > 4 {
            rng.below(4)
        } else {
            rng.below(6)
        } {
            0 => {
                out.push(b'"');
                out.extend_from_slice(STRINGS[rng.below(STRINGS.len())].as_bytes());
                out.push(b'"');
            }
            1 => out.extend_from_slice(NUMBERS[rng.below(NUMBERS.len())].as_bytes()),
            2 => out.extend_from_slice([&b"true"[..], b"false"][rng.below(2)]),
            3 => out.extend_from_slice(b"null"),
            4 => {
                out.push(b'[');
                for k in 0..rng.below(4) {
                    if k > 0 {
                        out.push(b',');
                    }
                    gen_value(rng, depth + 1, out);
                }
                ws(rng, out);
                out.push(b']');
            }
            _ => {
                out.push(b'{');
                for k in 0..rng.below(5) {
                    if k > 0 {
                        out.push(b',');
                    }
                    ws(rng, out);
                    out.push(b'"');
                    out.extend_from_slice(STRINGS[rng.below(STRINGS.len())].as_bytes());
                    out.push(b'"');
                    ws(rng, out);
                    out.push(b':');
                    gen_value(rng, depth + 1, out);
                }
                ws(rng, out);
                out.push(b'}');
            }
        }
        ws(rng, out);
    }

    /// The property the framer relies on, and its converse below the depth limit: on generated
    /// documents and on every kind of damage to them, this pass and serde_json agree.
    #[test]
    fn agrees_with_serde_on_generated_and_damaged_documents() {
        const SPECIAL: &[u8] =
            b"{}[]:,\"\\ \t\n0123456789-+.eEtrufalsn/u\x00\x1f\x7f\x80\xc3\xe9\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut valid, mut damaged_valid) = (0, 0);
        for case in 0..40_000 {
            let mut doc = Vec::new();
            gen_value(&mut rng, 0, &mut doc);
            if case % 4 != 0 && !doc.is_empty() {
                for _ in 0..1 + rng.below(2) {
                    let at = rng.below(doc.len());
                    let byte = SPECIAL[rng.below(SPECIAL.len())];
                    match rng.below(4) {
                        0 => doc[at] = byte,
                        1 => doc.insert(at, byte),
                        2 => drop(doc.remove(at)),
                        _ => doc.truncate(at),
                    }
                    if doc.is_empty() {
                        break;
                    }
                }
            }
            let expected = serde_accepts(&doc);
            assert_eq!(
                accepts(&doc),
                expected,
                "case {case}: {:?}",
                String::from_utf8_lossy(&doc)
            );
            valid += usize::from(expected);
            damaged_valid += usize::from(expected && case % 4 != 0);
        }
        // Both sides of the comparison were exercised.
        assert!(valid > 12_000 && valid < 36_000, "{valid}");
        assert!(damaged_valid > 1_000, "{damaged_valid}");
    }
}
