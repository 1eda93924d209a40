//! From E1394 records to canonical [`Observation`]s, pure (protocols.md §1.2, vendor quirks §0
//! item 4 and the "Expected parse" notes of §2).
//!
//! One [`Observation`] per R record. Where each slot comes from:
//!
//! | slot | source |
//! |---|---|
//! | `device` | H.5 sender (`name^software^…`, per-vendor layout in [`sender_device`]); GeneXpert serial from R.14.2 |
//! | `sample_id` | O.3 (Roche: component 2, the padded sample ID); else O.4 component 1, else O.4 component 3 (Sysmex `^^      27^M`) |
//! | `patient_id` | first non-empty of P.3, P.4, P.5 (component 1) |
//! | `test_code`, `test_name` | R.3 universal test ID, see [`test_id`] |
//! | `value` | R.4 trimmed; `qualitative^quantitative` → qualitative if present else quantitative |
//! | `unit`, `reference_range`, `flags`, `result_status` | R.5, R.6 (component 1), R.7 (each repeat), R.9 |
//! | `quantity` | R.4 (all components) with R.5–R.7 through `protocol::quantity`: value, unit, comparator, detection, log10 (a `…:LOG` sibling joins its copies record) |
//! | `observed_at` | R.13 completed, else R.12 started, else O.7, else H.14 — ISO 8601 without a zone |
//! | `comments` | C.4 components joined with a space; see "Comments" below |
//!
//! **Comments.** E1394 says a C record "applies to the preceding record" (§1.2 table). A C after
//! an R is added to that result; a C after an O is added to every result of that order; a C after
//! a P to every result of that patient (results follow their order, so these comments reach them
//! even though they arrive first). A C after any other record (H, Q, M, L…) or after a record that
//! was dropped as malformed is not attached anywhere. Empty comments (`C|1||`) are skipped.
//!
//! `source`, `received_at` and `raw_id` are left empty: ingest and store fill them.

use super::link;
use super::record::{Message, Record, RecordError, RecordKind, parse_message};
use crate::config::Encoding;
use crate::protocol::quantity;
use crate::record::{Device, Observation};

/// What a message is for, so ingest can decide what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Holds R records (and no Q record).
    Results,
    /// Holds a Q record: the instrument asks the host for orders (protocols.md §1.2 "Host query").
    /// A Q wins over R: the instrument is waiting for an answer.
    Query,
    /// Anything else: order download, "no orders" reply, an unreadable message.
    Other,
}

/// One message decoded as far as it could be.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// `None` when the message has no usable H record.
    pub message: Option<Message>,
    pub observations: Vec<Observation>,
    /// Every problem met; decoding went on past each of them.
    pub errors: Vec<RecordError>,
    pub kind: MessageKind,
}

impl Decoded {
    fn failed(error: RecordError) -> Decoded {
        Decoded {
            message: None,
            observations: Vec::new(),
            errors: vec![error],
            kind: MessageKind::Other,
        }
    }
}

/// Decode one H…L message.
pub fn decode_message(text: &[u8], encoding: Encoding) -> Decoded {
    let parsed = match parse_message(text, encoding) {
        Ok(p) => p,
        Err(e) => return Decoded::failed(e),
    };
    let mut errors = parsed.errors;
    let message = parsed.message;
    let mut observations = observations(&message, &mut errors);
    quantity::link_log_records(&mut observations);
    let has = |k: RecordKind| message.records.iter().any(|r| r.kind == k);
    let kind = if has(RecordKind::Query) {
        MessageKind::Query
    } else if has(RecordKind::Result) {
        MessageKind::Results
    } else {
        MessageKind::Other
    };
    Decoded {
        message: Some(message),
        observations,
        errors,
        kind,
    }
}

