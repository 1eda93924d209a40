//! Quantitative results read right (issue 19): the value text and unit field a device sends for
//! a viral load or any other number → [`Quantity`] (value, unit, comparator, detection, log10),
//! with the raw text kept. Pure: strings in, a value out.
//!
//! What the vendors send (their LIS interface manuals' result field layouts; protocols.md S3, S4,
//! S21b, S24 for the GeneXpert and cobas captures):
//!
//! | sent | read as |
//! |---|---|
//! | `1009.64` + unit `copies/mL` | value 1009.64 copies/mL |
//! | `<20`, `< 40`, `<=20`, `≤ 20`, `>1.00E+07`, `> 10000000` | comparator + value |
//! | `1.23E+04`, `1.2e4`, `1.23x10^4`, `1.23 x 10E4`, `1,234,567` | value in plain decimals (12300 …) |
//! | `HIV-1 DETECTED 1.23E3 copies/mL (3.09 log)` | detected, 1230 copies/mL, log10 3.09 |
//! | `Target Not Detected`, `TND`, `Not Detected`, `Undetectable`, `No HIV-1 RNA detected` | not detected, no value |
//! | `HIV-1 DETECTED < 40 cp/mL`, `Detected, <LLQ`, `< 839 IU/mL` | detected/below: comparator `<` |
//! | `3.09` + unit `log copies/mL` (or a `…LOG` test) | log10 3.09 (the copies figure is 10^3.09) |
//! | HL7 `SN` `<^20`, `^1009`, `>^1.0E7` | comparator + number components |
//! | `INVALID`, `ERROR`, `NO RESULT`, `Aborted` | detection `invalid`, no value |
//! | `763` + unit `10*-1.{Copies}/mL`, `226` + `10*4.{Copies}/mL` (cobas 6800/5800) | 76.3 copies/mL, 2260000 copies/mL |
//! | `< Titer min`, `> Titer max` (cobas 4800/6800) | comparator `<` / `>`, no value |
//! | no result, status `X` (HL7 OBX-11, E1394 R.9), a copies/IU per mL unit | detection `invalid`, no value |
//!
//! **Units.** A UCUM power-of-ten factor in front of a viral-load unit (`10*N.{Copies}/mL`,
//! `10*N.IU/mL`) is applied to the value and dropped from the quantity's unit, so the quantity
//! always reads in plain copies/mL (IU/mL) whatever exponent the run used; the annotation braces
//! go too (`{Copies}/mL` → `copies/mL`). What the device sent stays: the value text in
//! `Quantity::raw` (`763`) and the unit field in `Observation::unit` (`10*-1.{Copies}/mL`). Other
//! units (`10*3/uL` cell counts, `Copies / mL`) are kept as sent.
//!
//! **Qualitative or not.** A bare `Not Detected` or `Invalid` is a quantity's outcome only when
//! a unit says the test is quantitative (sent, in the text, or from the profile's `[[tests]]`
//! table through [`reread_with_unit`]): GeneXpert's Qual and MTB calls say the same words.
//!
//! A comma is a thousands separator only in `1,234` / `12,345,678` shape (groups of three);
//! otherwise it is a decimal comma (`4,5`). Scientific values are rewritten in plain decimals
//! by moving the decimal point in the text, never through a float (no `1229.9999`).

use crate::record::Observation;
pub use crate::record::{Comparator, Detection, Quantity};

/// Longest value text read (a result field is short; anything longer is not a quantity).
const MAX_TEXT: usize = 512;

