//! Tempr history and chains in the web UI.
//!
//! **Versions.** Every save of a Tempr (its page, the builder, `PUT /api/v1/temprs/{name}`, a
//! restore) keeps the saved text in the store (`tempr_versions`, migration 0005); the first save
//! also keeps the text that was on disk before it. A version can be viewed, compared with the
//! current file (a line diff) and restored: a restore is an ordinary save of the old text, so it
//! goes through the same validation and atomic write, is audit-logged and becomes a new version.
//!
//! **Chains.** Which Tempr feeds which (`next`), read leniently from the files so that a chain
//! naming a missing Tempr or looping back is shown with a warning instead of hiding the view.

use super::api::ApiError;
use super::pages::{self, page};
use super::{Ctx, Shared, Web, WebError};
use crate::store::history::{self as h, SavedBy, TemprVersion};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Keep `text` as the next version of `name` (and `previous`, the text it replaced, if the
/// Tempr has no history yet). A failure is logged, not fatal: the file is already written.
pub async fn keep_version(
    web: &Web,
    ip: IpAddr,
    name: &str,
    previous: Option<String>,
    text: &str,
    how: SavedBy,
) -> Option<i64> {
    let (name, text, by) = (name.to_owned(), text.to_owned(), ip.to_string());
    let file_version = h::file_version_of(&text);
    match web
        .store
        .write(move |tx| {
            h::add_tempr_version(
                tx,
                &name,
                previous.as_deref(),
                &text,
                file_version,
                &by,
                how,
            )
        })
        .await
    {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "Tempr version not kept");
            None
        }
    }
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffLine {
    /// `' '` same, `'-'` only in the old text, `'+'` only in the new one.
    pub op: char,
    pub text: String,
}

/// Longest texts [`diff`] compares line by line (its table is `old × new` cells).
pub const MAX_DIFF_LINES: usize = 2000;

/// A line diff of `old` → `new` (longest common subsequence). Beyond [`MAX_DIFF_LINES`] lines it
/// shows the whole old text removed and the new one added.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let line = |op, t: &str| DiffLine {
        op,
        text: t.to_owned(),
    };
    if a.len() > MAX_DIFF_LINES || b.len() > MAX_DIFF_LINES {
        return a
            .iter()
            .map(|t| line('-', t))
            .chain(b.iter().map(|t| line('+', t)))
            .collect();
    }
    // lcs[i][j] = length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(line(' ', a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(line('-', a[i]));
            i += 1;
        } else {
            out.push(line('+', b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|t| line('-', t)));
    out.extend(b[j..].iter().map(|t| line('+', t)));
    out
}

// ---- version pages ---------------------------------------------------------------------------

/// The versions of `name` for a page: newest first, without their texts.
pub async fn version_list(web: &Web, name: &str) -> Result<Vec<Value>, WebError> {
    let n = name.to_owned();
    let all = web.read(move |c| h::tempr_versions(c, &n)).await?;
    Ok(all.iter().map(summary).collect())
}

fn summary(v: &TemprVersion) -> Value {
    json!({"version": v.version, "file_version": v.file_version, "saved_at": v.saved_at,
           "saved_by": v.saved_by, "action": v.action, "lines": v.content.lines().count()})
}

/// The current text of Tempr `name` and its file.
fn current_text(web: &Web, name: &str) -> Result<(std::path::PathBuf, String), WebError> {
    let dir = web
        .config()
        .dhis2
        .as_ref()
        .map(|d| d.temprs_dir.clone())
        .ok_or_else(|| WebError::NotFound("Temprs: no [dhis2] section".into()))?;
    let file = dir.join(format!("{name}.toml"));
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !name.chars().all(plain) || !file.is_file() {
        return Err(WebError::NotFound(format!("Tempr {name}")));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((file, text))
}

async fn one_version(web: &Web, name: &str, v: i64) -> Result<TemprVersion, WebError> {
    let n = name.to_owned();
    web.read(move |c| h::tempr_version(c, &n, v))
        .await?
        .ok_or_else(|| WebError::NotFound(format!("version {v} of Tempr {name}")))
}

#[derive(Debug, Default, Deserialize)]
pub struct VersionsQuery {
    /// Mark the versions whose text carries this `version` key (links from a record's request).
    file_version: Option<i64>,
}

/// `GET /temprs/{name}/versions`
pub async fn versions_page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Query(q): Query<VersionsQuery>,
) -> Result<Response, WebError> {
    current_text(&web, &name)?;
    let versions = version_list(&web, &name).await?;
    page(
        &web,
        "tempr_versions.html",
        &ctx,
        "temprs",
        context! { name => name, versions => versions, file_version => q.file_version },
    )
}

/// `GET /temprs/{name}/versions/{v}`: the text, its diff against the current file, restore.
pub async fn version_page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path((name, v)): Path<(String, i64)>,
) -> Result<Response, WebError> {
    show_version(&web, &ctx, &name, v, Vec::new(), StatusCode::OK).await
}

