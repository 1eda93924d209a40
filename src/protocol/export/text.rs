//! Bytes → text in the encoding the instrument writes (protocols.md §1.5: Cedex Bio writes
//! ISO Latin-1, BD Multiset `mac_roman`, Windows PCs windows-1252). A UTF-8 byte-order mark
//! wins over the configured encoding (the file says what it is) and is stripped.

use super::ExportError;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    /// ISO 8859-1: every byte is the code point of the same number.
    Latin1,
    /// Classic Mac OS Roman (BD FACSCalibur Multiset).
    MacRoman,
    Windows1252,
    /// UTF-16 little-endian (GeneXpert's exported results file, per SENAITE's importer). Also
    /// chosen by an `FF FE` byte-order mark whatever the setting.
    Utf16Le,
}

impl TextEncoding {
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Latin1 => "latin1",
            Self::MacRoman => "mac_roman",
            Self::Windows1252 => "windows-1252",
            Self::Utf16Le => "utf-16le",
        }
    }

    /// The names accepted in the config.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Some(Self::Utf8),
            "latin1" | "latin-1" | "iso-8859-1" => Some(Self::Latin1),
            "mac_roman" | "macroman" | "macintosh" => Some(Self::MacRoman),
            "windows-1252" | "cp1252" => Some(Self::Windows1252),
            "utf-16le" | "utf16le" | "utf-16" => Some(Self::Utf16Le),
            _ => None,
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
const BOM_UTF16LE: &[u8] = b"\xFF\xFE";

/// Whether the bytes are UTF-16 (by BOM or setting): such a file is only read whole, since its
/// line ends are two bytes.
pub fn is_utf16(bytes: &[u8], encoding: TextEncoding) -> bool {
    encoding == TextEncoding::Utf16Le || bytes.starts_with(BOM_UTF16LE)
}

/// Decode `bytes`. Errors give the byte offset in the file (BOM included).
pub fn decode(bytes: &[u8], encoding: TextEncoding) -> Result<Cow<'_, str>, ExportError> {
    if is_utf16(bytes, encoding) && !bytes.starts_with(BOM) {
        return utf16le(bytes);
    }
    let (body, skip, encoding) = match bytes.strip_prefix(BOM) {
        Some(rest) => (rest, BOM.len(), TextEncoding::Utf8),
        None => (bytes, 0, encoding),
    };
    // A NUL never occurs in these text exports; it means UTF-16 or a binary file, and would
    // otherwise decode into garbage without complaint in the 8-bit encodings.
    if let Some(i) = body.iter().position(|&b| b == 0) {
        return Err(ExportError::Nul {
            offset: skip + i,
            encoding: encoding.name(),
        });
    }
    match encoding {
        TextEncoding::Utf8 => {
            std::str::from_utf8(body)
                .map(Cow::Borrowed)
                .map_err(|e| ExportError::Encoding {
                    offset: skip + e.valid_up_to(),
                    encoding: "utf8",
                })
        }
        TextEncoding::Latin1 => Ok(match std::str::from_utf8(body) {
            // Pure ASCII is the same in both.
            Ok(s) if body.is_ascii() => Cow::Borrowed(s),
            _ => Cow::Owned(body.iter().map(|&b| char::from(b)).collect()),
        }),
        TextEncoding::MacRoman => Ok(single_byte(body, |b| MAC_ROMAN_HIGH[usize::from(b - 0x80)])),
        TextEncoding::Windows1252 => Ok(single_byte(body, |b| match b {
            0x80..=0x9F => WINDOWS_1252_C1[usize::from(b - 0x80)],
            _ => char::from(b),
        })),
        TextEncoding::Utf16Le => utf16le(body),
    }
}

fn utf16le(bytes: &[u8]) -> Result<Cow<'static, str>, ExportError> {
    let skip = if bytes.starts_with(BOM_UTF16LE) { 2 } else { 0 };
    let body = &bytes[skip..];
    let bad = |offset| ExportError::Encoding {
        offset,
        encoding: "utf-16le",
    };
    if body.len() % 2 == 1 {
        return Err(bad(bytes.len() - 1));
    }
    let units = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let mut out = String::with_capacity(body.len() / 2);
    let mut at = skip;
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                out.push(c);
                at += c.len_utf16() * 2;
            }
            Err(_) => return Err(bad(at)),
        }
    }
    Ok(Cow::Owned(out))
}

/// Every byte is defined in these WHATWG single-byte encodings, so decoding cannot fail; ASCII
/// is the same in all of them. Own tables rather than `encoding_rs`, whose decoder dispatch links
/// every encoding it knows, CJK tables included (binary size, issue 6); the tests check both
/// tables against `encoding_rs` byte by byte.
fn single_byte(body: &[u8], high: impl Fn(u8) -> char) -> Cow<'_, str> {
    if body.is_ascii() {
        // ASCII is valid UTF-8.
        return Cow::Borrowed(std::str::from_utf8(body).unwrap_or_default());
    }
    Cow::Owned(
        body.iter()
            .map(|&b| if b < 0x80 { char::from(b) } else { high(b) })
            .collect(),
    )
}

