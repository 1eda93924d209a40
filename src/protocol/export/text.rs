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
        TextEncoding::MacRoman => Ok(single_byte(body, encoding_rs::MACINTOSH)),
        TextEncoding::Windows1252 => Ok(single_byte(body, encoding_rs::WINDOWS_1252)),
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

/// Every byte is defined in these WHATWG single-byte encodings, so decoding cannot fail.
fn single_byte<'a>(body: &'a [u8], enc: &'static encoding_rs::Encoding) -> Cow<'a, str> {
    enc.decode_without_bom_handling(body).0
}

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
    fn nul_bytes_are_refused() {
        let e = decode(b"S\0a\0", TextEncoding::MacRoman).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 1: NUL byte: not a mac_roman text file (UTF-16 without a BOM?)"
        );
    }
}
