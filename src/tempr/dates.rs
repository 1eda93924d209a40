//! Date/time conversion into the forms DHIS2 writes back (dhis2.md §2.2): date-times as
//! `yyyy-MM-dd'T'HH:mm:ss.SSS`, dates as `yyyy-MM-dd`, monthly periods as `yyyyMM` (§2.4).
//!
//! Accepted inputs: ISO 8601 as decoders store it (`2025-05-14T13:21:03`, optional fraction,
//! optional `Z`/`±hh:mm`, or a bare `2025-05-14`) and ASTM timestamps (`YYYYMMDD`,
//! `YYYYMMDDHHMM`, `YYYYMMDDHHMMSS`). A zone-less time is kept as the device stated it (no zone
//! is invented); a time with a zone is converted to UTC and written with a trailing `Z`.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// A parsed timestamp: the wall-clock time, and whether it carried a zone (then it is UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub at: PrimitiveDateTime,
    pub utc: bool,
}

/// Parse an ISO 8601 or ASTM timestamp; `None` when it is neither or names an impossible date.
pub fn parse(input: &str) -> Option<Stamp> {
    let s = input.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_astm(s);
    }
    parse_iso(s)
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS` (+ `Z` when the input had a zone).
pub fn dhis2_datetime(input: &str) -> Option<String> {
    let st = parse(input)?;
    let (d, t) = (st.at.date(), st.at.time());
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond(),
        if st.utc { "Z" } else { "" }
    ))
}

/// `yyyy-MM-dd`.
pub fn dhis2_date(input: &str) -> Option<String> {
    let d = parse(input)?.at.date();
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

/// The monthly period `yyyyMM`.
pub fn dhis2_month(input: &str) -> Option<String> {
    let d = parse(input)?.at.date();
    Some(format!("{:04}{:02}", d.year(), u8::from(d.month())))
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn date(y: &str, m: &str, d: &str) -> Option<Date> {
    let year = i32::try_from(num(y)?).ok()?;
    let month = Month::try_from(u8::try_from(num(m)?).ok()?).ok()?;
    Date::from_calendar_date(year, month, u8::try_from(num(d)?).ok()?).ok()
}

fn hms(h: &str, m: &str, s: &str, milli: u16) -> Option<Time> {
    let h = u8::try_from(num(h)?).ok()?;
    let m = u8::try_from(num(m)?).ok()?;
    let s = u8::try_from(num(s)?).ok()?;
    Time::from_hms_milli(h, m, s, milli).ok()
}

fn parse_astm(s: &str) -> Option<Stamp> {
    let d = date(s.get(0..4)?, s.get(4..6)?, s.get(6..8)?)?;
    let t = match s.len() {
        8 => Time::MIDNIGHT,
        12 => hms(s.get(8..10)?, s.get(10..12)?, "0", 0)?,
        14 => hms(s.get(8..10)?, s.get(10..12)?, s.get(12..14)?, 0)?,
        _ => return None,
    };
    Some(Stamp {
        at: PrimitiveDateTime::new(d, t),
        utc: false,
    })
}

fn parse_iso(s: &str) -> Option<Stamp> {
    if !s.is_ascii() {
        return None;
    }
    let (date_part, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut ymd = date_part.split('-');
    let (y, m, d) = (ymd.next()?, ymd.next()?, ymd.next()?);
    if ymd.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let day = date(y, m, d)?;
    let Some(rest) = rest else {
        return Some(Stamp {
            at: PrimitiveDateTime::new(day, Time::MIDNIGHT),
            utc: false,
        });
    };
    // Split off the zone: `Z`, `+hh:mm`, `-hh:mm`, `+hhmm`.
    let (clock, zone) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, Some(UtcOffset::UTC))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], Some(offset(&rest[i..])?))
    } else {
        (rest, None)
    };
    let (main, frac) = match clock.split_once(['.', ',']) {
        Some((main, frac)) => (main, Some(frac)),
        None => (clock, None),
    };
    let mut parts = main.split(':');
    let h = parts.next()?;
    let mi = parts.next()?;
    let se = parts.next().unwrap_or("0");
    if parts.next().is_some() || h.len() != 2 || mi.len() != 2 {
        return None;
    }
    let milli = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded: String = f.chars().chain("000".chars()).take(3).collect();
            u16::try_from(num(&padded)?).ok()?
        }
        Some(_) => return None,
    };
    let local = PrimitiveDateTime::new(day, hms(h, mi, se, milli)?);
    match zone {
        None => Some(Stamp {
            at: local,
            utc: false,
        }),
        Some(off) => {
            let utc = local.assume_offset(off).to_offset(UtcOffset::UTC);
            Some(Stamp {
                at: PrimitiveDateTime::new(utc.date(), utc.time()),
                utc: true,
            })
        }
    }
}

fn offset(z: &str) -> Option<UtcOffset> {
    let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return None;
    }
    let h = i8::try_from(num(&digits[..2])?).ok()?;
    let m = i8::try_from(num(&digits[2..])?).ok()?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_iso_and_astm_forms_to_dhis2_forms() {
        let cases = [
            ("2025-05-14T13:21:03", "2025-05-14T13:21:03.000"),
            ("2025-05-14T13:21:03.5", "2025-05-14T13:21:03.500"),
            ("2025-05-14T13:21", "2025-05-14T13:21:00.000"),
            ("2025-05-14", "2025-05-14T00:00:00.000"),
            ("20250514132103", "2025-05-14T13:21:03.000"),
            ("202505141321", "2025-05-14T13:21:00.000"),
            ("20250514", "2025-05-14T00:00:00.000"),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.000Z"),
            ("2026-11-22T12:00:00+02:00", "2026-11-22T10:00:00.000Z"),
            ("2026-11-22T00:30:00-01:00", "2026-11-22T01:30:00.000Z"),
        ];
        for (input, want) in cases {
            assert_eq!(dhis2_datetime(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(dhis2_date("20250514132103").as_deref(), Some("2025-05-14"));
        assert_eq!(
            dhis2_month("2025-05-14T13:21:03").as_deref(),
            Some("202505")
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for bad in [
            "",
            "NOT DETECTED",
            "2025-13-01",
            "2025-02-30",
            "20250230",
            "2025051",
            "2025-05-14T25:00:00",
            "2025-05-14Tx",
            "٢٠٢٥",
        ] {
            assert_eq!(dhis2_datetime(bad), None, "{bad:?}");
        }
    }
}
