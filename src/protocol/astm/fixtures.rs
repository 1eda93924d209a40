//! Every capture in `tests/fixtures/astm/` decodes to its `.expected.json` (protocols.md §2
//! samples S1–S6, S8–S20; the README there says where each comes from).
//!
//! Expected-file shape: a JSON array with one entry per message [`decode_capture`] returns,
//! `{ "kind": "Results" | "Query" | "Other", "errors": ["<RecordError as text>", …],
//! "observations": [<Observation>, …] }`.
//!
//! `UPDATE_FIXTURES=1 cargo test` rewrites the expected files from the decoder; a rewritten file
//! must be read by a person before it is committed — the per-sample tests below hold the facts
//! from the report's "Expected parse" notes independently of those files.

use super::decode::{Decoded, MessageKind, decode_capture};
use crate::config::Encoding;
use crate::record::Observation;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/astm");

fn fixture_path(stem: &str) -> PathBuf {
    Path::new(DIR).join(format!("{stem}.astm"))
}

fn decode_fixture(stem: &str) -> Vec<Decoded> {
    let path = fixture_path(stem);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    decode_capture(&bytes, Encoding::Latin1)
}

fn to_json(decoded: &[Decoded]) -> Value {
    Value::Array(
        decoded
            .iter()
            .map(|d| {
                json!({
                    "kind": format!("{:?}", d.kind),
                    "errors": d.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "observations": serde_json::to_value(&d.observations)
                        .unwrap_or_else(|e| panic!("serialise: {e}")),
                })
            })
            .collect(),
    )
}

/// Readable differences between two JSON values, one line per differing path.
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff(&format!("{path}.{k}"), ev, av, out),
                    None => out.push(format!("{path}.{k}: missing (expected {ev})")),
                }
            }
            for (k, av) in a {
                if !e.contains_key(k) {
                    out.push(format!("{path}.{k}: unexpected {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: {} entries expected, {} found",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, found {actual}")),
        _ => {}
    }
}

#[test]
fn every_capture_decodes_to_its_expected_json() {
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v == "1");
    let mut stems: Vec<String> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".astm").map(str::to_owned)
        })
        .collect();
    stems.sort();
    assert_eq!(
        stems.len(),
        19,
        "one capture per sample S1–S6, S8–S20: {stems:?}"
    );
    let mut failures = Vec::new();
    for stem in &stems {
        let actual = to_json(&decode_fixture(stem));
        let expected_path = Path::new(DIR).join(format!("{stem}.expected.json"));
        if update {
            let text = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
            std::fs::write(&expected_path, text)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            continue;
        }
        let expected: Value = std::fs::read_to_string(&expected_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if expected != actual {
            let mut lines = Vec::new();
            diff("$", &expected, &actual, &mut lines);
            failures.push(format!("{stem}:\n  {}", lines.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "fixtures differ:\n{}",
        failures.join("\n")
    );
}

// ---- Per-sample facts from protocols.md §2 "Expected parse" notes, checked by hand. ----

/// The observations of a capture's messages, all in order.
fn all(decoded: &[Decoded]) -> Vec<&Observation> {
    decoded.iter().flat_map(|d| &d.observations).collect()
}

fn find<'a>(obs: &[&'a Observation], code: &str) -> &'a Observation {
    obs.iter()
        .copied()
        .find(|o| o.test_code == code)
        .unwrap_or_else(|| panic!("no observation with test_code {code}"))
}

fn extra<'a>(o: &'a Observation, key: &str) -> Option<&'a str> {
    o.extra.get(key).map(String::as_str)
}

/// `(sample_id, test_code, value, unit, flags, status, observed_at)` of one observation.
type Key<'a> = (
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Vec<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

fn key(o: &Observation) -> Key<'_> {
    (
        o.sample_id.as_deref(),
        o.test_code.as_str(),
        o.value.as_deref(),
        o.unit.as_deref(),
        o.flags.iter().map(String::as_str).collect(),
        o.result_status.as_deref(),
        o.observed_at.as_deref(),
    )
}

fn clean(d: &[Decoded]) {
    for m in d {
        assert!(m.errors.is_empty(), "unexpected errors: {:?}", m.errors);
    }
}

