//! HL7 v2 segments, fields, repetitions, components and escapes (protocols.md §1.3), with the
//! delimiters the message declares in MSH-1 and MSH-2.
//!
//! Splitting happens on the raw text and escapes are resolved only in the leaf value a caller
//! asks for, so an escaped delimiter (`\T\`) never splits anything. Sub-components are split only
//! when a caller asks for one: Mindray's OBR-32 `R&D Engineer` (S23) stays whole as a component.

use crate::config::Encoding;
use crate::protocol::astm::record::decode_text;

/// The five delimiters of MSH-1/MSH-2. Escape and sub-component are optional (MSH-2 may be short).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: Option<char>,
}

impl Default for Delimiters {
    /// `|^~\&`, what every sample in protocols.md uses.
    fn default() -> Self {
        Self {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: Some('&'),
        }
    }
}

impl Delimiters {
    /// MSH-2 as it is written in a message with these delimiters.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::new();
        s.push(self.component);
        s.push(self.repetition);
        s.extend(self.escape);
        s.extend(self.subcomponent);
        s
    }

    /// Escape a value so it can be placed in a field (`|` → `\F\`, …).
    pub fn escape(&self, value: &str) -> String {
        let Some(esc) = self.escape else {
            return value.to_owned();
        };
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            let code = if c == self.field {
                Some('F')
            } else if c == self.component {
                Some('S')
            } else if Some(c) == self.subcomponent {
                Some('T')
            } else if c == self.repetition {
                Some('R')
            } else if c == esc {
                Some('E')
            } else {
                None
            };
            match code {
                Some(code) => {
                    out.push(esc);
                    out.push(code);
                    out.push(esc);
                }
                // Segment separators cannot appear inside a field.
                None if c == '\r' || c == '\n' => out.push(' '),
                None => out.push(c),
            }
        }
        out
    }

    /// Resolve escape sequences: `\F\ \S\ \T\ \R\ \E\`, `\Xhh…\` (bytes in `encoding`),
    /// `\H\`/`\N\` (highlighting, dropped), `\.br\` (line break). Anything unknown or unterminated
    /// is kept as written.
    pub fn unescape(&self, raw: &str, encoding: Encoding) -> String {
        let Some(esc) = self.escape else {
            return raw.to_owned();
        };
        if !raw.contains(esc) {
            return raw.to_owned();
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find(esc) {
            out.push_str(rest.get(..start).unwrap_or_default());
            let after = rest.get(start + esc.len_utf8()..).unwrap_or_default();
            let Some(end) = after.find(esc) else {
                out.push_str(rest.get(start..).unwrap_or_default());
                return out;
            };
            let seq = after.get(..end).unwrap_or_default();
            match seq {
                "F" => out.push(self.field),
                "S" => out.push(self.component),
                "T" => out.extend(self.subcomponent),
                "R" => out.push(self.repetition),
                "E" => out.push(esc),
                "H" | "N" => {}
                ".br" => out.push('\n'),
                _ => match seq.strip_prefix('X').and_then(hex_bytes) {
                    Some(bytes) => out.push_str(&decode_text(&bytes, encoding)),
                    None => {
                        out.push(esc);
                        out.push_str(seq);
                        out.push(esc);
                    }
                },
            }
            rest = after.get(end + esc.len_utf8()..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// What makes a message unreadable, or one part of it wrong. Each names where it is.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Hl7Error {
    #[error("empty message: no segments")]
    Empty,
    #[error("segment 1 ({found}): a message must start with MSH")]
    NoMsh { found: String },
    #[error("segment 1 (MSH): {why}")]
    BadDelimiters { why: String },
    #[error("segment 1 (MSH): MSH-{field} ({name}) is missing or empty")]
    MshTooShort { field: usize, name: &'static str },
    #[error("segment {segment} ({id}): field {field}: {why}")]
    Malformed {
        segment: usize,
        id: String,
        field: usize,
        why: String,
    },
    #[error("MLLP frame: {0}")]
    Framing(String),
}

/// One segment: its id and raw (still escaped) fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position in the message, from 1 (MSH is 1).
    pub index: usize,
    pub id: String,
    /// `fields[n]` is field `n` as HL7 numbers it (`fields[0]` is the id). For MSH, `fields[1]`
    /// is the field separator and `fields[2]` the encoding characters, as MSH-1/MSH-2 count.
    fields: Vec<String>,
}

impl Segment {
    /// Field `n`, raw (all repetitions, escapes unresolved); `""` when absent.
    pub fn field(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or_default()
    }

    /// Number of fields present (the highest field number).
    pub fn len(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed message: its delimiters and segments. Values are read through [`Message`] methods
/// so escapes are resolved with the message's own delimiters and encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub encoding: Encoding,
    pub segments: Vec<Segment>,
}

impl Message {
    pub fn msh(&self) -> Option<&Segment> {
        self.segments.first().filter(|s| s.id == "MSH")
    }

    /// Repetitions of field `n`, raw.
    pub fn repeats<'a>(&self, seg: &'a Segment, n: usize) -> Vec<&'a str> {
        let f = seg.field(n);
        if seg.id == "MSH" && n <= 2 {
            return vec![f];
        }
        f.split(self.delimiters.repetition).collect()
    }

    /// The first repetition of field `n`, raw.
    pub fn first_repeat<'a>(&self, seg: &'a Segment, n: usize) -> &'a str {
        self.repeats(seg, n).into_iter().next().unwrap_or_default()
    }

    /// Components of one raw repetition.
    pub fn components<'a>(&self, rep: &'a str) -> Vec<&'a str> {
        rep.split(self.delimiters.component).collect()
    }

    /// Component `c` (from 1) of the first repetition of field `n`, unescaped, sub-components
    /// left joined. `""` when absent.
    pub fn component(&self, seg: &Segment, n: usize, c: usize) -> String {
        if seg.id == "MSH" && n <= 2 {
            return if c == 1 {
                seg.field(n).to_owned()
            } else {
                String::new()
            };
        }
        let rep = self.first_repeat(seg, n);
        self.component_of(rep, c)
    }

    /// Component `c` (from 1) of a raw repetition, unescaped.
    pub fn component_of(&self, rep: &str, c: usize) -> String {
        let raw = c
            .checked_sub(1)
            .and_then(|i| self.components(rep).get(i).copied())
            .unwrap_or_default();
        self.unescape(raw)
    }

    /// Sub-component `s` of component `c` of the first repetition of field `n`, unescaped.
    pub fn subcomponent(&self, seg: &Segment, n: usize, c: usize, s: usize) -> String {
        let rep = self.first_repeat(seg, n);
        let comp = c
            .checked_sub(1)
            .and_then(|i| self.components(rep).get(i).copied())
            .unwrap_or_default();
        let raw = match self.delimiters.subcomponent {
            Some(sc) => s
                .checked_sub(1)
                .and_then(|i| comp.split(sc).nth(i))
                .unwrap_or_default(),
            None if s == 1 => comp,
            None => "",
        };
        self.unescape(raw)
    }

    /// Whether component `c` of field `n` has more than one sub-component.
    pub fn has_subcomponents(&self, seg: &Segment, n: usize, c: usize) -> bool {
        let Some(sc) = self.delimiters.subcomponent else {
            return false;
        };
        let rep = self.first_repeat(seg, n);
        c.checked_sub(1)
            .and_then(|i| self.components(rep).get(i).copied())
            .is_some_and(|comp| comp.contains(sc))
    }

    /// The whole first repetition of field `n` unescaped per component, components re-joined
    /// with the component separator and trailing empty components dropped (`NORMAL^` → `NORMAL`).
    pub fn text(&self, seg: &Segment, n: usize) -> String {
        let rep = self.first_repeat(seg, n);
        self.rep_text(rep)
    }

    /// One raw repetition as text (see [`Message::text`]).
    pub fn rep_text(&self, rep: &str) -> String {
        let mut parts: Vec<String> = self
            .components(rep)
            .into_iter()
            .map(|c| self.unescape(c))
            .collect();
        while parts.last().is_some_and(|p| p.trim().is_empty()) {
            parts.pop();
        }
        parts.join(&self.delimiters.component.to_string())
    }

    pub fn unescape(&self, raw: &str) -> String {
        self.delimiters.unescape(raw, self.encoding)
    }

    /// MSH field `n` component 1, unescaped (`""` when absent or when there is no MSH).
    pub fn msh_value(&self, n: usize) -> String {
        self.msh()
            .map(|m| self.component(m, n, 1))
            .unwrap_or_default()
    }
}

