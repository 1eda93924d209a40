//! From parsed POCT1 documents to canonical [`Observation`]s (protocols.md §1.4, sample S25).
//!
//! One [`Observation`] per `OBS` element anywhere below the root of an `OBS.R01` (patient) or
//! `OBS.R02` (QC / non-patient) message, with the context of its ancestors:
//!
//! | slot | source |
//! |---|---|
//! | `device` | `DEV.vendor_id` / `DEV.model_id` / `DEV.serial_id` of the conversation's HEL.R01; a `DEV.serial_id` in the message itself wins |
//! | `patient_id` | `PT.patient_id` of the enclosing `PT` |
//! | `sample_id` | `SVC.sample_id`, `SVC.specimen_id` or `SPC.specimen_id` of the enclosing service, if any |
//! | `test_code`, `test_name` | `OBS.observation_id` `V` and `DN`; `SN` → `extra.code_system`, and `SN="LN"` → `extra.loinc` |
//! | `value`, `unit` | `OBS.value` `V` (or its text) and `U` |
//! | `reference_range` | `OBS.normal_lo-hi_limit` as sent (`[80;120]`); critical → `extra.critical_range` |
//! | `flags` | `OBS.interpretation_cd` (`HH`, `L`, …) |
//! | `result_status` | `OBS.status_cd` |
//! | `observed_at` | `SVC.observation_dttm` (else `HDR.creation_dttm`) as `YYYY-MM-DDTHH:MM:SS`; the zone → `extra.observed_at_offset` |
//! | `comments` | `NTE.text` of the `OBS`, then of its `SVC` |
//!
//! `extra` also carries `message_type`, `control_id`, `operator_id` (`OPR.operator_id`),
//! `location` (`PT.location`), `method` (`OBS.method_cd`), `service_status` (`SVC.status_cd`),
//! `device_id` (`DEV.device_id`, whose value may be element text while `V=""`), and for QC the
//! control's `control_name` / `control_lot` (`CTC.name`, `CTC.lot_number`).
//! `source`, `received_at` and `raw_id` are left empty: ingest and store fill them.

use super::xml::Element;
use crate::record::{Device, Observation};
use std::collections::BTreeMap;

/// What the device said about itself in HEL.R01.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device: Device,
    /// `DEV.device_id` (value or element text).
    pub device_id: Option<String>,
    pub manufacturer: Option<String>,
    pub sw_version: Option<String>,
    /// `DSC.max_message_sz`: the largest message the device handles.
    pub max_message_bytes: Option<usize>,
    /// `DCP.application_timeout` in seconds.
    pub application_timeout_s: Option<u64>,
}

/// Read the `DEV` block of a HEL.R01.
pub fn device_info(root: &Element) -> DeviceInfo {
    let Some(dev) = root.child("DEV") else {
        return DeviceInfo::default();
    };
    let s = |name: &str| dev.child_value(name).map(str::to_owned);
    DeviceInfo {
        device: Device {
            vendor: s("DEV.vendor_id"),
            model: s("DEV.model_id"),
            serial: s("DEV.serial_id"),
        },
        device_id: s("DEV.device_id"),
        manufacturer: s("DEV.manufacturer_name"),
        sw_version: s("DEV.sw_version"),
        max_message_bytes: dev
            .child("DSC")
            .and_then(|d| d.child_value("DSC.max_message_sz"))
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0),
        application_timeout_s: dev
            .child("DCP")
            .and_then(|d| d.child_value("DCP.application_timeout"))
            .and_then(|v| v.parse().ok()),
    }
}

/// `HDR.control_id` of a message.
pub fn control_id(root: &Element) -> Option<&str> {
    root.child("HDR")?.child_value("HDR.control_id")
}

/// An ACK.R01 the device sent (accepting both spellings of §1.4: `ACK.type_cd`/`ACK.type_id`,
/// `ACK.ack_control_id`/`ACK.control_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAck {
    pub type_cd: Option<String>,
    pub ack_control_id: Option<String>,
}

pub fn device_ack(root: &Element) -> DeviceAck {
    let ack = root.child("ACK").unwrap_or(root);
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| ack.child_value(n))
            .map(str::to_owned)
    };
    DeviceAck {
        type_cd: first(&["ACK.type_cd", "ACK.type_id"]),
        ack_control_id: first(&["ACK.ack_control_id", "ACK.control_id"]),
    }
}

