//! Fridge temperature charts: for each Modbus source's temperature register, the stored
//! observations of a window (7 days unless `?days=` says otherwise) as one [`Series`]: a
//! downsampled min/mean/max trace, the allowed band from the register's thresholds, the alarm
//! periods, the current value, the window's min and max and the number of excursions.
//! The dashboard draws it as inline SVG ([`svg`]); `GET /api/v1/devices/{id}/temperatures`
//! returns the same series as JSON.
//!
//! A Modbus source stores a summary per `summary_interval` (min, mean, max, last of its polls)
//! and an observation for every alarm and clear, so a week is at most a few thousand rows; they
//! are read through the `observations_code_time` index and merged into at most [`MAX_POINTS`]
//! time buckets, each keeping the lowest minimum and highest maximum of what it merged.

use super::api::ApiError;
use super::{Shared, Web, WebError};
use crate::config::{Config, Protocol};
use crate::protocol::modbus::RegisterSpec;
use crate::record::Observation;
use crate::store::history::{self, RegisterRow};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Points of a chart after downsampling (one per time bucket); a 360 px phone shows < 2 px each.
pub const MAX_POINTS: usize = 180;
/// Window of a chart unless `?days=` says otherwise.
pub const DEFAULT_DAYS: u32 = 7;
/// Longest window `?days=` may ask for.
pub const MAX_DAYS: u32 = 31;

/// `?days=N` of the dashboard and the API.
#[derive(Debug, Default, Deserialize)]
pub struct Window {
    pub days: Option<u32>,
}

impl Window {
    pub fn days(&self) -> u32 {
        self.days.unwrap_or(DEFAULT_DAYS).clamp(1, MAX_DAYS)
    }
}

/// One point of the trace: a summary window (or a single reading) at unix time `t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: i64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

/// Merge `points` (sorted by `t`, within `from..=to`) into at most `limit` equal time buckets.
/// A bucket keeps the time of its first point, the lowest minimum, the highest maximum and the
/// mean of the means: the window's extremes survive any amount of downsampling.
pub fn downsample(points: &[Point], from: i64, to: i64, limit: usize) -> Vec<Point> {
    if points.len() <= limit || limit == 0 {
        return points.to_vec();
    }
    let span = (to - from).max(1) as i128;
    let mut out: Vec<(usize, Point, usize)> = Vec::with_capacity(limit);
    for p in points {
        let offset = (p.t - from).clamp(0, to - from) as i128;
        let bucket = ((offset * limit as i128) / (span + 1)) as usize;
        match out.last_mut() {
            Some((b, acc, n)) if *b == bucket => {
                acc.min = acc.min.min(p.min);
                acc.max = acc.max.max(p.max);
                acc.mean += p.mean;
                *n += 1;
            }
            _ => out.push((bucket, *p, 1)),
        }
    }
    out.into_iter()
        .map(|(_, mut p, n)| {
            p.mean /= n as f64;
            p
        })
        .collect()
}

/// A reading with its time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reading {
    pub at: String,
    pub value: f64,
}

/// An alarm of the register: from its raise to its clear (`to` = `None`: still open).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlarmPeriod {
    pub from: String,
    pub to: Option<String>,
    /// `high` or `low` (`None` for a period known only from its clear).
    pub side: Option<String>,
    pub value: Option<f64>,
}

/// The allowed range, from the register's thresholds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Band {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Everything a chart shows, as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub source: String,
    pub register: String,
    pub code: String,
    pub unit: Option<String>,
    pub band: Band,
    pub from: String,
    pub to: String,
    pub days: u32,
    /// Stored observations read for the window (before downsampling).
    pub observations: usize,
    pub max_points: usize,
    pub points: Vec<Point>,
    pub current: Option<Reading>,
    pub min: Option<Reading>,
    pub max: Option<Reading>,
    /// Alarm periods that overlap the window: alarms raised in it, and earlier ones cleared in it.
    pub excursions: usize,
    pub alarms: Vec<AlarmPeriod>,
}

