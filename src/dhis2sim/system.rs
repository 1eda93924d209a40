//! `/api/ping`, `/api/system/ping`, `/api/system/info`, `/api/system/id`, `/api/me` (dhis2.md §2.1).

use super::auth::AuthUser;
use super::metadata::{parse_fields, select};
use super::{SimState, base_url, json_response, now_string, query_get, query_pairs, values};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `GET /api/ping` (2.40+ unauthenticated; earlier it does not exist → 404 after auth).
pub async fn api_ping(State(st): State<SimState>) -> Response {
    if st.version().has_api_ping() {
        StatusCode::OK.into_response()
    } else {
        super::error_message(StatusCode::NOT_FOUND, "No handler found for /api/ping")
    }
}

/// `GET /api/system/ping` → `pong`.
pub async fn system_ping() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain;charset=UTF-8"),
            (
                header::CACHE_CONTROL,
                "no-cache, no-store, max-age=0, must-revalidate",
            ),
        ],
        "pong",
    )
        .into_response()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseInfo {
    #[serde(rename = "type")]
    kind: &'static str,
    spatial_support: bool,
}

/// `SystemInfo` in the field order of the SDK fixture (non-superuser view: no java/os/memory).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemInfo {
    context_path: String,
    user_agent: String,
    calendar: &'static str,
    date_format: &'static str,
    server_date: String,
    server_time_zone_id: &'static str,
    server_time_zone_display_name: &'static str,
    version: String,
    revision: &'static str,
    build_time: &'static str,
    environment_variable: &'static str,
    database_info: DatabaseInfo,
    encryption: bool,
    email_configured: bool,
    redis_enabled: bool,
    system_id: &'static str,
    system_name: &'static str,
    instance_base_url: String,
    is_metadata_version_enabled: bool,
    is_metadata_sync_enabled: bool,
}

/// `GET /api/system/info` (supports `fields=`).
pub async fn system_info(State(st): State<SimState>, headers: HeaderMap, uri: Uri) -> Response {
    let base = base_url(&headers);
    let info = SystemInfo {
        context_path: base.clone(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        calendar: "iso8601",
        date_format: "yyyy-mm-dd",
        server_date: now_string(),
        server_time_zone_id: "Etc/UTC",
        server_time_zone_display_name: "Coordinated Universal Time",
        version: st.version().to_string(),
        revision: "585e4bd",
        build_time: "2024-01-01T00:00:00.000",
        environment_variable: "DHIS2_HOME",
        database_info: DatabaseInfo {
            kind: "PostgreSQL",
            spatial_support: true,
        },
        encryption: false,
        email_configured: false,
        redis_enabled: false,
        system_id: "eed3d451-4ff5-4193-b951-ffcc68954299",
        system_name: "pocketgate DHIS2 simulator",
        instance_base_url: base,
        is_metadata_version_enabled: true,
        is_metadata_sync_enabled: false,
    };
    with_fields(&uri, &info)
}

fn with_fields<T: Serialize>(uri: &Uri, body: &T) -> Response {
    let q = query_pairs(uri);
    match query_get(&q, "fields") {
        Some(f) => {
            let v = serde_json::to_value(body).unwrap_or_default();
            json_response(StatusCode::OK, &select(&v, &parse_fields(f)))
        }
        None => json_response(StatusCode::OK, body),
    }
}

#[derive(Serialize)]
struct Codes {
    codes: Vec<String>,
}

/// `GET /api/system/id?limit=N` (capped at 10 000).
pub async fn system_id(uri: Uri) -> Response {
    let q = query_pairs(&uri);
    let limit = query_get(&q, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 10_000);
    let codes = (0..limit).map(|_| values::generate_uid()).collect();
    json_response(StatusCode::OK, &Codes { codes })
}

#[derive(Serialize)]
struct IdOnly {
    id: String,
}

#[derive(Serialize)]
struct OrgUnitRef {
    id: String,
    path: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Role {
    name: &'static str,
    id: &'static str,
    display_name: &'static str,
}

#[derive(Serialize)]
struct Credentials {
    id: String,
    username: String,
}

/// `/api/me` in the field order of the 2.38 SDK fixture.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me {
    created: &'static str,
    last_updated: &'static str,
    name: String,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    display_name: String,
    first_name: String,
    surname: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_credentials: Option<Credentials>,
    user_roles: Vec<Role>,
    user_groups: Vec<IdOnly>,
    authorities: Vec<&'static str>,
    tei_search_organisation_units: Vec<OrgUnitRef>,
    data_view_organisation_units: Vec<OrgUnitRef>,
    organisation_units: Vec<OrgUnitRef>,
}

/// `GET /api/me`: username placement per version (top-level 2.38+, `userCredentials` ≤2.41).
pub async fn me(
    State(st): State<SimState>,
    user: Option<Extension<AuthUser>>,
    uri: Uri,
) -> Response {
    let v = st.version();
    let username = user
        .map(|Extension(u)| u.username)
        .unwrap_or_else(|| "admin".into());
    let meta = &st.inner().meta;
    let mut ou_ids: Vec<&String> = meta.org_units.keys().collect();
    ou_ids.sort();
    let ous = || {
        ou_ids
            .iter()
            .map(|id| OrgUnitRef {
                id: (*id).clone(),
                path: meta.org_unit_path(id),
            })
            .collect::<Vec<_>>()
    };
    let me = Me {
        created: "2020-01-01T00:00:00.000",
        last_updated: "2020-01-01T00:00:00.000",
        name: format!("{username} user"),
        id: values::uid_from_seed(&format!("user:{username}")),
        username: v.me_username().then(|| username.clone()),
        display_name: format!("{username} user"),
        first_name: username.clone(),
        surname: "user",
        user_credentials: v.me_user_credentials().then(|| Credentials {
            id: values::uid_from_seed(&format!("credentials:{username}")),
            username: username.clone(),
        }),
        user_roles: vec![Role {
            name: "Superuser",
            id: "Ufph3mGRmMo",
            display_name: "Superuser",
        }],
        user_groups: Vec::new(),
        authorities: vec!["ALL"],
        tei_search_organisation_units: ous(),
        data_view_organisation_units: ous(),
        organisation_units: ous(),
    };
    with_fields(&uri, &me)
}