/// Reads `text` (the result field) with the `unit` field beside it. `log` says the test itself
/// is the log10 figure (GeneXpert's `HIVVL…^LOG` record). `None` when the text holds neither a
/// number nor a viral-load detection phrase (`POS`, `MTB DETECTED MEDIUM` stay plain values).
pub fn parse(text: &str, unit: Option<&str>, log: bool) -> Option<Quantity> {
    let raw = text.trim();
    if raw.is_empty() || raw.len() > MAX_TEXT {
        return None;
    }
    let unit = unit.map(str::trim).filter(|u| !u.is_empty());
    let lower = raw.to_lowercase();
    let detection = detection(&lower);
    let tokens = tokens(raw);
    let mut q = Quantity {
        raw: raw.to_owned(),
        detection,
        ..Quantity::default()
    };
    // The numbers with what stands around them.
    let mut i = 0;
    let mut text_unit = None;
    while i < tokens.len() {
        let Some((value, used)) = number_at(&tokens, i) else {
            i += 1;
            continue;
        };
        let before = i.checked_sub(1).map(|j| tokens[j].as_str());
        let after = tokens.get(i + used).map(String::as_str);
        let is_log = after.is_some_and(is_log_word) || before.is_some_and(is_log_word);
        if is_log && q.log10.is_none() {
            q.log10 = Some(value);
        } else if q.value.is_none() {
            q.value = Some(value);
            q.comparator = comparator_before(&tokens, i);
            if let Some(u) = after.filter(|a| is_unit(a)) {
                text_unit = Some(u.to_owned());
            }
        }
        i += used;
    }
    if q.value.is_none() && q.comparator.is_none() {
        // "<LLQ", "< LDL", "below 40", Roche's "< Titer min" / "> Titer max": a limit without
        // its number is still a comparator.
        q.comparator = tokens
            .iter()
            .enumerate()
            .position(|(k, t)| is_limit_word(t, tokens.get(k + 1).map(String::as_str)))
            .and_then(|k| comparator_before(&tokens, k));
    }
    let unit_is_log = unit.is_some_and(|u| u.to_lowercase().contains("log"));
    if (log || unit_is_log) && q.log10.is_none() {
        q.log10 = q.value.take();
    }
    q.unit = match unit.and_then(power_of_ten) {
        // cobas 6800/5800: `763` with `10*-1.{Copies}/mL` is 76.3 copies/mL.
        Some((exp, u)) => {
            q.value = q.value.take().map(|v| shift(&v, exp));
            Some(u)
        }
        None => unit.map(normal_unit),
    }
    .or(text_unit);
    let quantitative = q.value.is_some() || q.log10.is_some() || q.comparator.is_some();
    let vl_phrase = matches!(q.detection, Some(Detection::NotDetected))
        && (q.unit.is_some() || lower.contains("target") || lower == "tnd");
    let invalid = matches!(q.detection, Some(Detection::Invalid)) && q.unit.is_some();
    (quantitative || vl_phrase || invalid).then_some(q)
}

/// The quantity of a decoded observation whose result field reads `text` (components joined by
/// a space; HL7 `SN` through [`parse_sn`] first): unit, flags, range and test code come from `o`.
/// A LOG test (`…:LOG`) is its log10. GeneXpert's `DETECTED^` with flag `<` (protocols.md S4:
/// detected below the lower limit of quantification) or `>` (above the upper one) reads as
/// `< 40` / `> 10000000`, the bound taken from the reference range (`40.00 to 10000000.00`).
pub fn of(o: &Observation, text: &str, sn: Option<&[&str]>) -> Option<Quantity> {
    let log = is_log_code(&o.test_code);
    let unit = o.unit.as_deref();
    let mut q = match sn {
        Some(c) => parse_sn(c, unit, log),
        None => parse(text, unit, log),
    };
    if q.is_none()
        && unit.is_some_and(is_viral_load_unit)
        && o.result_status.as_deref().map(str::trim) == Some("X")
    {
        // Result status X (HL7 table 0085, E1394 R.9): "results cannot be obtained", the
        // cobas 6800 invalid run's `HIV` line with only an error code in OBX-8. Only for a
        // viral-load unit: a haematology `-----` with status X (Pentra, S10) has no detection.
        q = Some(Quantity {
            raw: text.trim().to_owned(),
            unit: unit.map(normal_unit),
            detection: Some(Detection::Invalid),
            ..Quantity::default()
        });
    }
    let limit = o.flags.iter().find_map(|f| match f.trim() {
        "<" => Some(Comparator::Lt),
        ">" => Some(Comparator::Gt),
        _ => None,
    });
    // Without a range there is no bound to read, and a flag alone makes no quantity.
    let bounds = o.reference_range.as_deref().and_then(range_bounds);
    if let (Some(c), Some(u), Some((lo, hi))) = (limit, unit, bounds) {
        let q = q.get_or_insert_with(|| Quantity {
            raw: text.trim().to_owned(),
            unit: Some(normal_unit(u)),
            detection: detection(&text.trim().to_lowercase()),
            ..Quantity::default()
        });
        if q.value.is_none() && q.log10.is_none() && q.detection != Some(Detection::Invalid) {
            let bound = if c == Comparator::Lt { lo } else { hi };
            q.comparator = Some(c);
            if log {
                q.log10 = Some(bound);
            } else {
                q.value = Some(bound);
            }
        }
    }
    q
}