/// Split a stream of records into messages, each starting at an H record (a line that begins
/// with `H` and a delimiter symbol). Non-blank text before the first H is returned as its own
/// chunk, so that decoding it reports the missing header instead of losing it silently.
pub fn split_messages(text: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    for (i, b) in text.iter().enumerate() {
        let at_line_start = i == 0 || matches!(text.get(i - 1), Some(b'\r' | b'\n'));
        let next = text.get(i + 1);
        if at_line_start
            && *b == b'H'
            && next.is_some_and(|n| n.is_ascii_graphic() && !n.is_ascii_alphanumeric())
        {
            starts.push(i);
        }
    }
    let blank = |s: &[u8]| s.iter().all(u8::is_ascii_whitespace);
    let mut out = Vec::new();
    let first = starts.first().copied().unwrap_or(text.len());
    if let Some(lead) = text.get(..first)
        && !blank(lead)
    {
        out.push(lead);
    }
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        if let Some(chunk) = text.get(*start..end) {
            out.push(chunk);
        }
    }
    out
}

/// Decode a capture file: either raw E1381 frames with control bytes (it contains `<STX>`; the
/// frames are joined by [`link::deframe`]) or bare E1394 records one per line (CR, CR LF or LF).
///
/// Bare captures are often made by stripping the framing by hand (protocols.md S2, S18), so before
/// splitting them: leftover `<ETX>`/`<ETB>` with their two checksum characters and other link
/// control bytes are removed, and a frame-number digit left in front of a record (`1H|…`,
/// `5L|1`) is dropped — a record type is a letter, never a digit. Digits left *inside* records
/// (S2's `NOT DET3ECTED`) cannot be told from data and stay.
///
/// Capture-level problems (checksums that fail, no message at all) are reported in the first
/// [`Decoded`]'s errors.
pub fn decode_capture(bytes: &[u8], encoding: Encoding) -> Vec<Decoded> {
    if bytes.contains(&link::STX) {
        let deframed = link::deframe(bytes);
        if deframed.frames == 0 {
            return vec![Decoded::failed(RecordError::NoMessage {
                why: "it contains <STX> but no frame ends in <ETX> or <ETB>, so it is not \
                      E1381 framing"
                    .to_owned(),
            })];
        }
        let mut out: Vec<Decoded> = split_messages(&deframed.text)
            .into_iter()
            .map(|m| decode_message(m, encoding))
            .collect();
        if out.is_empty() {
            out.push(Decoded::failed(RecordError::NoMessage {
                why: format!("its {} frame(s) hold no records", deframed.frames),
            }));
        }
        if deframed.bad_checksums > 0
            && let Some(first) = out.first_mut()
        {
            first.errors.insert(
                0,
                RecordError::BadChecksums {
                    bad: deframed.bad_checksums,
                    frames: deframed.frames,
                },
            );
        }
        out
    } else {
        let text = clean_bare(bytes);
        split_messages(&text)
            .into_iter()
            .map(|m| decode_message(m, encoding))
            .collect()
    }
}

/// Remove what a hand-stripped capture leaves of E1381 (see [`decode_capture`]); records are
/// rejoined with `<CR>`.
fn clean_bare(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split(|b| *b == link::CR || *b == link::LF) {
        let mut rec = Vec::with_capacity(line.len());
        let mut i = 0;
        while let Some(&b) = line.get(i) {
            i += 1;
            if b == link::ETX || b == link::ETB {
                // The frame's two checksum characters follow the end byte.
                let hex = line
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take(2)
                    .take_while(|h| h.is_ascii_hexdigit())
                    .count();
                i += hex;
            } else if b >= 0x20 || b == b'\t' {
                rec.push(b);
            }
        }
        let fn_digit = matches!(rec.first(), Some(b'0'..=b'7'))
            && rec.get(1).is_some_and(u8::is_ascii_uppercase)
            && rec.get(2).is_none_or(|d| !d.is_ascii_alphanumeric());
        let rec = if fn_digit {
            rec.get(1..).unwrap_or_default()
        } else {
            &rec[..]
        };
        if !rec.is_empty() {
            out.extend_from_slice(rec);
            out.push(link::CR);
        }
    }
    out
}

/// Vendor layouts that change how fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Cepheid GeneXpert: R.3 `^panel^^test^assay^version^analyte^complementary`, R.4
    /// `qualitative^quantitative`, R.14 `system^instrument S/N^module^cartridge^lot^expiry`.
    GeneXpert,
    /// Roche cobas c-series: O.3 `sequence^sample ID (padded)^…` (protocols.md S13).
    Roche,
    /// Abbott m2000: R.3 `^^^assay^assay^lot^…^^F|I|P`, one assay sent as three R records told
    /// apart only by the last component (final result, interpretation, cycle number).
    M2000,
    Standard,
}

