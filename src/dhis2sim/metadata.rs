//! The metadata fixture: an index for the importers' validation and the read endpoints
//! (`/api/programs`, `/api/dataSets`, `/api/organisationUnits`, `/api/trackedEntityTypes`,
//! `/api/dataElements`, `/api/optionSets`, `/api/programStages`, each also `/{id}`) with
//! `fields=` (lists, nesting `a[b,c[d]]`, `*`, `:all`, `:owner`, `:identifiable`, `:nameable`,
//! `!exclude`, `~rename(x)`), `filter=` (`eq ne ieq like ilike in !in null !null`, `rootJunction`),
//! `order=`, and paging (`pager`, `page`, `pageSize` default 50, `paging=false`).
//!
//! Objects are served as stored `serde_json::Value`s, so their keys come out sorted; the envelope
//! (`pager` first, then the collection) is written in DHIS2's order.

use super::{SimError, SimState, base_url, error_message, json_bytes, query_get, query_pairs};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Everything validation needs about a program.
#[derive(Debug, Clone)]
pub struct Program {
    pub id: String,
    /// WITH_REGISTRATION (tracker) vs WITHOUT_REGISTRATION (event program).
    pub registration: bool,
    pub tracked_entity_type: Option<String>,
    pub org_units: HashSet<String>,
    pub stages: Vec<String>,
    pub only_enroll_once: bool,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub program: String,
    pub repeatable: bool,
    /// `validationStrategy` ON_UPDATE_AND_INSERT (else ON_COMPLETE).
    pub validate_always: bool,
    /// data element → compulsory
    pub data_elements: BTreeMap<String, bool>,
}

#[derive(Debug, Clone)]
pub struct DataElement {
    pub id: String,
    pub value_type: String,
    /// (option set id, option codes)
    pub option_set: Option<(String, HashSet<String>)>,
}

#[derive(Debug, Clone)]
pub struct DataSet {
    pub id: String,
    pub org_units: HashSet<String>,
    pub data_elements: HashSet<String>,
}