#[test]
fn s01_genexpert_mtb_rif_ultra() {
    let d = decode_fixture("s01-genexpert-mtb-rif-ultra");
    clean(&d);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].kind, MessageKind::Results);
    let obs = all(&d);
    assert_eq!(obs.len(), 84, "R|1 … R|84");
    let main = obs[0];
    assert_eq!(
        key(main),
        (
            Some("PR25A137"),
            "MTB-RIF/Xpert/MTB",
            Some("NOT DETECTED"),
            None,
            vec![],
            Some("F"),
            Some("2025-05-14T13:21:03")
        )
    );
    assert_eq!(main.test_name.as_deref(), Some("Xpert MTB-RIF Ultra"));
    assert_eq!(main.device.vendor.as_deref(), Some("Cepheid"));
    assert_eq!(main.device.model.as_deref(), Some("GeneXpert"));
    assert_eq!(main.device.serial.as_deref(), Some("806149"));
    assert_eq!(extra(main, "software_version"), Some("4.8"));
    assert_eq!(extra(main, "panel"), Some("MTB-RIF"));
    assert_eq!(extra(main, "analyte"), Some("MTB"));
    assert_eq!(extra(main, "assay_version"), Some("4"));
    assert_eq!(extra(main, "qualitative"), Some("NOT DETECTED"));
    assert_eq!(extra(main, "quantitative"), None);
    assert_eq!(extra(main, "operator"), Some("John Doe"));
    assert_eq!(extra(main, "instrument_system"), Some("Cepheid-44413S0"));
    assert_eq!(extra(main, "module_serial"), Some("653624"));
    assert_eq!(extra(main, "cartridge_serial"), Some("831583371"));
    assert_eq!(extra(main, "reagent_lot"), Some("56401"));
    assert_eq!(extra(main, "reagent_expiry"), Some("20250525"));
    assert_eq!(
        main.comments,
        ["Notes Id# 118176 Placeholder Tech CDU/Dr. A Sample cp"]
    );
    let r2 = obs[1];
    assert_eq!(r2.test_code, "MTB-RIF/Xpert/rpoB1");
    assert_eq!(r2.value.as_deref(), Some("INVALID"));
    assert!(r2.comments.is_empty());
    let r3 = obs[2];
    assert_eq!(r3.test_code, "MTB-RIF/Xpert/rpoB1:Ct");
    assert_eq!(r3.value.as_deref(), Some("0.0"));
    assert_eq!(extra(r3, "complementary"), Some("Ct"));
    assert_eq!(extra(r3, "quantitative"), Some("0.0"));
    // R|3 has no R.13: falls back to O.7, the order time.
    assert_eq!(r3.observed_at.as_deref(), Some("2025-05-14T12:16:38"));
    // R|20 MTB Trace and R|39 RIF Resistance: empty `^` values.
    assert_eq!(find(&obs, "MTB-RIF/Trace/MTB Trace").value, None);
    assert_eq!(find(&obs, "MTB-RIF/RIF/RIF Resistance").value, None);
    // R|21's truncated panel `MTB-RI` is kept as sent.
    assert_eq!(obs[20].test_code, "MTB-RI/Trace/rpoB1");
    // Codes are unique per analyte and complementary value.
    let mut codes: Vec<&str> = obs.iter().map(|o| o.test_code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), 84);
}

