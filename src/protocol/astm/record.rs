//! ASTM E1394 / CLSI LIS02-A2 record layer, pure (protocols.md §1.2).
//!
//! A message is the text between `H` and `L`: records ended by `<CR>`, each record a string of
//! fields, each field a list of repeats, each repeat a list of components. The field, repeat,
//! component and escape delimiters are declared by the H record itself (H.2, read literally), so
//! nothing here assumes `|\^&`: GeneXpert sends `|@^\`, Immulite `|\^` with no escape character
//! (protocols.md §0 item 3).
//!
//! Splitting happens on **bytes** (delimiters must be ASCII); escape sequences are resolved per
//! component, and only then are the bytes decoded with the device's [`Encoding`] (Latin-1 or
//! UTF-8), as §1.2 "Character set" asks.
//!
//! Parsing is lenient where real devices are sloppy — CR LF or stray LF between records, empty
//! records (`<CR><CR>`), missing trailing fields ("Delimiters are not included for trailing null
//! fields", §1.2), unknown escape sequences kept literally — and strict where guessing would
//! corrupt data: a record whose type is not one letter followed by the field delimiter is
//! reported as [`RecordError::Malformed`] and left out, and the rest of the message is kept.

use crate::config::Encoding;

/// The four delimiters a message declares in H.2 (the record delimiter is always `<CR>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub repeat: u8,
    pub component: u8,
    /// `None` when the header declares none (Immulite `H|\^|`, protocols.md S18): then every byte
    /// is data.
    pub escape: Option<u8>,
}

impl Delimiters {
    /// The E1394 default `|\^&` (python-astm `astm/constants.py`, protocols.md §1.2).
    pub const STANDARD: Delimiters = Delimiters {
        field: b'|',
        repeat: b'\\',
        component: b'^',
        escape: Some(b'&'),
    };

    /// Read the delimiters from the start of an H record (`H|\^&|…`). H.2 is taken literally:
    /// the byte after `H` is the field delimiter and the bytes up to the next field delimiter are
    /// repeat, component and (optionally) escape.
    pub fn from_header(record: &[u8]) -> Result<Delimiters, RecordError> {
        let found = || latin1(record.get(..record.len().min(8)).unwrap_or_default());
        let bad = |why: &'static str| RecordError::BadDelimiters {
            found: found(),
            why,
        };
        if record.first() != Some(&b'H') {
            return Err(RecordError::MissingHeader { found: found() });
        }
        let Some(&field) = record.get(1) else {
            return Err(bad("the H record ends before its field delimiter"));
        };
        let rest = record.get(2..).unwrap_or_default();
        let declared = match rest.iter().position(|b| *b == field) {
            Some(end) => rest.get(..end).unwrap_or_default(),
            None => rest,
        };
        let (repeat, component, escape) = match *declared {
            [r, c] => (r, c, None),
            [r, c, e] => (r, c, Some(e)),
            _ => {
                return Err(bad(
                    "H.2 must declare repeat, component and optionally escape",
                ));
            }
        };
        let all = [Some(field), Some(repeat), Some(component), escape];
        let all: Vec<u8> = all.into_iter().flatten().collect();
        // GeneXpert 301-2002 §4.4.2 allows ASCII 33–47, 58–64, 91–96, 123–126: printable,
        // not a letter or digit. Non-ASCII delimiters would also break UTF-8 decoding.
        if all
            .iter()
            .any(|b| !b.is_ascii_graphic() || b.is_ascii_alphanumeric())
        {
            return Err(bad("a delimiter is not a printable ASCII symbol"));
        }
        for (i, b) in all.iter().enumerate() {
            if all.iter().skip(i + 1).any(|o| o == b) {
                return Err(bad("two delimiters are the same character"));
            }
        }
        Ok(Delimiters {
            field,
            repeat,
            component,
            escape,
        })
    }
}

/// The record types of E1394 (protocols.md §1.2 "Record types and hierarchy"). Types the table
/// does not know are kept as [`RecordKind::Other`], never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `H` message header.
    Header,
    /// `P` patient information.
    Patient,
    /// `O` test order.
    Order,
    /// `R` result.
    Result,
    /// `C` comment (applies to the preceding record).
    Comment,
    /// `Q` request information (host query).
    Query,
    /// `M` manufacturer information.
    Manufacturer,
    /// `S` scientific.
    Scientific,
    /// `L` message terminator.
    Terminator,
    /// Any other letter.
    Other(char),
}

