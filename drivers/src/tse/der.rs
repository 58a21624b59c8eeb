//! A small DER/BER TLV reader and writer, just enough for TR-03151 log
//! messages and the software TSE's self-signed certificate.
//!
//! The reader hands out borrowed slices of the input (`raw` and `value`)
//! instead of decoded copies, because the signature input of a log message
//! is the exact byte run of its elements, including any BER
//! indefinite-length processData, and must never be re-encoded.
//! It accepts single-byte tags only (TR-03151 and X.509 need no more),
//! definite lengths of up to four length bytes, and BER indefinite length
//! (`0x80` … `00 00`) on constructed elements. Nesting is capped at
//! [`MAX_DEPTH`] so hostile input cannot exhaust the stack.
//!
//! The writer always produces DER: minimal lengths, minimal INTEGERs.

use std::borrow::Cow;

/// Deepest nesting the reader follows; TR-03151 messages need 3, X.509 about 6.
pub const MAX_DEPTH: usize = 8;

pub const TAG_BOOLEAN: u8 = 0x01;
pub const TAG_INTEGER: u8 = 0x02;
pub const TAG_BIT_STRING: u8 = 0x03;
pub const TAG_OCTET_STRING: u8 = 0x04;
pub const TAG_NULL: u8 = 0x05;
pub const TAG_OID: u8 = 0x06;
pub const TAG_UTF8_STRING: u8 = 0x0C;
pub const TAG_PRINTABLE_STRING: u8 = 0x13;
pub const TAG_UTC_TIME: u8 = 0x17;
pub const TAG_GENERALIZED_TIME: u8 = 0x18;
pub const TAG_SEQUENCE: u8 = 0x30;
pub const TAG_SET: u8 = 0x31;

/// Bit 6 of the identifier octet: the element contains further TLVs.
pub const CONSTRUCTED: u8 = 0x20;
/// Context-specific class bits of the identifier octet.
pub const CONTEXT: u8 = 0x80;

/// Why bytes could not be read as DER/BER, or a value not be encoded.
/// Offsets count from the start of the outermost input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    #[error("truncated at byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: usize },
    #[error("bad length at byte {offset}: {reason}")]
    BadLength { offset: usize, reason: &'static str },
    #[error("{count} trailing bytes at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("nesting deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep { offset: usize },
    #[error("multi-byte tag at byte {offset} is not supported")]
    MultiByteTag { offset: usize },
    #[error("unexpected end-of-contents marker at byte {offset}")]
    UnexpectedEndOfContents { offset: usize },
    #[error("bad INTEGER at byte {offset}: {reason}")]
    BadInteger { offset: usize, reason: &'static str },
    #[error("bad OBJECT IDENTIFIER at byte {offset}: {reason}")]
    BadOid { offset: usize, reason: &'static str },
    #[error("OBJECT IDENTIFIER {oid:?} cannot be encoded: {reason}")]
    BadOidString { oid: String, reason: &'static str },
    #[error("string at byte {offset} is not valid UTF-8")]
    BadString { offset: usize },
    #[error(
        "constructed string at byte {offset} contains tag 0x{tag:02x}, expected 0x{expected:02x}"
    )]
    BadChunk {
        offset: usize,
        tag: u8,
        expected: u8,
    },
}

/// One element as read, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The single identifier octet.
    pub tag: u8,
    /// Position of the identifier octet in the outermost input.
    pub offset: usize,
    /// Position of the first content octet in the outermost input.
    pub value_offset: usize,
    /// The whole element: identifier, length, content and, for indefinite
    /// length, the end-of-contents octets.
    pub raw: &'a [u8],
    /// The content octets (without end-of-contents octets).
    pub value: &'a [u8],
    /// Whether the element used BER indefinite length.
    pub indefinite: bool,
    depth: usize,
}

impl<'a> Tlv<'a> {
    pub fn is_constructed(&self) -> bool {
        self.tag & CONSTRUCTED != 0
    }