fn unix(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn stamp(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The series of one register from its stored rows (oldest first) for `from..=to` (unix s).
pub fn series(
    source: &str,
    spec: &RegisterSpec,
    rows: &[RegisterRow],
    from: i64,
    to: i64,
) -> Series {
    let num = |o: &Observation, k: &str| o.extra.get(k).and_then(|v| v.parse::<f64>().ok());
    let mut points = Vec::with_capacity(rows.len());
    let mut current: Option<Reading> = None;
    let mut min: Option<Reading> = None;
    let mut max: Option<Reading> = None;
    let mut alarms: Vec<AlarmPeriod> = Vec::new();
    let mut open: Option<usize> = None;
    for row in rows {
        let (Some(t), Ok(o)) = (
            unix(&row.observed_at),
            serde_json::from_str::<Observation>(&row.body),
        ) else {
            continue;
        };
        let value = o.value.as_deref().and_then(|v| v.parse::<f64>().ok());
        let event = o.extra.get("modbus_event").map(String::as_str);
        let (lo, mean, hi, last) = match (event, value) {
            (Some("summary"), Some(mean)) => (
                num(&o, "min").unwrap_or(mean),
                mean,
                num(&o, "max").unwrap_or(mean),
                num(&o, "last").unwrap_or(mean),
            ),
            (Some("alarm" | "alarm_clear"), Some(v)) => (v, v, v, v),
            _ => continue,
        };
        points.push(Point {
            t,
            min: lo,
            mean,
            max: hi,
        });
        let at = row.observed_at.clone();
        current = Some(Reading {
            at: at.clone(),
            value: last,
        });
        if min.as_ref().is_none_or(|m| lo < m.value) {
            min = Some(Reading {
                at: at.clone(),
                value: lo,
            });
        }
        if max.as_ref().is_none_or(|m| hi > m.value) {
            max = Some(Reading {
                at: at.clone(),
                value: hi,
            });
        }
        match event {
            Some("alarm") => {
                let side = if o.flags.iter().any(|f| f == "L") {
                    "low"
                } else {
                    "high"
                };
                alarms.push(AlarmPeriod {
                    from: at,
                    to: None,
                    side: Some(side.into()),
                    value,
                });
                open = Some(alarms.len() - 1);
            }
            Some("alarm_clear") => match open.take() {
                Some(i) => alarms[i].to = Some(at),
                None => {
                    // Raised before the window: the period starts with the window.
                    let since = o
                        .extra
                        .get("alarm_since")
                        .and_then(|s| unix(s))
                        .unwrap_or(from);
                    alarms.push(AlarmPeriod {
                        from: stamp(since.max(from)),
                        to: Some(at),
                        side: None,
                        value: None,
                    });
                }
            },
            _ => {}
        }
    }
    let band = spec
        .thresholds
        .map(|t| Band {
            min: t.min,
            max: t.max,
        })
        .unwrap_or(Band {
            min: None,
            max: None,
        });
    Series {
        source: source.to_owned(),
        register: spec.name.clone(),
        code: spec.code(),
        unit: spec.unit.clone(),
        band,
        from: stamp(from),
        to: stamp(to),
        days: ((to - from) / 86_400).max(1) as u32,
        observations: points.len(),
        max_points: MAX_POINTS,
        points: downsample(&points, from, to, MAX_POINTS),
        current,
        min,
        max,
        excursions: alarms.len(),
        alarms,
    }
}

/// Is this register a temperature? Its unit says so (`Cel`, `°C`, `degC`, `K`, `°F`), or its name.
fn is_temperature(spec: &RegisterSpec) -> bool {
    let unit = spec.unit.as_deref().unwrap_or("").to_ascii_lowercase();
    matches!(
        unit.as_str(),
        "cel" | "°c" | "degc" | "c" | "°f" | "degf" | "k"
    ) || spec.name.to_ascii_lowercase().contains("temp")
}

/// Every Modbus source with its temperature registers, in config order.
pub fn fridges(config: &Config) -> Vec<(String, Vec<RegisterSpec>)> {
    config
        .sources
        .iter()
        .filter_map(|s| match &s.protocol {
            Protocol::Modbus(m) => Some((
                s.id.0.clone(),
                m.registers
                    .iter()
                    .filter(|r| is_temperature(r))
                    .cloned()
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        })
        .filter(|(_, regs)| !regs.is_empty())
        .collect()
}

/// The series of every temperature register of `source` over the last `days`.
pub async fn source_series(
    web: &Web,
    source: &str,
    registers: Vec<RegisterSpec>,
    days: u32,
) -> Result<Vec<Series>, WebError> {
    let to = OffsetDateTime::now_utc().unix_timestamp();
    let from = to - i64::from(days) * 86_400;
    // Modbus documents state UTC with seconds and a `Z`: compare in that form.
    let from_text = OffsetDateTime::from_unix_timestamp(from)
        .map(crate::protocol::modbus::stamp)
        .unwrap_or_default();
    let id = source.to_owned();
    let codes: Vec<String> = registers.iter().map(RegisterSpec::code).collect();
    let rows = web
        .read(move |c| {
            codes
                .iter()
                .map(|code| history::register_rows(c, &id, code, &from_text))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    Ok(registers
        .iter()
        .zip(rows)
        .map(|(spec, rows)| series(source, spec, &rows, from, to))
        .collect())
}

/// A dashboard chart: the series and its SVG.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub series: Series,
    pub svg: String,
    /// The unit for people (`°C`).
    pub unit: String,
}

/// Charts of every fridge for the dashboard.
pub async fn dashboard(web: &Web, w: &Window) -> Result<Vec<Chart>, WebError> {
    let mut out = Vec::new();
    for (id, regs) in fridges(&web.config()) {
        for series in source_series(web, &id, regs, w.days()).await? {
            let svg = svg(&series);
            let unit = series
                .unit
                .as_deref()
                .map(unit_text)
                .unwrap_or("")
                .to_owned();
            out.push(Chart { series, svg, unit });
        }
    }
    Ok(out)
}

/// `GET /api/v1/devices/{id}/temperatures?days=N`
pub async fn api_temperatures(
    State(web): State<Shared>,
    Path(id): Path<String>,
    Query(w): Query<Window>,
) -> Result<Json<Vec<Series>>, ApiError> {
    let regs = fridges(&web.config())
        .into_iter()
        .find(|(s, _)| *s == id)
        .map(|(_, r)| r)
        .ok_or_else(|| {
            WebError::NotFound(format!("Modbus source {id} with a temperature register"))
        })?;
    Ok(Json(source_series(&web, &id, regs, w.days()).await?))
}

/// Inline SVG of one series: band shaded green, alarm periods red, the min–max envelope and the
/// mean line, with the band limits and the window's days labelled. Sized by its viewBox
/// (360 × 190) so it fills a phone's width.
pub fn svg(s: &Series) -> String {
    let (w, h) = (360.0_f64, 190.0_f64);
    let (left, right, top, bottom) = (34.0, 6.0, 8.0, 20.0);
    let (Some(from), Some(to)) = (unix(&s.from), unix(&s.to)) else {
        return String::new();
    };
    let mut lo = s.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
    let mut hi = s
        .points
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    for v in [s.band.min, s.band.max].into_iter().flatten() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 10.0);
    }
    let margin = ((hi - lo) * 0.1).max(0.5);
    let (lo, hi) = (lo - margin, hi + margin);
    let x = |t: i64| left + (t - from) as f64 / (to - from).max(1) as f64 * (w - left - right);
    let y = |v: f64| top + (hi - v) / (hi - lo) * (h - top - bottom);
    let unit = s.unit.as_deref().map(unit_text).unwrap_or("");
    let mut out = format!(
        "<svg class=\"fridge\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{} {} over {} days\">",
        esc(&s.source),
        esc(&s.register),
        s.days
    );
    // The allowed band.
    let (bmin, bmax) = (s.band.min.unwrap_or(lo), s.band.max.unwrap_or(hi));
    if s.band.min.is_some() || s.band.max.is_some() {
        out += &format!(
            "<rect class=\"band\" x=\"{left}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1a7f37\" fill-opacity=\"0.12\"/>",
            y(bmax),
            w - left - right,
            (y(bmin) - y(bmax)).max(0.0)
        );
        for v in [s.band.min, s.band.max].into_iter().flatten() {
            out += &format!(
                "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1a7f37\" stroke-dasharray=\"3 3\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
                w - right,
                y(v),
                y(v),
                left - 3.0,
                y(v) + 3.0,
                num(v)
            );
        }
    }
    // Alarm periods.
    for a in &s.alarms {
        let a_from = unix(&a.from).unwrap_or(from).max(from);
        let a_to = a.to.as_deref().and_then(unix).unwrap_or(to).min(to);
        let width = (x(a_to) - x(a_from)).max(2.0);
        out += &format!(
            "<rect class=\"alarm\" x=\"{:.1}\" y=\"{top}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#cf222e\" fill-opacity=\"0.18\"><title>alarm {}{}</title></rect>",
            x(a_from),
            h - top - bottom,
            esc(&a.from),
            a.to.as_deref()
                .map(|t| format!(" – {}", esc(t)))
                .unwrap_or(" – still open".into())
        );
    }
    // Day ticks.
    let mut day = from - from.rem_euclid(86_400) + 86_400;
    let step = if s.days > 10 { 86_400 * 7 } else { 86_400 };
    while day < to {
        let label = stamp(day);
        out += &format!(
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{1:.1}\" stroke=\"#d0d7de\"/>\
             <text x=\"{0:.1}\" y=\"{2}\" font-size=\"10\" text-anchor=\"middle\">{3}</text>",
            x(day),
            h - bottom,
            h - 6.0,
            label.get(5..10).unwrap_or("")
        );
        day += step;
    }
    if s.points.is_empty() {
        out += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">no readings in the last {} days</text>",
            (w + left) / 2.0,
            h / 2.0,
            s.days
        );
    } else {
        let env: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t), y(p.max)))
            .chain(
                s.points
                    .iter()
                    .rev()
                    .map(|p| format!("{:.1},{:.1}", x(p.t), y(p.min))),
            )
            .collect();
        let mean: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.t), y(p.mean)))
            .collect();
        out += &format!(
            "<polygon class=\"range\" points=\"{}\" fill=\"#1f6feb\" fill-opacity=\"0.25\" stroke=\"#1f6feb\" stroke-width=\"0.5\"/>\
             <polyline class=\"mean\" points=\"{}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\"/>",
            env.join(" "),
            mean.join(" ")
        );
    }
    out += &format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{:.1}\" font-size=\"10\">{unit}</text></svg>",
        w - left - right,
        h - top - bottom,
        top + 8.0
    );
    out
}