impl RecordKind {
    /// The kind named by a record's type letter.
    pub fn from_letter(c: char) -> RecordKind {
        match c {
            'H' => RecordKind::Header,
            'P' => RecordKind::Patient,
            'O' => RecordKind::Order,
            'R' => RecordKind::Result,
            'C' => RecordKind::Comment,
            'Q' => RecordKind::Query,
            'M' => RecordKind::Manufacturer,
            'S' => RecordKind::Scientific,
            'L' => RecordKind::Terminator,
            other => RecordKind::Other(other),
        }
    }

    /// The type letter as sent.
    pub fn letter(self) -> char {
        match self {
            RecordKind::Header => 'H',
            RecordKind::Patient => 'P',
            RecordKind::Order => 'O',
            RecordKind::Result => 'R',
            RecordKind::Comment => 'C',
            RecordKind::Query => 'Q',
            RecordKind::Manufacturer => 'M',
            RecordKind::Scientific => 'S',
            RecordKind::Terminator => 'L',
            RecordKind::Other(c) => c,
        }
    }
}

/// What went wrong while reading records. Each names where: the record's 1-based position in the
/// message, the E1394 field number, or the bytes found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The message does not start with an H record, so its delimiters are unknown.
    #[error("no H record: the message starts with `{found}`")]
    MissingHeader { found: String },
    /// H.2 declares delimiters that cannot be used.
    #[error("unusable delimiters in H record `{found}`: {why}")]
    BadDelimiters { found: String, why: &'static str },
    /// One record could not be read; it is left out and the rest of the message is kept.
    #[error("record {record}, field {field}: {why}")]
    Malformed {
        record: usize,
        field: usize,
        why: String,
    },
    /// Capture-level: E1381 frames whose checksum did not verify (their text was used anyway).
    #[error("{bad} of {frames} E1381 frames failed their checksum; their text was used anyway")]
    BadChecksums { bad: usize, frames: usize },
    /// Capture-level: bytes that hold no E1394 message at all (a proprietary framing on an
    /// "ASTM" port, protocols.md §0 item 5).
    #[error("no E1394 message in the capture: {why}")]
    NoMessage { why: String },
}

/// One record, fully decoded (escapes resolved, text decoded with the device's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based position of the record in its message (empty records not counted; malformed
    /// records counted, so the numbers match what the device sent).
    pub index: usize,
    pub kind: RecordKind,
    /// Whole fields, decoded, E1394-numbered from 1: `fields[0]` is field 1 (the record type);
    /// for H, field 2 is the literal delimiter declaration. Repeat and component delimiters are
    /// left in place as sent; escaped delimiters appear as their plain character here, so use
    /// [`Record::component`] / [`Record::repeats`] for structure.
    pub fields: Vec<String>,
    /// `parts[f][r][c]`: field → repeats → components, each decoded.
    parts: Vec<Vec<Vec<String>>>,
}

impl Record {
    /// Field `n` (E1394 numbering: 1 = type, 2 = sequence number …); `""` when not sent.
    pub fn field(&self, n: usize) -> &str {
        n.checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map_or("", String::as_str)
    }

    /// Component `c` (1-based) of the first repeat of field `n`; `""` when not sent.
    pub fn component(&self, n: usize, c: usize) -> &str {
        self.repeat_component(n, 1, c)
    }

    /// Component `c` of repeat `r` of field `n`, all 1-based; `""` when not sent.
    pub fn repeat_component(&self, n: usize, r: usize, c: usize) -> &str {
        n.checked_sub(1)
            .and_then(|f| self.parts.get(f))
            .and_then(|reps| reps.get(r.checked_sub(1)?))
            .and_then(|comps| comps.get(c.checked_sub(1)?))
            .map_or("", String::as_str)
    }

    /// The components of the first repeat of field `n` (empty slice when not sent).
    pub fn components(&self, n: usize) -> &[String] {
        self.repeats(n).first().map_or(&[], Vec::as_slice)
    }

    /// Every repeat of field `n`, each a list of components.
    pub fn repeats(&self, n: usize) -> &[Vec<String>] {
        n.checked_sub(1)
            .and_then(|f| self.parts.get(f))
            .map_or(&[], Vec::as_slice)
    }
}

/// One E1394 message: the delimiters its header declared and every record it holds, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub records: Vec<Record>,
}

