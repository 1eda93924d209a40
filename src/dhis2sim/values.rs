//! Value-type and UID rules shared by the importers (dhis2.md §3, §4.2).

/// `^[a-zA-Z][a-zA-Z0-9]{10}$`
pub fn is_uid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11 && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric())
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A fresh random UID (DHIS2's generator is "non-secure" too).
pub fn generate_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(nanos);
    let mut next = move || {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = String::with_capacity(11);
    out.push(ALPHABET[(next() % 52) as usize] as char);
    for _ in 0..10 {
        out.push(ALPHABET[(next() % 62) as usize] as char);
    }
    out
}

/// A UID derived from a seed (stable ids for the configured users).
pub fn uid_from_seed(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(seed.as_bytes());
    let mut out = String::with_capacity(11);
    out.push(ALPHABET[(h[0] % 52) as usize] as char);
    for b in &h[1..11] {
        out.push(ALPHABET[(*b % 62) as usize] as char);
    }
    out
}

/// Why a value does not fit its value type: DHIS2's i18n key and the human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub sentence: &'static str,
}

fn invalid(key: &'static str, sentence: &'static str) -> Option<Invalid> {
    Some(Invalid { key, sentence })
}

fn is_number(v: &str) -> bool {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (v, None),
    };
    let digits = int.strip_prefix('-').unwrap_or(int);
    let int_ok = digits == "0"
        || (!digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()));
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    int_ok && frac_ok && v.len() < 250 && v.parse::<f64>().is_ok()
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    (v == "0"
        || (!digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())))
        && v.parse::<i32>().is_ok()
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (
        v[0..4].parse::<i32>(),
        v[5..7].parse::<u8>(),
        v[8..10].parse::<u8>(),
    ) else {
        return false;
    };
    let Ok(month) = time::Month::try_from(m) else {
        return false;
    };
    time::Date::from_calendar_date(y, month, d).is_ok()
}

fn is_datetime(v: &str) -> bool {
    if v.len() < 16 || !is_date(&v[..10]) {
        return false;
    }
    let rest = &v[10..];
    let Some(rest) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) else {
        return false;
    };
    // HH:mm[:ss[.SSS]][Z|±hh:mm]
    let (clock, _zone) = match rest.find(['Z', '+']).or_else(|| rest.rfind('-')) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (hms, _ms) = clock.split_once('.').unwrap_or((clock, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Check `value` against a DHIS2 value type; `None` = valid. `aggregate` relaxes BOOLEAN.
pub fn check(value_type: &str, value: &str, aggregate: bool) -> Option<Invalid> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 50_000 {
        return invalid(
            "value_length_greater_than_max_length",
            "Value length is greater than max length",
        );
    }
    match value_type {
        "NUMBER" if !is_number(value) => invalid("value_not_numeric", "Data value is not numeric"),
        "UNIT_INTERVAL" if !is_number(value) || !(0.0..=1.0).contains(&parse(value)) => invalid(
            "value_not_unit_interval",
            "Data value is not a unit interval",
        ),
        "PERCENTAGE" if !is_number(value) || !(0.0..=100.0).contains(&parse(value)) => {
            invalid("value_not_percentage", "Data value is not a percentage")
        }
        "INTEGER" if !is_integer(value) => {
            invalid("value_not_integer", "Data value is not an integer")
        }
        "INTEGER_POSITIVE" if !is_integer(value) || parse(value) <= 0.0 => invalid(
            "value_not_positive_integer",
            "Data value is not a positive integer",
        ),
        "INTEGER_NEGATIVE" if !is_integer(value) || parse(value) >= 0.0 => invalid(
            "value_not_negative_integer",
            "Data value is not a negative integer",
        ),
        "INTEGER_ZERO_OR_POSITIVE" if !is_integer(value) || parse(value) < 0.0 => invalid(
            "value_not_zero_or_positive_integer",
            "Data value is not zero or positive integer",
        ),
        "BOOLEAN" => {
            let l = value.to_ascii_lowercase();
            let ok = l == "true"
                || l == "false"
                || (aggregate && matches!(l.as_str(), "1" | "0" | "t" | "f"));
            if ok {
                None
            } else {
                invalid("value_not_bool", "Data value is not boolean")
            }
        }
        "TRUE_ONLY" if !(value.eq_ignore_ascii_case("true") || (aggregate && value == "1")) => {
            invalid(
                "value_not_true_only",
                "Data value is not true (true-only value type)",
            )
        }
        "DATE" | "AGE" if !is_date(value) => {
            invalid("value_not_valid_date", "Data value is not a valid date")
        }
        "DATETIME" if !is_datetime(value) => invalid(
            "value_not_valid_datetime",
            "Data value is not a valid date time",
        ),
        "TIME" if !is_time(value) => {
            invalid("value_not_valid_time", "Data value is not a valid time")
        }
        "LETTER" if !(value.chars().count() == 1 && value.chars().all(char::is_alphabetic)) => {
            invalid("value_not_valid_letter", "Data value is not a valid letter")
        }
        "PHONE_NUMBER" if !is_phone(value) => invalid(
            "value_not_valid_phone_number",
            "Data value is not a valid phone number",
        ),
        "EMAIL" if !is_email(value) => invalid(
            "value_not_valid_email",
            "Data value is not a valid email address",
        ),
        "COORDINATE" if !is_coordinate(value) => invalid(
            "value_not_coordinate",
            "Data value is not a valid coordinate",
        ),
        _ => None,
    }
}

fn parse(v: &str) -> f64 {
    v.parse().unwrap_or(f64::NAN)
}

fn is_time(v: &str) -> bool {
    let Some((h, m)) = v.split_once(':') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(h)
        && h.len() <= 2
        && digits(m)
        && m.len() == 2
        && h.parse::<u8>().is_ok_and(|h| h <= 23)
        && m.parse::<u8>().is_ok_and(|m| m <= 59)
}

fn is_phone(v: &str) -> bool {
    (6..=50).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_digit() || "+()#./ext- ".contains(c) || c.is_whitespace())
}

