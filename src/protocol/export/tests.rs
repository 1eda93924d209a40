//! The export fixtures (tests/fixtures/exports, see its README) decoded with the mappings of the
//! shipped profiles; every expected value is written out here.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/exports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn named(fields: &[(Field, &str)]) -> Vec<(Field, Column)> {
    fields
        .iter()
        .map(|(f, c)| (*f, Column::parse(c).unwrap()))
        .collect()
}

pub(crate) fn pima() -> ExportMapping {
    ExportMapping {
        fields: named(&[
            (Field::SampleId, "Sample ID"),
            (Field::PatientId, "Patient ID"),
            (Field::Value, "CD4 Count"),
            (Field::Unit, "Unit"),
            (Field::ObservedAt, "Test Date"),
            (Field::DeviceSerial, "Device ID"),
        ]),
        test: Some("CD4".into()),
        extra: vec![
            Column::parse("Cartridge Lot").unwrap(),
            Column::parse("Error Code").unwrap(),
        ],
        date_format: Some(DateFormat::parse("%d/%m/%Y %H:%M:%S").unwrap()),
        ..ExportMapping::new(ExportFormat::Csv)
    }
}

fn ok(bytes: &[u8], m: &ExportMapping) -> Vec<Observation> {
    let d = decode(bytes, m);
    assert!(
        d.errors.is_empty(),
        "unexpected errors: {:?}",
        d.error_texts()
    );
    d.observations
}

#[test]
fn pima_cd4_csv_one_test_per_file() {
    let obs = ok(
        &fixture("PIMA-D-001234_2012-05-25_15-22-10_AssayID_2_(PIMA_CD4).csv"),
        &pima(),
    );
    assert_eq!(obs.len(), 1);
    let o = &obs[0];
    assert_eq!(o.test_code, "CD4");
    assert_eq!(o.value.as_deref(), Some("412"));
    assert_eq!(o.unit.as_deref(), Some("cells/uL"));
    assert_eq!(o.sample_id.as_deref(), Some("S-2012-0417"));
    assert_eq!(o.patient_id.as_deref(), Some("PAT-0001"));
    assert_eq!(o.observed_at.as_deref(), Some("2012-05-25T15:22:10"));
    assert_eq!(o.device.serial.as_deref(), Some("PIMA-D-001234"));
    assert_eq!(
        o.extra.get("Cartridge Lot").map(String::as_str),
        Some("110318")
    );
    assert!(
        !o.extra.contains_key("Error Code"),
        "empty cells are not copied"
    );
}

#[test]
fn utf8_bom_is_stripped_before_the_first_header() {
    // Without stripping, the first header would be "\u{feff}Test ID" and still match nothing
    // mapped here; the proof is that `µ` decodes as UTF-8 although the mapping says Latin-1.
    let m = ExportMapping {
        encoding: TextEncoding::Latin1,
        ..pima()
    };
    let obs = ok(&fixture("pima-utf8-bom.csv"), &m);
    assert_eq!(obs[0].unit.as_deref(), Some("cells/µL"));
    assert_eq!(obs[0].value.as_deref(), Some("87"));
    let d = decode(
        &fixture("pima-utf8-bom.csv"),
        &ExportMapping {
            fields: named(&[(Field::Value, "Test ID")]),
            ..pima()
        },
    );
    assert_eq!(d.observations[0].value.as_deref(), Some("1844"));
}

#[test]
fn missing_column_names_line_and_column() {
    let d = decode(&fixture("pima-missing-column.csv"), &pima());
    assert!(d.observations.is_empty());
    assert_eq!(d.error_texts(), ["line 1: column \"CD4 Count\" missing"]);
}

pub(crate) fn cedex() -> ExportMapping {
    ExportMapping {
        encoding: TextEncoding::Latin1,
        delimiter: b';',
        fields: named(&[
            (Field::SampleId, "Sample ID"),
            (Field::TestCode, "Test"),
            (Field::Value, "Result"),
            (Field::Unit, "Unit"),
            (Field::Flag, "Flag"),
            (Field::ObservedAt, "Measured"),
            (Field::Comment, "Comment"),
        ]),
        date_format: Some(DateFormat::parse("%d.%m.%Y %H:%M:%S").unwrap()),
        ..ExportMapping::new(ExportFormat::Csv)
    }
}