async fn show_version(
    web: &Web,
    ctx: &Ctx,
    name: &str,
    v: i64,
    errors: Vec<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let (_, current) = current_text(web, name)?;
    let version = one_version(web, name, v).await?;
    let lines = diff(&version.content, &current);
    let same = lines.iter().all(|l| l.op == ' ');
    let mut r = page(
        web,
        "tempr_version.html",
        ctx,
        "temprs",
        context! { name => name, v => version, diff => lines, same => same, errors => errors },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

#[derive(Deserialize)]
pub struct RestoreForm {
    #[allow(dead_code)]
    csrf: Option<String>,
}

/// Save version `v`'s text as the Tempr again (validated like any save; a new version).
async fn restore(web: &Web, ip: IpAddr, name: &str, v: i64) -> Result<i64, Vec<String>> {
    let old = one_version(web, name, v)
        .await
        .map_err(|e| vec![e.to_string()])?;
    pages::save_tempr(web, ip, name, &old.content, SavedBy::Restore).await
}

/// `POST /temprs/{name}/versions/{v}/restore`
pub async fn restore_page(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path((name, v)): Path<(String, i64)>,
    Form(_f): Form<RestoreForm>,
) -> Result<Response, WebError> {
    match restore(&web, ctx.ip, &name, v).await {
        Ok(_) => Ok(Redirect::to(&format!("/temprs/{name}")).into_response()),
        Err(errors) => {
            show_version(
                &web,
                &ctx,
                &name,
                v,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

// ---- API -------------------------------------------------------------------------------------

/// Tempr history, chain and chart routes under `/api/v1` (merged beside [`super::api::routes`]).
pub fn api_routes() -> Router<Shared> {
    Router::new()
        .route("/temprs/{name}", axum::routing::put(api_save))
        .route("/temprs/{name}/versions", get(api_versions))
        .route("/temprs/{name}/versions/{v}", get(api_version))
        .route("/temprs/{name}/versions/{v}/restore", post(api_restore))
        .route("/tempr-chains", get(api_chains))
        .route(
            "/devices/{id}/temperatures",
            get(super::charts::api_temperatures),
        )
}

fn refused(errors: Vec<String>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": "invalid Tempr; nothing was changed", "errors": errors})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SaveBody {
    text: String,
}

async fn api_save(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
    Json(b): Json<SaveBody>,
) -> Response {
    match pages::save_tempr(&web, ctx.ip, &name, &b.text, SavedBy::Api).await {
        Ok(v) => Json(json!({"saved": true, "version": v})).into_response(),
        Err(errors) => refused(errors),
    }
}

async fn api_versions(
    State(web): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    current_text(&web, &name)?;
    Ok(Json(version_list(&web, &name).await?))
}

async fn api_version(
    State(web): State<Shared>,
    Path((name, v)): Path<(String, i64)>,
) -> Result<Json<Value>, ApiError> {
    let (_, current) = current_text(&web, &name)?;
    let version = one_version(&web, &name, v).await?;
    let d = diff(&version.content, &current);
    Ok(Json(json!({"version": version, "diff_against_current": d})))
}

async fn api_restore(
    State(web): State<Shared>,
    Extension(ctx): Extension<Ctx>,
    Path((name, v)): Path<(String, i64)>,
) -> Response {
    match restore(&web, ctx.ip, &name, v).await {
        Ok(new) => Json(json!({"restored": v, "version": new})).into_response(),
        Err(errors) => refused(errors),
    }
}

async fn api_chains(State(web): State<Shared>) -> Result<Json<Vec<Chain>>, ApiError> {
    Ok(Json(chains_of(&web)))
}

// ---- chains ----------------------------------------------------------------------------------

/// One step of a chain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    pub name: String,
    pub endpoint: String,
    pub enabled: bool,
    /// The lines of its text that read the previous step (`ctx.previous…`): the uids passed on.
    pub takes: Vec<String>,
}

/// A chain from its head, with what is wrong with it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chain {
    pub steps: Vec<Step>,
    /// `next = "x"` names no Tempr, or the chain comes back to a step: said here.
    pub warnings: Vec<String>,
}

/// What a chain needs to know of one Tempr file.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub next: Option<String>,
    pub step: Step,
}

/// Lines that use the previous step's request or response (comments skipped), at most 6.
pub fn takes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("//") && l.contains("previous"))
        .map(|l| l.chars().take(100).collect())
        .take(6)
        .collect()
}

/// Read every `*.toml` of `dir` leniently: name, `next`, endpoint, and what it takes. A file
/// that does not parse as TOML is skipped (the Temprs page lists its error already).
pub fn links(dir: &std::path::Path) -> Vec<Link> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(t) = text.parse::<toml::Table>() else {
            continue;
        };
        let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let name = s("name").unwrap_or_else(|| {
            f.file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        // The script or template it names is where a chain step reads `ctx.previous`.
        let mut all = text.clone();
        for k in ["script_file", "template_file"] {
            if let Some(extra) = s(k).and_then(|p| std::fs::read_to_string(dir.join(p)).ok()) {
                all += &extra;
            }
        }
        out.push(Link {
            next: s("next"),
            step: Step {
                name: name.clone(),
                endpoint: s("endpoint").unwrap_or_else(|| "tracker".into()),
                enabled: t.get("enabled").and_then(|v| v.as_bool()).unwrap_or(true),
                takes: takes(&all),
            },
            name,
        });
    }
    out
}

/// Chains of at least two steps (or one step naming a missing `next`), from their heads; a loop
/// with no head is shown from its first Tempr by name.
pub fn chains(links: &[Link]) -> Vec<Chain> {
    let by_name: BTreeMap<&str, &Link> = links.iter().map(|l| (l.name.as_str(), l)).collect();
    let named: BTreeSet<&str> = links.iter().filter_map(|l| l.next.as_deref()).collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for l in links.iter().filter(|l| !named.contains(l.name.as_str())) {
        if l.next.is_some() {
            out.push(walk(l, &by_name, &mut seen));
        }
    }
    // What is left with a `next` and not reached from a head sits on a loop.
    for l in links {
        if l.next.is_some() && !seen.contains(l.name.as_str()) {
            out.push(walk(l, &by_name, &mut seen));
        }
    }
    out
}

/// Follow `next` from `head` until the end, a missing Tempr or a step already on the path.
fn walk<'a>(
    head: &'a Link,
    by_name: &BTreeMap<&'a str, &'a Link>,
    seen: &mut BTreeSet<&'a str>,
) -> Chain {
    let mut chain = Chain {
        steps: Vec::new(),
        warnings: Vec::new(),
    };
    let mut path: Vec<&str> = Vec::new();
    let mut cur = Some(head);
    while let Some(l) = cur {
        if let Some(at) = path.iter().position(|p| *p == l.name) {
            let cycle: Vec<&str> = path[at..]
                .iter()
                .copied()
                .chain([l.name.as_str()])
                .collect();
            chain
                .warnings
                .push(format!("chain loops: {}", cycle.join(" → ")));
            break;
        }
        path.push(&l.name);
        seen.insert(&l.name);
        chain.steps.push(l.step.clone());
        cur = match l.next.as_deref() {
            None => None,
            Some(n) => match by_name.get(n) {
                Some(next) => Some(*next),
                None => {
                    chain.warnings.push(format!(
                        "{}: next = \"{n}\", but no Tempr is named \"{n}\"",
                        l.name
                    ));
                    None
                }
            },
        };
    }
    chain
}

