//! A fast yes-or-don't-know check that bytes hold one JSON value (RFC 8259, with optional
//! surrounding whitespace), for the validation every JSON record gets.
//!
//! [`is_valid`] answers `true` only for input serde_json accepts as one value with the
//! rest being whitespace, and that is valid UTF-8; on `false` the caller runs serde_json,
//! which decides and words the error. One pass, no allocation: strings are skipped eight
//! bytes at a time, UTF-8 is only checked when a byte above 0x7F was seen, and nesting is
//! a bit stack (deeper than [`MAX_DEPTH`] answers `false`).

/// Deepest nesting the fast check follows.
pub const MAX_DEPTH: usize = 256;

const ONES: u64 = u64::MAX / 255;
const HIGH: u64 = ONES << 7;

/// True when `b` is one JSON value with optional whitespace around it, in valid UTF-8.
pub fn is_valid(b: &[u8]) -> bool {
    let mut c = Check {
        b,
        i: 0,
        high: false,
    };
    c.value() && (!c.high || std::str::from_utf8(b).is_ok())
}

struct Check<'a> {
    b: &'a [u8],
    i: usize,
    high: bool,
}

impl Check<'_> {
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self) -> bool {
        // Bit d of `objects` is set when level d is an object (else an array).
        let mut objects = [0u64; MAX_DEPTH / 64];
        let mut depth = 0usize;
        'value: loop {
            self.ws();
            let Some(first) = self.peek() else {
                return false;
            };
            match first {
                b'{' | b'[' => {
                    self.i += 1;
                    self.ws();
                    let object = first == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return false;
                        }
                        let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                        if object {
                            objects[word] |= bit;
                            if !self.key() {
                                return false;
                            }
                        } else {
                            objects[word] &= !bit;
                        }
                        depth += 1;
                        continue 'value;
                    }
                }
                b'"' => {
                    self.i += 1;
                    if !self.string() {
                        return false;
                    }
                }
                b't' => {
                    if !self.literal(b"true") {
                        return false;
                    }
                }
                b'f' => {
                    if !self.literal(b"false") {
                        return false;
                    }
                }
                b'n' => {
                    if !self.literal(b"null") {
                        return false;
                    }
                }
                b'-' | b'0'..=b'9' => {
                    if !self.number() {
                        return false;
                    }
                }
                _ => return false,
            }
            // A value is complete: close containers, or move to the next element.
            loop {
                self.ws();
                if depth == 0 {
                    return self.i == self.b.len();
                }
                let top = depth - 1;
                let object = objects[top / 64] & (1 << (top % 64)) != 0;
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if object && !self.key() {
                            return false;
                        }
                        continue 'value;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return false,
                }
                self.i += 1;
                depth -= 1;
            }
        }
    }

    /// `"key" :` with whitespace around.
    fn key(&mut self) -> bool {
        self.ws();
        if self.peek() != Some(b'"') {
            return false;
        }
        self.i += 1;
        if !self.string() {
            return false;
        }
        self.ws();
        if self.peek() != Some(b':') {
            return false;
        }
        self.i += 1;
        true
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// After the opening quote, through the closing one.
    fn string(&mut self) -> bool {
        let b = self.b;
        loop {
            // Eight bytes at a time while none is a quote, a backslash or a control character.
            while let Some(chunk) = b.get(self.i..self.i + 8) {
                let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
                let ctrl = w.wrapping_sub(ONES * 0x20) & !w;
                let q = w ^ (ONES * u64::from(b'"'));
                let quote = q.wrapping_sub(ONES) & !q;
                let s = w ^ (ONES * u64::from(b'\\'));
                let slash = s.wrapping_sub(ONES) & !s;
                if (ctrl | quote | slash) & HIGH != 0 {
                    break;
                }
                self.high |= w & HIGH != 0;
                self.i += 8;
            }
            let Some(c) = self.peek() else {
                return false;
            };
            self.i += 1;
            match c {
                b'"' => return true,
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                    Some(b'u') => {
                        let hex = b.get(self.i + 1..self.i + 5);
                        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                            return false;
                        }
                        self.i += 5;
                    }
                    _ => return false,
                },
                0..=0x1f => return false,
                0x80.. => self.high = true,
                _ => {}
            }
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> bool {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return false;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;

    fn serde_ok(b: &[u8]) -> bool {
        std::str::from_utf8(b).is_ok_and(|s| serde_json::from_str::<IgnoredAny>(s).is_ok())
    }

    /// The fast check never accepts what serde_json refuses, and accepts what it accepts
    /// (within the nesting limit).
    fn agree(b: &[u8]) {
        assert_eq!(is_valid(b), serde_ok(b), "{:?}", String::from_utf8_lossy(b));
    }

    const CASES: &[&str] = &[
        "{}",
        "[]",
        " { } ",
        "\t[\r\n]\n",
        "0",
        "-0",
        "01",
        "-",
        "1.",
        "1.5",
        ".5",
        "1e5",
        "1E+5",
        "1e-5",
        "1e",
        "1e+",
        "-01",
        "123456789012345678901234567890",
        "1e999",
        "true",
        "tru",
        "false",
        "null",
        "nul",
        "nulls",
        "\"\"",
        "\"a\"",
        "\"a",
        "\"\\u00e9\"",
        "\"\\u00g9\"",
        "\"\\ud800\"",
        "\"\\x\"",
        "\"\\/\"",
        "\"tab\there\"",
        "\"é\"",
        "{\"a\":1}",
        "{\"a\" : 1 }",
        "{\"a\":1,}",
        "{,}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\" 1}",
        "{1:2}",
        "{\"a\":}",
        "[[[[]]]]",
        "[[[[]]]",
        "[{\"a\":[1,{\"b\":null}],\"c\":\"d\"}]",
        "{} {}",
        "{}x",
        "",
        "   ",
        "[\"a\",\"b\"",
        "{\"a\":1",
        "\"12345678\\\"12345678\"",
        "\"abcdefghijklmnopqrs",
        "{\"k\":\"abcdefgh\u{7f}ijklmnop\"}",
        "[true,false,null,-1.5e-3,\"x\"]",
    ];

    #[test]
    fn agrees_with_serde_json_on_edge_cases() {
        for c in CASES {
            agree(c.as_bytes());
        }
        agree(b"\"\xff\"");
        agree(b"\"\xc3\xa9 longer than eight bytes\"");
        agree(b"\"abcdefgh\xc3\"");
        agree(b"[\xc3\xa9]");
        agree(b"\"a\x00b\"");
        agree(b"\"abcdefghijklmn\x01opqrstuvwxyz\"");
    }

    #[test]
    fn deep_nesting_past_the_limit_is_left_to_serde() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(is_valid(deep(MAX_DEPTH).as_bytes()));
        assert!(!is_valid(deep(MAX_DEPTH + 1).as_bytes()));
        let objs = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        agree(objs.as_bytes());
    }

    /// Mutations of valid records (bytes replaced, dropped or duplicated) never make the two
    /// disagree.
    #[test]
    fn agrees_with_serde_json_on_mutated_records() {
        let seeds = [
            &br#"{"event_id":"a1-b2","ts":1700000000,"props":{"price":12.50,"tags":["sale","new"],"ok":true,"note":"line\nbreak \u00e9"},"x":null}"#[..],
            &br#"[1,-2.5e+3,"\"quoted\"",{"k":[]},false]"#[..],
            "{\"ünï\":\"çødé ✓\",\"n\":0}".as_bytes(),
        ];
        let alphabet = b"{}[]\":,\\ -+.0123456789eEtrufalsn\x00\x1f\x7f\x80\xc3\xa9\n";
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..30_000 {
            let mut b = seeds[rnd() as usize % seeds.len()].to_vec();
            for _ in 0..1 + rnd() % 3 {
                let at = rnd() as usize % b.len();
                match rnd() % 3 {
                    0 => b[at] = alphabet[rnd() as usize % alphabet.len()],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, b[at]),
                }
                if b.is_empty() {
                    break;
                }
            }
            agree(&b);
        }
    }
}