/// A profile's `[[tests]]` table has just given `o` the unit its message left out
/// (`TestTable::enrich`): the quantity is read again with it, so it carries the unit too and a
/// bare `Not Detected` or `Invalid` of a quantitative test (Alinity m, cobas 4800) becomes its
/// outcome. A quantity that already has a unit (in the text) is left as it is.
pub fn reread_with_unit(o: &mut Observation) {
    if o.quantity.as_ref().is_some_and(|q| q.unit.is_some()) || o.unit.is_none() {
        return;
    }
    let raw = match &o.quantity {
        Some(q) => q.raw.clone(),
        None => match &o.value {
            Some(v) => v.clone(),
            None => return,
        },
    };
    let sn = o.extra.get("value_type").is_some_and(|t| t == "SN");
    let parts: Vec<&str> = raw.split('^').collect();
    let text = parts.join(" ");
    if let Some(q) = of(o, &text, sn.then_some(parts.as_slice())) {
        o.quantity = Some(Quantity { raw, ..q });
    }
}

/// A viral load split over two records (copies/mL in `HIVVL`, log10 in `HIVVL:LOG`; protocols.md
/// S3, S21b): the main record's quantity gets the log10 figure beside its copies/mL.
pub fn link_log_records(obs: &mut [Observation]) {
    let logs: Vec<(String, String)> = obs
        .iter()
        .filter_map(|o| {
            let base = strip_log(&o.test_code)?;
            let log10 = o.quantity.as_ref()?.log10.clone()?;
            Some((base.to_owned(), log10))
        })
        .collect();
    for (base, log10) in logs {
        if let Some(q) = obs
            .iter_mut()
            .find(|o| o.test_code == base)
            .and_then(|o| o.quantity.as_mut())
            && q.log10.is_none()
        {
            q.log10 = Some(log10);
        }
    }
}

fn strip_log(code: &str) -> Option<&str> {
    ["^LOG", ":LOG", "&LOG", "-LOG", "_LOG", " LOG"]
        .iter()
        .find_map(|s| {
            code.len()
                .checked_sub(s.len())
                .filter(|&k| code.is_char_boundary(k) && code[k..].eq_ignore_ascii_case(s))
                .map(|k| &code[..k])
        })
        .filter(|b| !b.is_empty())
}

fn is_log_code(code: &str) -> bool {
    strip_log(code).is_some()
}

/// `40.00 to 10000000.00`, `2000.00-200000000000.00`, `1.60 - 7.00` → the two bounds.
fn range_bounds(range: &str) -> Option<(String, String)> {
    let r = range.trim();
    let (lo, hi) = r
        .split_once(" to ")
        .or_else(|| r.split_once(" - "))
        .or_else(|| {
            r.get(1..)?
                .split_once('-')
                .map(|(a, b)| (&r[..a.len() + 1], b))
        })?;
    let num = |s: &str| {
        split_decimal(s.trim())
            .filter(|(_, rest)| rest.is_empty())
            .map(|(n, _)| n)
    };
    Some((num(lo)?, num(hi)?))
}

/// HL7 `SN` (structured numeric): `comparator ^ num1 ^ separator/suffix ^ num2` (HL7 v2.5
/// §2.A.72). `<^20` → `< 20`; `^1.0E7` → 10000000; a range `^10^-^20` keeps the first number.
pub fn parse_sn(components: &[&str], unit: Option<&str>, log: bool) -> Option<Quantity> {
    let comp = components.first().map(|c| c.trim()).unwrap_or("");
    let num = components.get(1).map(|c| c.trim()).unwrap_or("");
    if num.is_empty() {
        return parse(&components.join(" "), unit, log);
    }
    let mut q = parse(&format!("{comp}{num}"), unit, log)?;
    q.raw = components.join("^");
    Some(q)
}

fn detection(lower: &str) -> Option<Detection> {
    const NOT: [&str; 7] = [
        "not detected",
        "undetectable",
        "no hiv-1 rna detected",
        "not det",
        "negative",
        "no target",
        "notdetected",
    ];
    const INVALID: [&str; 6] = [
        "invalid",
        "error",
        "no result",
        "aborted",
        "failed",
        "noresult",
    ];
    if NOT.iter().any(|p| lower.contains(p)) || lower == "tnd" || lower.starts_with("tnd ") {
        Some(Detection::NotDetected)
    } else if INVALID.iter().any(|p| lower.contains(p)) {
        Some(Detection::Invalid)
    } else if lower.contains("detected") || lower.contains("positive") {
        Some(Detection::Detected)
    } else {
        None
    }
}

/// Splits on whitespace, commas followed by a space, parentheses and `:`/`;`, and cuts a
/// leading comparator off its number (`<20` → `<`, `20`).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let cleaned: String = text
        .chars()
        .map(|c| {
            if matches!(c, '(' | ')' | ';' | '[' | ']') {
                ' '
            } else {
                c
            }
        })
        .collect();
    for word in cleaned.split_whitespace() {
        let word = word
            .trim_end_matches([',', ':', '.'])
            .trim_start_matches(':');
        let mut rest = word;
        for op in ["<=", ">=", "≤", "≥", "<", ">", "="] {
            if let Some(r) = rest.strip_prefix(op) {
                out.push(op.to_owned());
                rest = r;
                break;
            }
        }
        if !rest.is_empty() {
            out.push(rest.to_owned());
        }
    }
    out
}

