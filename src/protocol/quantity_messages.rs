//! Viral-load messages as the common platforms send them (issue 19), through the real ASTM and
//! HL7 decoders, each asserting the value, unit and comparator a clinician reads. The messages
//! are shaped like production captures, with the captures' (already replaced) sample ids: the
//! GeneXpert ones follow protocols.md S3/S4 (S21b's split copies/log records: hl7/fixtures.rs);
//! cobas 6800, cobas 4800, m2000 and Alinity m follow deforay/vlsm-interfacing
//! src/app/testing/fixtures/captured/*.ts at commit 7129b81 (each helper names its file).
//! No patient data.

use crate::config::Encoding;
use crate::protocol::{astm, hl7};
use crate::record::{Comparator, Detection, Observation, Quantity};

fn astm(text: &str) -> Vec<Observation> {
    let d = astm::decode::decode_message(text.replace('\n', "\r").as_bytes(), Encoding::Latin1);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    d.observations
}

fn hl7(text: &str) -> Vec<Observation> {
    let d = hl7::decode::decode_message(text.replace('\n', "\r").as_bytes(), Encoding::Utf8);
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    d.observations
}

fn quantity<'a>(obs: &'a [Observation], code: &str) -> &'a Quantity {
    let o = obs.iter().find(|o| o.test_code == code).unwrap_or_else(|| {
        panic!(
            "no {code} in {:?}",
            obs.iter().map(|o| &o.test_code).collect::<Vec<_>>()
        )
    });
    o.quantity
        .as_ref()
        .unwrap_or_else(|| panic!("{code}: no quantity from {:?}", o.value))
}

/// (value, unit, comparator) as the clinician reads them.
fn read(q: &Quantity) -> (Option<&str>, Option<&str>, Option<Comparator>) {
    (q.value.as_deref(), q.unit.as_deref(), q.comparator)
}

const GX_H: &str = "H|@^\\|ABC||GeneXpert PC^GeneXpert^6.4|||||LIS||P|1394-97|20250301120000\n\
    P|1\nO|1|VL-0001||^^^HIVVL|R|20250301100000|||||||||ORH||||||||||F\n";

#[test]
fn genexpert_astm_quantified_with_its_log_record() {
    let obs = astm(&format!(
        "{GX_H}R|1|^^^HIVVL^Xpert HIV-1 Viral Load XC^3^^|^1.23E+04|copies/mL|40.00 to 10000000.00|N||F\n\
         R|2|^^^HIVVL^Xpert HIV-1 Viral Load XC^3^^LOG|^4.09|copies/mL|1.60 to 7.00|N||F\nL|1|N\n"
    ));
    let q = quantity(&obs, "HIVVL");
    assert_eq!(read(q), (Some("12300"), Some("copies/mL"), None));
    assert_eq!(q.log10.as_deref(), Some("4.09"));
    assert_eq!(q.raw, "1.23E+04");
}

#[test]
fn genexpert_astm_detected_above_the_upper_limit() {
    let obs = astm(&format!(
        "{GX_H}R|1|^^^HIVVL^Xpert HIV-1 Viral Load XC^3^^|DETECTED^|copies/mL|40.00 to 10000000.00|>||F\nL|1|N\n"
    ));
    let q = quantity(&obs, "HIVVL");
    assert_eq!(
        read(q),
        (Some("10000000.00"), Some("copies/mL"), Some(Comparator::Gt))
    );
    assert_eq!(q.detection, Some(Detection::Detected));
}

#[test]
fn genexpert_astm_not_detected() {
    let obs = astm(&format!(
        "{GX_H}R|1|^^^HIVVL^Xpert HIV-1 Viral Load XC^3^^|NOT DETECTED^|copies/mL|40.00 to 10000000.00|N||F\nL|1|N\n"
    ));
    let q = quantity(&obs, "HIVVL");
    assert_eq!(read(q), (None, Some("copies/mL"), None));
    assert_eq!(q.detection, Some(Detection::NotDetected));
}