impl Message {
    /// The H record (always the first record of a parsed message).
    pub fn header(&self) -> Option<&Record> {
        self.records
            .first()
            .filter(|r| r.kind == RecordKind::Header)
    }
}

/// A message read with its per-record problems: malformed records are reported in `errors`
/// and missing from `message.records`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub message: Message,
    pub errors: Vec<RecordError>,
}

/// Split `text` into records: on `<CR>`, tolerating `<CR><LF>`, a stray `<LF>` and empty records.
pub fn split_records(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\r' || *b == b'\n')
        .filter(|r| !r.iter().all(u8::is_ascii_whitespace))
}

/// Read one H…L message. Fails only when there is no usable H record (without it the delimiters
/// are unknown); a bad record after the header becomes an entry in [`Parsed::errors`].
pub fn parse_message(text: &[u8], encoding: Encoding) -> Result<Parsed, RecordError> {
    let mut lines = split_records(text);
    let Some(head) = lines.next() else {
        return Err(RecordError::MissingHeader {
            found: String::new(),
        });
    };
    let delimiters = Delimiters::from_header(head)?;
    let mut records = vec![parse_header(head, delimiters, encoding)];
    let mut errors = Vec::new();
    for (i, line) in lines.enumerate() {
        match parse_record(line, i + 2, delimiters, encoding) {
            Ok(r) => records.push(r),
            Err(e) => errors.push(e),
        }
    }
    Ok(Parsed {
        message: Message {
            delimiters,
            records,
        },
        errors,
    })
}

/// The H record: field 2 is the delimiter declaration, kept literally and not split.
fn parse_header(line: &[u8], d: Delimiters, encoding: Encoding) -> Record {
    let declared_len = 2 + usize::from(d.escape.is_some());
    let declared = line.get(2..2 + declared_len).unwrap_or_default();
    let rest = line.get(2 + declared_len + 1..).unwrap_or_default();
    let mut fields = vec!["H".to_owned(), decode_text(declared, encoding)];
    let mut parts = vec![
        vec![vec!["H".to_owned()]],
        vec![vec![decode_text(declared, encoding)]],
    ];
    if line.len() > 2 + declared_len {
        for f in rest.split(|b| *b == d.field) {
            fields.push(decode_field(f, d, encoding));
            parts.push(split_field(f, d, encoding));
        }
    }
    Record {
        index: 1,
        kind: RecordKind::Header,
        fields,
        parts,
    }
}

/// Any record after the header.
fn parse_record(
    line: &[u8],
    index: usize,
    d: Delimiters,
    encoding: Encoding,
) -> Result<Record, RecordError> {
    let malformed = |why: String| RecordError::Malformed {
        record: index,
        field: 1,
        why,
    };
    let Some(&ty) = line.first() else {
        return Err(malformed("empty record".to_owned()));
    };
    if !ty.is_ascii_alphabetic() {
        return Err(malformed(format!(
            "record type byte 0x{ty:02X} is not a letter"
        )));
    }
    if let Some(&next) = line.get(1)
        && next != d.field
    {
        let shown: String = latin1(line).chars().take(12).collect();
        return Err(malformed(format!(
            "record `{shown}`: the type letter is not followed by the field delimiter `{}`",
            char::from(d.field)
        )));
    }
    let mut fields = Vec::new();
    let mut parts = Vec::new();
    for f in line.split(|b| *b == d.field) {
        fields.push(decode_field(f, d, encoding));
        parts.push(split_field(f, d, encoding));
    }
    Ok(Record {
        index,
        kind: RecordKind::from_letter(char::from(ty)),
        fields,
        parts,
    })
}

fn split_field(f: &[u8], d: Delimiters, encoding: Encoding) -> Vec<Vec<String>> {
    f.split(|b| *b == d.repeat)
        .map(|rep| {
            rep.split(|b| *b == d.component)
                .map(|c| unescape(c, d, encoding))
                .collect()
        })
        .collect()
}

/// A whole field as text: escapes resolved, delimiters left as sent.
fn decode_field(f: &[u8], d: Delimiters, encoding: Encoding) -> String {
    unescape(f, d, encoding)
}

