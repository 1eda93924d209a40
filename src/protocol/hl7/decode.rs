//! From HL7 segments to canonical [`Observation`]s, pure (protocols.md §1.3 and the "Expected
//! parse" notes of S7, S21–S24).
//!
//! One [`Observation`] per OBX, plus one per OBR that carries a result status (OBR-25, e.g.
//! GeneXpert's `X` order rejection, S7) but no OBX. Where each slot comes from:
//!
//! | slot | source |
//! |---|---|
//! | `device` | MSH-3/MSH-4 (per-vendor layout in [`sender`]); serial from OBX-18 (GeneXpert: 5th repeat); when MSH names none, OBX-18 `model^vendor~serial` (Alinity m) |
//! | `sample_id` | OBR-3, else OBR-2, else SPM-2.1 (its first sub-component: EI id, not `&namespace`), else SAC-3 |
//! | `patient_id` | PID-3 component 1 (id type PID-3.5 → `extra.patient_id_type`) |
//! | `test_code` | OBX-3.1, `:OBX-3.4` added for an IHE LAW supplemental result (OBX-3.6 `IHELAW`: `HIV:S_OTHER`) (GeneXpert: `panel/test[/analyte][:complementary]` from OBX-3.1 sub-components and OBX-4, as the ASTM decoder does) |
//! | `test_name` | OBX-3.2 (GeneXpert: the assay name, OBX-3.1 sub-component 3) |
//! | `value` | OBX-5 (GeneXpert `qualitative^quantitative` → the first present; Roche: the call in OBX-8.1 when OBX-5 is `ValueNotSet` or empty); an `NM` value that is not a number (`***.**`) → `None`, kept in `extra.raw_value`; `ED` data → `None` |
//! | `unit`, `reference_range`, `flags`, `result_status` | OBX-6.1 (else OBX-6.2, the text), OBX-7, OBX-8 repeats, OBX-11 |
//! | `quantity` | OBX-5 (`SN` by its components, other types by their text) with OBX-6–8 through `protocol::quantity`: value, unit, comparator, detection, log10 |
//! | `observed_at` | OBX-14, else OBX-19, else OBR-7, else TQ1-8/TQ1-7, else MSH-7 — ISO 8601, zone only if sent |
//! | `comments` | NTE-3: after PID → every result of the patient, after OBR → every result of the order, after OBX → that result |
//!
//! In `extra`: `message_type`, `processing_id` (when not `P`; `Q` = QC, S23), `value_type`,
//! `coding_system` and `loinc`, `sub_id` (OBX-4), `observer` (OBX-16), `equipment` (OBX-18),
//! `software_version`, `specimen_type` (SPM-4), `instrument_specimen_id` (SPM-2.2),
//! `sample_id_namespace` (SPM-2.1 sub-component 2: `ROCHE` of `VL260001&ROCHE`).
//!
//! Segments not named here (PV1, ORC, TCD, INV, SAC …) are skipped; they stay in the stored text.
//! `source`, `received_at` and `raw_id` are left empty: ingest and store fill them.

use super::message::{Hl7Error, Message, Segment, parse};
use crate::config::Encoding;
use crate::protocol::astm::decode::iso_datetime;
use crate::protocol::quantity;
use crate::record::{Device, Observation};

/// One message decoded as far as it could be.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `None` when the message has no usable MSH.
    pub message: Option<Message>,
    pub observations: Vec<Observation>,
    /// Every problem met; decoding went on past each of them.
    pub errors: Vec<Hl7Error>,
}

/// Decode one HL7 message (segments separated by `<CR>`; `<LF>` and `<CR><LF>` are accepted).
pub fn decode_message(text: &[u8], encoding: Encoding) -> Decoded {
    match parse(text, encoding) {
        Ok((message, mut errors)) => {
            let mut observations = observations(&message, &mut errors);
            quantity::link_log_records(&mut observations);
            Decoded {
                message: Some(message),
                observations,
                errors,
            }
        }
        Err(e) => Decoded {
            message: None,
            observations: Vec::new(),
            errors: vec![e],
        },
    }
}

