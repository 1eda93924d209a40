//! The Mustache Tempr: a Mustache template (the language of mustache.js, which Open Interop's
//! Temprs use) that renders the request as JSON, like the minijinja [`Template`](super::Template).
//!
//! Written here rather than taken from a crate: `mustache` is unmaintained since 2019, `ramhorns`
//! renders Rust structs through its own `Content` trait, and `mustache2` converts the data into
//! its own `Data` tree first (a copy of the ~80 KB record view per render); none bounds render
//! steps, nesting or output. This is the spec's core (https://github.com/mustache/spec, v1.x):
//! variables, sections, inverted sections, comments, set delimiters and partials, with the
//! standalone-line rules. Lambdas do not apply (the data is JSON).
//!
//! Two phases, like the other kinds: [`Mustache::compile`] parses once when the Tempr file loads
//! (a syntax error is a load error with its line) into a small tree of [`Node`]s; `render` walks
//! that tree over borrowed `&Value`s, so the record is never copied.
//!
//! Where we follow mustache.js rather than the letter of the spec (users come from it):
//! - `{{name}}` escapes `& < > " ' / `` ` `` =` as mustache.js's `escapeHtml` does;
//! - falsy for sections is JavaScript's `!value` plus the empty list: missing, `null`, `false`,
//!   `0`, `""` and `[]` (an empty object is truthy);
//! - numbers print as JavaScript's `String(n)` for the values JSON gives (`5.0` → `5`).
//!
//! Ours: an object or a list interpolates as its compact JSON (mustache.js prints
//! `[object Object]` / `a,b`), a number part indexes a list (`observations.0.value`), and four
//! helper sections, used only where the data has no such name: `{{#uid}}seed{{/uid}}` →
//! [`deterministic_uid`] of the rendered seed, `{{#dhis2_datetime}}…{{/dhis2_datetime}}`,
//! `{{#dhis2_date}}…{{/dhis2_date}}`, `{{#dhis2_period}}…{{/dhis2_period}}` as in templates.

use super::dates;
use super::uid::deterministic_uid;
use super::{Limits, Tempr, TemprError};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Sections and partials nested deeper than this are refused: sections when the template loads,
/// partials (which may include themselves) when it renders.
pub const MAX_DEPTH: usize = 64;
/// The largest template, and the largest partial.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// The most partials one Tempr may define.
pub const MAX_PARTIALS: usize = 64;

/// A compiled Mustache Tempr: the template's tree and its partials' trees, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct Mustache {
    root: Vec<Node>,
    partials: BTreeMap<String, Vec<Node>>,
    escape: Escape,
}

/// What `{{name}}` escapes (the Tempr's `escape` key); `{{{name}}}` and `{{&name}}` never do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Escape {
    /// mustache.js's `escapeHtml`: what a template brought from Open Interop expects.
    #[default]
    Html,
    /// The inside of a JSON string (`"` → `\"`, `\` → `\\`, control characters as `\n` or
    /// `\u00XX`), so `"{{name}}"` is valid JSON whatever the value holds.
    Json,
}

/// A syntax error in the template (`partial: None`) or in the named partial; `line` is 1-based
/// within that text (`None`: about the whole text, e.g. its size).
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub partial: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

/// One piece of a parsed template. `line` is the template line of the tag, for errors.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    /// A template line starts here: a standalone partial's indentation is written here
    /// (spec: "prepended to each line of the partial"; lines of interpolated values are not).
    Indent,
    /// `{{name}}` (escape) or `{{{name}}}` / `{{&name}}`.
    Value {
        name: Name,
        escape: bool,
        line: usize,
    },
    /// `{{#name}}…{{/name}}` or, inverted, `{{^name}}…{{/name}}`.
    Section {
        name: Name,
        inverted: bool,
        body: Vec<Node>,
        line: usize,
    },
    /// `{{>name}}`; `indent` is the whitespace before a standalone tag.
    Partial {
        name: String,
        indent: String,
        line: usize,
    },
}

/// A tag's name: `.` (the top of the context stack) or a dotted path.
#[derive(Debug, Clone, PartialEq)]
enum Name {
    Dot,
    Path(Vec<String>),
}

/// The helper sections (see the module docs), a closed set.
#[derive(Debug, Clone, Copy)]
enum Helper {
    Uid,
    DateTime,
    Date,
    Period,
}

impl Helper {
    fn named(name: &Name) -> Option<Helper> {
        let Name::Path(parts) = name else { return None };
        match parts.as_slice() {
            [one] => match one.as_str() {
                "uid" => Some(Helper::Uid),
                "dhis2_datetime" => Some(Helper::DateTime),
                "dhis2_date" => Some(Helper::Date),
                "dhis2_period" => Some(Helper::Period),
                _ => None,
            },
            _ => None,
        }
    }