/// Bytes 0x80–0xFF in WHATWG `macintosh` (Mac Roman).
const MAC_ROMAN_HIGH: [char; 128] = [
    '\u{00C4}', '\u{00C5}', '\u{00C7}', '\u{00C9}', '\u{00D1}', '\u{00D6}', '\u{00DC}', '\u{00E1}',
    '\u{00E0}', '\u{00E2}', '\u{00E4}', '\u{00E3}', '\u{00E5}', '\u{00E7}', '\u{00E9}', '\u{00E8}',
    '\u{00EA}', '\u{00EB}', '\u{00ED}', '\u{00EC}', '\u{00EE}', '\u{00EF}', '\u{00F1}', '\u{00F3}',
    '\u{00F2}', '\u{00F4}', '\u{00F6}', '\u{00F5}', '\u{00FA}', '\u{00F9}', '\u{00FB}', '\u{00FC}',
    '\u{2020}', '\u{00B0}', '\u{00A2}', '\u{00A3}', '\u{00A7}', '\u{2022}', '\u{00B6}', '\u{00DF}',
    '\u{00AE}', '\u{00A9}', '\u{2122}', '\u{00B4}', '\u{00A8}', '\u{2260}', '\u{00C6}', '\u{00D8}',
    '\u{221E}', '\u{00B1}', '\u{2264}', '\u{2265}', '\u{00A5}', '\u{00B5}', '\u{2202}', '\u{2211}',
    '\u{220F}', '\u{03C0}', '\u{222B}', '\u{00AA}', '\u{00BA}', '\u{03A9}', '\u{00E6}', '\u{00F8}',
    '\u{00BF}', '\u{00A1}', '\u{00AC}', '\u{221A}', '\u{0192}', '\u{2248}', '\u{2206}', '\u{00AB}',
    '\u{00BB}', '\u{2026}', '\u{00A0}', '\u{00C0}', '\u{00C3}', '\u{00D5}', '\u{0152}', '\u{0153}',
    '\u{2013}', '\u{2014}', '\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}', '\u{00F7}', '\u{25CA}',
    '\u{00FF}', '\u{0178}', '\u{2044}', '\u{20AC}', '\u{2039}', '\u{203A}', '\u{FB01}', '\u{FB02}',
    '\u{2021}', '\u{00B7}', '\u{201A}', '\u{201E}', '\u{2030}', '\u{00C2}', '\u{00CA}', '\u{00C1}',
    '\u{00CB}', '\u{00C8}', '\u{00CD}', '\u{00CE}', '\u{00CF}', '\u{00CC}', '\u{00D3}', '\u{00D4}',
    '\u{F8FF}', '\u{00D2}', '\u{00DA}', '\u{00DB}', '\u{00D9}', '\u{0131}', '\u{02C6}', '\u{02DC}',
    '\u{00AF}', '\u{02D8}', '\u{02D9}', '\u{02DA}', '\u{00B8}', '\u{02DD}', '\u{02DB}', '\u{02C7}',
];
/// Bytes 0x80–0x9F in WHATWG `windows-1252`; 0xA0–0xFF are Latin-1, and the five bytes
/// windows-1252 leaves undefined map to the C1 control of the same number.
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roman_and_latin1_and_cp1252_differ_where_they_should() {
        // 0x8E: é in Mac Roman, Ž in windows-1252, a C1 control in Latin-1.
        assert_eq!(decode(b"\x8E", TextEncoding::MacRoman).unwrap(), "é");
        assert_eq!(decode(b"\x8E", TextEncoding::Windows1252).unwrap(), "Ž");
        assert_eq!(decode(b"\xE9", TextEncoding::Latin1).unwrap(), "é");
        assert_eq!(decode(b"\xB5l", TextEncoding::Latin1).unwrap(), "µl");
    }

    #[test]
    fn utf8_bom_is_stripped_and_overrides_the_configured_encoding() {
        let got = decode(b"\xEF\xBB\xBFCD4 \xC2\xB5L", TextEncoding::Latin1).unwrap();
        assert_eq!(got, "CD4 µL");
    }

    #[test]
    fn invalid_utf8_names_the_byte() {
        let e = decode(b"abc\xFFdef", TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.to_string(), "byte 3: not valid utf8");
        let e = decode(b"\xEF\xBB\xBFab\xC3", TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.to_string(), "byte 5: not valid utf8");
    }

    #[test]
    fn utf16le_with_bom_is_detected_and_a_lone_surrogate_named() {
        let mut b = vec![0xFF, 0xFE];
        for u in "Sample ID,µ".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode(&b, TextEncoding::Latin1).unwrap(), "Sample ID,µ");
        let e = decode(b"\xFF\xFEA\x00\x00\xDC", TextEncoding::Utf8).unwrap_err();
        assert_eq!(e.to_string(), "byte 4: not valid utf-16le");
    }

    #[test]
    fn mac_roman_and_cp1252_tables_match_encoding_rs_for_every_byte() {
        for (enc, ours) in [
            (encoding_rs::MACINTOSH, TextEncoding::MacRoman),
            (encoding_rs::WINDOWS_1252, TextEncoding::Windows1252),
        ] {
            for b in 1..=255u8 {
                let one = [b];
                let want = enc.decode_without_bom_handling(&one).0;
                assert_eq!(
                    decode(&[b], ours).unwrap(),
                    want,
                    "{} byte {b:#04x}",
                    enc.name()
                );
            }
            let all: Vec<u8> = (1..=255).collect();
            assert_eq!(
                decode(&all, ours).unwrap(),
                enc.decode_without_bom_handling(&all).0
            );
        }
    }

    #[test]
    fn nul_bytes_are_refused() {
        let e = decode(b"S\0a\0", TextEncoding::MacRoman).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 1: NUL byte: not a mac_roman text file (UTF-16 without a BOM?)"
        );
    }
}