#[test]
fn s02_genexpert_stripped_framing_keeps_the_corruption_visible() {
    let d = decode_fixture("s02-genexpert-mtb-xdr-stripped");
    clean(&d);
    assert_eq!(d.len(), 1);
    let obs = all(&d);
    // Records R|1 … R|20 and R|101, R|102 are in the fixture (the report omits the middle).
    assert_eq!(obs.len(), 22);
    let r1 = obs[0];
    assert_eq!(
        key(r1),
        (
            Some("TRT2300177"),
            "MTBX/inv/INVALID",
            None,
            None,
            vec![],
            Some("F"),
            Some("2023-06-13T12:45:59")
        )
    );
    assert_eq!(
        r1.patient_id.as_deref(),
        Some("010501100991-9-KK-2022-9990")
    );
    assert_eq!(r1.test_name.as_deref(), Some("Xpert MTB-XDR"));
    assert_eq!(r1.device.serial.as_deref(), Some("110012723"));
    assert_eq!(extra(r1, "instrument_system"), Some("Cepheid-1F28376"));
    assert_eq!(extra(r1, "reagent_lot"), Some("01403"));
    assert_eq!(extra(r1, "software_version"), Some("6.4"));
    assert_eq!(
        find(&obs, "MTBX/inv/SPC-ahpC:Ct").value.as_deref(),
        Some("28.7")
    );
    assert_eq!(
        find(&obs, "MTBX/ethr/inhA-melt:Tm").value.as_deref(),
        Some("76.3")
    );
    // The stray frame-number digits stay where the bad stripping left them (report S2).
    assert_eq!(obs[3].test_code, "MTBX3/inv/SPC-ahpC:EndPt");
    assert_eq!(obs[16].test_code, "MTBX/inv/gyr5A2");
    assert_eq!(
        obs[9].flags,
        ["4"],
        "R|10 `|||4`: the frame number lands in R.7"
    );
}

#[test]
fn s03_genexpert_hiv_vl_quantified() {
    let d = decode_fixture("s03-genexpert-hiv-vl-quantified");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 14);
    let r1 = find(&obs, "HIVVL");
    assert_eq!(
        key(r1),
        (
            Some("HIV-1 1E3cp"),
            "HIVVL",
            Some("1009.64"),
            Some("copies/mL"),
            vec!["N"],
            Some("F"),
            Some("2022-11-15T08:40:08")
        )
    );
    assert_eq!(r1.reference_range.as_deref(), Some("40.00 to 10000000.00"));
    assert_eq!(extra(r1, "operator"), None, "`<None>` means no operator");
    assert_eq!(r1.device.serial.as_deref(), Some("810085"));
    assert_eq!(extra(r1, "instrument_system"), Some("MSEDGEWIN10"));
    assert_eq!(find(&obs, "HIVVL:LOG").value.as_deref(), Some("3.00"));
    assert_eq!(find(&obs, "HIVVL/HIV-1").value.as_deref(), Some("POS"));
    assert_eq!(find(&obs, "HIVVL/HIV-1:Ct").value.as_deref(), Some("33.0"));
    assert_eq!(find(&obs, "HIVVL/IQS-H").value.as_deref(), Some("PASS"));
    assert_eq!(find(&obs, "HIVVL/IQS-L").value.as_deref(), Some("PASS"));
    assert_eq!(find(&obs, "HIVVL/IQS-H:Delta Ct").value, None);
    assert_eq!(find(&obs, "HIVVL/IQS-L:Delta Ct").value, None);
}

#[test]
fn s04_genexpert_hiv_vl_below_range_has_no_number_and_a_less_than_flag() {
    let d = decode_fixture("s04-genexpert-hiv-vl-below-range");
    clean(&d);
    let obs = all(&d);
    let r1 = find(&obs, "HIVVL");
    assert_eq!(
        key(r1),
        (
            Some("HIV-1 30cp"),
            "HIVVL",
            Some("DETECTED"),
            Some("copies/mL"),
            vec!["<"],
            Some("F"),
            Some("2022-11-15T05:28:12")
        )
    );
    assert_eq!(extra(r1, "quantitative"), None);
    assert_eq!(r1.reference_range.as_deref(), Some("40.00 to 10000000.00"));
    let log = find(&obs, "HIVVL:LOG");
    assert_eq!(
        (log.value.as_deref(), log.flags.as_slice()),
        (None, &["<".to_owned()][..])
    );
}

#[test]
fn s05_genexpert_run_error_comments_attach_to_their_results() {
    let d = decode_fixture("s05-genexpert-hiv-vl-error");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 14);
    let text = "Error 2097 Operation terminated Error 2097: Assay-Specific Termination Error #2: \
                47, 8, 1, 0 20221116010549";
    for code in ["HIVVL", "HIVVL:LOG"] {
        let o = find(&obs, code);
        assert_eq!(o.flags, ["A"]);
        assert_eq!(o.comments, [text], "{code}");
        assert_eq!(o.sample_id.as_deref(), Some("Error"));
    }
    assert_eq!(find(&obs, "HIVVL").value.as_deref(), Some("ERROR"));
    for code in ["HIVVL/HIV-1", "HIVVL/IQS-H", "HIVVL/IQS-L"] {
        let o = find(&obs, code);
        assert_eq!(o.value.as_deref(), Some("NO RESULT"));
        assert!(o.comments.is_empty());
    }
}

