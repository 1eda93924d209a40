//! `[sources.modbus]`: what a Modbus source polls (protocols.md §1.6). The raw table, its shape
//! check (unknown keys inside the nested tables, with path and line) and its validation into
//! [`ModbusSettings`], whose registers are the pure [`RegisterSpec`]s the poller reads.

use super::raw::{self, Kind, Node, RawDuration, Val};
use super::{Check, ConfigError, format_duration, millis, secs};
use crate::protocol::modbus::{RegisterKind, RegisterSpec, Thresholds, ValueType, WordOrder};
use serde::Deserialize;
use std::time::Duration;

/// Most registers one source polls (each is one request per poll).
pub const MAX_REGISTERS: usize = 64;

/// `[sources.modbus]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModbus {
    /// The device's unit id (slave address). Default 1; 1 ..= 247 on serial, 0 ..= 255 over TCP.
    pub unit_id: Option<Val<i64>>,
    /// How often every register is read. Default `"10s"`, `"100ms"` ..= `"1h"`.
    pub poll_interval: Option<Val<RawDuration>>,
    /// Wait for one answer before the poll counts as failed. Default `"2s"`, `"50ms"` ..= `"60s"`.
    pub timeout: Option<Val<RawDuration>>,
    /// One summary (min/mean/max/last per register) is stored per this period. Default `"15m"`,
    /// `"1s"` ..= `"24h"`, at least `poll_interval`.
    pub summary_interval: Option<Val<RawDuration>>,
    /// Failed polls in a row before a device fault is stored. Default 3, 1 ..= 100.
    pub fault_after: Option<Val<i64>>,
    /// `[[sources.modbus.registers]]`: at least one, at most 64.
    #[serde(default)]
    pub registers: Vec<RawRegister>,
}

/// `[[sources.modbus.registers]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegister {
    /// Required. 1 to 32 of `a-z`, `0-9`, `_`, `-`; unique in the source.
    pub name: Option<Val<String>>,
    /// Required. The 0-based protocol address (register 40001 is holding address 0).
    pub address: Option<Val<i64>>,
    /// `"holding"` (FC3), `"input"` (FC4), `"coil"` (FC1) or `"discrete"` (FC2). Default
    /// `"holding"`.
    pub kind: Option<Val<RegisterKind>>,
    /// holding/input: `"u16"`, `"i16"`, `"u32"`, `"i32"` or `"f32"`. Default `"u16"`.
    #[serde(rename = "type")]
    pub value_type: Option<Val<ValueType>>,
    /// 32-bit types: `"big"` (high word first) or `"little"`. Default `"big"`.
    pub word_order: Option<Val<WordOrder>>,
    /// value = raw × scale + offset. Default 1 (not 0).
    pub scale: Option<Val<f64>>,
    /// Default 0.
    pub offset: Option<Val<f64>>,
    /// Unit of the value, e.g. `"Cel"` (UCUM) or `"%"`.
    pub unit: Option<Val<String>>,
    /// An alarm is stored when the value goes below this …
    pub min: Option<Val<f64>>,
    /// … or above this.
    pub max: Option<Val<f64>>,
    /// The alarm clears once the value is this far back inside. Default 0.
    pub hysteresis: Option<Val<f64>>,
    /// The test code observations carry. Default the name.
    pub code: Option<Val<String>>,
    /// LOINC code (e.g. `"8310-5"`), kept with each observation.
    pub loinc: Option<Val<String>>,
}

/// `[sources.modbus]`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModbusSettings {
    pub unit_id: u8,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub summary_interval: Duration,
    pub fault_after: u32,
    pub registers: Vec<RegisterSpec>,
}

/// Pass 1 for the nested tables of `sources[i]`: shapes and unknown keys.
pub(super) fn check_shape(text: &str, i: usize, source: &Node, errors: &mut Vec<ConfigError>) {
    let Some(modbus) = source.get(&["modbus"]) else {
        return;
    };
    let path = format!("sources[{i}].modbus");
    let line = |n: &Node| n.start().map(|s| raw::line_at(text, s));
    let mut table = |path: &str, node: &Node, keys: &[&str]| match &node.kind {
        Kind::Table(entries) => {
            for (key, value) in entries {
                if !keys.contains(&key.as_str()) {
                    errors.push(ConfigError {
                        path: format!("{path}.{key}"),
                        line: line(value),
                        message: raw::unknown_key(key, keys),
                    });
                }
            }
            true
        }
        _ => {
            errors.push(ConfigError {
                path: path.to_owned(),
                line: line(node),
                message: "expected a table: write it as [sources.modbus]".into(),
            });
            false
        }
    };
    if !table(&path, modbus, raw::keys_of::<RawModbus>()) {
        return;
    }
    let Some(registers) = modbus.get(&["registers"]) else {
        return;
    };
    match &registers.kind {
        Kind::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                table(
                    &format!("{path}.registers[{n}]"),
                    item,
                    raw::keys_of::<RawRegister>(),
                );
            }
        }
        _ => errors.push(ConfigError {
            path: format!("{path}.registers"),
            line: line(registers),
            message: "expected a list of tables: write each as [[sources.modbus.registers]]".into(),
        }),
    }
}