/// Context inherited from an `OBS`'s ancestors.
#[derive(Debug, Clone, Default)]
struct Ctx<'a> {
    patient: Option<&'a str>,
    location: Option<&'a str>,
    sample: Option<&'a str>,
    observed: Option<&'a str>,
    service_status: Option<&'a str>,
    operator: Option<&'a str>,
    control_name: Option<&'a str>,
    control_lot: Option<&'a str>,
    notes: Vec<&'a str>,
}

/// Observations of an OBS.R01/OBS.R02 message; problems are returned as text, decoding goes on.
pub fn observations(root: &Element, hello: &DeviceInfo) -> (Vec<Observation>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut device = hello.device.clone();
    if let Some(serial) = root
        .child("DEV")
        .and_then(|d| d.child_value("DEV.serial_id"))
    {
        device.serial = Some(serial.to_owned());
    }
    let hdr = root.child("HDR");
    let mut base = BTreeMap::new();
    base.insert("message_type".to_owned(), root.name.clone());
    if let Some(id) = control_id(root) {
        base.insert("control_id".to_owned(), id.to_owned());
    }
    if let Some(id) = &hello.device_id {
        base.insert("device_id".to_owned(), id.clone());
    }
    let ctx = Ctx {
        observed: hdr.and_then(|h| h.child_value("HDR.creation_dttm")),
        ..Ctx::default()
    };
    walk(root, ctx, &device, &base, &mut out, &mut errors);
    if out.is_empty() && errors.is_empty() {
        errors.push(format!("{}: no OBS element with a result", root.name));
    }
    (out, errors)
}

fn walk<'a>(
    el: &'a Element,
    mut ctx: Ctx<'a>,
    device: &Device,
    base: &BTreeMap<String, String>,
    out: &mut Vec<Observation>,
    errors: &mut Vec<String>,
) {
    // This element's own fields first: they apply to every OBS below it.
    match el.name.as_str() {
        "SVC" => {
            ctx.observed = el.child_value("SVC.observation_dttm").or(ctx.observed);
            ctx.service_status = el.child_value("SVC.status_cd").or(ctx.service_status);
            ctx.sample = ["SVC.sample_id", "SVC.specimen_id"]
                .iter()
                .find_map(|n| el.child_value(n))
                .or(ctx.sample);
            // The operator block is a sibling of PT, so read it at the service level.
            ctx.operator = el
                .child("OPR")
                .and_then(|o| o.child_value("OPR.operator_id"))
                .or(ctx.operator);
            ctx.notes = el
                .children_named("NTE")
                .filter_map(|n| n.child_value("NTE.text"))
                .collect();
        }
        "PT" => {
            ctx.patient = el.child_value("PT.patient_id").or(ctx.patient);
            ctx.location = el.child_value("PT.location").or(ctx.location);
        }
        "SPC" => ctx.sample = el.child_value("SPC.specimen_id").or(ctx.sample),
        "CTC" => {
            ctx.control_name = el.child_value("CTC.name").or(ctx.control_name);
            ctx.control_lot = el.child_value("CTC.lot_number").or(ctx.control_lot);
        }
        "OBS" => {
            match observation(el, &ctx, device, base) {
                Ok(o) => out.push(o),
                Err(e) => errors.push(e),
            }
            return;
        }
        _ => {}
    }
    for child in &el.children {
        walk(child, ctx.clone(), device, base, out, errors);
    }
}