#[test]
fn s06_genexpert_query_orders_no_orders_and_malformed_patient() {
    let d = decode_fixture("s06-genexpert-query-and-orders");
    assert_eq!(d.len(), 4);
    let kinds: Vec<MessageKind> = d.iter().map(|m| m.kind).collect();
    use MessageKind::{Other, Query, Results};
    assert_eq!(kinds, [Query, Other, Other, Results]);
    let q = d[0].message.as_ref().and_then(|m| m.records.get(1));
    assert_eq!(q.map(|q| q.field(3)), Some("ALL"));
    assert_eq!(q.map(|q| q.repeat_component(13, 2, 1)), Some("N"));
    let download = d[1].message.as_ref().map(|m| m.records.len());
    assert_eq!(download, Some(10), "H, 2 P, 6 O, L");
    assert!(
        d[..3]
            .iter()
            .all(|m| m.errors.is_empty() && m.observations.is_empty())
    );
    let last = &d[3];
    assert_eq!(
        last.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "record 2, field 1: record `P1|p234||FII`: the type letter is not followed by the \
          field delimiter `|`"
        ]
    );
    let o = &last.observations[0];
    assert_eq!(
        key(o),
        (
            Some("FII H8"),
            "F II TC",
            Some("HOMOZYGOUS"),
            None,
            vec![],
            Some("F"),
            Some("2012-07-09T11:05:53")
        )
    );
    assert_eq!(extra(o, "operator"), Some("jenyho"));
    assert_eq!(o.device.serial.as_deref(), Some("802269"));
}

#[test]
fn s08_sysmex_xn550() {
    let d = decode_fixture("s08-sysmex-xn550");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 41);
    let t = Some("2024-06-27T13:54:07");
    let wbc = find(&obs, "WBC");
    assert_eq!(
        key(wbc),
        (
            Some("27"),
            "WBC",
            Some("8.13"),
            Some("10*3/uL"),
            vec!["N"],
            Some("F"),
            t
        )
    );
    assert_eq!(wbc.patient_id.as_deref(), Some("37182"));
    assert_eq!(
        wbc.comments,
        ["POST HD"],
        "C after P applies to the patient's results"
    );
    assert_eq!(wbc.device.model.as_deref(), Some("XN-550"));
    assert_eq!(wbc.device.vendor.as_deref(), Some("Sysmex"));
    assert_eq!(key(find(&obs, "HCT")).2, Some("22.7"));
    assert_eq!(find(&obs, "HCT").flags, ["L"]);
    assert_eq!(find(&obs, "EO%").flags, ["H"]);
    assert_eq!(find(&obs, "EO%").value.as_deref(), Some("22.1"));
    let eos = find(&obs, "Eosinophilia");
    assert_eq!(
        (eos.value.as_deref(), eos.flags.as_slice()),
        (None, &["A".to_owned()][..])
    );
    let blasts = find(&obs, "Blasts/Abn_Lympho?");
    assert_eq!(
        (blasts.value.as_deref(), blasts.unit.as_deref()),
        (Some("40"), None)
    );
    assert_eq!(
        find(&obs, "SCAT_WDF").value.as_deref(),
        Some("PNG\\20240628\\2024_06_27_13_54_27_WDF.PNG")
    );
}