/// Vendor layouts that change how fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Cepheid GeneXpert HL7 (301-2002 §9): OBX-3.1 `panel&test&assay&version`, OBX-4
    /// `analyte&complementary`, OBX-5 `qualitative^quantitative`, S/N in OBX-18 repeat 5.
    GeneXpert,
    /// Roche cobas 6800/8800 (IHE LAW): the call in OBX-8, OBX-5 often `ValueNotSet` (S24).
    Roche,
    Standard,
}

/// Device, layout and software version from MSH-3/MSH-4.
fn sender(m: &Message) -> (Device, Layout, Option<String>) {
    let Some(msh) = m.msh() else {
        return (Device::default(), Layout::Standard, None);
    };
    let app = |c: usize| text(&m.component(msh, 3, c));
    let facility = text(&m.component(msh, 4, 1));
    let dev = |vendor: &str, model: Option<String>| Device {
        vendor: Some(vendor.to_owned()),
        model,
        serial: None,
    };
    if app(2).is_some_and(|s| s.eq_ignore_ascii_case("GeneXpert")) {
        // `GeneXpert PC^GeneXpert^Dx4.6a.5_Demo`, `ICU^GeneXpert^1.0` = name^system^software.
        (dev("Cepheid", app(2)), Layout::GeneXpert, app(3))
    } else if app(1).is_some_and(|s| s.to_ascii_uppercase().starts_with("COBAS"))
        || m.msh_value(21).eq_ignore_ascii_case("LAB-23")
            && m.msh()
                .is_some_and(|h| m.component(h, 21, 2).eq_ignore_ascii_case("ROCHE"))
    {
        (dev("Roche", app(1)), Layout::Roche, None)
    } else if facility
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("Mindray"))
    {
        // Mindray puts the model in MSH-3 and its own name in MSH-4 (S22).
        (dev("Mindray", app(1)), Layout::Standard, None)
    } else {
        let d = Device {
            vendor: facility,
            model: app(1),
            serial: None,
        };
        (d, Layout::Standard, app(2))
    }
}

#[derive(Debug, Default, Clone)]
struct Ctx {
    patient_id: Option<String>,
    patient_id_type: Option<String>,
    patient_comments: Vec<String>,
    order: Option<Order>,
    specimen: Option<Specimen>,
}

#[derive(Debug, Default, Clone)]
struct Order {
    sample_id: Option<String>,
    observed_at: Option<String>,
    code: String,
    name: Option<String>,
    status: Option<String>,
    comments: Vec<String>,
    /// Index in the output of the order's first observation.
    first: usize,
    results: usize,
    timing: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Specimen {
    id: Option<String>,
    /// SPM-2.1 sub-component 2, the namespace of the id (`ROCHE`).
    namespace: Option<String>,
    instrument_id: Option<String>,
    kind: Option<String>,
}

/// Where an NTE goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    Nowhere,
    Patient,
    Order,
    Result(usize),
}