fn observation(
    el: &Element,
    ctx: &Ctx<'_>,
    device: &Device,
    base: &BTreeMap<String, String>,
) -> Result<Observation, String> {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let id = el.child("OBS.observation_id");
    let code = id.and_then(Element::value).ok_or_else(|| {
        format!(
            "OBS at byte {}: no OBS.observation_id value; result skipped",
            el.offset
        )
    })?;
    let mut extra = base.clone();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            extra.insert(k.to_owned(), v.to_owned());
        }
    };
    let system = id.and_then(|i| i.attr("SN"));
    put("code_system", system);
    if system.is_some_and(|s| s.eq_ignore_ascii_case("LN") || s.eq_ignore_ascii_case("LOINC")) {
        put("loinc", Some(code));
    }
    put("operator_id", ctx.operator);
    put("location", ctx.location);
    put("service_status", ctx.service_status);
    put("control_name", ctx.control_name);
    put("control_lot", ctx.control_lot);
    put("method", el.child_value("OBS.method_cd"));
    put("critical_range", el.child_value("OBS.critical_lo-hi_limit"));
    let mut observed_at = None;
    let mut errors = None;
    if let Some(raw) = ctx.observed {
        match iso_datetime(raw) {
            Some((local, offset)) => {
                observed_at = Some(local);
                put("observed_at_offset", offset.as_deref());
            }
            None => {
                put("observed_at_raw", Some(raw));
                errors = Some(raw);
            }
        }
    }
    let value = el.child("OBS.value");
    let mut comments: Vec<String> = el
        .children_named("NTE")
        .filter_map(|n| n.child_value("NTE.text"))
        .map(str::to_owned)
        .collect();
    comments.extend(ctx.notes.iter().map(|s| (*s).to_owned()));
    if let Some(raw) = errors {
        comments.push(format!("unreadable observation time `{raw}`"));
    }
    Ok(Observation {
        device: device.clone(),
        sample_id: owned(ctx.sample),
        patient_id: owned(ctx.patient),
        test_code: code.to_owned(),
        test_name: owned(
            id.and_then(|i| i.attr("DN"))
                .filter(|s| !s.trim().is_empty()),
        ),
        value: owned(value.and_then(Element::value)),
        unit: owned(
            value
                .and_then(|v| v.attr("U"))
                .filter(|s| !s.trim().is_empty()),
        ),
        reference_range: owned(el.child_value("OBS.normal_lo-hi_limit")),
        flags: el
            .children_named("OBS.interpretation_cd")
            .filter_map(Element::value)
            .map(str::to_owned)
            .collect(),
        result_status: owned(el.child_value("OBS.status_cd")),
        observed_at,
        comments,
        extra,
        ..Observation::default()
    })
}

/// ISO 8601 `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH:MM|±HHMM]` → (`YYYY-MM-DDTHH:MM:SS`, zone as sent
/// normalised to `±HH:MM` or `Z`). A bare date gives `YYYY-MM-DD`. Fractions are dropped.
pub fn iso_datetime(s: &str) -> Option<(String, Option<String>)> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let date = format!("{year:04}-{month:02}-{day:02}");
    if b.len() == 10 {
        return Some((date, None));
    }
    if !matches!(b.get(10), Some(b'T' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits(11, 2)?, digits(14, 2)?);
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = digits(17, 2)?;
        i = 19;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = match b.get(i) {
        None => None,
        Some(b'Z' | b'z') if b.len() == i + 1 => Some("Z".to_owned()),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(i + 1, 2)?;
            let om = match b.len() - i {
                3 => 0,
                5 => digits(i + 3, 2)?,
                6 if b.get(i + 3) == Some(&b':') => digits(i + 4, 2)?,
                _ => return None,
            };
            if oh > 14 || om > 59 {
                return None;
            }
            Some(format!("{}{oh:02}:{om:02}", char::from(sign)))
        }
        _ => return None,
    };
    Some((format!("{date}T{hour:02}:{minute:02}:{second:02}"), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_datetimes() {
        let f = |s: &str| iso_datetime(s);
        assert_eq!(
            f("2001-11-01T16:29:54-05:00"),
            Some(("2001-11-01T16:29:54".into(), Some("-05:00".into())))
        );
        assert_eq!(
            f("2010-02-22T14:06:34.00-05:00"),
            Some(("2010-02-22T14:06:34".into(), Some("-05:00".into())))
        );
        assert_eq!(
            f("2024-01-15T10:30:01.000+0800").map(|x| x.1),
            Some(Some("+08:00".into()))
        );
        assert_eq!(
            f("2024-01-15T10:30Z"),
            Some(("2024-01-15T10:30:00".into(), Some("Z".into())))
        );
        assert_eq!(f("2024-01-15"), Some(("2024-01-15".into(), None)));
        for bad in [
            "",
            "2024-13-01",
            "2024-01-15T25:00",
            "20240115",
            "2024-01-15T10:30:00+5",
            "2024-01-15T10:30:00.",
            "2024-01-15T10:30:00 junk",
        ] {
            assert_eq!(f(bad), None, "{bad}");
        }
    }

    #[test]
    fn device_ack_accepts_both_spellings() {
        let a = super::super::xml::parse(
            br#"<ACK.R01><ACK><ACK.type_id V="AE"/><ACK.control_id V="5"/></ACK></ACK.R01>"#,
            crate::config::Encoding::Utf8,
        )
        .unwrap();
        assert_eq!(
            device_ack(&a),
            DeviceAck {
                type_cd: Some("AE".into()),
                ack_control_id: Some("5".into())
            }
        );
    }
}
