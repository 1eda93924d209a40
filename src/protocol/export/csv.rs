//! Delimited exports, read with the `csv` crate (RFC 4180 quoting; rows may differ in length).
//!
//! Two shapes:
//! - a flat table: the header at `header_row`, one result per row (narrow) or one per analyte
//!   column (wide, `analytes`);
//! - a report (GeneXpert's exported results): `Label,Value` rows set the sample, patient and
//!   assay; each table follows a `table_start` row, has its own header row and ends at a blank
//!   or one-cell section row.

use super::{Column, Decoded, ExportError, ExportMapping, Field, Row};

/// A header: the trimmed text of each column, to find columns by name.
struct Header(Vec<String>);

impl Header {
    /// 0-based index of a column, or `None` when the file has no such column.
    fn index(&self, c: &Column) -> Option<usize> {
        match c {
            Column::Number(n) => Some(n - 1),
            Column::Named(name) => self.0.iter().position(|h| h.eq_ignore_ascii_case(name)),
        }
    }

    fn name(&self, i: usize) -> String {
        self.0
            .get(i)
            .filter(|h| !h.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("column_{}", i + 1))
    }
}

/// Columns resolved against one header.
struct Plan {
    fields: Vec<(Field, usize, String)>,
    analytes: Vec<(String, usize, String)>,
    extra: Vec<(usize, String)>,
}

pub fn decode(text: &str, m: &ExportMapping) -> Decoded {
    let mut out = Decoded::default();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(m.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut context: Vec<(Field, String)> = Vec::new();
    let mut plan: Option<Plan> = None;
    let mut saw_table = false;
    let mut rows = 0usize;
    let mut lines = 0u64;
    let mut want_header_next = m.table_start.is_none();
    if m.table_start.is_none() && m.header_row == 0 {
        // No header: columns are addressed by number only.
        plan = Some(resolve(&Header(Vec::new()), m, 0, &mut out));
        want_header_next = false;
    }
    for result in reader.records() {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(lines + 1, |p| p.line());
                out.error(ExportError::Syntax {
                    line,
                    message: e.to_string(),
                });
                return out;
            }
        };
        let line = record.position().map_or(lines + 1, |p| p.line());
        lines = line;
        if record.len() > m.limits.max_columns {
            out.error(ExportError::TooManyColumns {
                line,
                max: m.limits.max_columns,
            });
            return out;
        }
        rows += 1;
        if rows > m.limits.max_rows {
            out.error(ExportError::TooManyRows {
                max: m.limits.max_rows,
            });
            return out;
        }
        let cells: Vec<&str> = record.iter().map(str::trim).collect();
        let blank = cells.iter().all(|c| c.is_empty());
        let first = cells.first().copied().unwrap_or("");
        let one_cell = !first.is_empty() && cells.iter().skip(1).all(|c| c.is_empty());

        if let Some(label) = &m.table_start {
            if first.eq_ignore_ascii_case(label) && one_cell {
                want_header_next = true;
                plan = None;
                continue;
            }
            if want_header_next {
                if blank {
                    continue;
                }
                want_header_next = false;
                saw_table = true;
                let header = Header(cells.iter().map(|c| (*c).to_owned()).collect());
                plan = Some(resolve(&header, m, line, &mut out));
                continue;
            }
            if plan.is_some() && (blank || one_cell) {
                plan = None;
            }
            if plan.is_none() {
                if let Some((field, _)) =
                    m.labels.iter().find(|(_, l)| l.eq_ignore_ascii_case(first))
                {
                    let value = cells.get(1).copied().unwrap_or("").to_owned();
                    context.retain(|(f, _)| f != field);
                    context.push((*field, value));
                }
                continue;
            }
        } else if want_header_next {
            if (line as usize) < m.header_row {
                continue;
            }
            want_header_next = false;
            let header = Header(cells.iter().map(|c| (*c).to_owned()).collect());
            plan = Some(resolve(&header, m, line, &mut out));
            if !out.errors.is_empty() {
                return out;
            }
            continue;
        }
        if blank {
            continue;
        }
        if let Some(plan) = &plan {
            row(&cells, line, plan, &context, m, &mut out);
        }
    }
    if m.table_start.is_none() && want_header_next {
        out.error(ExportError::NoHeader {
            lines,
            header_row: m.header_row,
        });
    } else if let (Some(label), false) = (&m.table_start, saw_table) {
        out.error(ExportError::NoTable {
            label: label.clone(),
        });
    }
    out
}

/// Find every mapped column in the header; a missing one is an error naming it.
fn resolve(header: &Header, m: &ExportMapping, line: u64, out: &mut Decoded) -> Plan {
    let mut find = |c: &Column| -> Option<(usize, String)> {
        match header.index(c) {
            Some(i) => Some((i, header.name(i))),
            None => {
                out.error(ExportError::MissingColumn {
                    line,
                    column: c.to_string(),
                });
                None
            }
        }
    };
    let fields = m
        .fields
        .iter()
        .filter_map(|(f, c)| find(c).map(|(i, n)| (*f, i, n)))
        .collect();
    let analytes = m
        .analytes
        .iter()
        .filter_map(|(code, c)| find(c).map(|(i, n)| (code.clone(), i, n)))
        .collect();
    // Extra columns are details, not results: one that a newer software version dropped is
    // skipped rather than refusing the file.
    let extra = m
        .extra
        .iter()
        .filter_map(|c| header.index(c).map(|i| (i, header.name(i))))
        .collect();
    Plan {
        fields,
        analytes,
        extra,
    }
}

/// One data row → its observation(s).
fn row(
    cells: &[&str],
    line: u64,
    plan: &Plan,
    context: &[(Field, String)],
    m: &ExportMapping,
    out: &mut Decoded,
) {
    let cell = |i: usize| cells.get(i).copied().unwrap_or("");
    let mut r = Row::default();
    let mut ok = true;
    // Labels first, so a column of the row overrides its report section's label.
    for (field, label) in context {
        let text = Some(label.clone()).filter(|t| !t.is_empty());
        let what = || format!("{} label", field.key());
        if let Err(e) = r.set(*field, text, line, what, m) {
            out.error(e);
            ok = false;
        }
    }
    for (field, i, name) in &plan.fields {
        if *i >= cells.len() {
            out.error(ExportError::MissingColumn {
                line,
                column: format!("column \"{name}\""),
            });
            ok = false;
            continue;
        }
        let text = Some(cell(*i).to_owned()).filter(|t| !t.is_empty());
        if let Err(e) = r.set(*field, text, line, || format!("column \"{name}\""), m) {
            out.error(e);
            ok = false;
        }
    }
    for (i, name) in &plan.extra {
        let v = cell(*i);
        if !v.is_empty() {
            r.base.extra.insert(name.clone(), v.to_owned());
        }
    }
    if !ok {
        return;
    }
    if m.analytes.is_empty() {
        if r.test_code.is_none() && m.test.is_none() {
            let column = m
                .column(Field::TestCode)
                .map_or_else(|| "test code".to_owned(), ToString::to_string);
            out.error(ExportError::NoTestCode { line, column });
            return;
        }
        if let (None, Some(c)) = (&r.value, m.column(Field::Value)) {
            out.error(ExportError::EmptyCell {
                line,
                column: c.to_string(),
            });
            return;
        }
    }
    let analytes = plan
        .analytes
        .iter()
        .filter(|(_, i, _)| !cell(*i).is_empty())
        .map(|(code, i, _)| (code.clone(), cell(*i).to_owned()))
        .collect();
    r.finish(analytes, m, out);
}