/// The character set a message declares in MSH-18, when it is one we know.
fn declared_encoding(msh18: &str) -> Option<Encoding> {
    let up = msh18.trim().to_ascii_uppercase();
    match up.as_str() {
        "UNICODE" | "UNICODE UTF-8" | "UTF-8" | "UTF8" => Some(Encoding::Utf8),
        "8859/1" | "ISO-8859-1" | "ISO_IR 100" | "LATIN1" => Some(Encoding::Latin1),
        _ => None,
    }
}

/// Parse one message. Fatal problems (no MSH, unusable delimiters) are `Err`; a message that
/// parses with problems in its header fields comes back with those in the error list.
pub fn parse(
    bytes: &[u8],
    default_encoding: Encoding,
) -> Result<(Message, Vec<Hl7Error>), Hl7Error> {
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\r' || *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let first = *lines.first().ok_or(Hl7Error::Empty)?;
    if !first.starts_with(b"MSH") {
        let id: String = decode_text(first.get(..3).unwrap_or(first), Encoding::Latin1);
        return Err(Hl7Error::NoMsh {
            found: id.chars().filter(|c| !c.is_control()).collect(),
        });
    }
    let delimiters = delimiters(first)?;
    // MSH-18 is plain ASCII, so it can be read before the message is decoded.
    let msh18 = String::from_utf8_lossy(first)
        .split(delimiters.field)
        .nth(17)
        .map(|s| {
            s.split(delimiters.component)
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let encoding = declared_encoding(&msh18).unwrap_or(default_encoding);
    let segments = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let text = decode_text(line, encoding);
            let mut fields: Vec<String> = text.split(delimiters.field).map(str::to_owned).collect();
            let id = fields.first().cloned().unwrap_or_default();
            if i == 0 {
                // MSH-1 is the separator itself: shift so that fields[n] is MSH-n.
                fields.insert(1, delimiters.field.to_string());
            }
            Segment {
                index: i + 1,
                id: id.trim().to_owned(),
                fields,
            }
        })
        .collect();
    let message = Message {
        delimiters,
        encoding,
        segments,
    };
    let mut errors = Vec::new();
    for (field, name) in [(9, "message type"), (10, "message control ID")] {
        if message.msh_value(field).trim().is_empty() {
            errors.push(Hl7Error::MshTooShort { field, name });
        }
    }
    Ok((message, errors))
}