/// Abbott m2000 as in deforay/vlsm-interfacing src/app/testing/fixtures/captured/abbott-m2000.ts
/// (production capture, software 8.1.9.0): one H P O R R R L message per sample, R.3's last
/// component F (result), I (interpretation), P (cycle number). Also used by the m2000 profile
/// test (src/config/profile/tests.rs).
pub(crate) fn m2000(sample: &str, result: &str, interpretation: &str, cycle: &str) -> String {
    const TEST: &str = "^^^HIV0.6ml^HIV0.6ml^395139^10004558^^";
    const TAIL: &str = "||||F||admin^Administrator||20260112122150|275000001";
    format!(
        "H|\\^&|||m2000^8.1.9.0^275000001^H1P1O1R1C1L1|||||||P|1|20260112122248\nP|1\n\
         O|1|{sample}|{sample}^HIV120126A^A6|^^^HIV0.6ml^HIV0.6ml|||||||||||||||||||||F\n\
         R|1|{TEST}F|{result}|Copies / mL{TAIL}\nR|2|{TEST}I|{interpretation}|{TAIL}\n\
         R|3|{TEST}P|{cycle}|cycle number{TAIL}\nL|1\n"
    )
}

#[test]
fn m2000_result_interpretation_and_cycle_number_have_their_own_codes() {
    // The capture's VL00000003 (86321, cycle 21.77) and HIV_HIPOS (1094012).
    for (result, copies) in [("86321", "86321"), ("1094012", "1094012")] {
        let obs = astm(&m2000("VL00000003", result, "Detected", "21.77"));
        let codes: Vec<&str> = obs.iter().map(|o| o.test_code.as_str()).collect();
        assert_eq!(codes, ["HIV0.6ml", "HIV0.6ml:I", "HIV0.6ml:P"]);
        assert_eq!(
            read(quantity(&obs, "HIV0.6ml")),
            (Some(copies), Some("Copies / mL"), None)
        );
        assert_eq!(obs[1].value.as_deref(), Some("Detected"));
        assert_eq!(obs[2].value.as_deref(), Some("21.77"));
        assert_eq!(obs[0].device.vendor.as_deref(), Some("Abbott"));
    }
}

#[test]
fn m2000_below_the_limit_and_not_detected() {
    // The capture's VL00000002 (< 40) and VL00000001 (Not detected, cycle -1.00).
    let obs = astm(&m2000("VL00000002", "< 40", "Detected", "28.93"));
    assert_eq!(
        read(quantity(&obs, "HIV0.6ml")),
        (Some("40"), Some("Copies / mL"), Some(Comparator::Lt))
    );
    let obs = astm(&m2000(
        "VL00000001",
        "Not detected",
        "Target not detected",
        "-1.00",
    ));
    let q = quantity(&obs, "HIV0.6ml");
    assert_eq!(read(q), (None, Some("Copies / mL"), None));
    assert_eq!(q.detection, Some(Detection::NotDetected));
}

#[test]
fn astm_value_with_its_unit_in_the_text() {
    // A result written as text with the unit inside and R.5 empty.
    let obs = astm(
        "H|\\^&|||Analyzer|||||LIS||P|1\nP|1\nO|1|VL-0005||^^^HBVVL|R\n\
         R|1|^^^HBVVL|< 10 IU/mL|||N||F\nL|1|N\n",
    );
    assert_eq!(
        read(quantity(&obs, "HBVVL")),
        (Some("10"), Some("IU/mL"), Some(Comparator::Lt))
    );
}