fn comparator_before(tokens: &[String], i: usize) -> Option<Comparator> {
    let prev = tokens.get(i.checked_sub(1)?)?.as_str();
    let prev2 = i
        .checked_sub(2)
        .and_then(|j| tokens.get(j))
        .map(|s| s.to_lowercase());
    match prev {
        "<" => Some(Comparator::Lt),
        "<=" | "≤" => Some(Comparator::Le),
        ">" => Some(Comparator::Gt),
        ">=" | "≥" => Some(Comparator::Ge),
        _ => match (prev2.as_deref(), prev.to_lowercase().as_str()) {
            (Some("less"), "than") | (_, "below") => Some(Comparator::Lt),
            (Some("greater"), "than") | (Some("more"), "than") | (_, "above") => {
                Some(Comparator::Gt)
            }
            _ => None,
        },
    }
}

/// `LLQ`, `LLOQ`, `LOD` …, or Roche's `Titer` before `min`/`max` (cobas 4800/6800: `< Titer
/// min` is below the lower limit of quantification, `> Titer max` above the upper one).
fn is_limit_word(t: &str, next: Option<&str>) -> bool {
    matches!(t, "LLQ" | "LDL" | "LLOQ" | "LOD" | "LoD" | "LOQ")
        || ((t.eq_ignore_ascii_case("titer") || t.eq_ignore_ascii_case("titre"))
            && next.is_some_and(|n| n.eq_ignore_ascii_case("min") || n.eq_ignore_ascii_case("max")))
}

/// A UCUM power-of-ten factor times a viral-load unit (`10*-1.{Copies}/mL`, `10*4.{copies}/mL`,
/// `10^3.IU/mL`) → the exponent and the unit without it (`copies/mL`). Only count-per-volume
/// viral-load units are scaled: `10*3/uL` (a cell count, no `.`) is the unit the lab reads and
/// is left alone.
fn power_of_ten(unit: &str) -> Option<(i32, String)> {
    let rest = unit.trim().strip_prefix("10")?.strip_prefix(['*', '^'])?;
    let (exp, used) = parse_exp(rest)?;
    let rest = rest.get(used..)?.strip_prefix('.')?;
    let unit = annotation_unit(rest).unwrap_or_else(|| rest.to_owned());
    let l = unit.to_lowercase();
    matches!(l.as_str(), "copies/ml" | "cp/ml" | "iu/ml").then_some((exp, unit))
}

/// The unit a clinician reads for the unit field `unit`: without a power-of-ten factor and a
/// UCUM annotation's braces (`10*4.{Copies}/mL` → `copies/mL`), otherwise as sent.
fn normal_unit(unit: &str) -> String {
    power_of_ten(unit)
        .map(|(_, u)| u)
        .or_else(|| annotation_unit(unit))
        .unwrap_or_else(|| unit.to_owned())
}

/// copies/mL, cp/mL or IU/mL in any spelling (`Copies / mL`, `10*4.{Copies}/mL`).
fn is_viral_load_unit(unit: &str) -> bool {
    let l: String = normal_unit(unit)
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    matches!(l.as_str(), "copies/ml" | "cp/ml" | "iu/ml")
}

/// A UCUM annotation unit as a person writes it: `{Copies}/mL` → `copies/mL`, `{IU}/mL` →
/// `IU/mL`. `None` when there is no `{…}` annotation.
fn annotation_unit(unit: &str) -> Option<String> {
    let (head, rest) = unit.trim().strip_prefix('{')?.split_once('}')?;
    let name = match head.to_lowercase().as_str() {
        "copies" | "copy" | "cp" => "copies".to_owned(),
        "iu" => "IU".to_owned(),
        _ => head.to_owned(),
    };
    Some(format!("{name}{rest}"))
}

fn is_log_word(t: &str) -> bool {
    let t = t.to_lowercase();
    t == "log" || t == "log10" || t == "lg" || t.starts_with("log(") || t == "log₁₀"
}

fn is_unit(t: &str) -> bool {
    let l = t.to_lowercase();
    l.contains('/')
        || ["copies", "cp", "cps", "iu", "u", "%", "cells"]
            .iter()
            .any(|u| l == *u)
}

