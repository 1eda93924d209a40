//! Result files that analyzers export to a USB stick or a shared folder (protocols.md §1.5):
//! Pima CD4 CSV (one file per test), Roche Cedex Bio `res_….csv` (Latin-1, `;`, CRLF), the
//! GeneXpert exported results report, BD Multiset CSV in `mac_roman`, and files of ASTM E1394
//! records or HL7 messages (HumaStar's "file exchange … based on the ASTM standard").
//!
//! PURE: bytes and an [`ExportMapping`] in, observations and precise errors out — every error
//! names the line and column (or the byte) it is about. No file system, no clock. Bounded:
//! [`ExportLimits`] caps the file size, rows and columns before any work is done per row.

mod csv;
mod date;
mod text;
mod xml;

pub use date::DateFormat;
pub use text::{TextEncoding, is_utf16};

use crate::record::Observation;
use std::collections::BTreeMap;

/// What kind of file an export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Delimited text with a header row (or columns addressed by number).
    Csv,
    /// An XML document; each element matching `record` is one result.
    Xml,
    /// A text file of ASTM E1394 records (H … L), one or more messages (protocols.md §1.2).
    Astm,
    /// A file of HL7 v2 messages, bare or MLLP-framed (protocols.md §1.3).
    Hl7,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xml => "xml",
            Self::Astm => "astm",
            Self::Hl7 => "hl7",
        }
    }

    /// Whether new rows appended to a file can be read on their own (with the file's header
    /// prefixed). An XML document is only complete as a whole.
    pub fn appendable(self) -> bool {
        !matches!(self, Self::Xml)
    }
}

/// Where a value comes from. In a CSV file: a column, by header text (matched trimmed and
/// case-insensitively) or by 1-based number (`"#3"`). In an XML file: a path relative to the
/// record element (`"Result"`, `"@code"`, `"Patient/@id"`, `"../SampleID"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Named(String),
    Number(usize),
}

impl Column {
    /// `"#3"` → column 3; anything else is a name. `None` for `"#0"` or `"#x"`.
    pub fn parse(text: &str) -> Option<Column> {
        match text.strip_prefix('#') {
            Some(n) => n.parse().ok().filter(|&n| n > 0).map(Column::Number),
            None => Some(Column::Named(text.trim().to_owned())),
        }
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Named(n) => write!(f, "column \"{n}\""),
            Column::Number(n) => write!(f, "column {n}"),
        }
    }
}

/// The canonical fields a column can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    SampleId,
    PatientId,
    TestCode,
    TestName,
    Value,
    Unit,
    ReferenceRange,
    Flag,
    ResultStatus,
    ObservedAt,
    DeviceSerial,
    DeviceModel,
    Comment,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Self::SampleId,
        Self::PatientId,
        Self::TestCode,
        Self::TestName,
        Self::Value,
        Self::Unit,
        Self::ReferenceRange,
        Self::Flag,
        Self::ResultStatus,
        Self::ObservedAt,
        Self::DeviceSerial,
        Self::DeviceModel,
        Self::Comment,
    ];

    /// The key that maps it in `[export]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::SampleId => "sample_id",
            Self::PatientId => "patient_id",
            Self::TestCode => "test_code",
            Self::TestName => "test_name",
            Self::Value => "value",
            Self::Unit => "unit",
            Self::ReferenceRange => "reference_range",
            Self::Flag => "flag",
            Self::ResultStatus => "result_status",
            Self::ObservedAt => "observed_at",
            Self::DeviceSerial => "device_serial",
            Self::DeviceModel => "device_model",
            Self::Comment => "comment",
        }
    }
}

/// How an export file maps onto observations (`[sources.export]` / a profile's `[export]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMapping {
    pub format: ExportFormat,
    pub encoding: TextEncoding,
    /// CSV: `,`, `;` or tab.
    pub delimiter: u8,
    /// CSV: 1-based line of the header row; 0 = no header (columns by number only). Lines
    /// before it (a title, an instrument banner) are skipped.
    pub header_row: usize,
    /// CSV report files (GeneXpert): a table's header row is the row after a row whose first
    /// cell is this label; the table ends at a blank row or a one-cell section row. `None` =
    /// one table starting at `header_row`.
    pub table_start: Option<String>,
    /// CSV report files: rows `Label,Value` outside the tables set a field for the tables that
    /// follow (GeneXpert `Sample ID,…`, `Assay,…`).
    pub labels: Vec<(Field, String)>,
    /// Where each field comes from.
    pub fields: Vec<(Field, Column)>,
    /// Wide files: one column per analyte, `(test code, column)`; each non-empty cell is one
    /// observation. Empty = narrow (one observation per row).
    pub analytes: Vec<(String, Column)>,
    /// A fixed test code for files of one analyte with no test column.
    pub test: Option<String>,
    /// Units per test code, used when the row has no unit column (wide files).
    pub units: BTreeMap<String, String>,
    /// Columns copied into `Observation::extra` under their header text (or `column_N`).
    pub extra: Vec<Column>,
    /// How `observed_at` is written; `None` = ISO 8601 (`2012-05-25 15:22:10` or with `T`).
    pub date_format: Option<DateFormat>,
    /// XML: the element path (`Results/Result`, matched at the end of the element's path from
    /// the root) whose every occurrence is one result.
    pub record: Option<String>,
    pub limits: ExportLimits,
}

