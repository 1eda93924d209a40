//! The one small, strict XML reader of the protocol layer, shared by POCT1-A2 (protocols.md §1.4)
//! and the HTTP XML body decoder ([`super::fhir`]): elements, attributes,
//! the `<?xml …?>` declaration, other processing instructions, comments, CDATA and the five
//! predefined entities plus character references. No DTDs (a `<!DOCTYPE` is an error, so no
//! entity expansion can happen), no namespaces beyond treating `a:b` as a name.
//!
//! Bounded by construction: it reads one complete document the splitter already limited in size,
//! nests at most [`MAX_DEPTH`] elements (the tree is built with an explicit stack, no recursion)
//! and never indexes past the input. Every error names the byte offset in the document.

use crate::config::Encoding;

/// Deepest element nesting accepted by [`parse`]. POCT1 messages nest five levels
/// (`OBS.R01/SVC/PT/OBS/…`); [`parse_with_depth`] takes a tighter bound.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML ends at byte {offset} inside {inside}")]
    Truncated { offset: usize, inside: String },
    #[error("unexpected {found} at byte {offset}: expected {expected}")]
    Unexpected {
        offset: usize,
        found: String,
        expected: &'static str,
    },
    #[error("end tag </{found}> at byte {offset} does not close <{open}>")]
    MismatchedEnd {
        offset: usize,
        open: String,
        found: String,
        /// Where the open element's start tag is.
        opened: usize,
    },
    #[error("unknown entity `&{name};` at byte {offset}")]
    UnknownEntity { offset: usize, name: String },
    #[error("attribute {name} repeated at byte {offset}")]
    DuplicateAttribute { offset: usize, name: String },
    #[error("elements nested deeper than {max} at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    #[error("<!DOCTYPE> at byte {offset} is not supported")]
    Doctype { offset: usize },
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("control byte 0x{byte:02X} at byte {offset}")]
    ControlByte { offset: usize, byte: u8 },
    #[error("the document has no root element")]
    NoRoot,
    #[error("content after the root element at byte {offset}")]
    TrailingContent { offset: usize },
}

impl XmlError {
    /// The byte offset the error names (`None` for a document without a root).
    pub fn offset(&self) -> Option<usize> {
        match self {
            XmlError::Truncated { offset, .. }
            | XmlError::Unexpected { offset, .. }
            | XmlError::MismatchedEnd { offset, .. }
            | XmlError::UnknownEntity { offset, .. }
            | XmlError::DuplicateAttribute { offset, .. }
            | XmlError::TooDeep { offset, .. }
            | XmlError::Doctype { offset }
            | XmlError::InvalidUtf8 { offset }
            | XmlError::ControlByte { offset, .. }
            | XmlError::TrailingContent { offset } => Some(*offset),
            XmlError::NoRoot => None,
        }
    }
}

/// One lexical item of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `<?xml version="1.0" encoding="…"?>`.
    Declaration {
        attrs: Vec<(String, String)>,
    },
    /// Any other `<?target …?>`; skipped.
    Instruction,
    Comment,
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        /// `<name …/>`.
        empty: bool,
        offset: usize,
    },
    End {
        name: String,
        offset: usize,
    },
    /// Character data with entities resolved (CDATA content is delivered as text too).
    Text {
        text: String,
        offset: usize,
    },
}

/// Pulls [`Token`]s out of one document. After the first error it yields nothing more.
pub struct Tokens<'a> {
    src: &'a [u8],
    pos: usize,
    latin1: bool,
    failed: bool,
}

impl<'a> Tokens<'a> {
    /// `default` decodes a document whose declaration names no encoding.
    pub fn new(src: &'a [u8], default: Encoding) -> Self {
        let pos = if src.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        Tokens {
            src,
            pos,
            latin1: matches!(default, Encoding::Latin1),
            failed: false,
        }
    }