/// The number starting at token `i` and how many tokens it took: `1.23`, `1,234,567`, `4,5`,
/// `1.2E+04`, `1.23x10^4`, `1.23 x 10^4`, `1.23 x 10E4`, `1.2E3cp` (a unit glued on). A token
/// that starts with a letter (`HIV-1`, a name) is no number.
fn number_at(tokens: &[String], i: usize) -> Option<(String, usize)> {
    let t = tokens[i].as_str();
    let (mantissa, rest) = split_decimal(t)?;
    let mut exp = 0i32;
    let mut used = 1;
    // What may follow the digits in the same token: an exponent, then at most a unit glued on
    // (`1.2E3cp`). `1_A3` is a label, not the number 1.
    let after_exp = |r: &str| -> Option<(i32, usize)> {
        let r = r.strip_prefix(['E', 'e']).or_else(|| {
            r.strip_prefix(['x', 'X', '*', '×'])
                .and_then(|r| r.strip_prefix("10"))
                .and_then(|r| r.strip_prefix(['^', 'E', 'e']))
        })?;
        let (e, n) = parse_exp(r)?;
        Some((e, r.len() - n))
    };
    let unit_tail = |r: &str| {
        r.chars()
            .all(|c| c.is_alphabetic() || matches!(c, '/' | '%'))
    };
    if let Some((e, left)) = after_exp(rest) {
        if !unit_tail(&rest[rest.len() - left..]) {
            return None;
        }
        exp = e;
    } else if rest.is_empty()
        && matches!(
            tokens.get(i + 1).map(String::as_str),
            Some("x" | "X" | "*" | "×")
        )
        && let Some((e, _)) = tokens
            .get(i + 2)
            .and_then(|t| t.strip_prefix("10"))
            .and_then(|r| r.strip_prefix(['^', 'E', 'e']))
            .and_then(|r| parse_exp(r).filter(|&(_, n)| n == r.len()))
    {
        exp = e;
        used = 3;
    } else if !unit_tail(rest) {
        return None;
    }
    Some((shift(&mantissa, exp), used))
}

/// The leading decimal of `t` (comma rules in the module comment) and what follows it.
fn split_decimal(t: &str) -> Option<(String, &str)> {
    let end = t
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.' || c == ',' || c == '-' || c == '+'))
        .map_or(t.len(), |(k, _)| k);
    let (num, rest) = t.split_at(end);
    let num = num.trim_end_matches([',', '.']);
    let sign = if num.starts_with('-') { "-" } else { "" };
    let digits = num.strip_prefix(['-', '+']).unwrap_or(num);
    // "10-20" is a range and "HIV-1" a name, not one number.
    if digits.contains(['-', '+']) || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        return None;
    }
    let groups: Vec<&str> = digits.split(',').collect();
    let thousands = groups.len() > 1
        && !groups[0].is_empty()
        && groups[0].len() <= 3
        && !groups[0].contains('.')
        && groups[1..groups.len() - 1]
            .iter()
            .all(|g| g.len() == 3 && !g.contains('.'))
        && groups
            .last()
            .is_some_and(|g| g.split('.').next().is_some_and(|w| w.len() == 3));
    let plain = if thousands {
        digits.replace(',', "")
    } else if groups.len() == 2 && !digits.contains('.') {
        digits.replace(',', ".")
    } else if groups.len() > 1 {
        return None;
    } else {
        digits.to_owned()
    };
    if plain.matches('.').count() > 1 || !plain.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((format!("{sign}{plain}"), rest))
}

/// The exponent at the start of `s` and how many bytes it took.
fn parse_exp(s: &str) -> Option<(i32, usize)> {
    let end = s
        .char_indices()
        .find(|&(k, c)| !(c.is_ascii_digit() || (k == 0 && (c == '+' || c == '-'))))
        .map_or(s.len(), |(k, _)| k);
    let e: i32 = s[..end].parse().ok()?;
    (-30..=30).contains(&e).then_some((e, end))
}