#[test]
fn cobas_cedex_latin1_semicolon_crlf() {
    let obs = ok(&fixture("res_20240312102200.csv"), &cedex());
    let got: Vec<_> = obs
        .iter()
        .map(|o| {
            (
                o.sample_id.as_deref().unwrap(),
                o.test_code.as_str(),
                o.value.as_deref().unwrap(),
                o.unit.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("SMP-0001", "GLC2B", "5.94", "mmol/L"),
            ("SMP-0001", "LAC2B", "1.21", "mmol/L"),
            ("SMP-0002", "NH3B", "142", "µmol/L"),
        ]
    );
    assert_eq!(obs[2].flags, ["H"]);
    assert_eq!(obs[2].comments, ["Hämolyse; Probe trüb"]);
    assert_eq!(obs[0].observed_at.as_deref(), Some("2024-03-12T10:14:03"));
    assert!(obs[0].flags.is_empty());
}

#[test]
fn latin1_file_read_as_utf8_names_the_byte() {
    let m = ExportMapping {
        encoding: TextEncoding::Utf8,
        ..cedex()
    };
    let bytes = fixture("res_20240312102200.csv");
    let at = bytes.iter().position(|&b| b == 0xB5).unwrap();
    let d = decode(&bytes, &m);
    assert_eq!(d.error_texts(), [format!("byte {at}: not valid utf8")]);
}

pub(crate) fn genexpert() -> ExportMapping {
    ExportMapping {
        table_start: Some("Analyte Result".into()),
        labels: vec![
            (Field::SampleId, "Sample ID".into()),
            (Field::PatientId, "Patient ID".into()),
            (Field::TestName, "Assay".into()),
            (Field::ObservedAt, "Start Time".into()),
            (Field::DeviceSerial, "Module S/N".into()),
        ],
        fields: named(&[
            (Field::TestCode, "Analyte Name"),
            (Field::Value, "Analyte Result"),
        ]),
        extra: vec![
            Column::parse("Ct").unwrap(),
            Column::parse("EndPt").unwrap(),
        ],
        date_format: Some(DateFormat::parse("%m/%d/%y %H:%M:%S").unwrap()),
        ..ExportMapping::new(ExportFormat::Csv)
    }
}

#[test]
fn genexpert_report_with_two_samples() {
    let obs = ok(&fixture("genexpert-export.csv"), &genexpert());
    let got: Vec<_> = obs
        .iter()
        .map(|o| {
            (
                o.sample_id.as_deref().unwrap(),
                o.test_code.as_str(),
                o.value.as_deref().unwrap(),
                o.extra["Ct"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("GX-250514-01", "SPC", "PASS", "27.4"),
            ("GX-250514-01", "IS1081-IS6110", "POS", "20.3"),
            ("GX-250514-01", "rpoB1", "POS", "21.9"),
            ("GX-250514-02", "SPC", "PASS", "26.8"),
            ("GX-250514-02", "IS1081-IS6110", "NEG", "0"),
        ]
    );
    assert_eq!(obs[0].test_name.as_deref(), Some("Xpert MTB-RIF Ultra"));
    assert_eq!(obs[0].patient_id.as_deref(), Some("PAT-0101"));
    assert_eq!(obs[4].patient_id.as_deref(), Some("PAT-0102"));
    assert_eq!(obs[3].observed_at.as_deref(), Some("2025-05-14T11:48:40"));
    assert_eq!(obs[3].device.serial.as_deref(), Some("618211"));
}

#[test]
fn report_without_its_table_is_an_error() {
    let d = decode(b"RESULT TABLE\r\nSample ID,X\r\n", &genexpert());
    assert_eq!(
        d.error_texts(),
        ["no \"Analyte Result\" row: the file has no result table"]
    );
}

fn multiset() -> ExportMapping {
    ExportMapping {
        encoding: TextEncoding::MacRoman,
        delimiter: b'\t',
        fields: named(&[
            (Field::SampleId, "Sample Name"),
            (Field::ObservedAt, "Date Analyzed"),
            (Field::Comment, "Comment"),
        ]),
        analytes: vec![
            ("CD4".into(), Column::parse("CD3+CD4+ Abs Cnt").unwrap()),
            ("CD4%".into(), Column::parse("CD3+CD4+ %Lymph").unwrap()),
            ("CD8".into(), Column::parse("CD3+CD8+ Abs Cnt").unwrap()),
        ],
        units: [("CD4".to_owned(), "cells/µL".to_owned())].into(),
        date_format: Some(DateFormat::parse("%m/%d/%Y").unwrap()),
        ..ExportMapping::new(ExportFormat::Csv)
    }
}

#[test]
fn mac_roman_wide_file_with_cr_line_ends() {
    let obs = ok(&fixture("multiset-15052015.csv"), &multiset());
    let got: Vec<_> = obs
        .iter()
        .map(|o| {
            (
                o.sample_id.as_deref().unwrap(),
                o.test_code.as_str(),
                o.value.as_deref().unwrap(),
                o.unit.as_deref(),
            )
        })
        .collect();
    // The second sample has no CD4 cells filled: only its CD8 count is a result.
    assert_eq!(
        got,
        [
            ("BHP-0417", "CD4", "512", Some("cells/µL")),
            ("BHP-0417", "CD4%", "28.41", None),
            ("BHP-0417", "CD8", "894", None),
            ("BHP-0418", "CD8", "1021", None),
        ]
    );
    assert_eq!(obs[3].comments, ["Échantillon hémolysé"]);
    assert_eq!(obs[0].observed_at.as_deref(), Some("2015-05-15T00:00:00"));
}

#[test]
fn bad_date_names_line_column_and_format() {
    let text = "Sample Name\tDate Analyzed\tCD3+CD4+ Abs Cnt\tCD3+CD4+ %Lymph\tCD3+CD8+ Abs Cnt\tComment\n\
                A\t05/15/2015\t1\t2\t3\t\n\
                B\t15/05/2015\t1\t2\t3\t\n";
    let d = decode(text.as_bytes(), &multiset());
    assert_eq!(d.observations.len(), 3, "the good row is still decoded");
    assert_eq!(
        d.error_texts(),
        [
            "line 3: column \"Date Analyzed\": \"15/05/2015\" does not match date_format \"%m/%d/%Y\""
        ]
    );
}

#[test]
fn short_row_and_empty_test_code_name_their_line() {
    let d = decode(b"Sample ID,Test,Result\nS1,GLU\n", &narrow());
    assert_eq!(d.error_texts(), ["line 2: column \"Result\" missing"]);
    let d = decode(b"Sample ID,Test,Result\nS1,,5\n", &narrow());
    assert_eq!(
        d.error_texts(),
        ["line 2: no test code (empty column \"Test\")"]
    );
}

fn narrow() -> ExportMapping {
    ExportMapping {
        fields: named(&[
            (Field::SampleId, "Sample ID"),
            (Field::TestCode, "Test"),
            (Field::Value, "Result"),
        ]),
        ..ExportMapping::new(ExportFormat::Csv)
    }
}

#[test]
fn header_row_skips_a_banner_and_numbers_address_columns() {
    let m = ExportMapping {
        header_row: 3,
        fields: named(&[
            (Field::SampleId, "#1"),
            (Field::TestCode, "Test"),
            (Field::Value, "#3"),
        ]),
        ..narrow()
    };
    let obs = ok(b"Analyzer X\nexported 2024\nID,Test,Result\nS9,K,4.1\n", &m);
    assert_eq!(obs[0].sample_id.as_deref(), Some("S9"));
    assert_eq!(obs[0].value.as_deref(), Some("4.1"));
    let d = decode(b"Analyzer X\n", &m);
    assert_eq!(
        d.error_texts(),
        ["no header row: the file has 1 line(s), header_row is 3"]
    );
}

#[test]
fn limits_are_enforced() {
    let limited = |limits: ExportLimits, bytes: &[u8]| {
        let m = ExportMapping { limits, ..narrow() };
        decode(bytes, &m).error_texts()
    };
    let d = ExportLimits::default();
    let small = ExportLimits {
        max_file_bytes: 10,
        ..d
    };
    assert_eq!(
        limited(small, b"Sample ID,Test,Result\n"),
        ["file is 22 bytes, more than the limit of 10"]
    );
    let rows = ExportLimits { max_rows: 2, ..d };
    assert_eq!(
        limited(rows, b"Sample ID,Test,Result\nA,B,1\nA,C,2\n"),
        ["more than 2 rows"]
    );
    let columns = ExportLimits {
        max_columns: 3,
        ..d
    };
    assert_eq!(
        limited(columns, b"Sample ID,Test,Result,x\n"),
        ["line 1: more than 3 columns"]
    );
}

pub(crate) fn xml_mapping() -> ExportMapping {
    ExportMapping {
        encoding: TextEncoding::Latin1,
        record: Some("Sample/Result".into()),
        fields: named(&[
            (Field::SampleId, "../@id"),
            (Field::PatientId, "../PatientID"),
            (Field::TestCode, "@code"),
            (Field::Value, "Value"),
            (Field::Unit, "@unit"),
            (Field::ObservedAt, "Time"),
            (Field::DeviceSerial, "../../@device"),
        ]),
        ..ExportMapping::new(ExportFormat::Xml)
    }
}

#[test]
fn xml_export_maps_elements_and_attributes() {
    let obs = ok(&fixture("results.xml"), &xml_mapping());
    let got: Vec<_> = obs
        .iter()
        .map(|o| {
            (
                o.sample_id.as_deref().unwrap(),
                o.patient_id.as_deref().unwrap(),
                o.test_code.as_str(),
                o.value.as_deref().unwrap(),
                o.unit.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("XS-01", "PAT-0201", "HB", "12.8", "g/dL"),
            ("XS-01", "PAT-0201", "HCT", "38.5", "%"),
            ("XS-02", "PAT-0202", "HB", "9.1", "g/dL"),
        ]
    );
    assert_eq!(obs[0].observed_at.as_deref(), Some("2024-03-12T09:02:11"));
    assert_eq!(obs[0].device.serial.as_deref(), Some("ANALYZER-7"));
}

#[test]
fn malformed_xml_names_line_and_byte() {
    let d = decode(b"<Export>\n<Sample id='1'>\n</Export>", &xml_mapping());
    let e = d.error_texts().join("");
    assert!(e.starts_with("line 3: "), "{e}");
    assert!(e.contains("</Export>"), "{e}");
}

#[test]
fn astm_records_file_decodes_like_the_wire() {
    let m = ExportMapping::new(ExportFormat::Astm);
    let obs = ok(&fixture("afinion2-records.astm"), &m);
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].test_code, "HbA1c");
    assert_eq!(obs[0].value.as_deref(), Some("5.9"));
    assert_eq!(obs[0].unit.as_deref(), Some("%"));
}

#[test]
fn empty_file_is_an_error() {
    assert_eq!(
        decode(b"Sample ID,Test,Result\r\n", &narrow()).error_texts(),
        ["no results found in the file"]
    );
}

#[test]
fn complete_end_stops_before_a_partial_row() {
    assert_eq!(complete_end(b"a,b\nc,d\ne,", 0), Some(8));
    assert_eq!(complete_end(b"a,b\nc,d\ne,", 8), None);
    assert_eq!(complete_end(b"a\rb\r", 2), Some(4));
}

#[test]
fn header_end_covers_banner_and_header_rows() {
    let m = ExportMapping {
        header_row: 2,
        ..narrow()
    };
    assert_eq!(header_end(b"banner\r\nID,T,R\r\nS,K,1\r\n", &m), 16);
    assert_eq!(header_end(b"banner\rID,T,R\rS,K,1\r", &m), 14);
    assert_eq!(header_end(b"x\n", &genexpert()), 0);
}

#[test]
fn genexpert_utf16le_export_decodes_like_the_utf8_one() {
    let utf16 = ok(&fixture("genexpert-export-utf16.csv"), &genexpert());
    let utf8 = ok(&fixture("genexpert-export.csv"), &genexpert());
    assert_eq!(utf16.len(), 5);
    assert_eq!(utf16, utf8);
}

#[test]
fn every_truncation_of_every_fixture_decodes_or_names_an_error() {
    // What a pulled stick or a half-written file looks like: no panic, and never silence.
    let cases: [(&str, ExportMapping); 7] = [
        ("pima-utf8-bom.csv", pima()),
        ("res_20240312102200.csv", cedex()),
        ("genexpert-export.csv", genexpert()),
        ("genexpert-export-utf16.csv", genexpert()),
        ("multiset-15052015.csv", multiset()),
        ("results.xml", xml_mapping()),
        (
            "afinion2-records.astm",
            ExportMapping::new(ExportFormat::Astm),
        ),
    ];
    for (name, m) in cases {
        let bytes = fixture(name);
        for cut in 0..=bytes.len() {
            let d = decode(&bytes[..cut], &m);
            assert!(
                !d.observations.is_empty() || !d.errors.is_empty(),
                "{name} cut at {cut}: neither results nor an error"
            );
            assert!(
                d.observations.iter().all(|o| !o.test_code.is_empty()),
                "{name} cut at {cut}: {:?}",
                d.observations
            );
        }
    }
}