impl Check<'_> {
    /// Validates `[sources.modbus]` of `sources[i]`. `None` only after reporting an error.
    pub(super) fn modbus(
        &mut self,
        i: usize,
        source: &raw::RawSource,
        serial: bool,
        table_line: Option<usize>,
    ) -> Option<ModbusSettings> {
        for (key, set) in [
            ("encoding", source.encoding.is_some()),
            ("receive_timeout", source.receive_timeout.is_some()),
        ] {
            if set {
                let path = format!("sources[{i}].{key}");
                self.error(
                    &path,
                    self.line_at_path(&path),
                    "not used by protocol \"modbus\" (it polls; see [sources.modbus])",
                );
            }
        }
        let base = format!("sources[{i}].modbus");
        let Some(m) = source.modbus.as_ref() else {
            self.error(
                &base,
                table_line,
                "required with protocol = \"modbus\": add [sources.modbus] with at least one [[sources.modbus.registers]]",
            );
            return None;
        };
        let p = |key: &str| format!("{base}.{key}");
        let modbus_line = self.line_at_path(&base).or(table_line);
        let unit_range = if serial { 1..=247 } else { 0..=255 };
        let unit_id = self.int(&p("unit_id"), &m.unit_id, 1, unit_range) as u8;
        let poll_interval = self.duration(
            &p("poll_interval"),
            &m.poll_interval,
            secs(10),
            millis(100)..=secs(3600),
        );
        let timeout = self.duration(&p("timeout"), &m.timeout, secs(2), millis(50)..=secs(60));
        let summary_interval = self.duration(
            &p("summary_interval"),
            &m.summary_interval,
            secs(900),
            secs(1)..=secs(86_400),
        );
        if summary_interval < poll_interval {
            let line = m.summary_interval.as_ref().and_then(|v| self.line(v));
            self.error(
                &p("summary_interval"),
                line.or(modbus_line),
                format!(
                    "{} is shorter than poll_interval ({})",
                    format_duration(summary_interval),
                    format_duration(poll_interval)
                ),
            );
        }
        let fault_after = self.int(&p("fault_after"), &m.fault_after, 3, 1..=100) as u32;
        if m.registers.is_empty() {
            self.error(
                &p("registers"),
                modbus_line,
                "at least one [[sources.modbus.registers]] is required",
            );
            return None;
        }
        if m.registers.len() > MAX_REGISTERS {
            self.error(
                &p("registers"),
                self.line_at_path(&p("registers")),
                format!(
                    "{} registers; at most {MAX_REGISTERS} per source",
                    m.registers.len()
                ),
            );
        }
        let mut registers = Vec::new();
        let mut ok = true;
        for (n, r) in m.registers.iter().enumerate() {
            let path = format!("{base}.registers[{n}]");
            match self.register(&path, r) {
                Some(spec) => {
                    if let Some(j) = registers
                        .iter()
                        .position(|s: &RegisterSpec| s.name == spec.name)
                    {
                        let line = r.name.as_ref().and_then(|v| self.line(v));
                        self.error(
                            &format!("{path}.name"),
                            line,
                            format!("\"{}\" is already used by registers[{j}]", spec.name),
                        );
                    }
                    registers.push(spec);
                }
                None => ok = false,
            }
        }
        ok.then_some(ModbusSettings {
            unit_id,
            poll_interval,
            timeout,
            summary_interval,
            fault_after,
            registers,
        })
    }

    fn register(&mut self, path: &str, r: &RawRegister) -> Option<RegisterSpec> {
        let p = |key: &str| format!("{path}.{key}");
        let table_line = self.line_at_path(path);
        let name = match self.required(
            &p("name"),
            &r.name,
            table_line,
            "e.g. name = \"temperature\"",
        ) {
            Some((name, _)) if super::valid_id(name) => Some(name.clone()),
            Some((name, line)) => {
                self.error(
                    &p("name"),
                    line,
                    format!("\"{name}\" is not a valid name (1 to 32 of a-z, 0-9, \"_\", \"-\")"),
                );
                None
            }
            None => None,
        };
        let kind = self
            .get(&p("kind"), &r.kind)
            .map_or(RegisterKind::Holding, |(&k, _)| k);
        let value_type = self
            .get(&p("type"), &r.value_type)
            .map_or(ValueType::U16, |(&t, _)| t);
        let word_order = self
            .get(&p("word_order"), &r.word_order)
            .map_or(WordOrder::Big, |(&w, _)| w);
        if kind.is_bit() {
            for (key, set) in [
                ("type", r.value_type.is_some()),
                ("word_order", r.word_order.is_some()),
                ("scale", r.scale.is_some()),
                ("offset", r.offset.is_some()),
            ] {
                if set {
                    self.error(
                        &p(key),
                        self.line_at_path(&p(key)),
                        format!(
                            "not used by kind \"{}\" (a bit reads as 0 or 1)",
                            kind.name()
                        ),
                    );
                }
            }
        }
        let count = if kind.is_bit() { 1 } else { value_type.words() };
        let address = match self.required(
            &p("address"),
            &r.address,
            table_line,
            "e.g. address = 0 for register 40001",
        ) {
            Some((&a, line)) => {
                let last = 65_536 - i64::from(count);
                if (0..=last).contains(&a) {
                    Some(a as u16)
                } else {
                    self.error(
                        &p("address"),
                        line,
                        format!("{a} is out of range (0 ..= {last}; the 0-based address, register 40001 is 0)"),
                    );
                    None
                }
            }
            None => None,
        };
        let scale = self.number(&p("scale"), &r.scale, 1.0);
        if scale == 0.0 {
            self.error(&p("scale"), self.line_at_path(&p("scale")), "must not be 0");
        }
        let offset = self.number(&p("offset"), &r.offset, 0.0);
        let min = r.min.as_ref().map(|_| self.number(&p("min"), &r.min, 0.0));
        let max = r.max.as_ref().map(|_| self.number(&p("max"), &r.max, 0.0));
        let hysteresis = self.number(&p("hysteresis"), &r.hysteresis, 0.0);
        if hysteresis < 0.0 {
            self.error(
                &p("hysteresis"),
                self.line_at_path(&p("hysteresis")),
                "must not be negative",
            );
        }
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo >= hi {
                self.error(
                    &p("max"),
                    self.line_at_path(&p("max")),
                    format!("{hi} is not above min ({lo})"),
                );
            } else if hysteresis * 2.0 >= hi - lo {
                self.error(
                    &p("hysteresis"),
                    self.line_at_path(&p("hysteresis")),
                    format!("{hysteresis} is too wide for the range {lo} ..= {hi} (less than half of it)"),
                );
            }
        }
        if r.hysteresis.is_some() && min.is_none() && max.is_none() {
            self.error(
                &p("hysteresis"),
                self.line_at_path(&p("hysteresis")),
                "needs min or max",
            );
        }
        let text =
            |check: &mut Self, key: &str, v: &Option<Val<String>>| match check.get(&p(key), v) {
                Some((s, line)) if s.trim().is_empty() => {
                    check.error(&p(key), line, "must not be empty");
                    None
                }
                Some((s, _)) => Some(s.clone()),
                None => None,
            };
        let unit = text(self, "unit", &r.unit);
        let code = text(self, "code", &r.code);
        let loinc = text(self, "loinc", &r.loinc);
        if let Some(l) = &loinc
            && !valid_loinc(l)
        {
            self.error(
                &p("loinc"),
                self.line_at_path(&p("loinc")),
                format!("\"{l}\" is not a LOINC code (digits, a dash, a check digit: \"8310-5\")"),
            );
        }
        Some(RegisterSpec {
            name: name?,
            address: address?,
            kind,
            value_type,
            word_order,
            scale,
            offset,
            unit,
            thresholds: (min.is_some() || max.is_some()).then_some(Thresholds {
                min,
                max,
                hysteresis,
            }),
            code,
            loinc,
        })
    }

    /// A finite number (integers are accepted), or `default` when absent.
    fn number(&mut self, path: &str, v: &Option<Val<f64>>, default: f64) -> f64 {
        match self.get(path, v) {
            Some((&n, _)) if n.is_finite() => n,
            Some((&n, line)) => {
                self.error(path, line, format!("{n} is not a finite number"));
                default
            }
            None => default,
        }
    }
}

/// `8310-5`: 1 to 7 digits, a dash, one check digit.
fn valid_loinc(s: &str) -> bool {
    s.split_once('-').is_some_and(|(num, check)| {
        (1..=7).contains(&num.len())
            && num.bytes().all(|b| b.is_ascii_digit())
            && check.len() == 1
            && check.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests;