/// The chains of the configured Temprs directory (empty without one).
pub fn chains_of(web: &Web) -> Vec<Chain> {
    web.config()
        .dhis2
        .as_ref()
        .map(|d| chains(&links(&d.temprs_dir)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, next: Option<&str>) -> Link {
        Link {
            name: name.into(),
            next: next.map(Into::into),
            step: Step {
                name: name.into(),
                endpoint: "tracker".into(),
                enabled: true,
                takes: Vec::new(),
            },
        }
    }

    fn names(c: &Chain) -> Vec<&str> {
        c.steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn chains_are_walked_from_their_heads_with_missing_and_looping_steps_named() {
        let ls = [
            link("enrol", Some("event")),
            link("event", None),
            link("lonely", None),
            link("person", Some("enrol")),
            link("a", Some("gone")),
            link("x", Some("y")),
            link("y", Some("x")),
        ];
        let c = chains(&ls);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(names(&c[0]), ["person", "enrol", "event"]);
        assert!(c[0].warnings.is_empty());
        assert_eq!(names(&c[1]), ["a"]);
        assert_eq!(
            c[1].warnings,
            ["a: next = \"gone\", but no Tempr is named \"gone\""]
        );
        assert_eq!(names(&c[2]), ["x", "y"]);
        assert_eq!(c[2].warnings, ["chain loops: x → y → x"]);
    }

    #[test]
    fn line_diff_marks_removed_and_added_lines_in_order() {
        let d = diff("a\nb\nc\n", "a\nc\nd\n");
        let ops: String = d.iter().map(|l| l.op).collect();
        let texts: Vec<&str> = d.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(ops, " - +");
        assert_eq!(texts, ["a", "b", "c", "d"]);
        assert!(diff("same\n", "same\n").iter().all(|l| l.op == ' '));
    }

    #[test]
    fn takes_lists_the_lines_reading_the_previous_step() {
        let t = "# previous: a comment\nconst te = ctx.previous_request?.body;\nx = 1\n";
        assert_eq!(takes(t), ["const te = ctx.previous_request?.body;"]);
    }
}