/// cobas 6800/8800 OUL^R22 as in deforay/vlsm-interfacing src/app/testing/fixtures/captured/
/// roche-cobas-6800.ts (production capture, Zimbabwe): SPM-2 the plain sample id, OBR-4
/// `70241-5^HIV^LN`, then the OBX lines given (OBX-1 … OBX-8; the rest is the capture's tail).
fn cobas_6800(sample: &str, obx: &[&str]) -> String {
    const TAIL: &str = "|||F|||||Lyneldra||C6800/8800^Roche^^~Unknown^Roche^^~ID_000000000000000001^IM300-000001^^|20260308121433|||||||||592_neg^^99ROC~591_pos^^99ROC";
    let obx: Vec<String> = obx.iter().map(|o| format!("OBX|{o}{TAIL}")).collect();
    format!(
        "MSH|^~\\&|COBAS6800/8800||LIS||20260308152752||OUL^R22|MSG-6800|P|2.5||||||ASCII\n\
         SPM||{sample}||PLAS^plasma^HL70487|||||||P||||||||||||||||\n\
         SAC|||||||||||||||||||||500|||uL^^UCUM\nOBR|1|||70241-5^HIV^LN|||||||A\n{}\n\
         TCD|70241-5^HIV^LN|^1^:^0\n",
        obx.join("\n")
    )
}

#[test]
fn cobas_6800_mantissa_with_a_power_of_ten_unit_is_scaled() {
    // The capture's MSG-6800-01 and -03: 763 in 10*-1.{Copies}/mL, 226 in 10*4.{Copies}/mL.
    for (mantissa, exp, copies) in [("763", "-1", "76.3"), ("226", "4", "2260000")] {
        let obs = hl7(&cobas_6800(
            "VL-6800-01",
            &[
                &format!("1|NM|HIV^HIV^99ROC||{mantissa}|10*{exp}.{{Copies}}/mL^^UCUM||"),
                "2|NA|HIV^HIV^99ROC^S_OTHER^Other Supplemental^IHELAW||36.51^^37.15|||",
                "3|ST|70241-5^HIV^LN|1/1|ValueNotSet|||RR",
                "4|ST|70241-5^HIV^LN|1/2|Titer|||\"\"",
            ],
        ));
        let o = &obs[0];
        let q = o.quantity.as_ref().expect("a quantity");
        assert_eq!(
            read(q),
            (Some(copies), Some("copies/mL"), None),
            "{mantissa}"
        );
        assert_eq!(q.raw, mantissa, "the value as sent");
        assert_eq!(
            o.unit.as_deref(),
            Some(format!("10*{exp}.{{Copies}}/mL").as_str()),
            "the unit as sent"
        );
        assert_eq!(o.value.as_deref(), Some(mantissa));
    }
}

#[test]
fn cobas_6800_target_not_detected_and_below_titer_min() {
    // The capture's MSG-6800-04 and -05: ValueNotSet with ND / BT in OBX-8 on the HIV line, the
    // outcome as text in 70241-5 sub-ID 1/2.
    for (outcome, flag, comparator, detection) in [
        (
            "Target Not Detected",
            "ND",
            None,
            Some(Detection::NotDetected),
        ),
        ("< Titer min", "BT", Some(Comparator::Lt), None),
    ] {
        let obs = hl7(&cobas_6800(
            "VL-6800-02",
            &[
                &format!("1|ST|HIV^HIV^99ROC||ValueNotSet|||{flag}"),
                "2|NA|HIV^HIV^99ROC^S_OTHER^Other Supplemental^IHELAW||^^37.68|||",
                "3|ST|70241-5^HIV^LN|1/1|ValueNotSet|||RR",
                &format!("4|ST|70241-5^HIV^LN|1/2|{outcome}|||\"\""),
            ],
        ));
        let text = obs
            .iter()
            .find(|o| o.extra.get("sub_id").map(String::as_str) == Some("1/2"))
            .expect("the 1/2 line");
        let q = text.quantity.as_ref().expect("the outcome");
        assert_eq!(read(q), (None, None, comparator), "{outcome}");
        assert_eq!(q.detection, detection, "{outcome}");
        assert_eq!(obs[0].flags, [flag]);
    }
}

