//! Dates as export files write them (`25/05/2012 15:22`, `20120525152210`, `5/25/2012 3:22 PM`)
//! → the ISO 8601 local time every Observation carries (`2012-05-25T15:22:00`). No zone is
//! invented: the instrument's clock is local time.

/// A strftime-like pattern: `%Y` `%y` `%m` `%d` `%H` `%I` `%M` `%S` `%p` (AM/PM) `%b` (Jan…)
/// `%%`; any other character must match itself. Numbers are 1–2 digits (`%Y` 4) unless the
/// pattern puts two directives side by side, where they take exactly 2 (4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    pattern: String,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Literal(char),
    Year4,
    Year2,
    Month,
    MonthName,
    Day,
    Hour24,
    Hour12,
    Minute,
    Second,
    AmPm,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl DateFormat {
    /// Parse a pattern; the error names the bad directive.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                items.push(Item::Literal(c));
                continue;
            }
            items.push(match chars.next() {
                Some('Y') => Item::Year4,
                Some('y') => Item::Year2,
                Some('m') => Item::Month,
                Some('b') => Item::MonthName,
                Some('d') => Item::Day,
                Some('H') => Item::Hour24,
                Some('I') => Item::Hour12,
                Some('M') => Item::Minute,
                Some('S') => Item::Second,
                Some('p') => Item::AmPm,
                Some('%') => Item::Literal('%'),
                Some(other) => {
                    return Err(format!(
                        "unknown directive %{other} (use %Y %y %m %b %d %H %I %M %S %p)"
                    ));
                }
                None => return Err("ends with a lone %".into()),
            });
        }
        if !items.iter().any(|i| matches!(i, Item::Year4 | Item::Year2))
            || !items
                .iter()
                .any(|i| matches!(i, Item::Month | Item::MonthName))
            || !items.contains(&Item::Day)
        {
            return Err("needs a year (%Y or %y), a month (%m or %b) and a day (%d)".into());
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            items,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// `text` → `YYYY-MM-DDTHH:MM:SS`, or `None` when it does not match or is not a real date.
    pub fn to_iso(&self, text: &str) -> Option<String> {
        let s = text.trim().as_bytes();
        let mut pos = 0;
        let (mut y, mut mo, mut d, mut h, mut mi, mut sec) = (None, None, None, 0u32, 0u32, 0u32);
        let mut pm = None;
        let mut hour12 = false;
        for (i, item) in self.items.iter().enumerate() {
            // Two directives side by side (`%Y%m%d`) need fixed widths to be told apart.
            let packed = self
                .items
                .get(i + 1)
                .is_some_and(|n| !matches!(n, Item::Literal(_)));
            let mut num = |max: usize| -> Option<u32> {
                let len = s[pos..]
                    .iter()
                    .take(max)
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if len == 0 || (packed && len != max) {
                    return None;
                }
                let v = std::str::from_utf8(&s[pos..pos + len]).ok()?.parse().ok()?;
                pos += len;
                Some(v)
            };
            match *item {
                Item::Literal(c) => {
                    let mut buf = [0u8; 4];
                    let lit = c.encode_utf8(&mut buf).as_bytes();
                    if c == ' ' {
                        // One space in the pattern matches any run of spaces.
                        let n = s[pos..].iter().take_while(|&&b| b == b' ').count();
                        if n == 0 {
                            return None;
                        }
                        pos += n;
                    } else if s[pos..].starts_with(lit) {
                        pos += lit.len();
                    } else {
                        return None;
                    }
                }
                Item::Year4 => y = Some(num(4)?),
                Item::Year2 => y = Some(2000 + num(2)?),
                Item::Month => mo = Some(num(2)?),
                Item::MonthName => {
                    let word = s.get(pos..pos + 3)?.to_ascii_lowercase();
                    let m = MONTHS.iter().position(|m| m.as_bytes() == word)?;
                    mo = Some(m as u32 + 1);
                    pos += 3;
                }
                Item::Day => d = Some(num(2)?),
                Item::Hour24 => h = num(2)?,
                Item::Hour12 => {
                    h = num(2)?;
                    hour12 = true;
                }
                Item::Minute => mi = num(2)?,
                Item::Second => sec = num(2)?,
                Item::AmPm => {
                    let word = s.get(pos..pos + 2)?.to_ascii_uppercase();
                    pm = Some(match word.as_slice() {
                        b"AM" => false,
                        b"PM" => true,
                        _ => return None,
                    });
                    pos += 2;
                }
            }
        }
        if pos != s.len() {
            return None;
        }
        if hour12 {
            if !(1..=12).contains(&h) {
                return None;
            }
            h = match (h, pm.unwrap_or(false)) {
                (12, false) => 0,
                (12, true) => 12,
                (h, true) => h + 12,
                (h, false) => h,
            };
        }
        iso(y?, mo?, d?, h, mi, sec)
    }
}