/// Resolve E1394 escape sequences (protocols.md §1.2 "Escape sequences", written with the declared
/// escape character E): `EFE` `ESE` `ERE` `EEE` → the delimiter, `EXhh…E` → bytes, `EZhhhhE` →
/// a code point, `EHE`/`ENE` (highlighting) → nothing. Anything else — an unknown or unterminated
/// sequence, a lone `&` in text — is kept literally. Bytes are decoded with `encoding` after the
/// escapes are resolved, so `&XB5&` is `µ` in Latin-1.
pub fn unescape(bytes: &[u8], d: Delimiters, encoding: Encoding) -> String {
    let Some(esc) = d.escape else {
        return decode_text(bytes, encoding);
    };
    if !bytes.contains(&esc) {
        return decode_text(bytes, encoding);
    }
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b != esc {
            pending.push(b);
            continue;
        }
        let rest = bytes.get(i..).unwrap_or_default();
        let Some(len) = rest.iter().position(|x| *x == esc) else {
            pending.push(b);
            continue;
        };
        let body = rest.get(..len).unwrap_or_default();
        let resolved = match body {
            b"F" => Some(Escaped::Byte(d.field)),
            b"S" => Some(Escaped::Byte(d.component)),
            b"R" => Some(Escaped::Byte(d.repeat)),
            b"E" => Some(Escaped::Byte(esc)),
            b"H" | b"N" => Some(Escaped::Nothing),
            [b'X', hex @ ..] => hex_bytes(hex).map(Escaped::Bytes),
            [b'Z', hex @ ..] => std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .map(Escaped::Char),
            _ => None,
        };
        match resolved {
            Some(Escaped::Byte(x)) => pending.push(x),
            Some(Escaped::Bytes(xs)) => pending.extend(xs),
            Some(Escaped::Char(c)) => {
                out.push_str(&decode_text(&pending, encoding));
                pending.clear();
                out.push(c);
            }
            Some(Escaped::Nothing) => {}
            None => {
                // Not an escape sequence: the escape character is data.
                pending.push(b);
                continue;
            }
        }
        i += len + 1;
    }
    out.push_str(&decode_text(&pending, encoding));
    out
}

enum Escaped {
    Byte(u8),
    Bytes(Vec<u8>),
    Char(char),
    Nothing,
}

fn hex_bytes(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect()
}