fn observations(m: &Message, errors: &mut Vec<Hl7Error>) -> Vec<Observation> {
    let Some(msh) = m.msh() else {
        return Vec::new();
    };
    let (device, layout, software) = sender(m);
    let header_time = timestamp(m, msh, 7, errors);
    let message_type = text(&m.text(msh, 9));
    let processing = text(&m.msh_value(11)).filter(|p| p != "P");
    // ORU: SPM follows the results of its order (GeneXpert R32). OUL: SPM opens the group.
    let spm_after_results = m.msh_value(9).eq_ignore_ascii_case("ORU");

    let base = |o: &mut Observation| {
        o.device = device.clone();
        if let Some(t) = &message_type {
            o.extra.insert("message_type".into(), t.clone());
        }
        if let Some(p) = &processing {
            o.extra.insert("processing_id".into(), p.clone());
        }
        if let Some(s) = &software {
            o.extra.insert("software_version".into(), s.clone());
        }
    };

    let mut out: Vec<Observation> = Vec::new();
    let mut ctx = Ctx::default();
    let mut target = Target::Nowhere;
    for seg in m.segments.iter().skip(1) {
        match seg.id.as_str() {
            "PID" => {
                close_order(&mut ctx, &mut out, &base);
                let pid = |c| text(&m.component(seg, 3, c));
                ctx = Ctx {
                    patient_id: pid(1),
                    patient_id_type: pid(5),
                    ..Ctx::default()
                };
                target = Target::Patient;
            }
            "ORC" => {
                close_order(&mut ctx, &mut out, &base);
                if spm_after_results {
                    ctx.specimen = None;
                }
                target = Target::Nowhere;
            }
            "OBR" => {
                close_order(&mut ctx, &mut out, &base);
                if spm_after_results {
                    ctx.specimen = None;
                }
                ctx.order = Some(Order {
                    sample_id: text(&m.component(seg, 3, 1))
                        .or_else(|| text(&m.component(seg, 2, 1))),
                    observed_at: timestamp(m, seg, 7, errors),
                    code: m.component(seg, 4, 1).trim().to_owned(),
                    name: text(&m.component(seg, 4, 2)),
                    status: text(&m.component(seg, 25, 1)),
                    comments: Vec::new(),
                    first: out.len(),
                    results: 0,
                    timing: None,
                });
                target = Target::Order;
            }
            "TQ1" => {
                let t = timestamp(m, seg, 8, errors).or_else(|| timestamp(m, seg, 7, errors));
                if let Some(o) = ctx.order.as_mut() {
                    o.timing = t;
                }
            }
            "SPM" | "SAC" => {
                let spec = if seg.id == "SPM" {
                    // SPM-2 is an EIP: placer^filler entity identifiers, each `id&namespace…`
                    // (HL7 v2.5.1 EI): cobas 4800/5800 send `VL260001&ROCHE`, whose id is
                    // VL260001 (captured/roche-cobas-4800.ts, roche-cobas-5800.ts).
                    Specimen {
                        id: text(&m.subcomponent(seg, 2, 1, 1)),
                        namespace: text(&m.subcomponent(seg, 2, 1, 2)),
                        instrument_id: text(&m.subcomponent(seg, 2, 2, 1)),
                        kind: text(&m.text(seg, 4)),
                    }
                } else {
                    let prev = ctx.specimen.clone().unwrap_or_default();
                    Specimen {
                        id: prev.id.or_else(|| text(&m.component(seg, 3, 1))),
                        ..prev
                    }
                };
                // Back-fill the results of the current order that had no sample ID.
                let first = ctx.order.as_ref().map_or(out.len(), |o| o.first);
                for o in out.iter_mut().skip(first) {
                    apply_specimen(o, &spec);
                }
                ctx.specimen = Some(spec);
                target = Target::Nowhere;
            }
            "OBX" => {
                let mut o = result(m, seg, layout, errors);
                base(&mut o);
                o.patient_id = ctx.patient_id.clone();
                if let Some(t) = &ctx.patient_id_type {
                    o.extra.insert("patient_id_type".into(), t.clone());
                }
                o.comments = ctx.patient_comments.clone();
                if let Some(order) = ctx.order.as_mut() {
                    order.results += 1;
                    o.sample_id = order.sample_id.clone();
                    o.comments.extend(order.comments.iter().cloned());
                    if o.observed_at.is_none() {
                        o.observed_at = order.observed_at.clone().or_else(|| order.timing.clone());
                    }
                }
                if let Some(spec) = &ctx.specimen {
                    apply_specimen(&mut o, spec);
                }
                if o.observed_at.is_none() {
                    o.observed_at = header_time.clone();
                }
                if o.device.serial.is_none() {
                    o.device.serial = serial(m, seg, layout);
                }
                if o.device.vendor.is_none() && o.device.model.is_none() {
                    o.device = equipment_device(m, seg);
                }
                out.push(o);
                target = Target::Result(out.len() - 1);
            }
            "NTE" => {
                let Some(c) = comment(m, seg) else { continue };
                match target {
                    Target::Patient => ctx.patient_comments.push(c),
                    Target::Order => {
                        if let Some(o) = ctx.order.as_mut() {
                            o.comments.push(c);
                        }
                    }
                    Target::Result(i) => {
                        if let Some(o) = out.get_mut(i) {
                            o.comments.push(c);
                        }
                    }
                    Target::Nowhere => {}
                }
            }
            _ => {}
        }
    }
    close_order(&mut ctx, &mut out, &base);
    // The header time is the last fallback for an order without results, too.
    for o in &mut out {
        if o.observed_at.is_none() {
            o.observed_at = header_time.clone();
        }
    }
    out
}