/// `mantissa` × 10^`exp` written in plain decimals by moving the point in the text.
fn shift(mantissa: &str, exp: i32) -> String {
    if exp == 0 {
        return mantissa.to_owned();
    }
    let (sign, m) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let (int, frac) = m.split_once('.').unwrap_or((m, ""));
    let digits = format!("{int}{frac}");
    let point = int.len() as i32 + exp;
    let s = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    let s = s.trim_start_matches('0');
    let s = if s.is_empty() || s.starts_with('.') {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, unit: Option<&str>) -> Quantity {
        parse(text, unit, false).unwrap_or_else(|| panic!("{text:?} read as no quantity"))
    }

    #[test]
    fn plain_number_with_the_unit_field() {
        let v = q("1009.64", Some("copies/mL"));
        assert_eq!(v.value.as_deref(), Some("1009.64"));
        assert_eq!(v.unit.as_deref(), Some("copies/mL"));
        assert_eq!((v.comparator, v.detection, v.log10), (None, None, None));
        assert_eq!(v.raw, "1009.64");
    }

    #[test]
    fn comparators_in_every_spelling() {
        for (text, c, n) in [
            ("<20", Comparator::Lt, "20"),
            ("< 40", Comparator::Lt, "40"),
            ("<=20", Comparator::Le, "20"),
            ("≤ 20", Comparator::Le, "20"),
            (">1.00E+07", Comparator::Gt, "10000000"),
            ("> 10000000", Comparator::Gt, "10000000"),
            (">=1.0E7", Comparator::Ge, "10000000"),
            ("less than 150", Comparator::Lt, "150"),
            ("greater than 1.0E+07", Comparator::Gt, "10000000"),
        ] {
            let v = q(text, Some("copies/mL"));
            assert_eq!(
                (v.comparator, v.value.as_deref()),
                (Some(c), Some(n)),
                "{text}"
            );
        }
    }

    #[test]
    fn scientific_and_grouped_numbers_in_plain_decimals() {
        for (text, n) in [
            ("1.23E+04", "12300"),
            ("1.2e4", "12000"),
            ("1.23x10^4", "12300"),
            ("1.23 x 10^4", "12300"),
            ("1.23 x 10E4", "12300"),
            ("2.5E-01", "0.25"),
            ("1,234,567", "1234567"),
            ("4,5", "4.5"),
            ("6.50E+02", "650"),
            ("1.2E3cp", "1200"),
        ] {
            assert_eq!(
                q(text, Some("copies/mL")).value.as_deref(),
                Some(n),
                "{text}"
            );
        }
    }

    #[test]
    fn genexpert_text_result_with_log_and_unit_in_the_text() {
        let v = q("HIV-1 DETECTED 1.23E3 copies/mL (3.09 log)", None);
        assert_eq!(v.detection, Some(Detection::Detected));
        assert_eq!(v.value.as_deref(), Some("1230"));
        assert_eq!(v.unit.as_deref(), Some("copies/mL"));
        assert_eq!(v.log10.as_deref(), Some("3.09"));
        assert_eq!(v.comparator, None);
    }

    #[test]
    fn not_detected_phrases_have_no_value() {
        for text in [
            "Target Not Detected",
            "TND",
            "Not Detected",
            "Undetectable",
            "No HIV-1 RNA detected",
        ] {
            let v = q(text, Some("copies/mL"));
            assert_eq!(v.detection, Some(Detection::NotDetected), "{text}");
            assert_eq!((v.value, v.comparator), (None, None), "{text}");
        }
        // Without a unit only the viral-load words count: "MTB NOT DETECTED" is a plain value.
        assert!(parse("Target Not Detected", None, false).is_some());
        assert_eq!(parse("MTB NOT DETECTED", None, false), None);
        assert_eq!(parse("POS", None, false), None);
        assert_eq!(parse("MTB DETECTED MEDIUM", None, false), None);
    }

    #[test]
    fn detected_below_the_limit() {
        let v = q("HIV-1 DETECTED < 40 cp/mL", None);
        assert_eq!(v.detection, Some(Detection::Detected));
        assert_eq!(
            (v.comparator, v.value.as_deref()),
            (Some(Comparator::Lt), Some("40"))
        );
        assert_eq!(v.unit.as_deref(), Some("cp/mL"));
        let v = q("Detected, <LLQ", Some("copies/mL"));
        assert_eq!(
            (v.detection, v.comparator, v.value),
            (Some(Detection::Detected), Some(Comparator::Lt), None)
        );
    }

    #[test]
    fn log_units_and_log_tests() {
        let v = q("3.09", Some("log copies/mL"));
        assert_eq!((v.value, v.log10.as_deref()), (None, Some("3.09")));
        let v = parse("3.00", Some("copies/mL"), true).unwrap();
        assert_eq!((v.value, v.log10.as_deref()), (None, Some("3.00")));
        let v = q("<1.30", Some("Log IU/mL"));
        assert_eq!(
            (v.comparator, v.log10.as_deref()),
            (Some(Comparator::Lt), Some("1.30"))
        );
    }

    #[test]
    fn power_of_ten_units_scale_the_value() {
        // cobas 6800 and 5800 (deforay/vlsm-interfacing src/app/testing/fixtures/captured/
        // roche-cobas-6800.ts, roche-cobas-5800.ts): a three-digit mantissa in OBX-5 and the
        // exponent in the UCUM unit of OBX-6.
        for (text, unit, n) in [
            ("763", "10*-1.{Copies}/mL", "76.3"),
            ("194", "10*0.{Copies}/mL", "194"),
            ("226", "10*4.{Copies}/mL", "2260000"),
            ("367", "10*-1.{copies}/mL", "36.7"),
            ("<100", "10*1.{Copies}/mL", "1000"),
        ] {
            let v = q(text, Some(unit));
            assert_eq!(
                (v.value.as_deref(), v.unit.as_deref()),
                (Some(n), Some("copies/mL")),
                "{text} {unit}"
            );
            assert_eq!(v.raw, text);
        }
        // A cell count's factor is the unit the lab reads: not scaled.
        let v = q("5.5", Some("10*3/uL"));
        assert_eq!(
            (v.value.as_deref(), v.unit.as_deref()),
            (Some("5.5"), Some("10*3/uL"))
        );
        assert_eq!(
            q("12", Some("{Copies}/mL")).unit.as_deref(),
            Some("copies/mL")
        );
    }

    #[test]
    fn roche_titer_limits_are_comparators_without_a_number() {
        // cobas 4800 and 6800 result texts (roche-cobas-4800.ts, roche-cobas-6800.ts).
        let v = parse("< Titer min", None, false).unwrap();
        assert_eq!(
            (v.comparator, v.value, v.log10),
            (Some(Comparator::Lt), None, None)
        );
        let v = parse("> Titer max", None, false).unwrap();
        assert_eq!((v.comparator, v.value), (Some(Comparator::Gt), None));
        assert_eq!(parse("Titer", None, false), None);
    }

    #[test]
    fn status_x_with_a_unit_is_an_invalid_run() {
        let mut o = obs("HIV", Some("copies/mL"), None, &["P02T"]);
        o.result_status = Some("X".into());
        let v = of(&o, "P02T", None).unwrap();
        assert_eq!((v.detection, v.value), (Some(Detection::Invalid), None));
        o.unit = None;
        assert_eq!(
            of(&o, "P02T", None),
            None,
            "no unit: not known to be quantitative"
        );
    }

    #[test]
    fn a_table_unit_rereads_the_quantity() {
        // Alinity m "Not Detected" with OBX-6 empty; the profile gives `Copies/mL`.
        let mut o = obs("1006", Some("Copies/mL"), None, &[]);
        o.value = Some("Not Detected".into());
        reread_with_unit(&mut o);
        let v = o.quantity.unwrap();
        assert_eq!(
            (v.detection, v.unit.as_deref()),
            (Some(Detection::NotDetected), Some("Copies/mL"))
        );
        // A number without a unit gets it (SN keeps its components); a unit in the text stays.
        let sn = parse_sn(&["<", "20"], None, false);
        for (q, sn_type, want, raw) in [
            (
                parse("< 20", None, false),
                false,
                (Some("20"), "Copies/mL", Some(Comparator::Lt)),
                "< 20",
            ),
            (
                parse("3.26E+05 cp/mL", None, false),
                false,
                (Some("326000"), "cp/mL", None),
                "3.26E+05 cp/mL",
            ),
            (
                sn,
                true,
                (Some("20"), "Copies/mL", Some(Comparator::Lt)),
                "<^20",
            ),
        ] {
            let mut o = obs("1006", Some("Copies/mL"), None, &[]);
            if sn_type {
                o.extra.insert("value_type".into(), "SN".into());
            }
            o.quantity = q;
            reread_with_unit(&mut o);
            assert_eq!(read3(&o), (want.0, Some(want.1), want.2), "{raw}");
            assert_eq!(o.quantity.as_ref().map(|q| q.raw.as_str()), Some(raw));
        }
    }

    fn read3(o: &Observation) -> (Option<&str>, Option<&str>, Option<Comparator>) {
        let q = o.quantity.as_ref().expect("a quantity");
        (q.value.as_deref(), q.unit.as_deref(), q.comparator)
    }

    #[test]
    fn hl7_structured_numeric() {
        let v = parse_sn(&["<", "20"], Some("copies/mL"), false).unwrap();
        assert_eq!(
            (v.comparator, v.value.as_deref()),
            (Some(Comparator::Lt), Some("20"))
        );
        assert_eq!(v.raw, "<^20");
        let v = parse_sn(&["", "1.0E7"], Some("copies/mL"), false).unwrap();
        assert_eq!((v.comparator, v.value.as_deref()), (None, Some("10000000")));
        let v = parse_sn(&[">", "10000000"], None, false).unwrap();
        assert_eq!(v.comparator, Some(Comparator::Gt));
    }

    #[test]
    fn invalid_runs() {
        let v = q("INVALID", Some("copies/mL"));
        assert_eq!((v.detection, v.value), (Some(Detection::Invalid), None));
        assert_eq!(parse("ERROR", None, false), None);
    }

    fn obs(code: &str, unit: Option<&str>, range: Option<&str>, flags: &[&str]) -> Observation {
        Observation {
            test_code: code.into(),
            unit: unit.map(Into::into),
            reference_range: range.map(Into::into),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            ..Observation::default()
        }
    }

    #[test]
    fn genexpert_detected_below_the_range_takes_the_lower_limit() {
        let o = obs(
            "HIVVL",
            Some("copies/mL"),
            Some("40.00 to 10000000.00"),
            &["<"],
        );
        let v = of(&o, "DETECTED", None).unwrap();
        assert_eq!(v.detection, Some(Detection::Detected));
        assert_eq!(
            (v.comparator, v.value.as_deref()),
            (Some(Comparator::Lt), Some("40.00"))
        );
        let o = obs("HIVVL:LOG", Some("copies/mL"), Some("1.60 to 7.00"), &["<"]);
        let v = of(&o, "", None).unwrap();
        assert_eq!(
            (v.comparator, v.log10.as_deref(), v.value),
            (Some(Comparator::Lt), Some("1.60"), None)
        );
        let o = obs(
            "HIVVL",
            Some("copies/mL"),
            Some("40.00 to 10000000.00"),
            &[">"],
        );
        let v = of(&o, "DETECTED", None).unwrap();
        assert_eq!(
            (v.comparator, v.value.as_deref()),
            (Some(Comparator::Gt), Some("10000000.00"))
        );
        // A flag without a range to take the bound from makes no quantity of a call.
        let o = obs("HIVVL", Some("copies/mL"), None, &["<"]);
        assert_eq!(of(&o, "DETECTED", None), None);
        // A number with a low flag is that number (a low haemoglobin), not the range's bound.
        let o = obs("HGB", Some("g/dL"), Some("12.0-16.0"), &["<"]);
        let v = of(&o, "9.1", None).unwrap();
        assert_eq!((v.comparator, v.value.as_deref()), (None, Some("9.1")));
    }

    #[test]
    fn log_record_joins_its_copies_record() {
        let mut list = vec![
            obs("HIVVL", Some("copies/mL"), None, &[]),
            obs("HIVVL:LOG", Some("copies/mL"), None, &[]),
        ];
        list[0].quantity = of(&list[0], "1009.64", None);
        list[1].quantity = of(&list[1], "3.00", None);
        link_log_records(&mut list);
        let q = list[0].quantity.as_ref().unwrap();
        assert_eq!(
            (q.value.as_deref(), q.log10.as_deref()),
            (Some("1009.64"), Some("3.00"))
        );
    }

    #[test]
    fn range_bounds_in_the_vendors_spellings() {
        assert_eq!(
            range_bounds("40.00 to 10000000.00"),
            Some(("40.00".into(), "10000000.00".into()))
        );
        assert_eq!(
            range_bounds("2000.00-200000000000.00"),
            Some(("2000.00".into(), "200000000000.00".into()))
        );
        assert_eq!(
            range_bounds("1.60 - 7.00"),
            Some(("1.60".into(), "7.00".into()))
        );
        assert_eq!(range_bounds("negative"), None);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        // A deterministic sweep over the characters the parser treats specially (the fuzz
        // targets astm_record and hl7 reach it with arbitrary bytes too).
        let alphabet: Vec<char> = "0123456789.,-+eExX*^<>=≤≥ ()LOGlogTNDdetectnoinvalid/µ×é"
            .chars()
            .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut text = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 24) {
                text.push(alphabet[((x >> (k % 50)) as usize ^ k as usize) % alphabet.len()]);
            }
            let o = Observation {
                test_code: if x.is_multiple_of(3) {
                    "VL:LOG".into()
                } else {
                    "VL".into()
                },
                unit: x.is_multiple_of(2).then(|| "copies/mL".into()),
                reference_range: Some(text.clone()),
                flags: vec![if x.is_multiple_of(5) {
                    "<".into()
                } else {
                    ">".into()
                }],
                ..Observation::default()
            };
            let _ = of(&o, &text, None);
            let parts: Vec<&str> = text.split('^').collect();
            let _ = parse_sn(&parts, None, false);
        }
    }

    #[test]
    fn words_and_names_are_not_numbers() {
        assert_eq!(parse("HIV-1", None, false), None);
        assert_eq!(parse("", Some("copies/mL"), false), None);
        assert_eq!(parse(&"9".repeat(600), None, false), None);
        assert_eq!(parse("1.2.3", None, false), None);
        // A label with a digit in it (Aqualink, protocols.md S20) is not the number 1.
        assert_eq!(parse("#VELOCIDADES 1_A3", None, false), None);
    }
}