/// Device and layout from H.5, whose component layout differs by vendor (protocols.md §2
/// "Expected parse" notes). The vendor name is inferred from the model the device names.
fn sender_device(h: &Record) -> (Device, Layout, Option<String>) {
    let c = |n: usize| text(h.component(5, n));
    let first = c(1).unwrap_or_default();
    let starts = |p: &str| first.to_ascii_uppercase().starts_with(p);
    let dev = |vendor: Option<&str>, model: Option<String>, serial: Option<String>| Device {
        vendor: vendor.map(str::to_owned),
        model,
        serial,
    };
    let is_c_model = first.len() == 4
        && first.starts_with('c')
        && first.chars().skip(1).all(|d| d.is_ascii_digit());
    if c(2).is_some_and(|s| s.eq_ignore_ascii_case("GeneXpert")) {
        // `.806149 Happy Hospital^GeneXpert^4.8` = site name^system^software (S1).
        let d = dev(Some("Cepheid"), c(2), None);
        (d, Layout::GeneXpert, c(3))
    } else if c(2).is_some_and(|s| s.eq_ignore_ascii_case("Roche")) {
        // `SENAITE^Roche^c111^4.2.2.1730^1^13147` = configured name^vendor^model^software^?^serial (S12).
        (dev(Some("Roche"), c(3), c(6)), Layout::Roche, c(4))
    } else if is_c_model {
        // `c311^1` = model^software (S13).
        (dev(Some("Roche"), c(1), None), Layout::Roche, c(2))
    } else if ["XN-", "XP-", "XS-", "XT-", "XE-", "KX-"]
        .iter()
        .any(|p| starts(p))
    {
        // `XN-550^00-24^22723^^^^BD634545` = model^software^serial^…; the XP-100 sends
        // `XP-100^00-13^^^^A7869^BS649542` with component 3 empty: take component 6 (S8, S9).
        let serial = c(3).or_else(|| c(6));
        (dev(Some("Sysmex"), c(1), serial), Layout::Standard, c(2))
    } else if first.eq_ignore_ascii_case("m2000") {
        // `m2000^8.1.9.0^275000001^H1P1O1R1C1L1` = model^software^serial^record types
        // (deforay/vlsm-interfacing captured/abbott-m2000.ts).
        (dev(Some("Abbott"), c(1), c(3)), Layout::M2000, c(2))
    } else if first == "H500" {
        // `H500^910YOXH02826^2.2.2.2b` = model^serial^software (S11).
        (dev(Some("Horiba"), c(1), c(2)), Layout::Standard, c(3))
    } else if first == "ABX" {
        (dev(Some("Horiba ABX"), None, None), Layout::Standard, None)
    } else if first == "DPC" {
        (
            dev(Some("Siemens (DPC)"), None, None),
            Layout::Standard,
            None,
        )
    } else if first == "OCD" {
        // `OCD^VISION^5.13.1.46935^J60009999` = vendor^model^software^serial (S19).
        let d = dev(Some("Ortho Clinical Diagnostics"), c(2), c(4));
        (d, Layout::Standard, c(3))
    } else if starts("AFINION") {
        (dev(Some("Abbott"), c(1), c(3)), Layout::Standard, c(2))
    } else if starts("DCA VANTAGE") {
        (dev(Some("Siemens"), c(1), c(3)), Layout::Standard, c(2))
    } else {
        // E1394 H.5: name^software version^serial (protocols.md §1.2 table).
        (dev(None, c(1), c(3)), Layout::Standard, c(2))
    }
}

/// Where a C record goes (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Target {
    Nowhere,
    Patient,
    Order,
    Result(usize),
}