    /// A reader over the content, one level deeper.
    pub fn reader(&self) -> Result<Reader<'a>, DerError> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(DerError::TooDeep {
                offset: self.value_offset,
            });
        }
        Ok(Reader {
            input: self.value,
            pos: 0,
            base: self.value_offset,
            depth: self.depth + 1,
        })
    }

    /// All elements of the content.
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, DerError> {
        let mut reader = self.reader()?;
        let mut out = Vec::new();
        while !reader.is_empty() {
            out.push(reader.read()?);
        }
        Ok(out)
    }

    /// The content of a string type; a constructed (BER) string is the
    /// concatenation of its primitive chunks of the universal type
    /// `chunk_tag` (e.g. OCTET STRING chunks inside `[2]` processData).
    pub fn octets(&self, chunk_tag: u8) -> Result<Cow<'a, [u8]>, DerError> {
        if !self.is_constructed() {
            return Ok(Cow::Borrowed(self.value));
        }
        let mut out = Vec::new();
        self.collect_chunks(chunk_tag, &mut out)?;
        Ok(Cow::Owned(out))
    }

    fn collect_chunks(&self, chunk_tag: u8, out: &mut Vec<u8>) -> Result<(), DerError> {
        for child in self.children()? {
            if child.tag == chunk_tag {
                out.extend_from_slice(child.value);
            } else if child.tag == chunk_tag | CONSTRUCTED {
                child.collect_chunks(chunk_tag, out)?;
            } else {
                return Err(DerError::BadChunk {
                    offset: child.offset,
                    tag: child.tag,
                    expected: chunk_tag,
                });
            }
        }
        Ok(())
    }

    /// The content as text; TR-03151 strings are PrintableString, a subset of UTF-8.
    pub fn as_str(&self) -> Result<&'a str, DerError> {
        std::str::from_utf8(self.value).map_err(|_| DerError::BadString {
            offset: self.value_offset,
        })
    }

    /// The content as a non-negative INTEGER.
    pub fn as_u64(&self) -> Result<u64, DerError> {
        decode_u64(self.value).map_err(|reason| DerError::BadInteger {
            offset: self.value_offset,
            reason,
        })
    }

    /// The content as a signed INTEGER.
    pub fn as_i64(&self) -> Result<i64, DerError> {
        decode_i64(self.value).map_err(|reason| DerError::BadInteger {
            offset: self.value_offset,
            reason,
        })
    }

    /// The content as a dotted OBJECT IDENTIFIER.
    pub fn as_oid(&self) -> Result<String, DerError> {
        oid_to_string(self.value).map_err(|reason| DerError::BadOid {
            offset: self.value_offset,
            reason,
        })
    }
}

/// Reads consecutive elements from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    base: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            base: 0,
            depth: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.input.len()
    }

    /// Position of the next element in the outermost input.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Position of the next element within this reader's slice.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Reads the element at `tag` if the next one has it.
    pub fn read_optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingBytes {
                offset: self.offset(),
                count: self.input.len() - self.pos,
            })
        }
    }

    fn truncated(&self, at: usize, needed: usize) -> DerError {
        DerError::Truncated {
            offset: self.base + at,
            needed,
        }
    }

    pub fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let start = self.pos;
        let Some(&tag) = self.input.get(start) else {
            return Err(self.truncated(start, 1));
        };
        if tag & 0x1F == 0x1F {
            return Err(DerError::MultiByteTag {
                offset: self.base + start,
            });
        }
        if tag == 0 {
            return Err(DerError::UnexpectedEndOfContents {
                offset: self.base + start,
            });
        }
        let Some(&first) = self.input.get(start + 1) else {
            return Err(self.truncated(start + 1, 1));
        };
        let mut content_start = start + 2;
        if first == 0x80 {
            return self.read_indefinite(tag, start, content_start);
        }
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count > 4 {
                return Err(DerError::BadLength {
                    offset: self.base + start + 1,
                    reason: "more than 4 length bytes",
                });
            }
            let Some(bytes) = self.input.get(content_start..content_start + count) else {
                return Err(self.truncated(content_start, content_start + count - self.input.len()));
            };
            content_start += count;
            let len = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            usize::try_from(len).map_err(|_| DerError::BadLength {
                offset: self.base + start + 1,
                reason: "length does not fit in memory",
            })?
        };
        let available = self.input.len() - content_start;
        if len > available {
            return Err(self.truncated(start, len - available));
        }
        let end = content_start + len;
        self.pos = end;
        Ok(Tlv {
            tag,
            offset: self.base + start,
            value_offset: self.base + content_start,
            raw: &self.input[start..end],
            value: &self.input[content_start..end],
            indefinite: false,
            depth: self.depth,
        })
    }

    fn read_indefinite(
        &mut self,
        tag: u8,
        start: usize,
        content_start: usize,
    ) -> Result<Tlv<'a>, DerError> {
        if tag & CONSTRUCTED == 0 {
            return Err(DerError::BadLength {
                offset: self.base + start + 1,
                reason: "indefinite length on a primitive element",
            });
        }
        if self.depth + 1 > MAX_DEPTH {
            return Err(DerError::TooDeep {
                offset: self.base + content_start,
            });
        }
        // The end is only known after reading every child, so scan them.
        let mut inner = Reader {
            input: &self.input[content_start..],
            pos: 0,
            base: self.base + content_start,
            depth: self.depth + 1,
        };
        loop {
            match inner.input.get(inner.pos..inner.pos + 2) {
                Some([0, 0]) => break,
                Some(_) => {
                    inner.read()?;
                }
                None => {
                    return Err(self
                        .truncated(content_start + inner.pos, inner.pos + 2 - inner.input.len()));
                }
            }
        }
        let content_end = content_start + inner.pos;
        let end = content_end + 2;
        self.pos = end;
        Ok(Tlv {
            tag,
            offset: self.base + start,
            value_offset: self.base + content_start,
            raw: &self.input[start..end],
            value: &self.input[content_start..content_end],
            indefinite: true,
            depth: self.depth,
        })
    }
}

