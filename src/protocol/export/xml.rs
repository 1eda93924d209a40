//! XML exports, read with the strict tokenizer of the POCT1 decoder (no DTDs, bounded depth).
//! Each element whose path ends with `record` is one result; mapped values are paths relative
//! to it: `Value` (a child's text or `V` attribute), `@unit` (an attribute), `Patient/@id`,
//! `../SampleID` (a sibling of the record, e.g. the sample that holds several results).

use super::{Decoded, ExportError, ExportMapping, Field, Row};
use crate::config::Encoding;
use crate::protocol::poct1::xml::{Element, parse};

pub fn decode(text: &str, m: &ExportMapping) -> Decoded {
    let mut out = Decoded::default();
    // The text is already UTF-8; an `encoding="…"` in the declaration must not decode it again.
    let body = blank_declaration(text);
    let root = match parse(body.as_bytes(), Encoding::Utf8) {
        Ok(root) => root,
        Err(e) => {
            out.error(ExportError::Xml(with_line(text, &e.to_string())));
            return out;
        }
    };
    let record: Vec<&str> = m
        .record
        .as_deref()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut found = Vec::new();
    let mut chain = vec![&root];
    collect(&root, &mut chain, &record, &mut found);
    if found.len() > m.limits.max_rows {
        out.error(ExportError::TooManyRows {
            max: m.limits.max_rows,
        });
        return out;
    }
    for ancestors in found {
        one(text, &ancestors, m, &mut out);
    }
    out
}

fn blank_declaration(text: &str) -> std::borrow::Cow<'_, str> {
    let start = text.len() - text.trim_start().len();
    if let (true, Some(end)) = (text[start..].starts_with("<?xml"), text[start..].find("?>")) {
        let mut s = text.to_owned();
        s.replace_range(start..start + end + 2, &" ".repeat(end + 2));
        return s.into();
    }
    text.into()
}

/// The 1-based line of a `byte N` an error names.
fn with_line(text: &str, message: &str) -> String {
    let offset = message
        .split("byte ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    match offset {
        Some(o) => format!("line {}: {message}", line_of(text, o)),
        None => message.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn collect<'a>(
    el: &'a Element,
    chain: &mut Vec<&'a Element>,
    record: &[&str],
    found: &mut Vec<Vec<&'a Element>>,
) {
    let names = chain.iter().rev().map(|e| e.name.as_str());
    if !record.is_empty() && record.iter().rev().copied().eq(names.take(record.len())) {
        found.push(chain.clone());
        return;
    }
    for child in &el.children {
        chain.push(child);
        collect(child, chain, record, found);
        chain.pop();
    }
}

/// A mapped path from the record element (last of `ancestors`).
fn lookup(ancestors: &[&Element], path: &str) -> Option<String> {
    let mut stack: Vec<&Element> = ancestors.to_vec();
    let mut node = *stack.last()?;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == ".." {
            stack.pop();
            node = *stack.last()?;
        } else if let Some(attr) = seg.strip_prefix('@') {
            return node
                .attr(attr)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned);
        } else {
            node = node.child(seg)?;
            stack.push(node);
        }
    }
    node.value().map(str::to_owned)
}

fn one(text: &str, ancestors: &[&Element], m: &ExportMapping, out: &mut Decoded) {
    let Some(record) = ancestors.last() else {
        return;
    };
    let line = line_of(text, record.offset) as u64;
    let mut r = Row::default();
    for (field, column) in &m.fields {
        let path = column_path(column);
        let v = lookup(ancestors, &path);
        if let Err(e) = r.set(*field, v, line, || format!("element \"{path}\""), m) {
            out.error(e);
            return;
        }
    }
    for c in &m.extra {
        let path = column_path(c);
        if let Some(v) = lookup(ancestors, &path) {
            r.base.extra.insert(path, v);
        }
    }
    if m.analytes.is_empty() && r.test_code.is_none() && m.test.is_none() {
        let column = m.column(Field::TestCode).map_or("test code".into(), |c| {
            format!("element \"{}\"", column_path(c))
        });
        out.error(ExportError::NoTestCode { line, column });
        return;
    }
    let analytes = m
        .analytes
        .iter()
        .filter_map(|(code, c)| Some((code.clone(), lookup(ancestors, &column_path(c))?)))
        .collect();
    r.finish(analytes, m, out);
}

fn column_path(c: &super::Column) -> String {
    match c {
        super::Column::Named(p) => p.clone(),
        super::Column::Number(n) => format!("#{n}"),
    }
}