#[test]
fn s09_sysmex_xp100_padded_values() {
    let d = decode_fixture("s09-sysmex-xp100");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 20);
    let t = Some("2024-07-23T17:24:52");
    assert_eq!(
        key(find(&obs, "WBC")),
        (
            Some("113"),
            "WBC",
            Some("5.5"),
            Some("10*3/uL"),
            vec!["N"],
            None,
            t
        )
    );
    assert_eq!(find(&obs, "RBC").value.as_deref(), Some("2.87"));
    assert_eq!(find(&obs, "PLT").value.as_deref(), Some("170"));
    assert_eq!(find(&obs, "MCHC").flags, ["H"]);
    assert_eq!(find(&obs, "MCHC").value.as_deref(), Some("41.7"));
    assert_eq!(find(&obs, "HCT").flags, ["L"]);
    assert!(
        obs.iter()
            .all(|o| o.patient_id.is_none() && o.result_status.is_none())
    );
}

#[test]
fn s10_horiba_pentra_xlr() {
    let d = decode_fixture("s10-horiba-pentra-xlr");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 21);
    let t = Some("2022-07-27T12:15:50");
    let wbc = find(&obs, "WBC");
    assert_eq!(
        key(wbc),
        (
            Some("S1234"),
            "WBC",
            Some("8.5"),
            Some("1"),
            vec![],
            Some("W"),
            t
        )
    );
    assert_eq!(extra(wbc, "loinc"), Some("804-5"));
    assert_eq!(
        wbc.comments,
        [
            "Alarm_WBC LMNE- BASO+ LL NL LN NO SL1",
            "LARGE IMMATURE CELL NRBCs"
        ]
    );
    assert_eq!(find(&obs, "LYM#").value.as_deref(), Some("3.29"));
    assert_eq!(find(&obs, "MON#").flags, ["L"]);
    let bas = find(&obs, "BAS#");
    assert_eq!(
        (bas.value.as_deref(), bas.result_status.as_deref()),
        (None, Some("X"))
    );
    assert_eq!(bas.flags, ["HH"]);
    assert_eq!(extra(bas, "raw_value"), Some("-----"));
    assert_eq!(find(&obs, "BAS%").value, None);
    assert_eq!(find(&obs, "RBC").result_status.as_deref(), Some("F"));
    assert_eq!(find(&obs, "PLT").comments, ["PLATELET AGGREGATS"]);
    assert!(find(&obs, "MPV").comments.is_empty());
    assert_eq!(wbc.device.vendor.as_deref(), Some("Horiba ABX"));
}

#[test]
fn s11_horiba_yumizen_h500_qc_run() {
    let d = decode_fixture("s11-horiba-yumizen-h500-qc");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 21);
    let t = Some("2023-03-29T11:06:31");
    let wbc = find(&obs, "WBC");
    assert_eq!(
        key(wbc),
        (
            Some("PX440N"),
            "WBC",
            Some("8.30"),
            Some("10E3/uL"),
            vec!["N"],
            Some("F"),
            t
        )
    );
    assert_eq!(wbc.reference_range.as_deref(), Some("7.30 - 9.30"));
    assert_eq!(extra(wbc, "loinc"), Some("6690-2"));
    assert_eq!(extra(wbc, "operator"), Some("MATYL^^USER"));
    assert_eq!(
        extra(wbc, "processing_id"),
        Some("Q"),
        "a QC run (H.12 = Q)"
    );
    assert_eq!(
        wbc.comments,
        ["CONTROL_FAILED PLT_ABOVE_TOLERANCE", "ABXdifftrol N"]
    );
    let plt = find(&obs, "PLT");
    assert_eq!(
        (plt.value.as_deref(), plt.flags.as_slice()),
        (Some("308"), &["N".to_owned()][..])
    );
    assert_eq!(wbc.device.serial.as_deref(), Some("910YOXH02826"));
    let m = d[0].message.as_ref().map(|m| {
        m.records
            .iter()
            .filter(|r| r.kind == super::record::RecordKind::Manufacturer)
            .count()
    });
    assert_eq!(m, Some(4), "M records are kept");
}

#[test]
fn s12_roche_cobas_c111() {
    let d = decode_fixture("s12-roche-cobas-c111");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 1);
    assert_eq!(
        key(obs[0]),
        (
            Some("T20 10134GA D28"),
            "413",
            Some("40.13"),
            Some("g/L"),
            vec!["N"],
            Some("F"),
            Some("2023-08-03T13:17:00")
        )
    );
    assert_eq!(extra(obs[0], "operator"), Some("$SYS$"));
    assert!(obs[0].comments.is_empty(), "`C|1|I||I` is empty");
    assert_eq!(obs[0].device.model.as_deref(), Some("c111"));
}

