//! Viral-load messages as the common platforms send them (issue 19), through the real ASTM and
//! HL7 decoders, each asserting the value, unit and comparator a clinician reads. The messages
//! are written from the vendors' LIS interface layouts (result field components, SN type, unit
//! components, split copies/log records) with made-up sample ids; the GeneXpert ones follow the
//! real captures of protocols.md S3/S4 (S21b's split copies/log records: hl7/fixtures.rs).
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

#[test]
fn cobas_taqman_astm_below_the_limit_in_scientific_notation() {
    // cobas AmpliPrep/TaqMan (and 4800) through its data manager: value with comparator in R.4,
    // unit in R.5.
    let obs = astm(
        "H|\\^&|||cobas 4800^1.0|||||LIS||P|1\nP|1\nO|1|VL-0002||^^^HI2CAP96|R\n\
         R|1|^^^HI2CAP96|<2.00E+01|cp/mL||<||F\nL|1|N\n",
    );
    assert_eq!(
        read(quantity(&obs, "HI2CAP96")),
        (Some("20"), Some("cp/mL"), Some(Comparator::Lt))
    );
}

#[test]
fn cobas_taqman_astm_target_not_detected() {
    let obs = astm(
        "H|\\^&|||cobas 4800^1.0|||||LIS||P|1\nP|1\nO|1|VL-0003||^^^HI2CAP96|R\n\
         R|1|^^^HI2CAP96|Target Not Detected|cp/mL||N||F\nL|1|N\n",
    );
    let q = quantity(&obs, "HI2CAP96");
    assert_eq!(read(q), (None, Some("cp/mL"), None));
    assert_eq!(q.detection, Some(Detection::NotDetected));
}

#[test]
fn abbott_m2000_astm_copies_and_log_units() {
    // Abbott m2000rt: copies/mL and log copies/mL as two results of one assay.
    let obs = astm(
        "H|\\^&|||m2000^8.1|||||LIS||P|1\nP|1\nO|1|VL-0004||^^^HIV|R\n\
         R|1|^^^HIV^0.6 mL HIV-1 RNA^^F|1,234,567|Copies/mL||H||F\n\
         R|2|^^^HIVLOG^0.6 mL HIV-1 RNA Log^^F|6.09|Log Copies/mL||H||F\nL|1|N\n",
    );
    assert_eq!(
        read(quantity(&obs, "HIV")),
        (Some("1234567"), Some("Copies/mL"), None)
    );
    let log = quantity(&obs, "HIVLOG");
    assert_eq!(
        (log.value.as_deref(), log.log10.as_deref()),
        (None, Some("6.09"))
    );
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

const ALINITY_MSH: &str = "MSH|^~\\&|Alinity m^Abbott||LIS||20250301120000||OUL^R22|m-0002|P|2.5.1\n\
    PID|1\nSPM|1|VL-0007||PLAS\nOBR|1|||HIV1VL^Alinity m HIV-1^L\n";

#[test]
fn alinity_m_hl7_structured_numeric_below_the_limit() {
    let obs = hl7(&format!(
        "{ALINITY_MSH}OBX|1|SN|HIV1VL^HIV-1 RNA^L||<^20|copies/mL^copies per milliliter^UCUM|||||F\n\
         OBX|2|SN|HIV1VL-LOG^HIV-1 RNA log^L||<^1.30|Log copies/mL|||||F\n"
    ));
    let q = quantity(&obs, "HIV1VL");
    assert_eq!(
        read(q),
        (Some("20"), Some("copies/mL"), Some(Comparator::Lt))
    );
    assert_eq!(q.raw, "<^20");
    let log = quantity(&obs, "HIV1VL-LOG");
    assert_eq!(
        (log.comparator, log.log10.as_deref()),
        (Some(Comparator::Lt), Some("1.30"))
    );
}

#[test]
fn alinity_m_hl7_structured_numeric_above_the_limit() {
    let obs = hl7(&format!(
        "{ALINITY_MSH}OBX|1|SN|HIV1VL^HIV-1 RNA^L||>^1.0E7|copies/mL|||||F\n"
    ));
    assert_eq!(
        read(quantity(&obs, "HIV1VL")),
        (Some("10000000"), Some("copies/mL"), Some(Comparator::Gt))
    );
}

#[test]
fn a_qualitative_call_has_no_quantity() {
    let obs = astm(&format!("{GX_H}R|1|^^^HIVVL^^^HIV-1^|POS^|||\nL|1|N\n"));
    assert!(obs.iter().all(|o| o.quantity.is_none()), "{obs:?}");
}
