//! `protocol = "file"`, `transport = "folder"`: a watched folder (a USB stick's mount point, a
//! share a Windows PC writes to) and the `[sources.export]` table that says how to read its files
//! (protocols.md §1.5). The same `[export]` table is what a device profile carries
//! (notes: profiles-format), and what `pocketgate decode --profile FILE` reads.

use super::raw::{self, RawSource, Val};
use super::{Check, ConfigError, ConfigErrors, Protocol, Transport, millis, secs};
use crate::protocol::export::{
    Column, DateFormat, ExportFormat, ExportLimits, ExportMapping, Field, TextEncoding,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[sources.export]`: how the files of a folder source are read. Column names are matched
/// trimmed and case-insensitively; `"#3"` means the third column. In XML files they are paths
/// relative to the `record` element (`"Value"`, `"@code"`, `"../SampleID"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// `"csv"` (default), `"xml"`, `"astm"` (a text file of E1394 records) or `"hl7"`.
    pub format: Option<Val<String>>,
    /// `"utf8"` (default), `"latin1"`, `"mac_roman"`, `"windows-1252"` or `"utf-16le"`. A
    /// byte-order mark (UTF-8 or UTF-16LE) always wins.
    pub encoding: Option<Val<String>>,
    /// CSV: `","` (default), `";"` or `"\t"`.
    pub delimiter: Option<Val<String>>,
    /// CSV: 1-based line of the header row (lines before it are skipped). Default 1; 0 = no
    /// header, columns by number only.
    pub header_row: Option<Val<i64>>,
    /// CSV reports (GeneXpert): each result table's header row follows a row with this label.
    pub table_start: Option<Val<String>>,
    /// CSV reports: `{ sample_id = "Sample ID", test_name = "Assay" }`: rows `Label,Value`
    /// outside the tables set these fields for the tables after them.
    pub labels: Option<Val<BTreeMap<String, String>>>,
    /// Column of the sample (specimen) id.
    pub sample_id: Option<Val<String>>,
    /// Column of the patient id.
    pub patient_id: Option<Val<String>>,
    /// Column of the test code (narrow files: one result per row).
    pub test_code: Option<Val<String>>,
    /// Column of the test's display name.
    pub test_name: Option<Val<String>>,
    /// Column of the result value (narrow files).
    pub value: Option<Val<String>>,
    /// Column of the unit.
    pub unit: Option<Val<String>>,
    /// Column of the reference range.
    pub reference_range: Option<Val<String>>,
    /// Column of an abnormal flag (`H`, `L`, …).
    pub flag: Option<Val<String>>,
    /// Column of the result status.
    pub result_status: Option<Val<String>>,
    /// Column of the time of the measurement (see `date_format`).
    pub observed_at: Option<Val<String>>,
    /// Column of the instrument's serial number.
    pub device_serial: Option<Val<String>>,
    /// Column of the instrument model.
    pub device_model: Option<Val<String>>,
    /// Column of a comment.
    pub comment: Option<Val<String>>,
    /// A fixed test code, for files of one analyte without a test column (Pima CD4: `"CD4"`).
    pub test: Option<Val<String>>,
    /// Wide files: `{ CD4 = "CD3+CD4+ Abs Cnt", CD8 = "CD3+CD8+ Abs Cnt" }`: one column per
    /// analyte, each non-empty cell one result.
    pub analytes: Option<Val<BTreeMap<String, String>>>,
    /// Units by test code, for files without a unit column: `{ CD4 = "cells/uL" }`.
    pub units: Option<Val<BTreeMap<String, String>>>,
    /// Columns copied into the result's `extra` (reagent lot, Ct, operator…).
    pub extra: Option<Val<Vec<String>>>,
    /// How `observed_at` is written: `"%d/%m/%Y %H:%M:%S"` (`%Y %y %m %b %d %H %I %M %S %p`).
    /// Default: ISO 8601.
    pub date_format: Option<Val<String>>,
    /// XML (required): the element whose every occurrence is one result, e.g. `"Sample/Result"`.
    pub record: Option<Val<String>>,
    /// Largest file read, in bytes. Default 16777216 (16 MiB), 1024 ..= 268435456.
    pub max_file_bytes: Option<Val<i64>>,
    /// Most rows per file. Default 100000, 1 ..= 10000000.
    pub max_rows: Option<Val<i64>>,
    /// Most columns per row. Default 512, 1 ..= 16384.
    pub max_columns: Option<Val<i64>>,
}