/// cobas 4800 as in deforay/vlsm-interfacing src/app/testing/fixtures/captured/roche-cobas-4800.ts
/// (production capture, DRC, software 2.3): one OUL^R22 per run, an SPM group per sample with
/// SPM-2 `<id>&ROCHE`, the result in OBX 0BHIV1 sub-ID 1.1 with `Full^^99ROC` in OBX-8.
fn cobas_4800(samples: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "MSH|^~\\&|cobas 4800 software 2.3.0.1905^56450_00001^M|LAB|LIS|LIS Facility|20260613145247+0100||OUL^R22^OUL_R22|MSG-4800|P|2.5.1|||ER|AL||UNICODE UTF-8|||LAB-29^IHE\n",
    );
    for (n, (sample, value)) in samples.iter().enumerate() {
        let unit = if value.ends_with("cp/mL") {
            "1/mL^^UCUM"
        } else {
            ""
        };
        text.push_str(&format!(
            "SPM|{}|{sample}&ROCHE||\"\"|||||||Q^^HL70369\nSAC|||{sample}\n\
             OBR||\"\"||0BHIV1^0BHIV1^99ROC||20260612162143\nORC|SC||||CM\n\
             OBX|1|DR|RunTimeRange^Run Execution Time Range^99ROC^S_OTHER^Other_Supplemental^IHELAW|1.0|20260612163740^20260612194324|||\"\"|||F|||||Laboperator01||C4800^Roche~56450_00001^Roche|20260612194324\n\
             OBX|2|ST|0BHIV1^0BHIV1^99ROC|1.1|{value}|{unit}||Full^^99ROC|||F|||||Laboperator01||C4800^Roche~56450_00001^Roche|20260612194324\n\
             NTE|1||F;NONE\nNTE|2||Ct:0 (MMx 1),26.71\nNTE|3||\n",
            n + 1
        ));
    }
    text
}

