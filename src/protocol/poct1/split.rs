//! Cut a TCP byte stream into POCT1 documents (protocols.md §1.4): messages are back-to-back XML
//! documents with no framing, so a document ends when its root element closes. The scanner is
//! resumable byte by byte (a device may deliver one byte per read) and knows just enough XML to
//! find that point: tags and quoted attribute values, the `<?xml?>` prolog and other processing
//! instructions, comments and CDATA sections (a `>` or `</X>` inside them is not markup).
//!
//! A document may not exceed the limit (the device's `DSC.max_message_sz`, else the gateway's
//! `max_message_bytes`): past it the bytes are no longer kept, the scan goes on to the document's
//! end and then reports [`SplitError::TooLarge`], keeping only the first `limit` bytes (enough to
//! read the header and address an error reply). Memory per connection is therefore bounded.
//!
//! An ESC byte (0x1B) anywhere is the device aborting (POCT1: "transmits an ESC … and then END"):
//! any partial document is dropped and [`Split::Escape`] is reported.

use super::xml::MAX_DEPTH;

pub const ESC: u8 = 0x1B;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "document starting at stream byte {start} is {bytes} bytes, over the {limit}-byte limit (exceeded at stream byte {offset})"
    )]
    TooLarge {
        start: u64,
        offset: u64,
        limit: usize,
        bytes: u64,
    },
    #[error(
        "document starting at stream byte {start} nests elements deeper than {max} (at stream byte {offset})"
    )]
    TooDeep { start: u64, offset: u64, max: usize },
    #[error("{bytes} bytes that are not XML skipped between documents at stream byte {offset}")]
    Garbage { offset: u64, bytes: u64 },
}

/// What the splitter found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// One complete document, exactly as it was on the wire (leading white space trimmed).
    Document(Vec<u8>),
    /// A document that cannot be used; `prefix` holds its first bytes (at most the limit).
    Rejected { error: SplitError, prefix: Vec<u8> },
    /// Non-XML bytes between documents were skipped.
    Skipped(SplitError),
    /// The device sent ESC; `dropped` bytes of a partial document were discarded.
    Escape { dropped: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Between documents: white space, a BOM, or garbage until `<`.
    Idle,
    /// Character data (or misc before the root).
    Content,
    /// After `<`.
    Lt,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    BangDash,
    /// After `<![` plus this many bytes of `CDATA[`.
    BangCdata(u8),
    /// Inside `<!…>` that is neither a comment nor CDATA (DOCTYPE; the parser rejects it).
    Decl,
    /// Inside a comment; consecutive `-` seen.
    Comment(u8),
    /// Inside CDATA; consecutive `]` seen.
    Cdata(u8),
    /// Inside `<?…?>`; the previous byte was `?`.
    Pi(bool),
    /// Inside a start (`end = false`) or end tag.
    Tag { end: bool, quote: u8, slash: bool },
}

const CDATA: &[u8; 6] = b"CDATA[";

pub struct Splitter {
    limit: usize,
    scan: Scan,
    buf: Vec<u8>,
    depth: usize,
    root_seen: bool,
    /// Error found in the current document; bytes past the limit are not kept.
    failed: Option<SplitError>,
    /// Stream offset of the next byte.
    offset: u64,
    doc_start: u64,
    garbage: u64,
    garbage_start: u64,
}

impl Splitter {
    pub fn new(limit: usize) -> Self {
        Splitter {
            limit: limit.max(1),
            scan: Scan::Idle,
            buf: Vec::new(),
            depth: 0,
            root_seen: false,
            failed: None,
            offset: 0,
            doc_start: 0,
            garbage: 0,
            garbage_start: 0,
        }
    }

    /// Change the largest document accepted (from the next byte on).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether part of a document has been received.
    pub fn in_document(&self) -> bool {
        self.scan != Scan::Idle
    }

    /// Total bytes fed so far (stream offsets in errors count from here).
    pub fn stream_offset(&self) -> u64 {
        self.offset
    }