#[test]
fn s13_roche_cobas_c311() {
    let d = decode_fixture("s13-roche-cobas-c311");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 7);
    let s = Some("CL-PL-24-0370");
    let got: Vec<Key<'_>> = obs.iter().map(|o| key(o)).collect();
    assert_eq!(
        got[0],
        (
            s,
            "685/",
            Some("22.4"),
            Some("U/l"),
            vec!["A"],
            Some("F"),
            None
        )
    );
    assert_eq!(
        got[2],
        (
            s,
            "712/",
            Some("4.1"),
            Some("umol/l"),
            vec!["L"],
            Some("F"),
            None
        )
    );
    assert_eq!(
        got[5],
        (
            s,
            "717/",
            Some("5.85"),
            Some("mmol/l"),
            vec!["N"],
            Some("F"),
            None
        )
    );
    assert_eq!(
        got[6],
        (
            s,
            "690/",
            Some("34"),
            Some("umol/l"),
            vec!["A"],
            Some("F"),
            None
        )
    );
    assert_eq!(obs[0].comments, ["43"]);
    assert_eq!(obs[1].comments, ["0"]);
    assert_eq!(extra(obs[0], "instrument"), Some("P1"));
}

#[test]
fn s14_abbott_afinion2() {
    let d = decode_fixture("s14-abbott-afinion2");
    clean(&d);
    let obs = all(&d);
    assert_eq!(obs.len(), 1);
    assert_eq!(
        key(obs[0]),
        (
            Some("5"),
            "HbA1c",
            Some("5.9"),
            Some("%"),
            vec![],
            Some("F"),
            Some("2024-12-06T14:06:15")
        )
    );
    assert_eq!(obs[0].patient_id.as_deref(), Some("3643"));
    assert_eq!(extra(obs[0], "operator"), Some("3643"));
    assert_eq!(obs[0].device.serial.as_deref(), Some("AF20052397"));
}

#[test]
fn s15_siemens_dca_vantage_time_from_r12() {
    let d = decode_fixture("s15-siemens-dca-vantage");
    clean(&d);
    let obs = all(&d);
    let t = Some("2024-08-20T15:10:30");
    let got: Vec<Key<'_>> = obs.iter().map(|o| key(o)).collect();
    assert_eq!(
        got,
        [
            (
                Some("660"),
                "Alb",
                Some("63.7"),
                Some("mg/L"),
                vec![],
                Some("F"),
                t
            ),
            (
                Some("660"),
                "Crt",
                Some("230.8"),
                Some("mg/dL"),
                vec![],
                Some("F"),
                t
            ),
            (
                Some("660"),
                "Ratio",
                Some("27.6"),
                Some("mg/g"),
                vec![],
                Some("F"),
                t
            ),
        ]
    );
    assert_eq!(obs[0].patient_id.as_deref(), Some("BU24R554"));
    assert_eq!(obs[0].comments, ["1.000 0.0 mg/L"]);
    assert_eq!(obs[1].comments, ["1.000 0.0 mg/dL"]);
    assert!(obs[2].comments.is_empty());
}

#[test]
fn s16_mini_vidas_is_reported_not_decoded() {
    let d = decode_fixture("s16-biomerieux-mini-vidas");
    assert_eq!(d.len(), 1);
    assert!(d[0].observations.is_empty() && d[0].message.is_none());
    assert!(matches!(
        &d[0].errors[..],
        [super::record::RecordError::NoMessage { .. }]
    ));
}

#[test]
fn s17_spotchem_printer_text_is_reported_not_decoded() {
    let d = decode_fixture("s17-arkray-spotchem-el");
    assert_eq!(d.len(), 1);
    assert!(d[0].observations.is_empty() && d[0].message.is_none());
    use super::record::RecordError::{BadChecksums, MissingHeader};
    assert!(matches!(
        &d[0].errors[..],
        [BadChecksums { bad: 1, frames: 1 }, MissingHeader { .. }]
    ));
}