fn is_email(v: &str) -> bool {
    match v.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !v.contains(' '),
        None => false,
    }
}

fn is_coordinate(v: &str) -> bool {
    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<f64> = inner
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    parts.len() == 2 && parts[0].abs() <= 180.0 && parts[1].abs() <= 90.0
}

/// A DHIS2 period identifier this sim understands (`yyyy`, `yyyyMM`, `yyyyMMdd`, `yyyyQn`,
/// `yyyyWn`, `yyyySn`, `yyyyBiWn`, `yyyyAprilS`-style financial years).
pub fn is_period(p: &str) -> bool {
    let b = p.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let rest = &p[4..];
    let num = |s: &str, max: u32| s.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    if rest.is_empty() {
        return true;
    }
    if rest.len() == 2 && rest.bytes().all(|c| c.is_ascii_digit()) {
        return num(rest, 12);
    }
    if rest.len() == 4 && rest.bytes().all(|c| c.is_ascii_digit()) {
        return is_date(&format!("{}-{}-{}", &p[..4], &rest[..2], &rest[2..]));
    }
    if let Some(q) = rest.strip_prefix('Q') {
        return num(q, 4);
    }
    if let Some(w) = rest.strip_prefix("BiW") {
        return num(w, 27);
    }
    if let Some(w) = rest.strip_prefix('W') {
        return num(w, 53);
    }
    if let Some(s) = rest.strip_prefix('S') {
        return num(s, 2);
    }
    if let Some(b) = rest.strip_prefix('B') {
        return num(b, 6);
    }
    matches!(
        rest,
        "April" | "July" | "Oct" | "Nov" | "AprilS1" | "AprilS2" | "NovS1" | "NovS2"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_rules() {
        assert!(is_uid("Y0moqFplrX4"));
        assert!(!is_uid("0moqFplrX4Y"));
        assert!(!is_uid("Y0moqFplrX"));
        assert!(!is_uid("Y0moqFplr-4"));
        for _ in 0..100 {
            assert!(is_uid(&generate_uid()));
        }
        assert!(is_uid(&uid_from_seed("admin")));
    }

    #[test]
    fn value_type_rules() {
        assert_eq!(check("NUMBER", "5.7", false), None);
        assert_eq!(check("NUMBER", "-0.5", false), None);
        assert_eq!(
            check("NUMBER", "1.", false).unwrap().key,
            "value_not_numeric"
        );
        assert_eq!(
            check("NUMBER", "+1", false).unwrap().key,
            "value_not_numeric"
        );
        assert_eq!(
            check("NUMBER", "1e5", false).unwrap().key,
            "value_not_numeric"
        );
        assert_eq!(
            check("INTEGER_POSITIVE", "0", false).unwrap().key,
            "value_not_positive_integer"
        );
        assert_eq!(check("INTEGER_ZERO_OR_POSITIVE", "0", false), None);
        assert_eq!(check("BOOLEAN", "1", false).unwrap().key, "value_not_bool");
        assert_eq!(check("BOOLEAN", "1", true), None);
        assert_eq!(check("TRUE_ONLY", "TRUE", false), None);
        assert_eq!(
            check("DATE", "2024-02-30", false).unwrap().key,
            "value_not_valid_date"
        );
        assert_eq!(check("DATE", "2024-02-29", false), None);
        assert_eq!(check("DATETIME", "2024-02-29T10:11:12.000", false), None);
        assert_eq!(
            check("TIME", "24:00", false).unwrap().key,
            "value_not_valid_time"
        );
        assert!(is_period("202401") && is_period("2024Q1") && is_period("2024W53"));
        assert!(!is_period("202413") && !is_period("2024-01"));
    }
}