/// Reads exactly one element that spans all of `input`.
pub fn parse_single(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    let mut reader = Reader::new(input);
    let tlv = reader.read()?;
    reader.finish()?;
    Ok(tlv)
}

fn decode_u64(content: &[u8]) -> Result<u64, &'static str> {
    let Some(&first) = content.first() else {
        return Err("empty");
    };
    if first & 0x80 != 0 {
        return Err("negative where a non-negative number is required");
    }
    let significant = content
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |i| &content[i..]);
    if significant.len() > 8 {
        return Err("does not fit in 64 bits");
    }
    Ok(significant
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn decode_i64(content: &[u8]) -> Result<i64, &'static str> {
    let Some(&first) = content.first() else {
        return Err("empty");
    };
    if content.len() > 8 {
        return Err("does not fit in 64 bits");
    }
    let fill = if first & 0x80 != 0 { 0xFF } else { 0x00 };
    let mut bytes = [fill; 8];
    bytes[8 - content.len()..].copy_from_slice(content);
    Ok(i64::from_be_bytes(bytes))
}

fn oid_to_string(content: &[u8]) -> Result<String, &'static str> {
    if content.is_empty() {
        return Err("empty");
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    let mut in_arc = false;
    for &b in content {
        if !in_arc && b == 0x80 {
            return Err("non-minimal sub-identifier");
        }
        if value > (u64::MAX >> 7) {
            return Err("sub-identifier does not fit in 64 bits");
        }
        value = (value << 7) | u64::from(b & 0x7F);
        in_arc = b & 0x80 != 0;
        if !in_arc {
            arcs.push(value);
            value = 0;
        }
    }
    if in_arc {
        return Err("last sub-identifier is cut off");
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in &arcs[1..] {
        out.push('.');
        out.push_str(&arc.to_string());
    }
    Ok(out)
}

/// Appends an identifier octet and a minimal DER length.
pub fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        // Fits in the short form, which needs no length-of-length octet.
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Appends one element.
pub fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    write_header(out, tag, value.len());
    out.extend_from_slice(value);
}

/// One element.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    push_tlv(&mut out, tag, value);
    out
}

/// A constructed element whose content is the concatenation of `parts`
/// (already encoded elements).
pub fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    write_header(&mut out, tag, len);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Content octets of an INTEGER holding `v`, minimal two's complement.
pub fn uint_content(v: u64) -> Vec<u8> {
    unsigned_magnitude_content(&v.to_be_bytes())
}

/// Content octets of an INTEGER holding `v`, minimal two's complement.
pub fn int_content(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    // A leading octet is redundant when it only repeats the sign of the next one.
    while start < 7 {
        let redundant = (bytes[start] == 0x00 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xFF && bytes[start + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

/// Content octets of a non-negative INTEGER given as a big-endian
/// magnitude of any length (e.g. a certificate serial number).
pub fn unsigned_magnitude_content(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|&&b| b == 0).count();
    let significant = &magnitude[skip..];
    let mut out = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|&b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(significant);
    out
}

/// An INTEGER element.
pub fn integer_u64(v: u64) -> Vec<u8> {
    tlv(TAG_INTEGER, &uint_content(v))
}

/// An INTEGER element.
pub fn integer_i64(v: i64) -> Vec<u8> {
    tlv(TAG_INTEGER, &int_content(v))
}

/// Content octets of an OBJECT IDENTIFIER given in dotted form.
pub fn oid_content(dotted: &str) -> Result<Vec<u8>, DerError> {
    let bad = |reason| DerError::BadOidString {
        oid: dotted.to_owned(),
        reason,
    };
    let arcs = dotted
        .split('.')
        .map(|arc| {
            if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("arcs must be decimal numbers"));
            }
            arc.parse::<u64>()
                .map_err(|_| bad("arc does not fit in 64 bits"))
        })
        .collect::<Result<Vec<u64>, DerError>>()?;
    let [a, b, rest @ ..] = arcs.as_slice() else {
        return Err(bad("needs at least two arcs"));
    };
    if *a > 2 {
        return Err(bad("first arc must be 0, 1 or 2"));
    }
    if *a < 2 && *b >= 40 {
        return Err(bad("second arc must be below 40 under arcs 0 and 1"));
    }
    let first = (a * 40)
        .checked_add(*b)
        .ok_or_else(|| bad("second arc too large"))?;
    let mut out = Vec::new();
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut groups = Vec::new();
        let mut v = arc;
        loop {
            groups.push((v & 0x7F) as u8);
            v >>= 7;
            if v == 0 {
                break;
            }
        }
        let last = groups.len() - 1;
        for (i, group) in groups.iter().rev().enumerate() {
            out.push(if i < last { group | 0x80 } else { *group });
        }
    }
    Ok(out)
}