/// The indexed fixture.
#[derive(Debug, Default)]
pub struct Metadata {
    /// collection name → objects, served by the read endpoints.
    collections: BTreeMap<String, Vec<Value>>,
    pub programs: HashMap<String, Program>,
    pub stages: HashMap<String, Stage>,
    pub org_units: HashMap<String, Value>,
    pub tracked_entity_types: HashSet<String>,
    pub data_elements: HashMap<String, DataElement>,
    pub data_sets: HashMap<String, DataSet>,
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn ids(v: &Value, key: &str) -> HashSet<String> {
    arr(v, key).filter_map(id_of).collect()
}

/// Add `displayName` (from `name`) wherever it is missing, as DHIS2 always can serve it.
fn add_display_names(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if !o.contains_key("displayName")
                && let Some(name) = o.get("name").cloned()
            {
                o.insert("displayName".into(), name);
            }
            for child in o.values_mut() {
                add_display_names(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(add_display_names),
        _ => {}
    }
}

impl Metadata {
    pub fn load(doc: &Value) -> Result<Metadata, SimError> {
        let Some(root) = doc.as_object() else {
            return Err(SimError::Metadata(
                "the fixture must be a JSON object".into(),
            ));
        };
        let mut doc = Value::Object(root.clone());
        add_display_names(&mut doc);
        let mut m = Metadata::default();
        let top = |k: &str| -> Vec<Value> { arr(&doc, k).cloned().collect() };

        // Lookup tables for references given as `{id}` only.
        let options_by_id: HashMap<String, Value> = top("options")
            .into_iter()
            .filter_map(|o| id_of(&o).map(|i| (i, o)))
            .collect();
        let mut option_sets: HashMap<String, Value> = top("optionSets")
            .into_iter()
            .filter_map(|o| id_of(&o).map(|i| (i, o)))
            .collect();
        let mut des_by_id: HashMap<String, Value> = top("dataElements")
            .into_iter()
            .filter_map(|o| id_of(&o).map(|i| (i, o)))
            .collect();
        let top_stages: HashMap<String, Value> = top("programStages")
            .into_iter()
            .filter_map(|o| id_of(&o).map(|i| (i, o)))
            .collect();

        // Gather every data element object seen anywhere (full objects win over `{id}` refs).
        let note_de = |de: &Value, des: &mut HashMap<String, Value>| {
            if let Some(id) = id_of(de) {
                let richer = de.as_object().is_some_and(|o| o.len() > 1);
                if richer || !des.contains_key(&id) {
                    let keep = des.get(&id).is_some_and(|old| {
                        old.as_object().map_or(0, |o| o.len())
                            > de.as_object().map_or(0, |o| o.len())
                    });
                    if !keep {
                        des.insert(id, de.clone());
                    }
                }
            }
        };

        let mut programs = top("programs");
        for p in &mut programs {
            // Resolve stages given as refs against the top-level programStages.
            if let Some(stages) = p.get_mut("programStages").and_then(Value::as_array_mut) {
                for s in stages.iter_mut() {
                    if let Some(id) = id_of(s)
                        && s.as_object().is_some_and(|o| o.len() <= 2)
                        && let Some(full) = top_stages.get(&id)
                    {
                        *s = full.clone();
                    }
                }
            }
        }
        // Stages that name their program but are not inside it.
        for (sid, s) in &top_stages {
            if let Some(pid) = s.get("program").and_then(id_of)
                && let Some(p) = programs
                    .iter_mut()
                    .find(|p| id_of(p).as_deref() == Some(&pid))
                && let Some(obj) = p.as_object_mut()
            {
                let list = obj
                    .entry("programStages")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(a) = list.as_array_mut()
                    && !a.iter().any(|x| id_of(x).as_deref() == Some(sid))
                {
                    a.push(s.clone());
                }
            }
        }

        for p in &programs {
            for s in arr(p, "programStages") {
                for psde in arr(s, "programStageDataElements") {
                    if let Some(de) = psde.get("dataElement") {
                        note_de(de, &mut des_by_id);
                    }
                }
            }
        }
        let data_sets_raw = top("dataSets");
        for ds in &data_sets_raw {
            for dse in arr(ds, "dataSetElements") {
                if let Some(de) = dse.get("dataElement") {
                    note_de(de, &mut des_by_id);
                }
            }
            for de in arr(ds, "dataElements") {
                note_de(de, &mut des_by_id);
            }
        }
        for de in des_by_id.values() {
            if let Some(os) = de.get("optionSet")
                && let Some(id) = id_of(os)
                && (os.get("options").is_some() || !option_sets.contains_key(&id))
            {
                option_sets.insert(id, os.clone());
            }
        }

        let option_codes = |os: &Value| -> HashSet<String> {
            arr(os, "options")
                .filter_map(|o| {
                    o.get("code")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| {
                            id_of(o)
                                .and_then(|i| options_by_id.get(&i))
                                .and_then(|full| full.get("code"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                })
                .collect()
        };
        for (id, de) in &des_by_id {
            let option_set = de.get("optionSet").and_then(id_of).map(|os_id| {
                let codes = option_sets
                    .get(&os_id)
                    .map(&option_codes)
                    .unwrap_or_default();
                (os_id, codes)
            });
            m.data_elements.insert(
                id.clone(),
                DataElement {
                    id: id.clone(),
                    value_type: de
                        .get("valueType")
                        .and_then(Value::as_str)
                        .unwrap_or("TEXT")
                        .to_string(),
                    option_set,
                },
            );
        }

        for ou in top("organisationUnits") {
            if let Some(id) = id_of(&ou) {
                m.org_units.insert(id, ou);
            }
        }
        for t in top("trackedEntityTypes") {
            if let Some(id) = id_of(&t) {
                m.tracked_entity_types.insert(id);
            }
        }

        for p in &programs {
            let Some(id) = id_of(p) else {
                return Err(SimError::Metadata("a program without id".into()));
            };
            let mut org_units = ids(p, "organisationUnits");
            for (ou_id, ou) in &m.org_units {
                if ids(ou, "programs").contains(&id) {
                    org_units.insert(ou_id.clone());
                }
            }
            let registration = match p.get("programType").and_then(Value::as_str) {
                Some(t) => t == "WITH_REGISTRATION",
                None => p.get("trackedEntityType").is_some(),
            };
            let mut stage_ids = Vec::new();
            for s in arr(p, "programStages") {
                let Some(sid) = id_of(s) else { continue };
                let data_elements = arr(s, "programStageDataElements")
                    .filter_map(|psde| {
                        let de = psde.get("dataElement").and_then(id_of)?;
                        let compulsory = psde
                            .get("compulsory")
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                        Some((de, compulsory))
                    })
                    .collect();
                m.stages.insert(
                    sid.clone(),
                    Stage {
                        id: sid.clone(),
                        program: id.clone(),
                        repeatable: s
                            .get("repeatable")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        validate_always: s.get("validationStrategy").and_then(Value::as_str)
                            == Some("ON_UPDATE_AND_INSERT"),
                        data_elements,
                    },
                );
                stage_ids.push(sid);
            }
            m.programs.insert(
                id.clone(),
                Program {
                    id: id.clone(),
                    registration,
                    tracked_entity_type: p.get("trackedEntityType").and_then(id_of),
                    org_units,
                    stages: stage_ids,
                    only_enroll_once: p
                        .get("onlyEnrollOnce")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
            );
        }

        for ds in &data_sets_raw {
            let Some(id) = id_of(ds) else { continue };
            let mut org_units = ids(ds, "organisationUnits");
            for (ou_id, ou) in &m.org_units {
                if ids(ou, "dataSets").contains(&id) {
                    org_units.insert(ou_id.clone());
                }
            }
            let mut data_elements: HashSet<String> = arr(ds, "dataSetElements")
                .filter_map(|dse| dse.get("dataElement").and_then(id_of))
                .collect();
            data_elements.extend(ids(ds, "dataElements"));
            m.data_sets.insert(
                id.clone(),
                DataSet {
                    id,
                    org_units,
                    data_elements,
                },
            );
        }

        // The collections served by the read endpoints.
        let mut stages_list = Vec::new();
        for p in &programs {
            for s in arr(p, "programStages") {
                let mut s = s.clone();
                if let Some(o) = s.as_object_mut()
                    && !o.contains_key("program")
                    && let Some(pid) = id_of(p)
                {
                    o.insert("program".into(), json!({ "id": pid }));
                }
                stages_list.push(s);
            }
        }
        let mut de_list: Vec<Value> = des_by_id.into_values().collect();
        de_list.sort_by_key(|d| id_of(d).unwrap_or_default());
        let mut os_list: Vec<Value> = option_sets.into_values().collect();
        os_list.sort_by_key(|d| id_of(d).unwrap_or_default());
        m.collections.insert("programs".into(), programs);
        m.collections.insert("programStages".into(), stages_list);
        m.collections.insert("dataSets".into(), data_sets_raw);
        m.collections
            .insert("organisationUnits".into(), top("organisationUnits"));
        m.collections
            .insert("trackedEntityTypes".into(), top("trackedEntityTypes"));
        m.collections.insert("dataElements".into(), de_list);
        m.collections.insert("optionSets".into(), os_list);
        Ok(m)
    }

    pub fn collection(&self, name: &str) -> Option<&Vec<Value>> {
        self.collections.get(name)
    }

    /// `path` of an org unit (from the fixture, else `/<id>`).
    pub fn org_unit_path(&self, id: &str) -> String {
        self.org_units
            .get(id)
            .and_then(|o| o.get("path"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("/{id}"))
    }
}

// ---------------------------------------------------------------------------------------------
// fields=

/// One entry of a `fields=` expression.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub rename: Option<String>,
    pub exclude: bool,
    pub sub: Option<Vec<FieldSpec>>,
}

/// Parse `id,name,programStages[id,programStageDataElements[dataElement[id]]]`.
pub fn parse_fields(s: &str) -> Vec<FieldSpec> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    parse_list(&chars, &mut pos)
}

fn parse_list(c: &[char], pos: &mut usize) -> Vec<FieldSpec> {
    let mut out = Vec::new();
    loop {
        let start = *pos;
        while *pos < c.len() && !matches!(c[*pos], ',' | '[' | ']' | '(' | ')') {
            *pos += 1;
        }
        let mut token: String = c[start..*pos].iter().collect::<String>();
        // `~rename(x)` carries parentheses inside the token.
        while *pos < c.len() && c[*pos] == '(' {
            let open = *pos;
            while *pos < c.len() && c[*pos] != ')' {
                *pos += 1;
            }
            *pos = (*pos + 1).min(c.len());
            token.extend(&c[open..*pos]);
            while *pos < c.len() && !matches!(c[*pos], ',' | '[' | ']' | '(') {
                token.push(c[*pos]);
                *pos += 1;
            }
        }
        let mut sub = None;
        if *pos < c.len() && c[*pos] == '[' {
            *pos += 1;
            sub = Some(parse_list(c, pos));
            if *pos < c.len() && c[*pos] == ']' {
                *pos += 1;
            }
            // `a[b]~rename(x)`
            while *pos < c.len() && !matches!(c[*pos], ',' | ']') {
                token.push(c[*pos]);
                *pos += 1;
            }
        }
        let token = token.trim().to_string();
        if !token.is_empty() {
            let (exclude, body) = match token.strip_prefix('!') {
                Some(b) => (true, b.to_string()),
                None => (false, token.clone()),
            };
            let (name, rename) = match body.split_once('~') {
                Some((n, t)) => {
                    let r = t
                        .strip_prefix("rename(")
                        .and_then(|r| r.strip_suffix(')'))
                        .map(str::to_string);
                    (n.to_string(), r)
                }
                None => (body, None),
            };
            out.push(FieldSpec {
                name,
                rename,
                exclude,
                sub,
            });
        }
        if *pos < c.len() && c[*pos] == ',' {
            *pos += 1;
            continue;
        }
        if *pos < c.len() && c[*pos] == ']' {
            return out;
        }
        if *pos >= c.len() {
            return out;
        }
        *pos += 1;
    }
}

const IDENTIFIABLE: &[&str] = &[
    "id",
    "code",
    "name",
    "displayName",
    "created",
    "lastUpdated",
    "href",
];
const NAMEABLE: &[&str] = &["shortName", "displayShortName", "description"];

/// Apply a parsed `fields=` selection to a value (arrays element-wise).
pub fn select(v: &Value, specs: &[FieldSpec]) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| select(x, specs)).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for spec in specs.iter().filter(|s| !s.exclude) {
                match spec.name.as_str() {
                    "*" | ":all" | ":owner" => {
                        for (k, val) in o {
                            out.insert(k.clone(), val.clone());
                        }
                    }
                    ":identifiable" | ":nameable" => {
                        let mut keys: Vec<&str> = IDENTIFIABLE.to_vec();
                        if spec.name == ":nameable" {
                            keys.extend_from_slice(NAMEABLE);
                        }
                        for k in keys {
                            if let Some(val) = o.get(k) {
                                out.insert(k.to_string(), val.clone());
                            }
                        }
                    }
                    name => {
                        if let Some(val) = o.get(name) {
                            let val = match &spec.sub {
                                Some(sub) => select(val, sub),
                                None => val.clone(),
                            };
                            let key = spec.rename.clone().unwrap_or_else(|| name.to_string());
                            out.insert(key, val);
                        }
                    }
                }
            }
            for spec in specs.iter().filter(|s| s.exclude) {
                out.remove(&spec.name);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// filter=

fn lookup<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut cur = vec![v];
    for part in path.split('.') {
        let mut next = Vec::new();
        for c in cur {
            match c.get(part) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {
                    if let Value::Array(a) = c {
                        next.extend(a.iter().filter_map(|e| e.get(part)));
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One `filter=prop:op:value`; unknown operators match nothing.
fn matches_filter(obj: &Value, filter: &str) -> bool {
    let mut parts = filter.splitn(3, ':');
    let (Some(prop), Some(op)) = (parts.next(), parts.next()) else {
        return false;
    };
    let arg = parts.next().unwrap_or("");
    let vals: Vec<String> = lookup(obj, prop).into_iter().map(as_text).collect();
    let list = || -> Vec<String> {
        arg.trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(str::to_string)
            .collect()
    };
    match op {
        "eq" => vals.iter().any(|v| v == arg),
        "!eq" | "ne" | "neq" => !vals.iter().any(|v| v == arg),
        "ieq" => vals.iter().any(|v| v.eq_ignore_ascii_case(arg)),
        "like" => vals.iter().any(|v| v.contains(arg)),
        "!like" => !vals.iter().any(|v| v.contains(arg)),
        "ilike" => vals
            .iter()
            .any(|v| v.to_lowercase().contains(&arg.to_lowercase())),
        "!ilike" => !vals
            .iter()
            .any(|v| v.to_lowercase().contains(&arg.to_lowercase())),
        "in" => {
            let l = list();
            vals.iter().any(|v| l.contains(v))
        }
        "!in" => {
            let l = list();
            !vals.iter().any(|v| l.contains(v))
        }
        "null" => vals.is_empty(),
        "!null" => !vals.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn unknown_collection(collection: &str) -> Response {
    error_message(
        StatusCode::NOT_FOUND,
        format!("No handler found for /api/{collection}"),
    )
}

/// `GET /api/{collection}`
pub async fn list(
    State(st): State<SimState>,
    Path(collection): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let meta = &st.inner().meta;
    let Some(items) = meta.collection(&collection) else {
        return unknown_collection(&collection);
    };
    let q = query_pairs(&uri);
    let filters: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| v.as_str())
        .collect();
    let or = query_get(&q, "rootJunction").is_some_and(|j| j.eq_ignore_ascii_case("OR"));
    let mut selected: Vec<&Value> = items
        .iter()
        .filter(|o| {
            filters.is_empty()
                || if or {
                    filters.iter().any(|f| matches_filter(o, f))
                } else {
                    filters.iter().all(|f| matches_filter(o, f))
                }
        })
        .collect();
    if let Some(order) = query_get(&q, "order") {
        let (prop, dir) = order.split_once(':').unwrap_or((order, "asc"));
        let key = |v: &Value| {
            lookup(v, prop)
                .first()
                .map(|x| as_text(x))
                .unwrap_or_default()
        };
        let ci = dir.starts_with('i');
        selected.sort_by(|a, b| {
            let (ka, kb) = if ci {
                (key(a).to_lowercase(), key(b).to_lowercase())
            } else {
                (key(a), key(b))
            };
            ka.cmp(&kb)
        });
        if dir.ends_with("desc") {
            selected.reverse();
        }
    }
    let specs = parse_fields(query_get(&q, "fields").unwrap_or("id,displayName"));
    let paging =
        query_get(&q, "paging") != Some("false") && query_get(&q, "skipPaging") != Some("true");
    let total = selected.len();
    let mut pager = None;
    if paging {
        let page_size = query_get(&q, "pageSize")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(50);
        let page_count = total.div_ceil(page_size).max(1);
        let page = query_get(&q, "page")
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(1);
        let start = (page - 1).saturating_mul(page_size).min(total);
        let end = (start + page_size).min(total);
        selected = selected[start..end].to_vec();
        let link = |p: usize| {
            let mut others: Vec<String> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("page="))
                .map(str::to_string)
                .collect();
            others.push(format!("page={p}"));
            format!("{}{}?{}", base_url(&headers), uri.path(), others.join("&"))
        };
        let mut ordered = vec![
            format!("\"page\":{page}"),
            format!("\"total\":{total}"),
            format!("\"pageSize\":{page_size}"),
            format!("\"pageCount\":{page_count}"),
        ];
        if page < page_count {
            ordered.push(format!("\"nextPage\":{}", json!(link(page + 1))));
        }
        if page > 1 {
            ordered.push(format!("\"prevPage\":{}", json!(link(page - 1))));
        }
        pager = Some(format!("{{{}}}", ordered.join(",")));
    }
    let objects: Vec<Value> = selected.into_iter().map(|o| select(o, &specs)).collect();
    let list = serde_json::to_string(&objects).unwrap_or_else(|_| "[]".into());
    let body = match pager {
        Some(p) => format!("{{\"pager\":{p},{}:{list}}}", json!(collection)),
        None => format!("{{{}:{list}}}", json!(collection)),
    };
    json_bytes(StatusCode::OK, body.into_bytes())
}

/// `GET /api/{collection}/{id}`
pub async fn single(
    State(st): State<SimState>,
    Path((collection, id)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let meta = &st.inner().meta;
    let Some(items) = meta.collection(&collection) else {
        return unknown_collection(&collection);
    };
    let Some(obj) = items
        .iter()
        .find(|o| id_of(o).as_deref() == Some(id.as_str()))
    else {
        let kind = collection.trim_end_matches('s');
        let mut kind_chars = kind.chars();
        let kind = match kind_chars.next() {
            Some(f) => f.to_uppercase().collect::<String>() + kind_chars.as_str(),
            None => String::new(),
        };
        return error_message(
            StatusCode::NOT_FOUND,
            format!("{kind} with id {id} could not be found."),
        );
    };
    let q = query_pairs(&uri);
    let out = match query_get(&q, "fields") {
        Some(f) => select(obj, &parse_fields(f)),
        None => obj.clone(),
    };
    super::json_response(StatusCode::OK, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_nested_and_rename() {
        let f = parse_fields(
            "id,name~rename(n),programStages[id,programStageDataElements[dataElement[id]]],!code",
        );
        assert_eq!(f.len(), 4);
        assert_eq!(f[1].rename.as_deref(), Some("n"));
        assert_eq!(f[2].name, "programStages");
        let sub = f[2].sub.as_ref().unwrap();
        assert_eq!(sub[1].sub.as_ref().unwrap()[0].name, "dataElement");
        assert!(f[3].exclude);
        let v = json!({"id":"a","name":"A","code":"C","programStages":[{"id":"s","name":"S","programStageDataElements":[{"compulsory":true,"dataElement":{"id":"d","name":"D"}}]}]});
        let out = select(&v, &f);
        assert_eq!(
            out,
            json!({"id":"a","n":"A","programStages":[{"id":"s","programStageDataElements":[{"dataElement":{"id":"d"}}]}]})
        );
        let all = select(&v, &parse_fields("*,!programStages"));
        assert_eq!(all, json!({"id":"a","name":"A","code":"C"}));
    }

    #[test]
    fn filters() {
        let v = json!({"id":"a","name":"Lab results","level":3,"parent":{"id":"p"}});
        assert!(matches_filter(&v, "name:ilike:lab"));
        assert!(matches_filter(&v, "level:eq:3"));
        assert!(matches_filter(&v, "parent.id:in:[x,p]"));
        assert!(!matches_filter(&v, "code:!null"));
    }
}