    /// Throw away a partial document; returns how many bytes it had.
    pub fn reset(&mut self) -> usize {
        let n = (self.offset - self.doc_start) as usize;
        let had = if self.in_document() { n } else { 0 };
        self.scan = Scan::Idle;
        self.buf.clear();
        self.depth = 0;
        self.root_seen = false;
        self.failed = None;
        had
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Split> {
        let mut out = Vec::new();
        for &b in bytes {
            self.byte(b, &mut out);
            self.offset += 1;
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Split>) {
        if b == ESC {
            self.flush_garbage(out);
            let dropped = self.reset();
            out.push(Split::Escape { dropped });
            return;
        }
        if self.scan == Scan::Idle {
            if b == b'<' {
                self.flush_garbage(out);
                self.doc_start = self.offset;
                self.scan = Scan::Lt;
                self.keep(b);
            } else if !(b.is_ascii_whitespace() || matches!(b, 0xEF | 0xBB | 0xBF | 0)) {
                if self.garbage == 0 {
                    self.garbage_start = self.offset;
                }
                self.garbage += 1;
            }
            return;
        }
        self.keep(b);
        self.scan = match self.scan {
            Scan::Idle => Scan::Idle,
            Scan::Content => {
                if b == b'<' {
                    Scan::Lt
                } else {
                    Scan::Content
                }
            }
            Scan::Lt => match b {
                b'?' => Scan::Pi(false),
                b'!' => Scan::Bang,
                b'/' => Scan::Tag {
                    end: true,
                    quote: 0,
                    slash: false,
                },
                b'>' => {
                    // `<>` is not markup; the parser will say so. Treat it as an empty tag so
                    // the boundary logic stays simple.
                    self.tag_closed(false, true, out);
                    return;
                }
                _ => Scan::Tag {
                    end: false,
                    quote: 0,
                    slash: false,
                },
            },
            Scan::Bang => match b {
                b'-' => Scan::BangDash,
                b'[' => Scan::BangCdata(0),
                b'>' => Scan::Content,
                _ => Scan::Decl,
            },
            Scan::BangDash => {
                if b == b'-' {
                    Scan::Comment(0)
                } else {
                    Scan::Decl
                }
            }
            Scan::BangCdata(n) => {
                if CDATA.get(n as usize) == Some(&b) {
                    if n as usize + 1 == CDATA.len() {
                        Scan::Cdata(0)
                    } else {
                        Scan::BangCdata(n + 1)
                    }
                } else {
                    Scan::Decl
                }
            }
            Scan::Decl => {
                if b == b'>' {
                    Scan::Content
                } else {
                    Scan::Decl
                }
            }
            Scan::Comment(dashes) => match b {
                b'-' => Scan::Comment(dashes.saturating_add(1).min(2)),
                b'>' if dashes >= 2 => Scan::Content,
                _ => Scan::Comment(0),
            },
            Scan::Cdata(brackets) => match b {
                b']' => Scan::Cdata(brackets.saturating_add(1).min(2)),
                b'>' if brackets >= 2 => Scan::Content,
                _ => Scan::Cdata(0),
            },
            Scan::Pi(q) => {
                if q && b == b'>' {
                    Scan::Content
                } else {
                    Scan::Pi(b == b'?')
                }
            }
            Scan::Tag { end, quote, slash } => {
                if quote != 0 {
                    Scan::Tag {
                        end,
                        quote: if b == quote { 0 } else { quote },
                        slash: false,
                    }
                } else if b == b'"' || b == b'\'' {
                    Scan::Tag {
                        end,
                        quote: b,
                        slash: false,
                    }
                } else if b == b'>' {
                    self.tag_closed(end, slash, out);
                    return;
                } else {
                    Scan::Tag {
                        end,
                        quote: 0,
                        slash: b == b'/',
                    }
                }
            }
        };
    }

    fn tag_closed(&mut self, end: bool, empty: bool, out: &mut Vec<Split>) {
        self.scan = Scan::Content;
        if end {
            if self.depth == 0 {
                // A stray end tag: hand it over as a document of its own; the parser rejects it.
                self.finish(out);
                return;
            }
            self.depth -= 1;
        } else {
            self.root_seen = true;
            if !empty {
                self.depth += 1;
                if self.depth > MAX_DEPTH && self.failed.is_none() {
                    self.failed = Some(SplitError::TooDeep {
                        start: self.doc_start,
                        offset: self.offset,
                        max: MAX_DEPTH,
                    });
                }
            }
        }
        if self.root_seen && self.depth == 0 {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Split>) {
        let bytes = std::mem::take(&mut self.buf);
        let total = self.offset + 1 - self.doc_start;
        match self.failed.take() {
            None => out.push(Split::Document(bytes)),
            Some(mut error) => {
                if let SplitError::TooLarge { bytes: b, .. } = &mut error {
                    *b = total;
                }
                out.push(Split::Rejected {
                    error,
                    prefix: bytes,
                });
            }
        }
        self.scan = Scan::Idle;
        self.depth = 0;
        self.root_seen = false;
    }

    fn keep(&mut self, b: u8) {
        if self.buf.len() < self.limit {
            self.buf.push(b);
        } else if self.failed.is_none() {
            self.failed = Some(SplitError::TooLarge {
                start: self.doc_start,
                offset: self.offset,
                limit: self.limit,
                bytes: 0,
            });
        }
    }

    fn flush_garbage(&mut self, out: &mut Vec<Split>) {
        if self.garbage > 0 {
            out.push(Split::Skipped(SplitError::Garbage {
                offset: self.garbage_start,
                bytes: self.garbage,
            }));
            self.garbage = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(out: &[Split]) -> Vec<String> {
        out.iter()
            .filter_map(|s| match s {
                Split::Document(d) => Some(String::from_utf8_lossy(d).into_owned()),
                _ => None,
            })
            .collect()
    }

    const TRICKY: &str = "<?xml version=\"1.0\"?>\n<!-- <B> </A> -->\n<A x=\"a>b\" y='</A>'><![CDATA[</A> ]] >]]><B/><?pi </A>?><C></C></A>";

    #[test]
    fn splits_back_to_back_documents_with_prolog_comments_and_cdata() {
        let stream = format!("  {TRICKY}\r\n<KPA/>{TRICKY}");
        let mut s = Splitter::new(1 << 16);
        let out = s.feed(stream.as_bytes());
        assert_eq!(
            docs(&out),
            vec![TRICKY.to_string(), "<KPA/>".into(), TRICKY.into()]
        );
        assert!(!s.in_document());
    }

    #[test]
    fn byte_by_byte_delivery_gives_the_same_documents() {
        let stream = format!("{TRICKY}{TRICKY}");
        let mut s = Splitter::new(1 << 16);
        let mut out = Vec::new();
        for b in stream.as_bytes() {
            out.extend(s.feed(std::slice::from_ref(b)));
        }
        assert_eq!(docs(&out), vec![TRICKY.to_string(), TRICKY.into()]);
    }

    #[test]
    fn oversize_document_is_rejected_and_the_next_one_passes() {
        let big = format!("<A>{}</A>", "x".repeat(100));
        let mut s = Splitter::new(50);
        let out = s.feed(format!("{big}<B/>").as_bytes());
        match &out[0] {
            Split::Rejected {
                error:
                    SplitError::TooLarge {
                        start: 0,
                        offset: 50,
                        limit: 50,
                        bytes,
                    },
                prefix,
            } => {
                assert_eq!(*bytes, big.len() as u64);
                assert_eq!(prefix.len(), 50);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(docs(&out), vec!["<B/>".to_string()]);
    }

    #[test]
    fn esc_drops_the_partial_document() {
        let mut s = Splitter::new(100);
        let out = s.feed(b"<A><B>\x1b<C/>");
        assert_eq!(out[0], Split::Escape { dropped: 6 });
        assert_eq!(docs(&out), vec!["<C/>".to_string()]);
    }

    #[test]
    fn garbage_between_documents_is_reported_and_skipped() {
        let mut s = Splitter::new(100);
        let out = s.feed(b"<A/>junk<B/>");
        assert_eq!(
            out[1],
            Split::Skipped(SplitError::Garbage {
                offset: 4,
                bytes: 4
            })
        );
        assert_eq!(docs(&out), vec!["<A/>".to_string(), "<B/>".into()]);
    }

    #[test]
    fn a_half_document_waits_and_reset_reports_its_size() {
        let mut s = Splitter::new(100);
        assert!(s.feed(b"<A><B V=\"1").is_empty());
        assert!(s.in_document());
        assert_eq!(s.reset(), 10);
        assert_eq!(docs(&s.feed(b"<C/>")), vec!["<C/>".to_string()]);
    }
}