#[test]
fn s18_immulite_nine_results_from_six_patients() {
    let d = decode_fixture("s18-siemens-immulite");
    clean(&d);
    let obs = all(&d);
    // The feature file's own table (protocols.md S18).
    let want = [
        ("130000445", "TT4", "10.3", "ug/dL", "1995-01-19T09:28:26"),
        ("130000445", "TU", "26.6", "Percnt", "1995-01-19T09:27:56"),
        ("130000617", "FER", "173.", "ng/mL", "1995-01-19T09:28:58"),
        ("130000722", "FER", "490.", "ng/mL", "1995-01-19T09:29:28"),
        ("130000724", "E2", "25.3", "pg/mL", "1995-01-19T10:00:49"),
        ("130000724", "FSH", "60.6", "mIU/mL", "1995-01-19T09:30:30"),
        ("130000724", "LH", "24.4", "mIU/mL", "1995-01-19T09:31:01"),
        ("130000741", "FER", "238.", "ng/mL", "1995-01-19T09:31:32"),
        ("130000790", "IGE", "517.", "IU/mL", "1995-01-19T09:32:02"),
    ];
    let got: Vec<Key<'_>> = obs.iter().map(|o| key(o)).collect();
    let want: Vec<Key<'_>> = want
        .iter()
        .map(|(s, c, v, u, t)| {
            (
                Some(*s),
                *c,
                Some(*v),
                Some(*u),
                vec!["N"],
                Some("F"),
                Some(*t),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(obs[0].patient_id.as_deref(), Some("119813;TGH"));
    assert_eq!(obs[8].patient_id.as_deref(), Some("556357;MB"));
    assert_eq!(obs[0].reference_range.as_deref(), Some("4.5\\.4^12.5\\24"));
    assert_eq!(obs[0].device.vendor.as_deref(), Some("Siemens (DPC)"));
    assert!(
        !obs[0].extra.contains_key("processing_id"),
        "H.12 is `1` in this shifted header"
    );
}

#[test]
fn s19_ortho_vision_bare_test_codes() {
    let d = decode_fixture("s19-ortho-vision");
    clean(&d);
    let obs = all(&d);
    let t = Some("2021-03-09T14:22:29");
    let got: Vec<Key<'_>> = obs.iter().map(|o| key(o)).collect();
    assert_eq!(
        got,
        [
            (Some("SID305"), "ABO", Some("B"), None, vec![], Some("R"), t),
            (
                Some("SID305"),
                "Rh",
                Some("POS"),
                None,
                vec![],
                Some("R"),
                t
            ),
        ]
    );
    assert_eq!(obs[0].patient_id.as_deref(), Some("PID123456"));
    assert_eq!(extra(obs[0], "operator"), Some("Automatic"));
    assert_eq!(extra(obs[0], "instrument"), Some("J60009999"));
    assert_eq!(obs[0].device.model.as_deref(), Some("VISION"));
    assert_eq!(obs[0].device.serial.as_deref(), Some("J60009999"));
}

#[test]
fn s20_aqualink_query_response_and_result_split_across_frames() {
    let d = decode_fixture("s20-aqualink-a9000p");
    clean(&d);
    let kinds: Vec<MessageKind> = d.iter().map(|m| m.kind).collect();
    use MessageKind::{Other, Query, Results};
    assert_eq!(kinds, [Query, Other, Results]);
    let q = d[0].message.as_ref().and_then(|m| m.records.get(1));
    assert_eq!(q.map(|q| q.field(3)), Some("^3788513^#ENTRADA 1^D8"));
    let obs = all(&d);
    let t = Some("2020-07-15T12:23:00");
    let got: Vec<Key<'_>> = obs.iter().map(|o| key(o)).collect();
    assert_eq!(
        got,
        [
            (
                Some("3788512"),
                "PRIMARY_T",
                Some("#VELOCIDADES 1_A3"),
                None,
                vec![],
                Some("SUCCESS"),
                t
            ),
            (
                Some("3788512"),
                "VELO",
                Some("OK"),
                None,
                vec![],
                Some("F"),
                t
            ),
        ]
    );
    assert_eq!(obs[0].patient_id.as_deref(), Some("342008"));
}