/// `Cel` (UCUM) → `°C` for people.
pub fn unit_text(u: &str) -> &str {
    match u {
        "Cel" => "°C",
        "[degF]" => "°F",
        other => other,
    }
}

fn num(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, v: f64) -> Point {
        Point {
            t,
            min: v,
            mean: v,
            max: v,
        }
    }

    #[test]
    fn downsampling_a_week_of_minutes_keeps_the_extremes_and_the_limit() {
        let (from, n) = (1_700_000_000_i64, 7 * 24 * 60);
        let mut pts: Vec<Point> = (0..n)
            .map(|i| p(from + i * 60, 5.0 + ((i % 37) as f64) / 100.0))
            .collect();
        pts[4321].max = 11.7; // one warm minute
        pts[4321].mean = 11.7;
        pts[9000].min = -1.25; // one freezing minute
        let out = downsample(&pts, from, from + n * 60, MAX_POINTS);
        assert!(
            out.len() <= MAX_POINTS && out.len() > MAX_POINTS / 2,
            "{}",
            out.len()
        );
        let hi = out.iter().map(|p| p.max).fold(f64::MIN, f64::max);
        let lo = out.iter().map(|p| p.min).fold(f64::MAX, f64::min);
        assert_eq!((lo, hi), (-1.25, 11.7));
        assert!(out.windows(2).all(|w| w[0].t < w[1].t), "time order kept");
        // Under the limit nothing changes.
        assert_eq!(
            downsample(&pts[..10], from, from + 600, MAX_POINTS),
            pts[..10]
        );
    }
}