/// An order that ends without any OBX but with a result status (OBR-25 `X`: the instrument
/// could not do it, S7) still becomes an observation, so the rejection is not lost.
fn close_order(ctx: &mut Ctx, out: &mut Vec<Observation>, base: &impl Fn(&mut Observation)) {
    let Some(order) = ctx.order.take() else {
        return;
    };
    if order.results > 0 || order.status.is_none() {
        return;
    }
    let mut o = Observation {
        test_code: order.code,
        test_name: order.name,
        result_status: order.status,
        sample_id: order.sample_id,
        patient_id: ctx.patient_id.clone(),
        observed_at: order.observed_at.or(order.timing),
        ..Observation::default()
    };
    base(&mut o);
    o.comments = ctx.patient_comments.clone();
    o.comments.extend(order.comments);
    if let Some(spec) = &ctx.specimen {
        apply_specimen(&mut o, spec);
    }
    out.push(o);
    // A following SPM (ORU^R32) back-fills this one too.
    ctx.order = Some(Order {
        first: out.len() - 1,
        results: 1,
        ..Order::default()
    });
}

fn apply_specimen(o: &mut Observation, spec: &Specimen) {
    if o.sample_id.is_none() {
        o.sample_id = spec.id.clone();
    }
    if let Some(v) = spec.namespace.as_ref().filter(|_| o.sample_id == spec.id) {
        o.extra
            .entry("sample_id_namespace".into())
            .or_insert_with(|| v.clone());
    }
    if let Some(v) = &spec.instrument_id {
        o.extra
            .entry("instrument_specimen_id".into())
            .or_insert_with(|| v.clone());
    }
    if let Some(v) = &spec.kind {
        o.extra
            .entry("specimen_type".into())
            .or_insert_with(|| v.clone());
    }
}