#[test]
fn cobas_4800_value_in_the_text_is_kept_beside_its_full_flag() {
    let obs = hl7(&cobas_4800(&[
        ("0PHJ100001N0QVJ", "3.26E+05 cp/mL"),
        ("VL260003", "6.73E+01 cp/mL"),
    ]));
    let vl: Vec<&Observation> = obs.iter().filter(|o| o.test_code == "0BHIV1").collect();
    let got: Vec<_> = vl
        .iter()
        .map(|o| {
            (
                o.sample_id.as_deref(),
                o.value.as_deref(),
                read(o.quantity.as_ref().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("0PHJ100001N0QVJ"),
                Some("3.26E+05 cp/mL"),
                (Some("326000"), Some("1/mL"), None)
            ),
            (
                Some("VL260003"),
                Some("6.73E+01 cp/mL"),
                (Some("67.3"), Some("1/mL"), None)
            ),
        ]
    );
    assert_eq!(vl[0].flags, ["Full^^99ROC"], "the flag stays a flag");
    assert_eq!(
        obs.iter()
            .filter(|o| o.test_code == "RunTimeRange:S_OTHER")
            .count(),
        2
    );
}

#[test]
fn cobas_4800_below_titer_min_and_target_not_detected() {
    let obs = hl7(&cobas_4800(&[
        ("VL260002", "< Titer min"),
        ("VL260001", "Target Not Detected"),
    ]));
    let vl: Vec<&Observation> = obs.iter().filter(|o| o.test_code == "0BHIV1").collect();
    let below = vl[0].quantity.as_ref().expect("< Titer min");
    assert_eq!(read(below), (None, None, Some(Comparator::Lt)));
    let tnd = vl[1].quantity.as_ref().expect("Target Not Detected");
    assert_eq!(read(tnd), (None, None, None));
    assert_eq!(tnd.detection, Some(Detection::NotDetected));
    assert_eq!(vl[1].sample_id.as_deref(), Some("VL260001"));
}

/// Alinity m as in deforay/vlsm-interfacing src/app/testing/fixtures/captured/abbott-alinity-m.ts
/// (production capture, newer software): MSH-3/4 empty, the sample id in SAC-3, the unit in
/// OBX-6.2 (`^Copies/mL`), the device in OBX-18, the log10 in 1006.S.
fn alinity(sample: &str, result: &str, unit: &str, log: &str) -> String {
    const TAIL: &str = "||\"\"|||F|||||Pat~operator||Alinity m^Abbott~M00001^Abbott~1^Abbott~11^Abbott|20260112142906||||||||||RSLT";
    const SUPPLEMENTAL: &str = "^S_OTHER^Other Supplemental^IHELAW";
    format!(
        "MSH|^~\\&|||||20260112150335+0100||OUL^R22^OUL_R22|MSG-ALM|P|2.5.1|||NE|AL||UNICODE UTF-8|||LAB-29^IHE\n\
         SPM|1|||PLAS^Plasma^HL70487|||||||P^Patient^HL70369\n\
         SAC|||{sample}|||||||A000001|7||||2^Position^99ABT\nOBR||\"\"||1006^HIV-1^99ABT\n\
         ORC|SC||||CM\nTQ1|||||||||R^Routine^HL70485\n\
         OBX|1|ST|1006^HIV-1^99ABT||{result}|{unit}{TAIL}\n\
         OBX|2|ST|1006.I^HIV-1^99ABT||Detected|{TAIL}\n\
         OBX|3|NM|1006.R^HIV-1^99ABT{SUPPLEMENTAL}|HIV-1|18.62|^CN{TAIL}\n\
         OBX|4|EI|1006.G^HIV-1^99ABT{SUPPLEMENTAL}||11263ee8-274f-48b7-a5e8-000000000001|{TAIL}\n\
         OBX|5|ST|1006.S^HIV-1^99ABT{SUPPLEMENTAL}|0|{log}|^Log (Copies/mL){TAIL}\n"
    )
}

#[test]
fn alinity_m_unit_in_the_second_component_and_its_log10() {
    // The capture's MSG-ALM-003: 161,152 copies/mL, log10 4.21 (as the capture prints it).
    let obs = hl7(&alinity("VL00000103", "161,152", "^Copies/mL", "4.21"));
    let o = &obs[0];
    assert_eq!(
        read(quantity(&obs, "1006")),
        (Some("161152"), Some("Copies/mL"), None)
    );
    assert_eq!(o.sample_id.as_deref(), Some("VL00000103"));
    assert_eq!(
        (
            o.device.vendor.as_deref(),
            o.device.model.as_deref(),
            o.device.serial.as_deref()
        ),
        (Some("Abbott"), Some("Alinity m"), Some("M00001"))
    );
    let log = quantity(&obs, "1006.S:S_OTHER");
    assert_eq!(
        (log.value.as_deref(), log.log10.as_deref()),
        (None, Some("4.21"))
    );
    assert_eq!(log.unit.as_deref(), Some("Log (Copies/mL)"));
}

#[test]
fn alinity_m_below_the_limit_with_its_log10_limit() {
    // The capture's MSG-ALM-002: < 20 copies/mL, < 1.30 log.
    let obs = hl7(&alinity("VL00000102", "< 20", "^Copies/mL", "< 1.30"));
    assert_eq!(
        read(quantity(&obs, "1006")),
        (Some("20"), Some("Copies/mL"), Some(Comparator::Lt))
    );
    let log = quantity(&obs, "1006.S:S_OTHER");
    assert_eq!(
        (log.comparator, log.log10.as_deref()),
        (Some(Comparator::Lt), Some("1.30"))
    );
    // Not Detected comes without a unit: a plain value here, a viral-load outcome once the
    // profile's table gives the unit (config/profile/tests.rs).
    let obs = hl7(&alinity("VL00000101", "Not Detected", "", "Not Detected"));
    assert_eq!(obs[0].value.as_deref(), Some("Not Detected"));
    assert_eq!(
        quantity(&obs, "1006.S:S_OTHER").detection,
        Some(Detection::NotDetected)
    );
}

#[test]
fn a_qualitative_call_has_no_quantity() {
    let obs = astm(&format!("{GX_H}R|1|^^^HIVVL^^^HIV-1^|POS^|||\nL|1|N\n"));
    assert!(obs.iter().all(|o| o.quantity.is_none()), "{obs:?}");
}