/// ISO 8601 text (`2012-05-25 15:22:10`, `2012-05-25T15:22`, `2012-05-25`) → canonical form.
pub fn iso_to_canonical(text: &str) -> Option<String> {
    let t = text.trim();
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim())),
        None => (t, None),
    };
    let mut ymd = date.split('-');
    let (y, m, d) = (ymd.next()?, ymd.next()?, ymd.next()?);
    if ymd.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let num = |s: &str| -> Option<u32> {
        (s.len() == 2 || s.len() == 4)
            .then(|| s.parse().ok())
            .flatten()
    };
    let (mut h, mut mi, mut s) = (0, 0, 0);
    if let Some(time) = time {
        // Fractions of a second and a zone are dropped: observed_at is local wall-clock time.
        let time = time.split(['.', 'Z', '+']).next().unwrap_or(time);
        let mut parts = time.split(':');
        h = num(parts.next()?)?;
        mi = num(parts.next()?)?;
        if let Some(sec) = parts.next() {
            s = num(sec)?;
        }
    }
    iso(num(y)?, num(m)?, num(d)?, h, mi, s)
}

fn iso(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<String> {
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_first_month_first_packed_and_12_hour_patterns() {
        let f = DateFormat::parse("%d/%m/%Y %H:%M").unwrap();
        assert_eq!(f.to_iso("25/05/2012 15:22").unwrap(), "2012-05-25T15:22:00");
        assert_eq!(f.to_iso("5/5/2012 9:02").unwrap(), "2012-05-05T09:02:00");
        assert_eq!(f.to_iso("32/05/2012 15:22"), None);
        assert_eq!(f.to_iso("25/05/2012"), None);
        let f = DateFormat::parse("%Y%m%d%H%M%S").unwrap();
        assert_eq!(f.to_iso("20120525152210").unwrap(), "2012-05-25T15:22:10");
        let f = DateFormat::parse("%m/%d/%Y %I:%M %p").unwrap();
        assert_eq!(
            f.to_iso("5/25/2012 3:22 PM").unwrap(),
            "2012-05-25T15:22:00"
        );
        assert_eq!(
            f.to_iso("5/25/2012 12:05 AM").unwrap(),
            "2012-05-25T00:05:00"
        );
        let f = DateFormat::parse("%d-%b-%y").unwrap();
        assert_eq!(f.to_iso("19-Mar-13").unwrap(), "2013-03-19T00:00:00");
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(DateFormat::parse("%d/%q/%Y").unwrap_err().contains("%q"));
        assert!(
            DateFormat::parse("%H:%M")
                .unwrap_err()
                .contains("needs a year")
        );
    }

    #[test]
    fn iso_forms_are_canonicalised() {
        assert_eq!(
            iso_to_canonical("2012-05-25 15:22:10").unwrap(),
            "2012-05-25T15:22:10"
        );
        assert_eq!(
            iso_to_canonical("2012-05-25T15:22").unwrap(),
            "2012-05-25T15:22:00"
        );
        assert_eq!(
            iso_to_canonical("2012-05-25").unwrap(),
            "2012-05-25T00:00:00"
        );
        assert_eq!(iso_to_canonical("25/05/2012"), None);
        assert_eq!(iso_to_canonical("2012-02-30"), None);
    }
}