/// NTE-3, components and repeats joined with a space, empties skipped.
fn comment(m: &Message, nte: &Segment) -> Option<String> {
    let parts: Vec<String> = m
        .repeats(nte, 3)
        .into_iter()
        .flat_map(|rep| m.components(rep))
        .map(|c| m.unescape(c).trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The instrument serial from OBX-18 (equipment instance identifier).
fn serial(m: &Message, obx: &Segment, layout: Layout) -> Option<String> {
    let reps = m.repeats(obx, 18);
    match layout {
        // `~~~~700844~`: the S/N is the 5th repeat; `-1` means "not known".
        Layout::GeneXpert => reps
            .get(4)
            .and_then(|r| text(&m.component_of(r, 1)))
            .filter(|s| s != "-1"),
        _ => None,
    }
}

/// The device from OBX-18 (equipment instance identifier, EI repeats) when MSH-3/MSH-4 name
/// none: Alinity m leaves them empty and sends `Alinity m^Abbott~M00001^Abbott~…`, i.e. the
/// model with its namespace (the vendor), then the serial (captured/abbott-alinity-m.ts).
fn equipment_device(m: &Message, obx: &Segment) -> Device {
    let reps = m.repeats(obx, 18);
    let part = |r: usize, c: usize| reps.get(r).and_then(|rep| text(&m.component_of(rep, c)));
    let model = part(0, 1);
    Device {
        vendor: model.as_ref().and_then(|_| part(0, 2)),
        serial: model.as_ref().and_then(|_| part(1, 1)),
        model,
    }
}

/// The OBX's own slots; patient, order and device context are added by the caller.
fn result(m: &Message, obx: &Segment, layout: Layout, errors: &mut Vec<Hl7Error>) -> Observation {
    let mut o = Observation::default();
    let value_type = text(&m.component(obx, 2, 1));
    if let Some(t) = &value_type {
        o.extra.insert("value_type".into(), t.clone());
    }

    // OBX-3 observation identifier, OBX-4 sub-ID.
    if layout == Layout::GeneXpert && m.has_subcomponents(obx, 3, 1) {
        let sub = |n| text(&m.subcomponent(obx, 3, 1, n));
        let mut code: Vec<String> = [sub(1), sub(2)].into_iter().flatten().collect();
        let analyte = text(&m.subcomponent(obx, 4, 1, 1));
        let complementary = text(&m.subcomponent(obx, 4, 1, 2));
        if let Some(a) = &analyte {
            code.push(a.clone());
        }
        let mut code = code.join("/");
        if let Some(k) = &complementary {
            code.push(':');
            code.push_str(k);
        }
        o.test_code = code;
        o.test_name = sub(3);
        for (key, v) in [
            ("panel", sub(1)),
            ("assay_version", sub(4)),
            ("analyte", analyte),
            ("complementary", complementary),
        ] {
            if let Some(v) = v {
                o.extra.insert(key.into(), v);
            }
        }
    } else {
        o.test_code = m.component(obx, 3, 1).trim().to_owned();
        o.test_name = text(&m.component(obx, 3, 2));
        let system = text(&m.component(obx, 3, 3));
        let alt_system = text(&m.component(obx, 3, 6));
        if alt_system.as_deref() == Some("IHELAW")
            && let Some(kind) = text(&m.component(obx, 3, 4))
        {
            // IHE LAW names a supplemental result by its alternate identifier (`S_OTHER^Other
            // Supplemental^IHELAW`): it is part of what the result is. cobas 6800 sends its Ct
            // line as `HIV^HIV^99ROC^S_OTHER…` beside the `HIV` result itself
            // (captured/roche-cobas-6800.ts), so the code is `HIV:S_OTHER`, as GeneXpert's
            // complementary records are `HIVVL:LOG`.
            o.test_code = format!("{}:{kind}", o.test_code);
            o.extra.insert("result_kind".into(), kind);
        }
        if system.as_deref() == Some("LN") {
            o.extra.insert("loinc".into(), o.test_code.clone());
        } else if alt_system.as_deref() == Some("LN")
            && let Some(l) = text(&m.component(obx, 3, 4))
        {
            o.extra.insert("loinc".into(), l);
        }
        if let Some(s) = system {
            o.extra.insert("coding_system".into(), s);
        }
        if let Some(s) = text(&m.text(obx, 4)) {
            o.extra.insert("sub_id".into(), s);
        }
    }
    if o.test_code.is_empty() {
        errors.push(Hl7Error::Malformed {
            segment: obx.index,
            id: obx.id.clone(),
            field: 3,
            why: "the observation identifier is empty".to_owned(),
        });
    }

    // OBX-5 value.
    let value = match value_type.as_deref() {
        Some("ED") => {
            // Encapsulated data (Mindray histogram bitmaps): not a value; the raw text keeps it.
            let kind: Vec<String> = (2..=4)
                .filter_map(|c| text(&m.component(obx, 5, c)))
                .collect();
            if !kind.is_empty() {
                o.extra.insert("encapsulated".into(), kind.join("/"));
            }
            None
        }
        _ if layout == Layout::GeneXpert && m.components(m.first_repeat(obx, 5)).len() >= 2 => {
            let qual = text(&m.component(obx, 5, 1));
            let quant = text(&m.component(obx, 5, 2));
            if let Some(q) = &qual {
                o.extra.insert("qualitative".into(), q.clone());
            }
            if let Some(q) = &quant {
                o.extra.insert("quantitative".into(), q.clone());
            }
            qual.or(quant)
        }
        _ => text(&m.text(obx, 5)),
    };
    o.value = value;

    o.flags = m
        .repeats(obx, 8)
        .into_iter()
        .filter_map(|r| text(&m.rep_text(r)))
        .filter(|f| !is_null(f))
        .collect();
    let value_not_set = o
        .value
        .as_deref()
        .is_none_or(|v| v.eq_ignore_ascii_case("ValueNotSet"));
    if layout == Layout::Roche
        && value_not_set
        && let Some(call) = m
            .repeats(obx, 8)
            .first()
            .and_then(|r| text(&m.component_of(r, 1)))
            .filter(|f| !is_null(f))
    {
        // cobas 6800: OBX-5 is `ValueNotSet`, the result is the call in OBX-8 (S24). A value
        // in OBX-5 is the result and OBX-8 only its flag (cobas 4800 `3.26E+05 cp/mL` with
        // `Full^^99ROC`, deforay/vlsm-interfacing captured/roche-cobas-4800.ts).
        if let Some(v) = o.value.take().filter(|v| *v != call) {
            o.extra.insert("raw_value".into(), v);
        }
        o.value = Some(call);
    }
    if value_type.as_deref() == Some("NM")
        && let Some(v) = o.value.take_if(|v| !looks_numeric(v))
    {
        // Mindray QC `***.**` in an NM field = no numeric result (S23).
        o.extra.insert("raw_value".into(), v);
    }
    if o.value.as_deref().is_some_and(is_null) {
        o.value = None;
    }

    // OBX-6 is CE/CWE: identifier^text^system. Alinity m leaves the identifier empty and sends
    // the unit as text (`^Copies/mL`, captured/abbott-alinity-m.ts).
    o.unit = text(&m.component(obx, 6, 1)).or_else(|| text(&m.component(obx, 6, 2)));
    o.reference_range = text(&m.text(obx, 7));
    o.result_status = text(&m.component(obx, 11, 1));
    o.observed_at = timestamp(m, obx, 14, errors).or_else(|| timestamp(m, obx, 19, errors));
    let observer: Vec<String> = (1..=3)
        .filter_map(|c| text(&m.component(obx, 16, c)))
        .filter(|s| s != "<None>")
        .collect();
    if !observer.is_empty() {
        o.extra.insert("observer".into(), observer.join(" "));
    }
    let equipment: Vec<String> = m
        .repeats(obx, 18)
        .into_iter()
        .filter_map(|r| text(&m.rep_text(r)))
        .collect();
    if !equipment.is_empty() {
        o.extra.insert(
            "equipment".into(),
            equipment.join(&m.delimiters.repetition.to_string()),
        );
    }
    // OBX-5 as a number with OBX-6's unit and its limits (issue 19): `SN` by its components
    // (`<^20`), any other type by its text (`^1009.64`, `<40`, `Target Not Detected`).
    if value_type.as_deref() != Some("ED") {
        let comps = m.components(m.first_repeat(obx, 5));
        let comps: Vec<&str> = comps.iter().map(|c| c.trim()).collect();
        let joined: Vec<&str> = comps.iter().copied().filter(|c| !c.is_empty()).collect();
        let sn = (value_type.as_deref() == Some("SN")).then_some(comps.as_slice());
        o.quantity = quantity::of(&o, &joined.join(" "), sn);
    }
    o
}

/// `""` is HL7's explicit null; a lone `"` is the mangled form Roche sends (S24).
fn is_null(s: &str) -> bool {
    s == "\"\"" || s == "\""
}

/// `9.81`, `-1`, `<40`, `>=1e3`: a number, optionally after a comparator.
fn looks_numeric(s: &str) -> bool {
    let s = s
        .trim_start_matches(['<', '>', '='])
        .trim_start_matches(['+', '-']);
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.trim_start_matches(['+', '-']))),
        None => (s, None),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    digits > 0
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && mantissa.bytes().filter(|b| *b == b'.').count() <= 1
        && exp.is_none_or(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
}

/// Field `n` component 1 as an ISO 8601 date/time; an unreadable non-empty value is reported.
///
/// HL7 TS is `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`: fractions are dropped, a zone is kept as
/// `±HH:MM` (never invented).
fn timestamp(m: &Message, seg: &Segment, n: usize, errors: &mut Vec<Hl7Error>) -> Option<String> {
    let raw = text(&m.component(seg, n, 1))?;
    let iso = hl7_datetime(&raw);
    if iso.is_none() {
        errors.push(Hl7Error::Malformed {
            segment: seg.index,
            id: seg.id.clone(),
            field: n,
            why: format!("`{raw}` is not an HL7 date/time (YYYYMMDD[HHMM[SS]][+ZZZZ])"),
        });
    }
    iso
}

pub fn hl7_datetime(raw: &str) -> Option<String> {
    let (body, zone) = match raw.find(['+', '-']) {
        Some(i) => (raw.get(..i)?, Some(raw.get(i..)?)),
        None => (raw, None),
    };
    let body = body.split('.').next().unwrap_or_default();
    let mut iso = iso_datetime(body)?;
    if let Some(z) = zone {
        let ok = z.len() == 5 && z.bytes().skip(1).all(|b| b.is_ascii_digit());
        if !ok || body.len() < 12 {
            return None;
        }
        iso.push_str(z.get(..3)?);
        iso.push(':');
        iso.push_str(z.get(3..)?);
    }
    Some(iso)
}

/// Trimmed, `None` when empty.
fn text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}