    /// Byte offset of the next unread byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn truncated(&self, inside: impl Into<String>) -> XmlError {
        XmlError::Truncated {
            offset: self.src.len(),
            inside: inside.into(),
        }
    }

    fn unexpected(&self, at: usize, expected: &'static str) -> XmlError {
        match self.byte(at) {
            None => self.truncated(expected),
            Some(b) => XmlError::Unexpected {
                offset: at,
                found: describe(b),
                expected,
            },
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, XmlError> {
        let start = self.pos;
        let rest = self.rest();
        if rest.is_empty() {
            return Ok(None);
        }
        if rest.starts_with(b"<?") {
            let end = find(rest, b"?>").ok_or_else(|| self.truncated("processing instruction"))?;
            let inner = rest.get(2..end).unwrap_or_default();
            self.pos = start + end + 2;
            let target_len = inner
                .iter()
                .position(|b| b.is_ascii_whitespace())
                .unwrap_or(inner.len());
            let target = inner.get(..target_len).unwrap_or_default();
            if target.eq_ignore_ascii_case(b"xml") {
                if start != 0 && !(start == 3 && self.src.starts_with(b"\xEF\xBB\xBF")) {
                    return Err(XmlError::Unexpected {
                        offset: start,
                        found: "<?xml".into(),
                        expected: "the XML declaration only at the start of the document",
                    });
                }
                let attrs = self.attributes(start + 2 + target_len, start + 2 + inner.len())?;
                if let Some((_, enc)) = attrs.iter().find(|(k, _)| k == "encoding") {
                    let enc = enc.to_ascii_lowercase();
                    self.latin1 = matches!(
                        enc.as_str(),
                        "iso-8859-1" | "latin1" | "latin-1" | "windows-1252" | "cp1252"
                    );
                }
                return Ok(Some(Token::Declaration { attrs }));
            }
            return Ok(Some(Token::Instruction));
        }
        if rest.starts_with(b"<!--") {
            let end = find(rest.get(4..).unwrap_or_default(), b"-->")
                .ok_or_else(|| self.truncated("comment"))?;
            self.pos = start + 4 + end + 3;
            return Ok(Some(Token::Comment));
        }
        if rest.starts_with(b"<![CDATA[") {
            let body = rest.get(9..).unwrap_or_default();
            let end = find(body, b"]]>").ok_or_else(|| self.truncated("CDATA section"))?;
            let text = self.decode_raw(start + 9, start + 9 + end)?;
            self.pos = start + 9 + end + 3;
            return Ok(Some(Token::Text {
                text,
                offset: start,
            }));
        }
        if rest.starts_with(b"<!") {
            return Err(XmlError::Doctype { offset: start });
        }
        if rest.starts_with(b"</") {
            let name_end = self.name(start + 2)?;
            let name = self.decode(start + 2, name_end)?;
            let mut i = skip_ws(self.src, name_end);
            if self.byte(i) != Some(b'>') {
                return Err(self.unexpected(i, "`>` closing the end tag"));
            }
            i += 1;
            self.pos = i;
            return Ok(Some(Token::End {
                name,
                offset: start,
            }));
        }
        if rest.starts_with(b"<") {
            let name_end = self.name(start + 1)?;
            let name = self.decode(start + 1, name_end)?;
            // Find the tag's end outside quotes, then read the attributes in between.
            let mut i = name_end;
            let mut quote = None;
            let close = loop {
                match (self.byte(i), quote) {
                    (None, _) => return Err(self.truncated(format!("tag <{name}>"))),
                    (Some(q), Some(open)) if q == open => quote = None,
                    (Some(_), Some(_)) => {}
                    (Some(q @ (b'"' | b'\'')), None) => quote = Some(q),
                    (Some(b'>'), None) => break i,
                    (Some(b'<'), None) => return Err(self.unexpected(i, "`>` closing the tag")),
                    (Some(_), None) => {}
                }
                i += 1;
            };
            let empty = close > name_end && self.byte(close - 1) == Some(b'/');
            let attrs_end = if empty { close - 1 } else { close };
            let attrs = self.attributes(name_end, attrs_end)?;
            self.pos = close + 1;
            return Ok(Some(Token::Start {
                name,
                attrs,
                empty,
                offset: start,
            }));
        }
        let len = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
        let text = self.decode(start, start + len)?;
        self.pos = start + len;
        Ok(Some(Token::Text {
            text,
            offset: start,
        }))
    }

    /// End of the name starting at `at`.
    fn name(&self, at: usize) -> Result<usize, XmlError> {
        match self.byte(at) {
            Some(b) if is_name_start(b) => {}
            _ => return Err(self.unexpected(at, "a name")),
        }
        let mut i = at + 1;
        while self.byte(i).is_some_and(is_name_byte) {
            i += 1;
        }
        Ok(i)
    }

    /// `name="value"` pairs in `src[from..to]`, each preceded by white space.
    fn attributes(&self, from: usize, to: usize) -> Result<Vec<(String, String)>, XmlError> {
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut i = from;
        loop {
            let after_ws = skip_ws_until(self.src, i, to);
            if after_ws >= to {
                return Ok(attrs);
            }
            if after_ws == i {
                return Err(self.unexpected(i, "white space before an attribute"));
            }
            i = after_ws;
            let name_end = self.name(i)?;
            if name_end > to {
                return Err(self.unexpected(to, "an attribute name"));
            }
            let name = self.decode(i, name_end)?;
            let mut j = skip_ws_until(self.src, name_end, to);
            if j >= to || self.byte(j) != Some(b'=') {
                return Err(self.unexpected(j, "`=` after the attribute name"));
            }
            j = skip_ws_until(self.src, j + 1, to);
            let quote = match self.byte(j) {
                Some(q @ (b'"' | b'\'')) if j < to => q,
                _ => return Err(self.unexpected(j, "a quoted attribute value")),
            };
            let vstart = j + 1;
            let vend = self
                .src
                .get(vstart..to)
                .and_then(|s| s.iter().position(|&b| b == quote))
                .map(|p| vstart + p)
                .ok_or_else(|| self.unexpected(to, "the closing quote"))?;
            if let Some(p) = self
                .src
                .get(vstart..vend)
                .and_then(|s| s.iter().position(|&b| b == b'<'))
            {
                return Err(self.unexpected(vstart + p, "no `<` in an attribute value"));
            }
            let value = self.decode(vstart, vend)?;
            if attrs.iter().any(|(k, _)| *k == name) {
                return Err(XmlError::DuplicateAttribute { offset: i, name });
            }
            attrs.push((name, value));
            i = vend + 1;
        }
    }

    /// Decode `src[from..to]` to text as it stands (CDATA content).
    fn decode_raw(&self, from: usize, to: usize) -> Result<String, XmlError> {
        Ok(self.chars(from, to)?.into_owned())
    }

    fn chars(&self, from: usize, to: usize) -> Result<std::borrow::Cow<'a, str>, XmlError> {
        let bytes = self.src.get(from..to).unwrap_or_default();
        if let Some(p) = bytes
            .iter()
            .position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        {
            return Err(XmlError::ControlByte {
                offset: from + p,
                byte: bytes.get(p).copied().unwrap_or_default(),
            });
        }
        Ok(if self.latin1 {
            bytes
                .iter()
                .map(|&b| char::from(b))
                .collect::<String>()
                .into()
        } else {
            std::str::from_utf8(bytes)
                .map_err(|e| XmlError::InvalidUtf8 {
                    offset: from + e.valid_up_to(),
                })?
                .into()
        })
    }

    /// Decode `src[from..to]` to text, resolving entity and character references.
    fn decode(&self, from: usize, to: usize) -> Result<String, XmlError> {
        let raw = self.chars(from, to)?;
        if !raw.contains('&') {
            return Ok(raw.into_owned());
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest: &str = &raw;
        // Offsets below are approximate for Latin-1 text after a non-ASCII byte; UTF-8 is exact.
        let mut consumed = 0usize;
        while let Some(amp) = rest.find('&') {
            out.push_str(rest.get(..amp).unwrap_or_default());
            let after = rest.get(amp + 1..).unwrap_or_default();
            let at = from + consumed + amp;
            let semi = after
                .char_indices()
                .take(12)
                .find(|&(_, c)| c == ';')
                .map(|(i, _)| i)
                .ok_or_else(|| XmlError::Unexpected {
                    offset: at,
                    found: "`&`".into(),
                    expected: "an entity reference ending in `;` (write `&amp;` for `&`)",
                })?;
            let name = after.get(..semi).unwrap_or_default();
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| name.strip_prefix('#').map(|d| d.parse::<u32>()))
                    .and_then(Result::ok)
                    .filter(|&n| n == 0x9 || n == 0xA || n == 0xD || n >= 0x20)
                    .and_then(char::from_u32),
            };
            let c = c.ok_or_else(|| XmlError::UnknownEntity {
                offset: at,
                name: name.to_owned(),
            })?;
            out.push(c);
            let skip = amp + 1 + semi + 1;
            consumed += skip;
            rest = rest.get(skip..).unwrap_or_default();
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Iterator for Tokens<'_> {
    type Item = Result<Token, XmlError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_token() {
            Ok(t) => t.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// An element of the parsed tree. POCT1 keeps values in attributes (`V`, `U`, `DN`, `SN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Character data directly inside this element (CDATA included), untrimmed.
    pub text: String,
    /// Byte offset of the start tag in the document.
    pub offset: usize,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element's value: its trimmed `V` attribute, or — when `V` is missing or empty, as in
    /// `<DEV.device_id V="">MGH^ICU</DEV.device_id>` — its trimmed text. `None` when both are empty.
    pub fn value(&self) -> Option<&str> {
        self.attr("V")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .or_else(|| Some(self.text.trim()).filter(|t| !t.is_empty()))
    }

    /// [`Element::value`] of the first child named `name`.
    pub fn child_value(&self, name: &str) -> Option<&str> {
        self.child(name).and_then(Element::value)
    }
}

/// Parse one complete document into its root element (nesting up to [`MAX_DEPTH`]).
pub fn parse(doc: &[u8], default: Encoding) -> Result<Element, XmlError> {
    parse_with_depth(doc, default, MAX_DEPTH)
}

/// [`parse`] with elements nested at most `max_depth` deep.
pub fn parse_with_depth(
    doc: &[u8],
    default: Encoding,
    max_depth: usize,
) -> Result<Element, XmlError> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    for token in Tokens::new(doc, default) {
        match token? {
            Token::Declaration { .. } | Token::Instruction | Token::Comment => {}
            Token::Start {
                name,
                attrs,
                empty,
                offset,
            } => {
                if root.is_some() {
                    return Err(XmlError::TrailingContent { offset });
                }
                if stack.len() >= max_depth {
                    return Err(XmlError::TooDeep {
                        offset,
                        max: max_depth,
                    });
                }
                let el = Element {
                    name,
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    offset,
                };
                if empty {
                    attach(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Token::End { name, offset } => match stack.pop() {
                Some(open) if open.name == name => attach(&mut stack, &mut root, open),
                Some(open) => {
                    return Err(XmlError::MismatchedEnd {
                        offset,
                        open: open.name,
                        found: name,
                        opened: open.offset,
                    });
                }
                None => {
                    return Err(XmlError::Unexpected {
                        offset,
                        found: format!("</{name}>"),
                        expected: "a start tag",
                    });
                }
            },
            Token::Text { text, offset } => match stack.last_mut() {
                Some(top) => top.text.push_str(&text),
                None if text.trim().is_empty() => {}
                None if root.is_some() => return Err(XmlError::TrailingContent { offset }),
                None => {
                    return Err(XmlError::Unexpected {
                        offset,
                        found: "text".into(),
                        expected: "the root element",
                    });
                }
            },
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError::Truncated {
            offset: doc.len(),
            inside: format!("element <{}>", open.name),
        });
    }
    root.ok_or(XmlError::NoRoot)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// What can be read from the start of a document that did not parse (too large, truncated,
/// malformed): its root element name and `HDR.control_id`, to address an error reply.
pub fn peek_header(prefix: &[u8], default: Encoding) -> (Option<String>, Option<String>) {
    let mut root = None;
    for token in Tokens::new(prefix, default) {
        match token {
            Ok(Token::Start { name, attrs, .. }) => {
                if root.is_none() {
                    root = Some(name);
                } else if name == "HDR.control_id" {
                    let v = attrs
                        .into_iter()
                        .find(|(k, _)| k == "V")
                        .map(|(_, v)| v.trim().to_owned())
                        .filter(|v| !v.is_empty());
                    return (root, v);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (root, None)
}

/// Escape text for an attribute value or element content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", char::from(b))
    } else {
        format!("byte 0x{b:02X}")
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn skip_ws(src: &[u8], mut i: usize) -> usize {
    while src.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn skip_ws_until(src: &[u8], mut i: usize, to: usize) -> usize {
    while i < to && src.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_byte(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'.' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s.as_bytes(), Encoding::Utf8)
    }

    #[test]
    fn values_come_from_v_then_text() {
        let el = p(r#"<?xml version="1.0" encoding="UTF-8"?><!-- c --><A><B V="">MGH^ICU</B><C V="1" U="mg/dL"/></A>"#).unwrap();
        assert_eq!(el.name, "A");
        assert_eq!(el.child_value("B"), Some("MGH^ICU"));
        assert_eq!(el.child_value("C"), Some("1"));
        assert_eq!(el.child("C").and_then(|c| c.attr("U")), Some("mg/dL"));
    }

    #[test]
    fn entities_cdata_and_single_quotes() {
        let el = p("<A N='a &amp; b &#x3C; &#62;'><![CDATA[<raw> & ]]>&lt;x&gt;</A>").unwrap();
        assert_eq!(el.attr("N"), Some("a & b < >"));
        assert_eq!(el.text, "<raw> & <x>");
    }

    #[test]
    fn truncated_document_names_the_byte_offset() {
        let doc = r#"<OBS.R01><HDR><HDR.control_id V="10"#;
        let e = p(doc).unwrap_err();
        assert_eq!(
            e,
            XmlError::Truncated {
                offset: doc.len(),
                inside: "tag <HDR.control_id>".into()
            }
        );
        assert!(
            e.to_string().contains(&format!("byte {}", doc.len())),
            "{e}"
        );
        let e = p("<OBS.R01><HDR></HDR>").unwrap_err();
        assert_eq!(
            e.to_string(),
            "XML ends at byte 20 inside element <OBS.R01>"
        );
    }

    #[test]
    fn strictness() {
        assert!(matches!(
            p("<A></B>"),
            Err(XmlError::MismatchedEnd { offset: 3, .. })
        ));
        assert!(matches!(
            p("<A x='1' x='2'/>"),
            Err(XmlError::DuplicateAttribute { .. })
        ));
        assert!(matches!(
            p("<!DOCTYPE A><A/>"),
            Err(XmlError::Doctype { offset: 0 })
        ));
        assert!(matches!(
            p("<A>&bogus;</A>"),
            Err(XmlError::UnknownEntity { offset: 3, .. })
        ));
        assert!(matches!(
            p("<A/><B/>"),
            Err(XmlError::TrailingContent { offset: 4 })
        ));
        assert!(matches!(
            p("<A>\u{1b}</A>"),
            Err(XmlError::ControlByte {
                offset: 3,
                byte: 0x1b
            })
        ));
        assert!(matches!(p("<A x=1/>"), Err(XmlError::Unexpected { .. })));
        assert!(matches!(p(" "), Err(XmlError::NoRoot)));
        assert!(matches!(
            parse(b"<A>\xff</A>", Encoding::Utf8),
            Err(XmlError::InvalidUtf8 { offset: 3 })
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(p(&deep), Err(XmlError::TooDeep { .. })));
    }

    #[test]
    fn latin1_declaration_decodes_bytes() {
        let el = parse(
            b"<?xml version='1.0' encoding='ISO-8859-1'?><A V='\xe9'/>",
            Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(el.attr("V"), Some("é"));
    }

    #[test]
    fn peek_header_reads_a_truncated_prefix() {
        let (root, id) = peek_header(
            br#"<OBS.R01><HDR><HDR.message_type V="OBS.R01"/><HDR.control_id V="42"/></HDR><SVC><PT"#,
            Encoding::Utf8,
        );
        assert_eq!(
            (root.as_deref(), id.as_deref()),
            (Some("OBS.R01"), Some("42"))
        );
    }
}