impl ExportMapping {
    /// A mapping for a format with every optional part empty (tests and `astm`/`hl7` files).
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            encoding: TextEncoding::Utf8,
            delimiter: b',',
            header_row: 1,
            table_start: None,
            labels: Vec::new(),
            fields: Vec::new(),
            analytes: Vec::new(),
            test: None,
            units: BTreeMap::new(),
            extra: Vec::new(),
            date_format: None,
            record: None,
            limits: ExportLimits::default(),
        }
    }

    pub fn column(&self, field: Field) -> Option<&Column> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, c)| c)
    }
}

impl Default for ExportMapping {
    /// A CSV mapping with nothing mapped (it decodes no results).
    fn default() -> Self {
        Self::new(ExportFormat::Csv)
    }
}

/// Bounds on one file; a file beyond them is refused with the limit it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    pub max_file_bytes: usize,
    pub max_rows: usize,
    pub max_columns: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 << 20,
            max_rows: 100_000,
            max_columns: 512,
        }
    }
}

/// What went wrong, and where. Row-level errors (a bad date, a missing cell) leave the other
/// rows decoded; file-level ones (encoding, header, limits) stop the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("file is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("byte {offset}: not valid {encoding}")]
    Encoding {
        offset: usize,
        encoding: &'static str,
    },
    #[error("byte {offset}: NUL byte: not a {encoding} text file (UTF-16 without a BOM?)")]
    Nul {
        offset: usize,
        encoding: &'static str,
    },
    #[error("line {line}: {message}")]
    Syntax { line: u64, message: String },
    #[error("no header row: the file has {lines} line(s), header_row is {header_row}")]
    NoHeader { lines: u64, header_row: usize },
    #[error("no \"{label}\" row: the file has no result table")]
    NoTable { label: String },
    #[error("line {line}: {column} missing")]
    MissingColumn { line: u64, column: String },
    #[error("line {line}: {column}: empty")]
    EmptyCell { line: u64, column: String },
    #[error("line {line}: {column}: \"{text}\" does not match {expected}")]
    BadDate {
        line: u64,
        column: String,
        text: String,
        expected: String,
    },
    #[error("line {line}: more than {max} columns")]
    TooManyColumns { line: u64, max: usize },
    #[error("more than {max} rows")]
    TooManyRows { max: usize },
    #[error("line {line}: no test code (empty {column})")]
    NoTestCode { line: u64, column: String },
    #[error("{0}")]
    Xml(String),
    #[error("no results found in the file")]
    Empty,
    #[error("{0}")]
    Record(String),
}

/// The result of decoding one file (or one chunk of appended rows).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    pub observations: Vec<Observation>,
    /// Every problem met; a non-empty list stores the file as `invalid`.
    pub errors: Vec<ExportError>,
}

/// At most this many row errors are kept per file; a hundred copies of one mistake say no more.
const MAX_ERRORS: usize = 20;

impl Decoded {
    fn fail(e: ExportError) -> Self {
        Decoded {
            observations: Vec::new(),
            errors: vec![e],
        }
    }

    fn error(&mut self, e: ExportError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }

    /// The errors as the store keeps them (one line each).
    pub fn error_texts(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}

/// The parts of a result a row (or record element) fills before it becomes observations.
#[derive(Default)]
struct Row {
    base: Observation,
    test_code: Option<String>,
    value: Option<String>,
}

impl Row {
    /// Put one mapped value in its place. A date that does not parse is an error naming `what`
    /// (`column "Test Date"`, `element "Time"`); the row is then dropped.
    fn set(
        &mut self,
        field: Field,
        text: Option<String>,
        line: u64,
        what: impl FnOnce() -> String,
        m: &ExportMapping,
    ) -> Result<(), ExportError> {
        let o = &mut self.base;
        match field {
            Field::SampleId => o.sample_id = text,
            Field::PatientId => o.patient_id = text,
            Field::TestCode => self.test_code = text,
            Field::TestName => o.test_name = text,
            Field::Value => self.value = text,
            Field::Unit => o.unit = text,
            Field::ReferenceRange => o.reference_range = text,
            Field::Flag => o.flags = text.into_iter().collect(),
            Field::ResultStatus => o.result_status = text,
            Field::Comment => o.comments = text.into_iter().collect(),
            Field::DeviceSerial => o.device.serial = text,
            Field::DeviceModel => o.device.model = text,
            Field::ObservedAt => {
                let Some(t) = text else { return Ok(()) };
                let iso = match &m.date_format {
                    Some(f) => f.to_iso(&t),
                    None => date::iso_to_canonical(&t),
                };
                match iso {
                    Some(iso) => o.observed_at = Some(iso),
                    None => {
                        return Err(ExportError::BadDate {
                            line,
                            column: what(),
                            text: t,
                            expected: m.date_format.as_ref().map_or_else(
                                || "ISO 8601 (set date_format)".to_owned(),
                                |f| format!("date_format \"{}\"", f.pattern()),
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The row's observation(s): one for a narrow row, one per filled analyte for a wide one
    /// (`analytes`: test code and the value found for it).
    fn finish(self, analytes: Vec<(String, String)>, m: &ExportMapping, out: &mut Decoded) {
        let with = |mut o: Observation, code: String, value| {
            if o.unit.is_none() {
                o.unit = m.units.get(&code).cloned();
            }
            o.test_code = code;
            o.value = value;
            o
        };
        if m.analytes.is_empty() {
            if let Some(code) = self.test_code.or_else(|| m.test.clone()) {
                out.observations.push(with(self.base, code, self.value));
            }
        } else {
            for (code, v) in analytes {
                out.observations
                    .push(with(self.base.clone(), code, Some(v)));
            }
        }
    }
}

/// Decode one export file (or a chunk of it: the header lines followed by appended rows).
pub fn decode(bytes: &[u8], mapping: &ExportMapping) -> Decoded {
    if bytes.len() > mapping.limits.max_file_bytes {
        return Decoded::fail(ExportError::TooLarge {
            size: bytes.len(),
            max: mapping.limits.max_file_bytes,
        });
    }
    let text = match text::decode(bytes, mapping.encoding) {
        Ok(t) => t,
        Err(e) => return Decoded::fail(e),
    };
    let mut out = match mapping.format {
        ExportFormat::Csv => csv::decode(&text, mapping),
        ExportFormat::Xml => xml::decode(&text, mapping),
        ExportFormat::Astm => {
            let mut out = Decoded::default();
            let enc = crate::config::Encoding::Utf8;
            for d in crate::protocol::astm::decode::decode_capture(text.as_bytes(), enc) {
                out.observations.extend(d.observations);
                for e in d.errors {
                    out.error(ExportError::Record(e.to_string()));
                }
            }
            out
        }
        ExportFormat::Hl7 => {
            let mut out = Decoded::default();
            let enc = crate::config::Encoding::Utf8;
            for (obs, errors) in crate::protocol::hl7::decode_capture(text.as_bytes(), enc) {
                out.observations.extend(obs);
                for e in errors {
                    out.error(ExportError::Record(e));
                }
            }
            out
        }
    };
    // A record cut short (a half-copied file) can leave a result without its test code; it is
    // named instead of stored as a result of no test.
    let before = out.observations.len();
    out.observations.retain(|o| !o.test_code.trim().is_empty());
    if out.observations.len() < before {
        out.error(ExportError::Record(format!(
            "{} result(s) without a test code (a record cut short?)",
            before - out.observations.len()
        )));
    }
    if out.observations.is_empty() && out.errors.is_empty() {
        out.errors.push(ExportError::Empty);
    }
    out
}

/// Where the rows of a file end that may be read now: just past the last line terminator
/// (`\n`, or `\r` for classic-Mac exports) at or after `from`. A trailing line without its
/// terminator may still be being written, so it is left for later. `None` = no complete row yet.
pub fn complete_end(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    let last = tail.iter().rposition(|&b| b == b'\n' || b == b'\r')?;
    Some(from + last + 1)
}

/// Where the header part of a CSV file ends (the bytes before the first data row), so that rows
/// appended later can be stored and decoded as `header + new rows`. For report files with
/// `table_start`, and for ASTM/HL7 files, nothing is repeated (each message carries its own
/// header); `0` is returned.
pub fn header_end(bytes: &[u8], mapping: &ExportMapping) -> usize {
    if mapping.format != ExportFormat::Csv || mapping.table_start.is_some() {
        return 0;
    }
    // Count line terminators (CRLF counts once) up to the header row.
    let mut lines = 0;
    let mut i = 0;
    while i < bytes.len() && lines < mapping.header_row {
        match bytes[i] {
            b'\n' => lines += 1,
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => lines += 1,
            _ => {}
        }
        i += 1;
    }
    if lines == mapping.header_row { i } else { 0 }
}

#[cfg(test)]
mod tests;