/// `transport = "folder"`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderSettings {
    /// The folder watched (not recursively). It may be missing (stick not plugged in).
    pub path: PathBuf,
    /// Which file names are read: `*` and `?` wildcards, case-insensitive.
    pub pattern: String,
    /// Time between two scans; a file is read once it was the same at two scans.
    pub scan_interval: Duration,
}

/// The keys a folder source owns besides `[sources.export]`.
pub(super) const FOLDER_KEYS: [&str; 3] = ["path", "pattern", "scan_interval"];

impl Check<'_> {
    /// The folder keys of a source: only allowed with `transport = "folder"`.
    pub(super) fn folder_keys_elsewhere(&mut self, i: usize, s: &RawSource, transport: &str) {
        let p = |key: &str| format!("sources[{i}].{key}");
        let present = [
            ("path", s.path.as_ref().map(|v| self.line(v))),
            ("pattern", s.pattern.as_ref().map(|v| self.line(v))),
            (
                "scan_interval",
                s.scan_interval.as_ref().map(|v| self.line(v)),
            ),
        ];
        for (key, line) in present {
            if let Some(line) = line {
                self.error(
                    &p(key),
                    line,
                    format!("not used by transport \"{transport}\""),
                );
            }
        }
        if s.export.is_some() {
            self.error(
                &p("export"),
                self.line_at_path(&p("export")),
                "only used with protocol = \"file\"",
            );
        }
    }

    /// `transport = "folder"`.
    pub(super) fn folder(
        &mut self,
        i: usize,
        s: &RawSource,
        table_line: Option<usize>,
    ) -> Option<Transport> {
        let p = |key: &str| format!("sources[{i}].{key}");
        let path = match self.required(
            &p("path"),
            &s.path,
            table_line,
            "e.g. path = \"/media/usb0\"",
        ) {
            Some((path, line)) if path.trim().is_empty() => {
                self.error(&p("path"), line, "must not be empty");
                None
            }
            Some((path, _)) => Some(PathBuf::from(path)),
            None => None,
        };
        let pattern = match self.get(&p("pattern"), &s.pattern) {
            Some((pat, line)) if pat.is_empty() || pat.contains('/') => {
                self.error(
                    &p("pattern"),
                    line,
                    format!("\"{pat}\" must be a file name pattern such as \"*.csv\" (no folders)"),
                );
                None
            }
            Some((pat, _)) => Some(pat.clone()),
            None => Some("*".to_owned()),
        };
        let scan_interval = self.duration(
            &p("scan_interval"),
            &s.scan_interval,
            secs(5),
            millis(200)..=secs(3600),
        );
        Some(Transport::Folder(FolderSettings {
            path: path?,
            pattern: pattern?,
            scan_interval,
        }))
    }

    /// `protocol = "file"`: the `[sources.export]` table (required).
    pub(super) fn file_protocol(
        &mut self,
        i: usize,
        s: &RawSource,
        table_line: Option<usize>,
    ) -> Option<Protocol> {
        let prefix = format!("sources[{i}].export");
        for (key, set) in [
            ("encoding", s.encoding.is_some()),
            ("receive_timeout", s.receive_timeout.is_some()),
        ] {
            if set {
                let path = format!("sources[{i}].{key}");
                let hint = if key == "encoding" {
                    "set it in [sources.export] for protocol = \"file\""
                } else {
                    "not used by protocol = \"file\""
                };
                self.error(&path, self.line_at_path(&path), hint);
            }
        }
        match &s.export {
            Some(e) => self.export(&prefix, e).map(|m| Protocol::File(Box::new(m))),
            None => {
                self.error(
                    &prefix,
                    table_line,
                    "required for protocol = \"file\" (a [sources.export] table with format and columns)",
                );
                None
            }
        }
    }

    /// Validates an `[export]` table whose keys live under `prefix`.
    pub(super) fn export(&mut self, prefix: &str, e: &RawExport) -> Option<ExportMapping> {
        let p = |key: &str| format!("{prefix}.{key}");
        let mut ok = true;
        let format = match self.get(&p("format"), &e.format) {
            None => ExportFormat::Csv,
            Some((f, line)) => match f.as_str() {
                "csv" => ExportFormat::Csv,
                "xml" => ExportFormat::Xml,
                "astm" => ExportFormat::Astm,
                "hl7" => ExportFormat::Hl7,
                other => {
                    self.error(
                        &p("format"),
                        line,
                        format!("\"{other}\" is not a format (csv, xml, astm, hl7)"),
                    );
                    return None;
                }
            },
        };
        let encoding = match self.get(&p("encoding"), &e.encoding) {
            None => TextEncoding::Utf8,
            Some((name, line)) => TextEncoding::parse(name).unwrap_or_else(|| {
                self.error(
                    &p("encoding"),
                    line,
                    format!(
                        "\"{name}\" is not a supported encoding (utf8, latin1, mac_roman, windows-1252, utf-16le)"
                    ),
                );
                ok = false;
                TextEncoding::Utf8
            }),
        };
        let delimiter = match self.get(&p("delimiter"), &e.delimiter) {
            None => b',',
            Some((d, line)) => match d.as_str() {
                "," => b',',
                ";" => b';',
                "\t" | "tab" => b'\t',
                "|" => b'|',
                other => {
                    self.error(
                        &p("delimiter"),
                        line,
                        format!("\"{other}\" is not a delimiter (\",\", \";\", \"\\t\", \"|\")"),
                    );
                    ok = false;
                    b','
                }
            },
        };
        let header_row = self.int(&p("header_row"), &e.header_row, 1, 0..=1000);
        let table_start = self
            .get(&p("table_start"), &e.table_start)
            .map(|(t, _)| t.trim().to_owned());

        let mut fields = Vec::new();
        let raw_fields = [
            (Field::SampleId, &e.sample_id),
            (Field::PatientId, &e.patient_id),
            (Field::TestCode, &e.test_code),
            (Field::TestName, &e.test_name),
            (Field::Value, &e.value),
            (Field::Unit, &e.unit),
            (Field::ReferenceRange, &e.reference_range),
            (Field::Flag, &e.flag),
            (Field::ResultStatus, &e.result_status),
            (Field::ObservedAt, &e.observed_at),
            (Field::DeviceSerial, &e.device_serial),
            (Field::DeviceModel, &e.device_model),
            (Field::Comment, &e.comment),
        ];
        for (field, v) in raw_fields {
            if let Some((text, line)) = self.get(&p(field.key()), v) {
                match self.column(&p(field.key()), text, line, header_row, format) {
                    Some(c) => fields.push((field, c)),
                    None => ok = false,
                }
            }
        }
        let mut labels = Vec::new();
        if let Some((map, line)) = self.get(&p("labels"), &e.labels) {
            for (key, label) in map {
                match Field::ALL.iter().find(|f| f.key() == key) {
                    Some(f) => labels.push((*f, label.trim().to_owned())),
                    None => {
                        let keys: Vec<_> = Field::ALL.iter().map(|f| f.key()).collect();
                        self.error(
                            &p(&format!("labels.{key}")),
                            line,
                            format!("unknown field (one of: {})", keys.join(", ")),
                        );
                        ok = false;
                    }
                }
            }
            if table_start.is_none() {
                self.error(&p("labels"), line, "only used with table_start");
                ok = false;
            }
        }
        let mut analytes = Vec::new();
        if let Some((map, line)) = self.get(&p("analytes"), &e.analytes) {
            for (code, col) in map {
                match self.column(
                    &p(&format!("analytes.{code}")),
                    col,
                    line,
                    header_row,
                    format,
                ) {
                    Some(c) => analytes.push((code.clone(), c)),
                    None => ok = false,
                }
            }
            if map.is_empty() {
                self.error(&p("analytes"), line, "must name at least one column");
                ok = false;
            }
        }
        let test = self
            .get(&p("test"), &e.test)
            .map(|(t, _)| t.trim().to_owned());
        let units = self
            .get(&p("units"), &e.units)
            .map(|(u, _)| u.clone())
            .unwrap_or_default();
        let mut extra = Vec::new();
        if let Some((cols, line)) = self.get(&p("extra"), &e.extra) {
            for col in cols {
                match self.column(&p("extra"), col, line, header_row, format) {
                    Some(c) => extra.push(c),
                    None => ok = false,
                }
            }
        }
        let date_format = match self.get(&p("date_format"), &e.date_format) {
            None => None,
            Some((pattern, line)) => match DateFormat::parse(pattern) {
                Ok(f) => Some(f),
                Err(why) => {
                    self.error(&p("date_format"), line, format!("\"{pattern}\": {why}"));
                    ok = false;
                    None
                }
            },
        };
        let record = self
            .get(&p("record"), &e.record)
            .map(|(r, _)| r.trim().to_owned());
        let limits = ExportLimits {
            max_file_bytes: self.int(
                &p("max_file_bytes"),
                &e.max_file_bytes,
                16 << 20,
                1024..=256 << 20,
            ),
            max_rows: self.int(&p("max_rows"), &e.max_rows, 100_000, 1..=10_000_000),
            max_columns: self.int(&p("max_columns"), &e.max_columns, 512, 1..=16_384),
        };

        // What each format needs, and what it cannot use.
        let table_line = self.line_at_path(prefix);
        let has = |f: Field| fields.iter().any(|(g, _)| *g == f);
        let labelled = |f: Field| labels.iter().any(|(g, _)| *g == f);
        match format {
            ExportFormat::Csv | ExportFormat::Xml => {
                let ways = [
                    has(Field::TestCode) || labelled(Field::TestCode),
                    test.is_some(),
                    !analytes.is_empty(),
                ];
                match ways.iter().filter(|w| **w).count() {
                    0 => {
                        self.error(
                            prefix,
                            table_line,
                            "says nowhere which test a result is: set test_code (a column), test (a fixed code) or analytes (one column per test)",
                        );
                        ok = false;
                    }
                    1 => {}
                    _ => {
                        self.error(
                            prefix,
                            table_line,
                            "test_code, test and analytes exclude each other: use one",
                        );
                        ok = false;
                    }
                }
                if analytes.is_empty() && !has(Field::Value) && !labelled(Field::Value) {
                    self.error(
                        &p("value"),
                        table_line,
                        "required (the column of the result), unless analytes is set",
                    );
                    ok = false;
                }
                if !analytes.is_empty() && has(Field::Value) {
                    self.error(
                        &p("value"),
                        self.line_at_path(&p("value")),
                        "not used with analytes (each analyte column holds its value)",
                    );
                    ok = false;
                }
                if format == ExportFormat::Xml && record.is_none() {
                    self.error(
                        &p("record"),
                        table_line,
                        "required for format = \"xml\" (the element of one result, e.g. \"Sample/Result\")",
                    );
                    ok = false;
                }
            }
            ExportFormat::Astm | ExportFormat::Hl7 => {
                // Those files say everything themselves; a mapping would be silently ignored.
                let set: Vec<&str> = [
                    (!fields.is_empty(), "column keys"),
                    (test.is_some(), "test"),
                    (!analytes.is_empty(), "analytes"),
                    (table_start.is_some(), "table_start"),
                    (record.is_some(), "record"),
                ]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
                if !set.is_empty() {
                    self.error(
                        prefix,
                        table_line,
                        format!(
                            "{} not used with format = \"{}\" (the records name their fields)",
                            set.join(", "),
                            format.name()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if format != ExportFormat::Csv {
            for (key, set) in [
                ("delimiter", e.delimiter.is_some()),
                ("header_row", e.header_row.is_some()),
                ("table_start", e.table_start.is_some()),
            ] {
                if set {
                    self.error(
                        &p(key),
                        self.line_at_path(&p(key)),
                        format!(
                            "only used with format = \"csv\" (not \"{}\")",
                            format.name()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if format != ExportFormat::Xml && record.is_some() {
            self.error(
                &p("record"),
                self.line_at_path(&p("record")),
                "only used with format = \"xml\"",
            );
            ok = false;
        }

        ok.then_some(ExportMapping {
            format,
            encoding,
            delimiter,
            header_row,
            table_start,
            labels,
            fields,
            analytes,
            test,
            units,
            extra,
            date_format,
            record,
            limits,
        })
    }

    fn column(
        &mut self,
        path: &str,
        text: &str,
        line: Option<usize>,
        header_row: usize,
        format: ExportFormat,
    ) -> Option<Column> {
        match Column::parse(text) {
            Some(Column::Named(n)) if n.is_empty() => {
                self.error(path, line, "must not be empty");
                None
            }
            Some(Column::Named(n)) if header_row == 0 && format == ExportFormat::Csv => {
                self.error(
                    path,
                    line,
                    format!("\"{n}\": header_row = 0 means no header, so name columns by number (\"#1\")"),
                );
                None
            }
            Some(c) => Some(c),
            None => {
                self.error(
                    path,
                    line,
                    format!("\"{text}\" is not a column number (\"#1\", \"#2\", …)"),
                );
                None
            }
        }
    }
}

/// A profile file's `[export]` table as `pocketgate decode --profile FILE` uses it. Other keys of
/// the profile are not read here (the profiles loader owns them).
#[derive(Debug, Default, Deserialize)]
struct ProfileExport {
    export: Option<RawExport>,
}

/// The `[export]` mapping of a profile file's text; errors name `export.<key>` and the line.
pub fn mapping_from_profile(text: &str) -> Result<ExportMapping, ConfigErrors> {
    let one = |line: Option<usize>, path: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            path: path.to_owned(),
            line,
            message,
        }])
    };
    let doc = super::profile::Tree::parse(text).map_err(|e| {
        one(
            e.span().map(|s| raw::line_at(text, s.start)),
            "",
            raw::one_line(e.message()),
        )
    })?;
    let tree = doc.to_node();
    let parsed = ProfileExport::deserialize(doc.deserializer())
        .map_err(|e| one(None, "export", raw::one_line(e.message())))?;
    let Some(export) = parsed.export else {
        return Err(one(
            None,
            "export",
            "the profile has no [export] table".into(),
        ));
    };
    let mut check = Check {
        text,
        tree: &tree,
        tests: &[],
        errors: Vec::new(),
    };
    let mapping = check.export("export", &export);
    match mapping {
        Some(m) if check.errors.is_empty() => Ok(m),
        _ => Err(ConfigErrors::sorted(check.errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, parse};
    use crate::protocol::export::decode;

    fn profile(name: &str) -> String {
        let path = format!("{}/config/profiles/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/exports/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn shipped_profiles_decode_their_fixtures() {
        let pima = mapping_from_profile(&profile("pima-csv.toml")).unwrap();
        let d = decode(
            &fixture("PIMA-D-001234_2012-05-25_15-22-10_AssayID_2_(PIMA_CD4).csv"),
            &pima,
        );
        assert!(d.errors.is_empty(), "{:?}", d.error_texts());
        assert_eq!(d.observations[0].value.as_deref(), Some("412"));
        assert_eq!(d.observations[0].extra["Operator"], "OPERATOR-1");

        let cedex = mapping_from_profile(&profile("cobas-cedex-csv.toml")).unwrap();
        let d = decode(&fixture("res_20240312102200.csv"), &cedex);
        assert!(d.errors.is_empty(), "{:?}", d.error_texts());
        assert_eq!(d.observations.len(), 3);
        assert_eq!(d.observations[2].unit.as_deref(), Some("µmol/L"));

        let gx = mapping_from_profile(&profile("genexpert-export.toml")).unwrap();
        let d = decode(&fixture("genexpert-export-utf16.csv"), &gx);
        assert!(d.errors.is_empty(), "{:?}", d.error_texts());
        assert_eq!(d.observations.len(), 5);
        assert_eq!(d.observations[1].value.as_deref(), Some("POS"));
    }

    fn only(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const HEAD: &str = "[gateway]\ndata_dir = \"/tmp/pg\"\n";

    #[test]
    fn example_config_has_a_usb_stick_source() {
        let c = parse(crate::config::example()).unwrap_or_else(|e| panic!("{e}"));
        let pima = c.sources.iter().find(|s| s.id.0 == "pima-usb").unwrap();
        let (Protocol::File(m), Transport::Folder(f)) = (&pima.protocol, &pima.transport) else {
            panic!("{pima:?}");
        };
        assert_eq!(f.path, PathBuf::from("/media/usb0"));
        assert_eq!(f.pattern, "PIMA-*.csv");
        // The example reads the Pima fixture like the shipped profile does.
        let d = decode(
            &fixture("PIMA-D-001234_2012-05-25_15-22-10_AssayID_2_(PIMA_CD4).csv"),
            m,
        );
        assert!(d.errors.is_empty(), "{:?}", d.error_texts());
        assert_eq!(d.observations[0].value.as_deref(), Some("412"));
        assert_eq!(
            d.observations[0].device.serial.as_deref(),
            Some("PIMA-D-001234")
        );
    }

    #[test]
    fn folder_source_parses_with_defaults() {
        let c = parse(&format!(
            "{HEAD}[[sources]]\nid = \"pima\"\nprotocol = \"file\"\ntransport = \"folder\"\npath = \"/media/usb0\"\n\
             [sources.export]\ntest = \"CD4\"\nvalue = \"CD4 Count\"\n"
        ))
        .unwrap();
        let SourceConfig {
            protocol: Protocol::File(m),
            transport: Transport::Folder(f),
            ..
        } = &c.sources[0]
        else {
            panic!("{:?}", c.sources[0]);
        };
        assert_eq!(f.path, PathBuf::from("/media/usb0"));
        assert_eq!(f.pattern, "*");
        assert_eq!(f.scan_interval, secs(5));
        assert_eq!(m.format, ExportFormat::Csv);
        assert_eq!(m.delimiter, b',');
        assert_eq!(m.test.as_deref(), Some("CD4"));
    }

    #[test]
    fn export_mistakes_name_path_and_line() {
        let errors = only(&format!(
            "{HEAD}[[sources]]\nid = \"x\"\nprotocol = \"file\"\ntransport = \"folder\"\npath = \"/m\"\n\
             [sources.export]\nencoding = \"ebcdic\"\ndelimiter = \":\"\ntest_code = \"Test\"\n\
             date_format = \"%d/%q\"\nformat = \"csv\"\n"
        ));
        assert_eq!(
            errors,
            [
                "sources[0].export.value (line 8): required (the column of the result), unless analytes is set",
                "sources[0].export.encoding (line 9): \"ebcdic\" is not a supported encoding (utf8, latin1, mac_roman, windows-1252, utf-16le)",
                "sources[0].export.delimiter (line 10): \":\" is not a delimiter (\",\", \";\", \"\\t\", \"|\")",
                "sources[0].export.date_format (line 12): \"%d/%q\": unknown directive %q (use %Y %y %m %b %d %H %I %M %S %p)",
            ]
        );
    }

    #[test]
    fn file_and_folder_go_together_and_export_is_required() {
        let errors = only(&format!(
            "{HEAD}[[sources]]\nid = \"x\"\nprotocol = \"file\"\ntransport = \"serial\"\nport = \"/dev/ttyUSB0\"\n"
        ));
        assert!(
            errors.contains(&"sources[0].export (line 3): required for protocol = \"file\" (a [sources.export] table with format and columns)".to_owned()),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("protocol \"file\" and transport \"folder\" go together")),
            "{errors:?}"
        );
        let errors = only(&format!(
            "{HEAD}[[sources]]\nid = \"x\"\nprotocol = \"astm\"\ntransport = \"tcp-server\"\nlisten = \"0.0.0.0:5000\"\npath = \"/m\"\n"
        ));
        assert!(
            errors
                .iter()
                .any(|e| e == "sources[0].path (line 8): not used by transport \"tcp-server\""),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_key_in_export_is_named() {
        let errors = only(&format!(
            "{HEAD}[[sources]]\nid = \"x\"\nprotocol = \"file\"\ntransport = \"folder\"\npath = \"/m\"\n\
             [sources.export]\ntest = \"CD4\"\nvalu = \"CD4 Count\"\n"
        ));
        assert_eq!(
            errors,
            ["sources[0].export.valu (line 10): unknown key (did you mean \"value\"?)"]
        );
    }

    #[test]
    fn profile_errors_name_export_keys() {
        let e = mapping_from_profile(
            "[profile]\nname = \"x\"\n[export]\nformat = \"xml\"\ntest = \"A\"\nvalue = \"V\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "export.record (line 3): required for format = \"xml\" (the element of one result, e.g. \"Sample/Result\")"
        );
    }
}