/// An OBJECT IDENTIFIER element.
pub fn oid(dotted: &str) -> Result<Vec<u8>, DerError> {
    Ok(tlv(TAG_OID, &oid_content(dotted)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_are_minimal() {
        assert_eq!(integer_u64(0), [0x02, 0x01, 0x00]);
        assert_eq!(integer_u64(127), [0x02, 0x01, 0x7F]);
        assert_eq!(integer_u64(128), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(
            integer_u64(1_632_814_682),
            [0x02, 0x04, 0x61, 0x52, 0xC6, 0x5A]
        );
        assert_eq!(
            integer_u64(u64::MAX),
            [
                0x02, 0x09, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
            ]
        );
        assert_eq!(integer_i64(-1), [0x02, 0x01, 0xFF]);
        assert_eq!(integer_i64(-128), [0x02, 0x01, 0x80]);
        assert_eq!(integer_i64(-129), [0x02, 0x02, 0xFF, 0x7F]);
        assert_eq!(integer_i64(255), [0x02, 0x02, 0x00, 0xFF]);
    }

    #[test]
    fn oid_of_the_transaction_log() {
        assert_eq!(
            oid("0.4.0.127.0.7.3.7.1.1").unwrap(),
            [
                0x06, 0x09, 0x04, 0x00, 0x7F, 0x00, 0x07, 0x03, 0x07, 0x01, 0x01
            ]
        );
        let ec = oid("1.2.840.10045.2.1").unwrap();
        assert_eq!(ec, [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]);
        assert_eq!(
            parse_single(&ec).unwrap().as_oid().unwrap(),
            "1.2.840.10045.2.1"
        );
        assert!(oid("3.1").is_err());
        assert!(oid("1").is_err());
        assert!(oid("1.x").is_err());
    }

    #[test]
    fn long_lengths() {
        let value = vec![0xAB; 300];
        let encoded = tlv(TAG_OCTET_STRING, &value);
        assert_eq!(&encoded[..4], [0x04, 0x82, 0x01, 0x2C]);
        let parsed = parse_single(&encoded).unwrap();
        assert_eq!(parsed.value, value.as_slice());
        assert_eq!(parsed.value_offset, 4);
    }

    #[test]
    fn indefinite_length_octet_string() {
        let bytes = [
            0xA2, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0x00, 0x00, 0x02, 0x01, 0x05,
        ];
        let mut reader = Reader::new(&bytes);
        let tlv = reader.read().unwrap();
        assert!(tlv.indefinite);
        assert_eq!(tlv.raw, &bytes[..11]);
        assert_eq!(tlv.octets(TAG_OCTET_STRING).unwrap().as_ref(), b"abc");
        assert_eq!(reader.read().unwrap().as_u64().unwrap(), 5);
        reader.finish().unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            parse_single(&[0x04, 0x05, 1, 2]),
            Err(DerError::Truncated {
                offset: 0,
                needed: 3
            })
        );
        assert!(matches!(
            parse_single(&[0x04, 0x01, 1, 2]),
            Err(DerError::TrailingBytes {
                offset: 3,
                count: 1
            })
        ));
        assert!(matches!(
            parse_single(&[0x04, 0x85, 0, 0, 0, 0, 1]),
            Err(DerError::BadLength { offset: 1, .. })
        ));
        assert!(matches!(
            parse_single(&[0x04, 0x80, 0, 0]),
            Err(DerError::BadLength { .. })
        ));
        assert!(matches!(
            parse_single(&[0x1F, 0x01, 0x00]),
            Err(DerError::MultiByteTag { offset: 0 })
        ));
        assert!(matches!(
            parse_single(&[0x30, 0x80, 0x04, 0x00]),
            Err(DerError::Truncated { .. })
        ));
        let message = parse_single(&[0x04, 0x05, 1, 2]).unwrap_err().to_string();
        assert!(message.contains("truncated at byte 0"), "{message}");
    }

    #[test]
    fn nesting_is_limited() {
        let mut deep = tlv(TAG_NULL, &[]);
        for _ in 0..20 {
            deep = tlv(TAG_SEQUENCE, &deep);
        }
        fn walk(tlv: &Tlv<'_>) -> Result<(), DerError> {
            if tlv.is_constructed() {
                for child in tlv.children()? {
                    walk(&child)?;
                }
            }
            Ok(())
        }
        let top = parse_single(&deep).unwrap();
        assert!(matches!(walk(&top), Err(DerError::TooDeep { .. })));

        let mut indefinite = vec![0x30, 0x80];
        indefinite = [indefinite.repeat(20), vec![0; 40]].concat();
        assert!(matches!(
            parse_single(&indefinite),
            Err(DerError::TooDeep { .. })
        ));
    }

    #[derive(Debug, Clone)]
    enum Node {
        Leaf(u8, Vec<u8>),
        Tree(u8, Vec<Node>),
    }

    fn encode(node: &Node) -> Vec<u8> {
        match node {
            Node::Leaf(tag, value) => tlv(*tag, value),
            Node::Tree(tag, children) => {
                let parts: Vec<Vec<u8>> = children.iter().map(encode).collect();
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                constructed(*tag, &refs)
            }
        }
    }

    fn matches_node(tlv: &Tlv<'_>, node: &Node) -> bool {
        match node {
            Node::Leaf(tag, value) => tlv.tag == *tag && tlv.value == value.as_slice(),
            Node::Tree(tag, children) => {
                let Ok(parsed) = tlv.children() else {
                    return false;
                };
                tlv.tag == *tag
                    && parsed.len() == children.len()
                    && parsed.iter().zip(children).all(|(p, c)| matches_node(p, c))
            }
        }
    }

    fn node() -> impl Strategy<Value = Node> {
        let primitive_tag = (1u8..0x1F).prop_map(|t| t | (0x80 * (t % 2)));
        let leaf = (
            primitive_tag,
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(tag, value)| Node::Leaf(tag, value));
        leaf.prop_recursive(4, 32, 5, |inner| {
            (
                prop_oneof![Just(TAG_SEQUENCE), Just(TAG_SET), Just(0xA2u8)],
                proptest::collection::vec(inner, 0..5),
            )
                .prop_map(|(tag, children)| Node::Tree(tag, children))
        })
    }

    fn walk_all(tlv: &Tlv<'_>) {
        if tlv.is_constructed() {
            if let Ok(children) = tlv.children() {
                for child in &children {
                    walk_all(child);
                }
            }
            let _outcome = tlv.octets(TAG_OCTET_STRING).is_ok();
        } else {
            let _outcome = tlv.as_u64().is_ok();
            let _outcome = tlv.as_i64().is_ok();
            let _outcome = tlv.as_oid().is_ok();
            let _outcome = tlv.as_str().is_ok();
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut reader = Reader::new(&bytes);
            while !reader.is_empty() {
                match reader.read() {
                    Ok(tlv) => walk_all(&tlv),
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn encode_parse_round_trip(tree in node()) {
            let bytes = encode(&tree);
            let parsed = parse_single(&bytes).unwrap();
            prop_assert!(matches_node(&parsed, &tree));
            prop_assert_eq!(parsed.raw, bytes.as_slice());
        }

        #[test]
        fn integers_round_trip(u in any::<u64>(), i in any::<i64>()) {
            prop_assert_eq!(parse_single(&integer_u64(u)).unwrap().as_u64().unwrap(), u);
            prop_assert_eq!(parse_single(&integer_i64(i)).unwrap().as_i64().unwrap(), i);
        }

        #[test]
        fn oids_round_trip(a in 0u64..3, b in 0u64..40, rest in proptest::collection::vec(any::<u64>(), 0..6)) {
            let dotted = std::iter::once(a).chain(std::iter::once(b)).chain(rest)
                .map(|x| x.to_string()).collect::<Vec<_>>().join(".");
            prop_assert_eq!(parse_single(&oid(&dotted).unwrap()).unwrap().as_oid().unwrap(), dotted);
        }
    }
}