/// MSH-1 and MSH-2 from the first segment's raw bytes.
fn delimiters(msh: &[u8]) -> Result<Delimiters, Hl7Error> {
    let bad = |why: &str| Hl7Error::BadDelimiters {
        why: why.to_owned(),
    };
    let field = *msh
        .get(3)
        .ok_or_else(|| bad("MSH-1 (field separator) is missing"))?;
    let enc: Vec<u8> = msh
        .get(4..)
        .unwrap_or_default()
        .iter()
        .copied()
        .take_while(|b| *b != field)
        .collect();
    if enc.is_empty() || enc.len() > 5 {
        return Err(bad(
            "MSH-2 (encoding characters) must hold 1 to 5 characters, like ^~\\&",
        ));
    }
    let mut all = vec![field];
    all.extend(enc.iter().take(4));
    for (i, b) in all.iter().enumerate() {
        if b.is_ascii_alphanumeric() || !b.is_ascii_graphic() {
            return Err(bad(&format!(
                "delimiter {:?} is not a printable symbol",
                char::from(*b)
            )));
        }
        if all.iter().skip(i + 1).any(|o| o == b) {
            return Err(bad(&format!(
                "delimiter {:?} is declared twice",
                char::from(*b)
            )));
        }
    }
    let at = |i: usize| enc.get(i).map(|b| char::from(*b));
    Ok(Delimiters {
        field: char::from(field),
        component: at(0).unwrap_or('^'),
        repetition: at(1).unwrap_or('~'),
        escape: at(2),
        subcomponent: at(3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        match parse(s.as_bytes(), Encoding::Utf8) {
            Ok((m, e)) => {
                assert!(e.is_empty(), "{e:?}");
                m
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn msh_fields_are_numbered_as_hl7_counts_them() {
        let m = msg("MSH|^~\\&|BC-5380|Mindray|||20080617143943||ORU^R01|1|P|2.3.1\r");
        let h = m.msh().unwrap();
        assert_eq!(h.field(1), "|");
        assert_eq!(h.field(2), "^~\\&");
        assert_eq!(m.component(h, 3, 1), "BC-5380");
        assert_eq!(m.component(h, 9, 2), "R01");
        assert_eq!(m.msh_value(10), "1");
        assert_eq!(m.msh_value(12), "2.3.1");
    }

    #[test]
    fn escapes_resolve_after_splitting() {
        let m = msg(
            "MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rOBX|1|ST|X&Y&FII \\T\\ FV&1|a\\F\\b\\S\\c\\R\\d\\E\\e\\X41C2B5\\|\\Z1\\\r",
        );
        let obx = &m.segments[1];
        assert_eq!(m.subcomponent(obx, 3, 1, 3), "FII & FV");
        assert!(m.has_subcomponents(obx, 3, 1));
        assert_eq!(m.component(obx, 4, 1), "a|b^c~d\\eAµ");
        assert_eq!(m.component(obx, 5, 1), "\\Z1\\", "unknown escapes are kept");
    }

    #[test]
    fn declared_delimiters_are_used() {
        let m = msg("MSH#!@$%#A!B######ORU!R01#1\rOBX#1#NM#C!D@E#x$S$y\r");
        let obx = &m.segments[1];
        assert_eq!(m.component(obx, 3, 2), "D");
        assert_eq!(m.repeats(obx, 3), ["C!D", "E"]);
        assert_eq!(m.component(obx, 4, 1), "x!y");
    }

    #[test]
    fn unescaped_subcomponent_separator_stays_in_the_component() {
        // S23: OBR-32 `R&D Engineer` should have been `R\T\D Engineer`.
        let m = msg(
            "MSH|^~\\&|A||||||ORU^R01|1|Q|2.3.1\rOBR|1|||||||||||||||||||||||||||||||R&D Engineer\r",
        );
        assert_eq!(m.component(&m.segments[1], 32, 1), "R&D Engineer");
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert_eq!(parse(b"", Encoding::Utf8).err(), Some(Hl7Error::Empty));
        assert_eq!(
            parse(b"PID|1||X\r", Encoding::Utf8).err(),
            Some(Hl7Error::NoMsh {
                found: "PID".into()
            })
        );
        assert!(matches!(
            parse(b"MSH", Encoding::Utf8),
            Err(Hl7Error::BadDelimiters { .. })
        ));
        assert!(matches!(
            parse(b"MSH|^^\\&|", Encoding::Utf8),
            Err(Hl7Error::BadDelimiters { .. })
        ));
        let (_, errors) = parse(b"MSH|^~\\&|A", Encoding::Utf8).unwrap();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "segment 1 (MSH): MSH-9 (message type) is missing or empty",
                "segment 1 (MSH): MSH-10 (message control ID) is missing or empty"
            ]
        );
    }

    #[test]
    fn msh18_unicode_means_utf8_and_8859_means_latin1() {
        let (m, _) = parse(
            "MSH|^~\\&|A||||||ORU^R01|1|P|2.3.1||||||UNICODE\rOBX|1|ST|µ\r".as_bytes(),
            Encoding::Latin1,
        )
        .unwrap();
        assert_eq!(m.component(&m.segments[1], 3, 1), "µ");
        let (m, _) = parse(
            b"MSH|^~\\&|A||||||ORU^R01|1|P|2.3.1||||||8859/1\rOBX|1|ST|\xB5\r",
            Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(m.component(&m.segments[1], 3, 1), "µ");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters::default();
        let s = "a|b^c~d\\e&f";
        assert_eq!(d.escape(s), "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f");
        assert_eq!(d.unescape(&d.escape(s), Encoding::Utf8), s);
    }
}