/// Decode bytes with the device's encoding (UTF-8 invalid sequences become U+FFFD).
pub fn decode_text(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Latin1 => latin1(bytes),
        Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// ISO 8859-1: every byte is the code point of the same number.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Parsed {
        match parse_message(text, Encoding::Latin1) {
            Ok(p) => p,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn standard_delimiters_are_read_from_h2() {
        let p = parse(b"H|\\^&|||Sender^1.0\rL|1|N\r");
        assert_eq!(p.message.delimiters, Delimiters::STANDARD);
        let h = &p.message.records[0];
        assert_eq!(h.field(2), "\\^&");
        assert_eq!(h.field(5), "Sender^1.0");
        assert_eq!(h.component(5, 2), "1.0");
    }

    #[test]
    fn genexpert_delimiters_make_ampersand_data_and_at_a_repeat() {
        // protocols.md S6: `Q|1|ALL||||||||||O@N`, `&` is data (escape is `\`).
        let p = parse(b"H|@^\\|12X||ICU^GeneXpert^1.0\rQ|1|ALL||||||||||O@N\rO|1|S||^^^FII & FV\r");
        let d = p.message.delimiters;
        assert_eq!(
            (d.field, d.repeat, d.component, d.escape),
            (b'|', b'@', b'^', Some(b'\\'))
        );
        let q = &p.message.records[1];
        assert_eq!(q.kind, RecordKind::Query);
        assert_eq!(q.repeat_component(13, 1, 1), "O");
        assert_eq!(q.repeat_component(13, 2, 1), "N");
        assert_eq!(p.message.records[2].component(5, 4), "FII & FV");
    }

    #[test]
    fn immulite_header_declares_no_escape_character() {
        // protocols.md S18: `H|\^||PASSWORD|DPC…`.
        let p = parse(b"H|\\^||PASSWORD|DPC\rR|1|^^^TT4|10.3&X41&\r");
        assert_eq!(p.message.delimiters.escape, None);
        let h = &p.message.records[0];
        assert_eq!(h.field(3), "");
        assert_eq!(h.field(4), "PASSWORD");
        assert_eq!(h.field(5), "DPC");
        assert_eq!(p.message.records[1].field(4), "10.3&X41&");
    }

    #[test]
    fn bad_delimiter_declarations_are_rejected() {
        for text in [&b"H||\r"[..], b"H|\\^^|\r", b"H|ab&|\r", b"H"] {
            assert!(
                matches!(
                    parse_message(text, Encoding::Latin1),
                    Err(RecordError::BadDelimiters { .. })
                ),
                "{text:?}"
            );
        }
        assert!(matches!(
            parse_message(b"P|1\rL|1\r", Encoding::Latin1),
            Err(RecordError::MissingHeader { found }) if found.starts_with("P|1")
        ));
    }

    #[test]
    fn escapes_are_resolved_per_component_with_the_declared_character() {
        // protocols.md S8: Sysmex image path `PNG&R&20240628&R&…`.
        let p = parse(b"H|\\^&\rR|1|^^^^SCAT|PNG&R&20240628&R&WDF.PNG|a&S&b^c&F&d&E&e&X41&&H&x\r");
        let r = &p.message.records[1];
        assert_eq!(r.field(4), "PNG\\20240628\\WDF.PNG");
        assert_eq!(r.repeats(4).len(), 1);
        assert_eq!(r.component(5, 1), "a^b");
        assert_eq!(r.component(5, 2), "c|d&eAx");
    }

    #[test]
    fn unknown_and_unterminated_escapes_stay_literal() {
        let d = Delimiters::STANDARD;
        assert_eq!(unescape(b"A & B", d, Encoding::Latin1), "A & B");
        assert_eq!(unescape(b"x&Q&y&", d, Encoding::Latin1), "x&Q&y&");
        assert_eq!(unescape(b"&Z3BC&", d, Encoding::Latin1), "\u{3bc}");
        assert_eq!(unescape(b"&XC2B5&", d, Encoding::Utf8), "µ");
        assert_eq!(unescape(b"&XZZ&", d, Encoding::Utf8), "&XZZ&");
    }

    #[test]
    fn latin1_byte_b5_decodes_to_micro_sign_after_splitting() {
        let p = parse(b"H|\\^&\rR|1|^^^WBC|5.1|10*3/\xB5L\r");
        assert_eq!(p.message.records[1].field(5), "10*3/µL");
        let utf8 = parse_message(b"H|\\^&\rR|1|^^^WBC|5.1|10*3/\xC2\xB5L\r", Encoding::Utf8);
        assert_eq!(
            utf8.map(|p| p.message.records[1].field(5).to_owned()),
            Ok("10*3/µL".to_owned())
        );
    }

    #[test]
    fn missing_trailing_fields_read_as_empty() {
        let p = parse(b"H|\\^&\rP|1\rL|1\r");
        let pr = &p.message.records[1];
        assert_eq!(pr.fields.len(), 2);
        assert_eq!(pr.field(2), "1");
        assert_eq!(pr.field(3), "");
        assert_eq!(pr.component(26, 3), "");
        assert_eq!(pr.field(0), "");
        assert_eq!(pr.component(2, 0), "");
    }

    #[test]
    fn records_split_on_cr_crlf_and_lf_with_empty_records_skipped() {
        let p = parse(b"H|\\^&\r\nP|1\nO|1|S\r\rR|1|^^^X|1\r\nL|1|N\r\r");
        let kinds: Vec<char> = p.message.records.iter().map(|r| r.kind.letter()).collect();
        assert_eq!(kinds, ['H', 'P', 'O', 'R', 'L']);
        let idx: Vec<usize> = p.message.records.iter().map(|r| r.index).collect();
        assert_eq!(idx, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn unknown_record_type_is_kept() {
        let p = parse(b"H|\\^&\rX|1|vendor^data\rL|1\r");
        assert_eq!(p.message.records[1].kind, RecordKind::Other('X'));
        assert_eq!(p.message.records[1].component(3, 2), "data");
        assert!(p.errors.is_empty());
    }

    #[test]
    fn malformed_record_is_reported_with_its_index_and_the_rest_kept() {
        // protocols.md S6: the vendor's own `P1|p234|…` (no `|` after `P`).
        let p = parse(b"H|@^\\|X\rP1|p234||FII H8\rO|1|FII H8\r1|junk\rL|1|N\r");
        let kinds: Vec<char> = p.message.records.iter().map(|r| r.kind.letter()).collect();
        assert_eq!(kinds, ['H', 'O', 'L']);
        assert_eq!(p.message.records[1].index, 3);
        assert_eq!(p.message.records[2].index, 5);
        assert!(matches!(
            &p.errors[..],
            [
                RecordError::Malformed {
                    record: 2,
                    field: 1,
                    ..
                },
                RecordError::Malformed {
                    record: 4,
                    field: 1,
                    ..
                }
            ]
        ));
    }
}