    /// The helper's result for the rendered section body, or why there is none.
    fn apply(self, text: &str) -> Result<String, String> {
        let date = |name: &str, f: fn(&str) -> Option<String>| {
            f(text.trim()).ok_or_else(|| {
                format!("{name}: {text:?} is not an ISO 8601 or ASTM YYYYMMDD[HHMM[SS]] time")
            })
        };
        match self {
            Helper::Uid if text.is_empty() => Err("uid: the seed is empty".into()),
            Helper::Uid => Ok(deterministic_uid(text)),
            Helper::DateTime => date("dhis2_datetime", dates::dhis2_datetime),
            Helper::Date => date("dhis2_date", dates::dhis2_date),
            Helper::Period => date("dhis2_period", dates::dhis2_month),
        }
    }
}

impl Mustache {
    /// Parse the template and its partials (name, text). Every text with a syntax error is
    /// reported (the first error of each).
    pub fn compile(
        template: &str,
        partials: &[(String, String)],
    ) -> Result<Mustache, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut fail = |partial: Option<&String>, (line, message)| {
            errors.push(CompileError {
                partial: partial.cloned(),
                line,
                message,
            })
        };
        if partials.len() > MAX_PARTIALS {
            let n = partials.len();
            fail(
                None,
                (None, format!("{n} partials, more than {MAX_PARTIALS}")),
            );
        }
        let root = parse(template).map_err(|e| fail(None, e)).ok();
        let mut trees = BTreeMap::new();
        for (name, text) in partials {
            if let Ok(tree) = parse(text).map_err(|e| fail(Some(name), e)) {
                trees.insert(name.clone(), tree);
            }
        }
        match root {
            Some(root) if errors.is_empty() => Ok(Mustache {
                root,
                partials: trees,
                escape: Escape::Html,
            }),
            _ => Err(errors),
        }
    }

    /// The same template with `{{name}}` escaping as `escape` says.
    pub fn with_escape(mut self, escape: Escape) -> Mustache {
        self.escape = escape;
        self
    }

    /// Render for `tempr`: the names `record`, `ctx` and `tempr` (`{name, version}`) sit at the
    /// bottom of the context stack, as the template kind's variables do.
    pub(crate) fn render(
        &self,
        tempr: &Tempr,
        record: &Value,
        ctx: &Value,
        limits: &Limits,
    ) -> Result<String, TemprError> {
        let about = json!({"name": tempr.name, "version": tempr.version});
        let roots = [("record", record), ("ctx", ctx), ("tempr", &about)];
        self.render_in(&roots, None, limits)
    }

    /// Render with `roots` (names looked up after the whole stack) and `data` as the bottom of
    /// the context stack (how the spec's tests give their data).
    fn render_in(
        &self,
        roots: &[(&str, &Value)],
        data: Option<&Value>,
        limits: &Limits,
    ) -> Result<String, TemprError> {
        let mut r = Renderer {
            partials: &self.partials,
            roots,
            stack: data.into_iter().collect(),
            out: String::new(),
            escape: self.escape,
            max_output: limits.max_output_bytes,
            steps: limits.template_fuel,
            budget: limits.template_fuel,
        };
        r.run(&self.root, "", 0, None)?;
        Ok(r.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

type ParseError = (Option<usize>, String);

/// Parse one template text (default delimiters: a set-delimiter tag does not reach partials).
///
/// Standalone lines (spec, each module's overview): a section, inverted, close, comment,
/// partial or set-delimiter tag that is alone on its line, apart from spaces and tabs, takes the
/// whole line with it (its whitespace and line end); a standalone partial keeps the whitespace
/// before it as its indentation.
fn parse(src: &str) -> Result<Vec<Node>, ParseError> {
    if src.len() > MAX_TEMPLATE_BYTES {
        let n = src.len();
        return Err((
            None,
            format!("{n} bytes, more than the {MAX_TEMPLATE_BYTES} allowed"),
        ));
    }
    let mut p = Parser {
        open: "{{".into(),
        close: "}}".into(),
        line: 1,
        counted: 0,
        at_line_start: true,
        frames: Vec::new(),
        nodes: Vec::new(),
    };
    // `pos`: what is parsed so far; `line_start`: where the current source line begins;
    // `tag_on_line`: a tag already sits on it (then no later tag on it is standalone).
    let (mut pos, mut line_start, mut tag_on_line) = (0, 0, false);
    while let Some(found) = src[pos..].find(p.open.as_str()) {
        let start = pos + found;
        if let Some(nl) = src[pos..start].rfind('\n') {
            line_start = pos + nl + 1;
            tag_on_line = false;
        }
        let line = p.line_at(src, start);
        let (tag, end) = p.tag(src, start, line)?;
        let blank_before = src[line_start..start]
            .bytes()
            .all(|b| b == b' ' || b == b'\t');
        let line_end = match tag {
            Tag::Value { .. } => None,
            _ if tag_on_line || !blank_before => None,
            _ => standalone_end(src, end),
        };
        let indent = match line_end {
            Some(next) => {
                p.text(&src[pos..line_start.max(pos)]);
                let indent = &src[line_start.max(pos)..start];
                (pos, line_start, tag_on_line) = (next, next, false);
                p.at_line_start = true;
                indent
            }
            None => {
                p.text(&src[pos..start]);
                if p.at_line_start {
                    p.nodes.push(Node::Indent);
                    p.at_line_start = false;
                }
                (pos, tag_on_line) = (end, true);
                ""
            }
        };
        p.node(tag, indent, line)?;
    }
    p.text(&src[pos..]);
    match p.frames.last() {
        Some(f) => Err((
            Some(f.line),
            format!(
                "section {}{}{}{} is never closed",
                p.open,
                f.sigil(),
                f.raw,
                p.close
            ),
        )),
        None => Ok(p.nodes),
    }
}

/// After a tag ending at `end`: if only spaces and tabs follow up to the line end (or the end of
/// the text), where the next line starts.
fn standalone_end(src: &str, end: usize) -> Option<usize> {
    let rest = src[end..].trim_start_matches([' ', '\t']);
    let at = src.len() - rest.len();
    if rest.is_empty() {
        Some(at)
    } else if rest.starts_with('\n') {
        Some(at + 1)
    } else if rest.starts_with("\r\n") {
        Some(at + 2)
    } else {
        None
    }
}

struct Parser {
    open: String,
    close: String,
    /// The line number at byte `counted` (lines are counted incrementally, once).
    line: usize,
    counted: usize,
    /// The next text begins a template line (see [`Node::Indent`]).
    at_line_start: bool,
    /// Open sections, innermost last; bounded by [`MAX_DEPTH`].
    frames: Vec<Frame>,
    /// The nodes of the innermost open section (or of the template).
    nodes: Vec<Node>,
}

/// An open section: its tag and the nodes of the enclosing level, restored when it closes.
struct Frame {
    raw: String,
    name: Name,
    inverted: bool,
    line: usize,
    outer: Vec<Node>,
}

impl Frame {
    /// `#` or `^`, as the section was opened.
    fn sigil(&self) -> char {
        if self.inverted { '^' } else { '#' }
    }
}

/// One tag as written.
enum Tag<'s> {
    Value { name: &'s str, escape: bool },
    Open { name: &'s str, inverted: bool },
    Close { name: &'s str },
    Partial { name: &'s str },
    Comment,
    Delimiters { open: &'s str, close: &'s str },
}

impl Parser {
    fn line_at(&mut self, src: &str, offset: usize) -> usize {
        self.line += src[self.counted..offset].matches('\n').count();
        self.counted = offset;
        self.line
    }

    /// The tag opening at `start`, and where it ends. After the open delimiter comes the tag's
    /// type (`# ^ / > { & = !`, or none for a variable), then its content up to the close
    /// delimiter (`}` + close for `{`, `=` + close for `=`), as mustache.js reads it.
    fn tag<'s>(
        &self,
        src: &'s str,
        start: usize,
        line: usize,
    ) -> Result<(Tag<'s>, usize), ParseError> {
        let at = start + self.open.len();
        let sigil = src[at..].chars().next().filter(|c| "#^/>{&=!".contains(*c));
        let body = at + sigil.map_or(0, char::len_utf8);
        let closer = match sigil {
            Some('{') => format!("}}{}", self.close),
            Some('=') => format!("={}", self.close),
            _ => self.close.clone(),
        };
        let shown =
            |s: &str| -> String { s.lines().next().unwrap_or("").chars().take(40).collect() };
        let Some(len) = src[body..].find(&closer) else {
            return Err((
                Some(line),
                format!(
                    "unclosed tag `{}`: no `{closer}` after it",
                    shown(&src[start..])
                ),
            ));
        };
        let content = &src[body..body + len];
        let end = body + len + closer.len();
        let tag = match sigil {
            Some('!') => Tag::Comment,
            Some('=') => match content.split_whitespace().collect::<Vec<_>>()[..] {
                [open, close] => Tag::Delimiters { open, close },
                _ => {
                    return Err((
                        Some(line),
                        format!(
                            "bad delimiters `{}`: give two, separated by a space, like {}=<% %>={}",
                            &src[start..end],
                            self.open,
                            self.close
                        ),
                    ));
                }
            },
            _ => {
                let name = content.trim();
                if name.is_empty() || name.contains(self.open.as_str()) {
                    let why = if name.is_empty() {
                        "is empty"
                    } else {
                        "holds another tag's opening: is a close missing?"
                    };
                    return Err((
                        Some(line),
                        format!("tag `{}` {why}", shown(&src[start..end])),
                    ));
                }
                match sigil {
                    Some('#') => Tag::Open {
                        name,
                        inverted: false,
                    },
                    Some('^') => Tag::Open {
                        name,
                        inverted: true,
                    },
                    Some('/') => Tag::Close { name },
                    Some('>') => Tag::Partial { name },
                    Some(_) => Tag::Value {
                        name,
                        escape: false,
                    },
                    None => Tag::Value { name, escape: true },
                }
            }
        };
        Ok((tag, end))
    }

    /// Add a parsed tag to the tree.
    fn node(&mut self, tag: Tag, indent: &str, line: usize) -> Result<(), ParseError> {
        match tag {
            Tag::Value { name, escape } => {
                let name = parse_name(name, line)?;
                self.nodes.push(Node::Value { name, escape, line });
            }
            Tag::Open { name, inverted } => {
                if self.frames.len() >= MAX_DEPTH {
                    return Err((
                        Some(line),
                        format!("sections nested deeper than {MAX_DEPTH}"),
                    ));
                }
                self.frames.push(Frame {
                    raw: name.to_string(),
                    name: parse_name(name, line)?,
                    inverted,
                    line,
                    outer: std::mem::take(&mut self.nodes),
                });
            }
            Tag::Close { name } => {
                let (o, c) = (&self.open, &self.close);
                let Some(f) = self.frames.pop() else {
                    return Err((Some(line), format!("{o}/{name}{c} closes no open section")));
                };
                if f.raw != name {
                    let (sigil, opened) = (f.sigil(), f.line);
                    return Err((
                        Some(line),
                        format!(
                            "{o}/{name}{c} closes {o}{sigil}{}{c} (opened on line {opened})",
                            f.raw
                        ),
                    ));
                }
                let body = std::mem::replace(&mut self.nodes, f.outer);
                self.nodes.push(Node::Section {
                    name: f.name,
                    inverted: f.inverted,
                    body,
                    line: f.line,
                });
            }
            Tag::Partial { name } => self.nodes.push(Node::Partial {
                name: name.to_string(),
                indent: indent.to_string(),
                line,
            }),
            Tag::Comment => {}
            Tag::Delimiters { open, close } => {
                (self.open, self.close) = (open.to_string(), close.to_string());
            }
        }
        Ok(())
    }

    /// Literal text, with an [`Node::Indent`] at each template line start that has content
    /// (mustache.js indents a partial with `/^(?=.)/gm`: not empty lines, not after the end).
    fn text(&mut self, mut text: &str) {
        while !text.is_empty() {
            if std::mem::take(&mut self.at_line_start) && !text.starts_with(['\n', '\r']) {
                self.nodes.push(Node::Indent);
            }
            let (line, rest) = match text.find('\n') {
                Some(i) => {
                    self.at_line_start = true;
                    text.split_at(i + 1)
                }
                None => (text, ""),
            };
            match self.nodes.last_mut() {
                Some(Node::Text(t)) => t.push_str(line),
                _ => self.nodes.push(Node::Text(line.to_string())),
            }
            text = rest;
        }
    }
}

fn parse_name(name: &str, line: usize) -> Result<Name, ParseError> {
    if name == "." {
        return Ok(Name::Dot);
    }
    let parts: Vec<String> = name.split('.').map(str::to_string).collect();
    if parts.iter().any(String::is_empty) {
        return Err((
            Some(line),
            format!("bad name `{name}`: an empty part between dots"),
        ));
    }
    Ok(Name::Path(parts))
}

// ---------------------------------------------------------------------------------------------
// Rendering

struct Renderer<'a> {
    partials: &'a BTreeMap<String, Vec<Node>>,
    /// Names below the whole stack (`record`, `ctx`, `tempr`).
    roots: &'a [(&'a str, &'a Value)],
    /// The context stack, top last; one entry per open section, so bounded by [`MAX_DEPTH`].
    stack: Vec<&'a Value>,
    out: String,
    escape: Escape,
    max_output: usize,
    /// Render steps left: one per tag and one per list item (`Limits::template_fuel`).
    steps: u64,
    budget: u64,
}

impl<'a> Renderer<'a> {
    /// Render `nodes`; `indent` is the accumulated indentation of the standalone partials being
    /// rendered, `partial` the one these nodes belong to (for errors).
    fn run(
        &mut self,
        nodes: &'a [Node],
        indent: &str,
        depth: usize,
        partial: Option<&'a str>,
    ) -> Result<(), TemprError> {
        for node in nodes {
            match node {
                Node::Text(text) => self.write(text)?,
                Node::Indent => self.write(indent)?,
                Node::Value { name, escape, line } => {
                    self.step(partial, *line)?;
                    if let Some(v) = self.lookup(name) {
                        self.value(v, *escape)?;
                    }
                }
                Node::Section {
                    name,
                    inverted,
                    body,
                    line,
                } => {
                    self.step(partial, *line)?;
                    self.deeper(depth, partial, *line)?;
                    let value = self.lookup(name);
                    if *inverted {
                        if !truthy(value) {
                            self.run(body, indent, depth + 1, partial)?;
                        }
                        continue;
                    }
                    match value {
                        None => {
                            if let Some(h) = Helper::named(name) {
                                self.helper(h, body, indent, depth + 1, partial, *line)?
                            }
                        }
                        Some(Value::Array(items)) => {
                            for item in items {
                                self.step(partial, *line)?;
                                self.within(item, body, indent, depth + 1, partial)?;
                            }
                        }
                        Some(v) if truthy(Some(v)) => {
                            self.within(v, body, indent, depth + 1, partial)?
                        }
                        Some(_) => {}
                    }
                }
                Node::Partial {
                    name,
                    indent: own,
                    line,
                } => {
                    self.step(partial, *line)?;
                    // A partial that is not defined renders as nothing (spec: "Failed Lookup").
                    if let Some(tree) = self.partials.get(name) {
                        self.deeper(depth, partial, *line)?;
                        self.run(tree, &format!("{indent}{own}"), depth + 1, Some(name))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Render `body` with `value` pushed on the context stack.
    fn within(
        &mut self,
        value: &'a Value,
        body: &'a [Node],
        indent: &str,
        depth: usize,
        partial: Option<&'a str>,
    ) -> Result<(), TemprError> {
        self.stack.push(value);
        let result = self.run(body, indent, depth, partial);
        self.stack.pop();
        result
    }

    /// Render `body` on its own, then write what `helper` makes of it.
    fn helper(
        &mut self,
        helper: Helper,
        body: &'a [Node],
        indent: &str,
        depth: usize,
        partial: Option<&'a str>,
        line: usize,
    ) -> Result<(), TemprError> {
        let outer = std::mem::take(&mut self.out);
        let result = self.run(body, indent, depth, partial);
        let text = std::mem::replace(&mut self.out, outer);
        result?;
        let made = helper
            .apply(&text)
            .map_err(|message| TemprError::Template {
                line: Some(line),
                message: match partial {
                    Some(p) => format!("partial {p:?}: {message}"),
                    None => message,
                },
            })?;
        self.write(&made)
    }

    /// The spec's name resolution: the first part is looked up from the top of the context
    /// stack down (then in the roots); every further part only in the value found before it.
    fn lookup(&self, name: &Name) -> Option<&'a Value> {
        let parts = match name {
            Name::Dot => return self.stack.last().copied(),
            Name::Path(parts) => parts,
        };
        let first = parts[0].as_str();
        let found = self
            .stack
            .iter()
            .rev()
            .find_map(|v| v.as_object()?.get(first))
            .or_else(|| {
                self.roots
                    .iter()
                    .find(|(k, _)| *k == first)
                    .map(|(_, v)| *v)
            })?;
        parts[1..].iter().try_fold(found, |v, part| match v {
            Value::Object(m) => m.get(part),
            Value::Array(a) => a.get(part.parse::<usize>().ok()?),
            _ => None,
        })
    }

    /// Interpolate: text as it is, `null` as nothing, other scalars as mustache.js prints them,
    /// objects and lists as compact JSON.
    fn value(&mut self, v: &Value, escape: bool) -> Result<(), TemprError> {
        let text: Cow<str> = match v {
            Value::Null => return Ok(()),
            Value::String(s) => Cow::Borrowed(s),
            Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::Number(n) => Cow::Owned(number(n)),
            Value::Array(_) | Value::Object(_) => Cow::Owned(v.to_string()),
        };
        if !escape {
            return self.write(&text);
        }
        if self.escape == Escape::Json {
            let quoted = Value::String(text.into_owned()).to_string();
            return self.write(&quoted[1..quoted.len() - 1]);
        }
        // mustache.js's entityMap (mustache.js 4.2.0, `escapeHtml`).
        for c in text.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                '"' => self.out.push_str("&quot;"),
                '\'' => self.out.push_str("&#39;"),
                '/' => self.out.push_str("&#x2F;"),
                '`' => self.out.push_str("&#x60;"),
                '=' => self.out.push_str("&#x3D;"),
                c => self.out.push(c),
            }
        }
        self.write("")
    }

    /// Append `text`, or stop at [`Limits::max_output_bytes`].
    fn write(&mut self, text: &str) -> Result<(), TemprError> {
        if self.out.len() + text.len() > self.max_output {
            return Err(TemprError::OutputTooLarge {
                limit: self.max_output,
            });
        }
        self.out.push_str(text);
        Ok(())
    }

    fn step(&mut self, partial: Option<&str>, line: usize) -> Result<(), TemprError> {
        if self.steps == 0 {
            return Err(TemprError::MustacheSteps {
                budget: self.budget,
                partial: partial.map(str::to_string),
                line,
            });
        }
        self.steps -= 1;
        Ok(())
    }

    fn deeper(&self, depth: usize, partial: Option<&str>, line: usize) -> Result<(), TemprError> {
        if depth >= MAX_DEPTH {
            return Err(TemprError::MustacheDepth {
                max: MAX_DEPTH,
                partial: partial.map(str::to_string),
                line,
            });
        }
        Ok(())
    }
}

/// JavaScript's `!!value`, plus "an empty list is falsy" (mustache.js `isArray && length 0`).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Bool(true)) | Some(Value::Object(_)) => true,
    }
}

/// JavaScript's `String(n)` for what JSON carries: a float without a fraction prints as an
/// integer (`5.0` → `5`, `-0.0` → `0`); everything else as serde_json prints it.
fn number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_FILES: [&str; 6] = [
        "interpolation",
        "sections",
        "inverted",
        "comments",
        "delimiters",
        "partials",
    ];

    fn render(template: &str, data: Value) -> Result<String, TemprError> {
        render_with(template, &[], data, &Limits::default())
    }

    fn render_with(
        template: &str,
        partials: &[(&str, &str)],
        data: Value,
        limits: &Limits,
    ) -> Result<String, TemprError> {
        let partials: Vec<(String, String)> = partials
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let m = Mustache::compile(template, &partials).unwrap_or_else(|e| panic!("{e:?}"));
        m.render_in(&[], Some(&data), limits)
    }

    fn compile_error(template: &str) -> (Option<usize>, String) {
        let e = Mustache::compile(template, &[]).expect_err("a syntax error");
        (e[0].line, e[0].message.clone())
    }

    /// Every case of the spec's core modules (tests/fixtures/mustache-spec). Lambda cases
    /// (`data.lambda`, only in the optional ~lambdas module) would be skipped: there are none.
    #[test]
    fn every_spec_case_renders_as_expected() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mustache-spec");
        let (mut passed, mut skipped, mut failed) = (0, Vec::<String>::new(), Vec::new());
        for file in SPEC_FILES {
            let text =
                std::fs::read_to_string(dir.join(format!("{file}.json"))).expect("spec file");
            let spec: Value = serde_json::from_str(&text).expect("spec JSON");
            for case in spec["tests"].as_array().expect("tests") {
                let name = format!("{file}: {}", case["name"].as_str().unwrap_or("?"));
                if case["data"].get("lambda").is_some() {
                    skipped.push(name);
                    continue;
                }
                let partials: Vec<(String, String)> = case["partials"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                let template = case["template"].as_str().expect("template");
                let got = Mustache::compile(template, &partials)
                    .map_err(|e| format!("{e:?}"))
                    .and_then(|m| {
                        m.render_in(&[], Some(&case["data"]), &Limits::default())
                            .map_err(|e| e.to_string())
                    });
                match got {
                    Ok(out) if out == case["expected"] => passed += 1,
                    other => {
                        failed.push(format!("{name}: got {other:?}, want {}", case["expected"]))
                    }
                }
            }
        }
        assert!(
            failed.is_empty(),
            "{} failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
        assert!(skipped.is_empty(), "skipped {skipped:?}");
        assert_eq!(passed, 121, "every case of the six files");
    }

    #[test]
    fn json_escape_keeps_any_value_valid_inside_a_json_string() {
        let t = Mustache::compile(r#"{"v": "{{v}}", "raw": "{{{v}}}"}"#, &[])
            .unwrap()
            .with_escape(Escape::Json);
        let limits = Limits::default();
        let v = json!({"v": "MTB DETECTED \"LOW\"\\ RIF/Rif\nline2 <b>"});
        let out = t.render_in(&[], Some(&v), &limits).unwrap();
        assert!(
            out.starts_with(r#"{"v": "MTB DETECTED \"LOW\"\\ RIF/Rif\nline2 <b>", "raw": "#),
            "{out}"
        );
        let text = Mustache::compile(r#"{"v": "{{v}}"}"#, &[])
            .unwrap()
            .with_escape(Escape::Json)
            .render_in(&[], Some(&v), &limits)
            .unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["v"], v["v"], "the value arrives as it was");
    }

    #[test]
    fn escapes_the_characters_mustache_js_escapes() {
        let out = render("{{v}}|{{{v}}}|{{&v}}", json!({"v": "& < > \" ' / ` = é"})).unwrap();
        assert_eq!(
            out,
            "&amp; &lt; &gt; &quot; &#39; &#x2F; &#x60; &#x3D; é|& < > \" ' / ` = é|& < > \" ' / ` = é"
        );
    }

    #[test]
    fn scalars_print_like_mustache_js_and_structures_as_json() {
        let data = json!({"i": 85, "f": 1.21, "whole": 5.0, "neg": -0.0, "big": 12345678901234567890u64,
                          "t": true, "n": null, "o": {"a": [1, "x"]}, "l": ["H", "A"]});
        let out = render(
            "{{i}} {{f}} {{whole}} {{neg}} {{big}} {{t}} [{{n}}] {{{o}}} {{{l}}}",
            data,
        )
        .unwrap();
        assert_eq!(
            out,
            r#"85 1.21 5 0 12345678901234567890 true [] {"a":[1,"x"]} ["H","A"]"#
        );
    }

    #[test]
    fn sections_treat_zero_and_empty_text_as_false_like_mustache_js() {
        let data = json!({"zero": 0, "empty": "", "list": [], "obj": {}, "one": 1, "text": "x"});
        let t = "{{#zero}}z{{/zero}}{{#empty}}e{{/empty}}{{#list}}l{{/list}}{{#obj}}O{{/obj}}{{#one}}1{{/one}}{{#text}}T{{/text}}|{{^zero}}!z{{/zero}}{{^empty}}!e{{/empty}}{{^obj}}!o{{/obj}}";
        assert_eq!(render(t, data).unwrap(), "O1T|!z!e");
    }

    #[test]
    fn numbers_index_lists_and_missing_parts_render_nothing() {
        let data = json!({"observations": [{"value": "A"}, {"value": "B"}]});
        let out = render(
            "{{observations.1.value}}|{{observations.9.value}}|{{observations.x}}",
            data,
        );
        assert_eq!(out.unwrap(), "B||");
    }

    #[test]
    fn helper_sections_make_uids_and_dhis2_times_unless_the_data_has_the_name() {
        let data = json!({"s": "gx-1", "at": "2025-05-14T13:21:03"});
        let t = "{{#uid}}{{s}}:x{{/uid}} {{#dhis2_datetime}}{{at}}{{/dhis2_datetime}} {{#dhis2_date}}{{at}}{{/dhis2_date}} {{#dhis2_period}}{{at}}{{/dhis2_period}}";
        let want = format!(
            "{} 2025-05-14T13:21:03.000 2025-05-14 202505",
            deterministic_uid("gx-1:x")
        );
        assert_eq!(render(t, data).unwrap(), want);
        // The data's own name wins: a plain section.
        assert_eq!(
            render("{{#uid}}[{{.}}]{{/uid}}", json!({"uid": "u"})).unwrap(),
            "[u]"
        );
        let e = render("\n{{#dhis2_date}}soon{{/dhis2_date}}", json!({})).unwrap_err();
        assert_eq!(
            e,
            TemprError::Template {
                line: Some(2),
                message: "dhis2_date: \"soon\" is not an ISO 8601 or ASTM YYYYMMDD[HHMM[SS]] time"
                    .into()
            }
        );
        assert!(
            render("{{#uid}}{{missing}}{{/uid}}", json!({})).is_err(),
            "an empty seed"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("a\n{{#x}}\nb", 2, "section {{#x}} is never closed"),
            ("{{^x}}", 1, "section {{^x}} is never closed"),
            (
                "{{#x}}\n{{/y}}",
                2,
                "{{/y}} closes {{#x}} (opened on line 1)",
            ),
            ("a\n\n{{/y}}", 3, "{{/y}} closes no open section"),
            ("ok\n{{name", 2, "unclosed tag `{{name`: no `}}` after it"),
            (
                "ok\n{{{name}}",
                2,
                "unclosed tag `{{{name}}`: no `}}}` after it",
            ),
            (
                "{{=<% %>=}}\n<%#a%>\n<%/b%>",
                3,
                "<%/b%> closes <%#a%> (opened on line 2)",
            ),
            (
                "\n{{=<%>=}}",
                2,
                "bad delimiters `{{=<%>=}}`: give two, separated by a space, like {{=<% %>=}}",
            ),
            ("{{ }}", 1, "tag `{{ }}` is empty"),
            (
                "{{a {{b}}",
                1,
                "tag `{{a {{b}}` holds another tag's opening: is a close missing?",
            ),
            ("{{a..b}}", 1, "bad name `a..b`: an empty part between dots"),
        ];
        for (template, line, message) in cases {
            assert_eq!(
                compile_error(template),
                (Some(line), message.to_string()),
                "{template:?}"
            );
        }
        // Partials: each is reported, by name.
        let partials = [("p".to_string(), "x\n{{#y}}".to_string())];
        let e = Mustache::compile("{{>p}}", &partials).unwrap_err();
        assert_eq!(e[0].partial.as_deref(), Some("p"));
        assert_eq!(e[0].line, Some(2));
    }

    #[test]
    fn nesting_template_size_and_partial_count_are_limited_at_load() {
        let deep = "{{#a}}".repeat(MAX_DEPTH + 1) + &"{{/a}}".repeat(MAX_DEPTH + 1);
        assert_eq!(
            compile_error(&deep),
            (Some(1), format!("sections nested deeper than {MAX_DEPTH}"))
        );
        let ok = "{{#a}}".repeat(MAX_DEPTH) + &"{{/a}}".repeat(MAX_DEPTH);
        assert!(Mustache::compile(&ok, &[]).is_ok());
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert_eq!(
            compile_error(&big),
            (
                None,
                format!(
                    "{} bytes, more than the {MAX_TEMPLATE_BYTES} allowed",
                    MAX_TEMPLATE_BYTES + 1
                )
            )
        );
        let many: Vec<(String, String)> = (0..=MAX_PARTIALS)
            .map(|i| (format!("p{i}"), String::new()))
            .collect();
        let e = Mustache::compile("", &many).unwrap_err();
        assert_eq!(
            e[0].message,
            format!("{} partials, more than {MAX_PARTIALS}", MAX_PARTIALS + 1)
        );
    }

    #[test]
    fn render_steps_partial_depth_and_output_are_limited() {
        let limits = Limits {
            template_fuel: 100,
            ..Limits::default()
        };
        let list: Vec<u32> = (0..1000).collect();
        let e = render_with("\n{{#l}}{{.}}{{/l}}", &[], json!({"l": list}), &limits).unwrap_err();
        assert_eq!(
            e,
            TemprError::MustacheSteps {
                budget: 100,
                partial: None,
                line: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "mustache template line 2: more than 100 render steps (the template_fuel limit): a section over too long a list?"
        );

        let e = render_with(
            "{{>me}}",
            &[("me", "x\n{{>me}}")],
            json!({}),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            TemprError::MustacheDepth {
                max: MAX_DEPTH,
                partial: Some("me".into()),
                line: 2
            }
        );
        assert!(
            e.to_string()
                .starts_with("mustache partial \"me\" line 2: "),
            "{e}"
        );

        let limits = Limits {
            max_output_bytes: 10,
            ..Limits::default()
        };
        let e = render_with("{{v}}", &[], json!({"v": "<<<"}), &limits).unwrap_err();
        assert_eq!(e, TemprError::OutputTooLarge { limit: 10 });
        assert_eq!(
            render_with("{{v}}", &[], json!({"v": "<<"}), &limits).unwrap(),
            "&lt;&lt;"
        );
    }

    #[test]
    fn nested_standalone_partials_add_their_indentation() {
        let partials = [("outer", "[\n  {{>inner}}\n]"), ("inner", "a\n\nb {{v}}\n")];
        let out = render_with(
            "  {{>outer}}\n",
            &partials,
            json!({"v": "1\n2"}),
            &Limits::default(),
        );
        assert_eq!(out.unwrap(), "  [\n    a\n\n    b 1\n2\n  ]");
    }
}