#[derive(Debug, Default, Clone)]
struct OrderCtx {
    sample_id: Option<String>,
    ordered_at: Option<String>,
    comments: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct PatientCtx {
    patient_id: Option<String>,
    comments: Vec<String>,
}

fn observations(message: &Message, errors: &mut Vec<RecordError>) -> Vec<Observation> {
    let Some(h) = message.header() else {
        return Vec::new();
    };
    let (mut device, layout, software) = sender_device(h);
    if layout == Layout::GeneXpert {
        // One instrument per message: its S/N is R.14.2 of the main results.
        device.serial = message
            .records
            .iter()
            .filter(|r| r.kind == RecordKind::Result)
            .find_map(|r| text(r.component(14, 2)));
    }
    let header_time = timestamp(h, 14, errors);
    // H.12 processing ID: only the non-production codes are worth carrying (a Yumizen QC run
    // sends `Q`, S11); Immulite's shifted header has `1` there (S18), which is not a code.
    let processing = text(h.field(12)).filter(|p| matches!(p.as_str(), "T" | "D" | "Q"));
    let comp_delim = char::from(message.delimiters.component);

    let mut out: Vec<Observation> = Vec::new();
    let mut patient = PatientCtx::default();
    let mut order = OrderCtx::default();
    let mut target = Target::Nowhere;
    let mut prev_index = 0;
    for r in &message.records {
        if r.index != prev_index + 1 {
            // A malformed record was dropped here: a following C cannot know its owner.
            target = Target::Nowhere;
        }
        prev_index = r.index;
        match r.kind {
            RecordKind::Patient => {
                patient = PatientCtx {
                    patient_id: [3, 4, 5].into_iter().find_map(|f| text(r.component(f, 1))),
                    comments: Vec::new(),
                };
                order = OrderCtx::default();
                target = Target::Patient;
            }
            RecordKind::Order => {
                order = OrderCtx {
                    sample_id: sample_id(r, layout),
                    ordered_at: timestamp(r, 7, errors),
                    comments: Vec::new(),
                };
                target = Target::Order;
            }
            RecordKind::Result => {
                let mut o = result(r, layout, comp_delim, errors);
                o.device = device.clone();
                o.sample_id = order.sample_id.clone();
                o.patient_id = patient.patient_id.clone();
                if o.observed_at.is_none() {
                    o.observed_at = order.ordered_at.clone().or_else(|| header_time.clone());
                }
                o.comments = patient.comments.clone();
                o.comments.extend(order.comments.iter().cloned());
                if let Some(sw) = &software {
                    o.extra.insert("software_version".into(), sw.clone());
                }
                if let Some(p) = &processing {
                    o.extra.insert("processing_id".into(), p.clone());
                }
                out.push(o);
                target = Target::Result(out.len() - 1);
            }
            RecordKind::Comment => {
                let Some(c) = comment_text(r) else { continue };
                match target {
                    Target::Patient => patient.comments.push(c),
                    Target::Order => order.comments.push(c),
                    Target::Result(i) => {
                        if let Some(o) = out.get_mut(i) {
                            o.comments.push(c);
                        }
                    }
                    Target::Nowhere => {}
                }
            }
            RecordKind::Header
            | RecordKind::Query
            | RecordKind::Manufacturer
            | RecordKind::Scientific
            | RecordKind::Terminator
            | RecordKind::Other(_) => target = Target::Nowhere,
        }
    }
    out
}

/// O.3, or O.4 for instruments that only fill the instrument specimen ID (protocols.md §1.2 O).
fn sample_id(o: &Record, layout: Layout) -> Option<String> {
    if layout == Layout::Roche
        && let Some(id) = text(o.component(3, 2))
    {
        // cobas c311 `11625^CL-PL-24-0370         ^1^^004`: the padded sample ID is component 2.
        return Some(id);
    }
    text(o.component(3, 1))
        .or_else(|| text(o.component(4, 1)))
        // Sysmex `^^                    27^M`: sample number in component 3 (S8, S9).
        .or_else(|| text(o.component(4, 3)))
}

/// C.4 text components joined with a space, empties skipped.
fn comment_text(c: &Record) -> Option<String> {
    let parts: Vec<&str> = c
        .repeats(4)
        .iter()
        .flatten()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The R record's own slots; order, patient and device context are added by the caller.
fn result(
    r: &Record,
    layout: Layout,
    comp_delim: char,
    errors: &mut Vec<RecordError>,
) -> Observation {
    let mut o = Observation::default();
    let (code, name, extra) = test_id(r, layout);
    if code.is_empty() {
        errors.push(RecordError::Malformed {
            record: r.index,
            field: 3,
            why: "the universal test ID is empty".to_owned(),
        });
    }
    o.test_code = code;
    o.test_name = name;
    o.extra.extend(extra);

    // R.4: GeneXpert (and others) send `qualitative^quantitative` (protocols.md §0 item 4).
    let value = r.components(4);
    if value.len() >= 2 {
        let qual = value.first().and_then(|s| text(s));
        let quant = value.get(1).and_then(|s| text(s));
        if let Some(q) = &qual {
            o.extra.insert("qualitative".into(), q.clone());
        }
        if let Some(q) = &quant {
            o.extra.insert("quantitative".into(), q.clone());
        }
        o.value = qual.or(quant);
    } else {
        o.value = text(r.field(4));
    }
    // Pentra `-----` with status X means "no value" (protocols.md S10).
    if let Some(v) = o
        .value
        .take_if(|v| v.chars().all(|c| c == '-') && v.len() > 1)
    {
        o.extra.insert("raw_value".into(), v);
    }

    o.unit = text(r.field(5));
    // R.6: `84.0 - 94.0^REFERENCE_RANGE` (Yumizen, S11) → the range; Immulite's
    // `.5\.5^1500\1500` (S18) uses repeats inside the range and is kept whole.
    o.reference_range = if r.repeats(6).len() > 1 {
        text(r.field(6))
    } else {
        text(r.component(6, 1))
    };
    o.flags = r
        .repeats(7)
        .iter()
        .map(|rep| rep.join(&comp_delim.to_string()).trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    o.result_status = text(r.field(9));
    if let Some(op) = text(r.field(11)).filter(|op| op != "<None>") {
        o.extra.insert("operator".into(), op);
    }
    o.observed_at = timestamp(r, 13, errors).or_else(|| timestamp(r, 12, errors));

    if layout == Layout::GeneXpert {
        let keys = [
            "instrument_system",
            "",
            "module_serial",
            "cartridge_serial",
            "reagent_lot",
            "reagent_expiry",
        ];
        for (n, key) in keys.iter().enumerate() {
            if let Some(v) = text(r.component(14, n + 1))
                && !key.is_empty()
            {
                o.extra.insert((*key).into(), v);
            }
        }
    } else if let Some(inst) = text(r.field(14)) {
        o.extra.insert("instrument".into(), inst);
    }
    // R.4 as a number with its unit and limits (issue 19): every component, `DETECTED^` and
    // `^1009.64` alike.
    let value_text: Vec<&str> = value
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    o.quantity = quantity::of(&o, &value_text.join(" "), None);
    o
}

/// `(test_code, test_name, extra)` from R.3, the universal test ID `ID^name^type^local code…`
/// (protocols.md §1.2 "Universal test ID", §0 item 4).
///
/// * Standard, Immulite, Afinion, DCA, cobas: the code in component 4 (`^^^HbA1c`, `^^^685/` kept
///   as sent).
/// * Horiba Pentra / Yumizen: code in 4, LOINC in 5 (`^^^WBC^804-5^1`) → `extra.loinc`.
/// * Sysmex: components 1–4 empty, code in 5, dilution in 6 (`^^^^WBC^1`) → `extra.dilution`.
/// * Ortho Vision: a bare code in component 1 (`ABO`).
/// * Abbott m2000 `^^^HIV0.6ml^HIV0.6ml^lot^…^^F`: the code in 4 (5 repeats it), and the last
///   component's result type added unless it is F (the final result): `HIV0.6ml`, `HIV0.6ml:I`
///   (interpretation), `HIV0.6ml:P` (cycle number); the type goes to `extra.result_type`.
/// * GeneXpert `^panel^^test^assay name^assay version^analyte^complementary`: the code is
///   `panel/test`, then `/analyte` if present, then `:complementary` if present — e.g.
///   `MTB-RIF/Xpert/MTB` (main result), `MTB-RIF/Xpert/rpoB1` (analyte call),
///   `MTB-RIF/Xpert/rpoB1:Ct` (its Ct), `HIVVL` and `HIVVL:LOG` (S3, no panel), so the code is
///   unique per analyte and complementary value. `test_name` is the assay name;
///   panel/analyte/complementary/assay_version go to `extra`.
fn test_id(r: &Record, layout: Layout) -> (String, Option<String>, Vec<(String, String)>) {
    let c = |n: usize| text(r.component(3, n));
    let mut extra = Vec::new();
    if layout == Layout::GeneXpert {
        let base: Vec<String> = [c(2), c(4)].into_iter().flatten().collect();
        let mut code = base.join("/");
        if let Some(a) = c(7) {
            code.push('/');
            code.push_str(&a);
        }
        if let Some(k) = c(8) {
            code.push(':');
            code.push_str(&k);
        }
        for (key, n) in [
            ("panel", 2),
            ("assay_version", 6),
            ("analyte", 7),
            ("complementary", 8),
        ] {
            if let Some(v) = c(n) {
                extra.push((key.to_owned(), v));
            }
        }
        return (code, c(5), extra);
    }
    if layout == Layout::M2000
        && let Some(code) = c(4)
    {
        // `^^^HIV0.6ml^HIV0.6ml^395139^10004558^^F`: the final result keeps the assay as its
        // code; the interpretation (I) and cycle number (P) are `HIV0.6ml:I`, `HIV0.6ml:P`,
        // as GeneXpert's complementary records are `HIVVL:LOG` (captured/abbott-m2000.ts).
        let kind = r.components(3).last().and_then(|s| text(s));
        if let Some(k) = &kind {
            extra.push(("result_type".to_owned(), k.clone()));
        }
        let code = match kind.filter(|k| k != "F") {
            Some(k) => format!("{code}:{k}"),
            None => code,
        };
        // Component 5 repeats the assay; the name is component 2, as for other devices.
        return (code, c(2), extra);
    }
    let name = c(2);
    if let Some(code) = c(4) {
        if let Some(loinc) = c(5).filter(|s| looks_like_loinc(s)) {
            extra.push(("loinc".to_owned(), loinc));
        }
        (code, name, extra)
    } else if let Some(code) = c(5) {
        if let Some(d) = c(6) {
            extra.push(("dilution".to_owned(), d));
        }
        (code, name, extra)
    } else {
        let code = r
            .components(3)
            .iter()
            .find_map(|s| text(s))
            .unwrap_or_default();
        (code, name, extra)
    }
}

/// `804-5`, `21000-5`: digits, a dash, one check digit.
fn looks_like_loinc(s: &str) -> bool {
    match s.split_once('-') {
        Some((num, check)) => {
            !num.is_empty()
                && num.len() <= 7
                && num.bytes().all(|b| b.is_ascii_digit())
                && check.len() == 1
                && check.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Field `n` of `r` as an ISO 8601 local date/time; an unreadable non-empty value is reported.
fn timestamp(r: &Record, n: usize, errors: &mut Vec<RecordError>) -> Option<String> {
    let raw = text(r.component(n, 1))?;
    let iso = iso_datetime(&raw);
    if iso.is_none() {
        errors.push(RecordError::Malformed {
            record: r.index,
            field: n,
            why: format!("`{raw}` is not an E1394 date/time (YYYYMMDD[HHMM[SS]])"),
        });
    }
    iso
}

/// `YYYYMMDDHHMMSS` → `YYYY-MM-DDTHH:MM:SS`; minute precision (`…HHMM`) → `YYYY-MM-DDTHH:MM`;
/// date only → `YYYY-MM-DD`. No time zone is invented.
pub fn iso_datetime(s: &str) -> Option<String> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let (month, day) = (num(4, 6)?, num(6, 8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let date = format!("{}-{}-{}", s.get(..4)?, s.get(4..6)?, s.get(6..8)?);
    let hm_ok = |h: u32, m: u32| h <= 23 && m <= 59;
    match s.len() {
        8 => Some(date),
        12 if hm_ok(num(8, 10)?, num(10, 12)?) => {
            Some(format!("{date}T{}:{}", s.get(8..10)?, s.get(10..12)?))
        }
        14 if hm_ok(num(8, 10)?, num(10, 12)?) && num(12, 14)? <= 60 => Some(format!(
            "{date}T{}:{}:{}",
            s.get(8..10)?,
            s.get(10..12)?,
            s.get(12..14)?
        )),
        _ => None,
    }
}

/// Trimmed, `None` when empty.
fn text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &[u8]) -> Decoded {
        decode_message(text, Encoding::Latin1)
    }

    #[test]
    fn padded_values_are_trimmed() {
        // protocols.md S9: Sysmex XP-100 pads values with spaces.
        let d = one(b"H|\\^&|||XP-100^00-13^^^^A7869^BS649542\rP|1\r\
            O|1||^^            113^A|^^^^WBC\rR|1|^^^^WBC^1|  5.5|10*3/uL||N||||               ||20240723172452\rL|1|N\r");
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let o = &d.observations[0];
        assert_eq!(o.value.as_deref(), Some("5.5"));
        assert_eq!(o.sample_id.as_deref(), Some("113"));
        assert_eq!(o.test_code, "WBC");
        assert_eq!(o.extra.get("dilution").map(String::as_str), Some("1"));
        assert_eq!(o.result_status, None);
        assert!(!o.extra.contains_key("operator"));
        assert_eq!(o.observed_at.as_deref(), Some("2024-07-23T17:24:52"));
        assert_eq!(o.device.serial.as_deref(), Some("A7869"));
    }

    #[test]
    fn qualitative_quantitative_value_prefers_the_call() {
        let d = one(b"H|@^\\|X||Lab^GeneXpert^6.4\rO|1|S1||^^^HIVVL\r\
            R|1|^^^HIVVL^Xpert HIV-1 VL^3^^|^1009.64|copies/mL|40.00 to 10000000.00|N||F\r\
            R|2|^MTB-RIF^^Xpert^^^rpoB1^|INVALID^|||\r\
            R|3|^MTB-RIF^^Xpert^^^rpoB1^Ct|^0.0|||\r\
            R|4|^MTB-RIF^^Xpert^^^rpoB1^Ct|DET^12|||\rL|1|N\r");
        let v: Vec<(&str, Option<&str>)> = d
            .observations
            .iter()
            .map(|o| (o.test_code.as_str(), o.value.as_deref()))
            .collect();
        assert_eq!(
            v,
            [
                ("HIVVL", Some("1009.64")),
                ("MTB-RIF/Xpert/rpoB1", Some("INVALID")),
                ("MTB-RIF/Xpert/rpoB1:Ct", Some("0.0")),
                ("MTB-RIF/Xpert/rpoB1:Ct", Some("DET")),
            ]
        );
        let last = &d.observations[3].extra;
        assert_eq!(last.get("qualitative").map(String::as_str), Some("DET"));
        assert_eq!(last.get("quantitative").map(String::as_str), Some("12"));
        assert_eq!(
            d.observations[0].test_name.as_deref(),
            Some("Xpert HIV-1 VL")
        );
    }

    #[test]
    fn comments_attach_to_the_preceding_result_else_to_the_order_or_patient() {
        let d = one(
            b"H|\\^&\rP|1|PID\rC|1||patient^note\rO|1|S1\rC|1||order note\r\
            R|1|^^^A|1\rC|1|I|first^^ result|G\rC|2||\rR|2|^^^B|2\rO|2|S2\r\
            R|1|^^^C|3\rM|1|x\rC|1||lost\rL|1|N\r",
        );
        let c: Vec<Vec<&str>> = d
            .observations
            .iter()
            .map(|o| o.comments.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            c,
            [
                vec!["patient note", "order note", "first result"],
                vec!["patient note", "order note"],
                vec!["patient note"],
            ]
        );
        assert_eq!(d.observations[2].sample_id.as_deref(), Some("S2"));
        assert_eq!(d.observations[2].patient_id.as_deref(), Some("PID"));
    }

    #[test]
    fn malformed_record_is_an_error_and_the_rest_decodes() {
        // protocols.md S6, last message (the vendor's own malformed `P1|…`).
        let d = one(b"H|@^\\|URM||GeneXpert PC^GeneXpert^Dx4.6a.5_Demo|||||LIS||P|1394-97|20141027180618\r\
            P1|p234||FII H8|Johnson^Mark^^^\rC|1||orphan\r\
            O|1|FII H8||^^^F II TC|R|20120709103544\r\
            R|1|^^^F II TC^Xpert HemosIL FII^1^^|HOMOZYGOUS^|||||F||jenyho|20120709103544|20120709110553|^802269^^^^\r\
            L|1|N\r");
        assert!(matches!(
            &d.errors[..],
            [RecordError::Malformed {
                record: 2,
                field: 1,
                ..
            }]
        ));
        assert_eq!(d.kind, MessageKind::Results);
        let o = &d.observations[0];
        assert_eq!(o.sample_id.as_deref(), Some("FII H8"));
        assert_eq!(o.test_code, "F II TC");
        assert_eq!(o.value.as_deref(), Some("HOMOZYGOUS"));
        assert_eq!(o.device.serial.as_deref(), Some("802269"));
        assert_eq!(o.patient_id, None);
        assert!(o.comments.is_empty());
    }

    #[test]
    fn unknown_record_types_are_kept_and_queries_are_recognised() {
        let d = one(b"H|\\^&\rZ|1|custom\rQ|1|^3788513||||||||||O\rL|1|N\r");
        assert_eq!(d.kind, MessageKind::Query);
        let m = d.message.as_ref().map(|m| m.records.len());
        assert_eq!(m, Some(4));
        assert!(d.observations.is_empty());
    }

    #[test]
    fn timestamps_tolerate_minute_and_date_precision_and_report_garbage() {
        assert_eq!(
            iso_datetime("20250514132103").as_deref(),
            Some("2025-05-14T13:21:03")
        );
        assert_eq!(
            iso_datetime("202205270000").as_deref(),
            Some("2022-05-27T00:00")
        );
        assert_eq!(iso_datetime("20220527").as_deref(), Some("2022-05-27"));
        for bad in [
            "202306513124559",
            "20221332",
            "2022052",
            "2022-05-27",
            "20220527256000",
        ] {
            assert_eq!(iso_datetime(bad), None, "{bad}");
        }
        let d = one(b"H|\\^&\rO|1|S||^^^A||20220527\rR|1|^^^A|1|||||||||2023X\rL|1\r");
        assert_eq!(d.observations[0].observed_at.as_deref(), Some("2022-05-27"));
        assert!(matches!(
            &d.errors[..],
            [RecordError::Malformed {
                record: 3,
                field: 13,
                ..
            }]
        ));
    }

    #[test]
    fn latin1_micro_sign_reaches_the_unit() {
        let d = one(b"H|\\^&\rR|1|^^^WBC|5.1|10*3/\xB5L\rL|1\r");
        assert_eq!(d.observations[0].unit.as_deref(), Some("10*3/µL"));
    }

    #[test]
    fn split_messages_starts_a_message_at_each_h_and_keeps_leading_junk() {
        let text = b"junk\rH|\\^&\rL|1\rH|@^\\\rL|1\r";
        let parts = split_messages(text);
        assert_eq!(
            parts,
            [&b"junk\r"[..], &b"H|\\^&\rL|1\r"[..], &b"H|@^\\\rL|1\r"[..]]
        );
        assert!(split_messages(b"\r\n").is_empty());
    }

    #[test]
    fn capture_kind_is_detected_and_bare_captures_are_cleaned() {
        let bare = b"1H|\\^||PASSWORD|DPC\n2P|1|X\n3R|1|^^^TT4|10.3\n5L|1\n";
        let d = decode_capture(bare, Encoding::Latin1);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].observations[0].test_code, "TT4");
        assert_eq!(d[0].observations[0].patient_id.as_deref(), Some("X"));
        let framed = b"\x021H|\\^&\rR|1|^^^A|1\rL|1|N\r\x03FF\r\n";
        let d = decode_capture(framed, Encoding::Latin1);
        assert!(matches!(
            d[0].errors.first(),
            Some(RecordError::BadChecksums { bad: 1, frames: 1 })
        ));
        assert_eq!(d[0].observations[0].value.as_deref(), Some("1"));
        let vidas = b"\x02\x1emtrsl|\x1ept|\x1db0\n";
        let d = decode_capture(vidas, Encoding::Latin1);
        assert!(matches!(&d[0].errors[..], [RecordError::NoMessage { .. }]));
        assert!(decode_capture(b"", Encoding::Latin1).is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        let alphabet = b"HPORCLQM|\\^&@\r\n\x02\x03\x170123456789AF ";
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let i = (seed >> 24) as usize % alphabet.len();
                    alphabet.get(i).copied().unwrap_or(b'|')
                })
                .collect();
            let _ = decode_capture(&bytes, Encoding::Utf8);
            let _ = decode_capture(&bytes, Encoding::Latin1);
        }
    }
}
