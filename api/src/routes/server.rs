//! Server-level endpoints (spec §3.2).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};
use tessera_engine::datatype::Caller;

use super::json;
use crate::error::{ApiError, ApiResult};
use crate::server::{AppState, Shared};

pub async fn help(State(st): State<Shared>) -> Html<String> {
    let mut page =
        String::from("<html><head><title>Tessera API</title></head><body><h1>Tessera</h1>");
    page.push_str("<p>A versioned image-oriented data service speaking DVID's HTTP API.</p><h2>Datatypes</h2><ul>");
    for dt in st.engine.datatypes() {
        page.push_str(&format!(
            "<li><a href=\"/api/help/{0}\">{0}</a></li>",
            dt.type_name()
        ));
    }
    page.push_str("</ul></body></html>");
    Html(page)
}

pub async fn type_help(State(st): State<Shared>, Path(name): Path<String>) -> ApiResult<Response> {
    let dt = st.engine.datatype(&name)?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], dt.help()).into_response())
}

pub async fn heartbeat() -> &'static str {
    "OK"
}

/// `GET /metrics`: Prometheus text exposition (docs/observability.md).
pub async fn metrics(State(st): State<Shared>) -> ApiResult<Response> {
    let state = st.clone();
    let text = tokio::task::spawn_blocking(move || {
        let active = state.stats.active.load(Ordering::Relaxed);
        crate::metrics::render(&state.metrics, &state.engine, &state.content_stores, active)
    })
    .await
    .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /api/load`, DVID's keys. The store figures are totals since start over every store
/// (keys and values counted together, under the value keys); DVID's are the same counters.
pub async fn load(State(st): State<Shared>) -> Response {
    let s = &st.stats;
    let (read, written) = st
        .engine
        .store_io()
        .iter()
        .fold((0, 0), |(r, w), (_, _, io)| {
            (r + io.bytes_read, w + io.bytes_written)
        });
    json(&json!({
        "file bytes read": 0, "file bytes written": 0, "key bytes read": 0,
        "key bytes written": 0, "value bytes read": read,
        "value bytes written": written,
        "GET requests": s.get_requests.load(Ordering::Relaxed),
        "PUT requests": s.put_requests.load(Ordering::Relaxed),
        "handlers active": s.active.load(Ordering::Relaxed),
        "goroutines": 0, "active CGo writes": 0, "pending log messages": 0,
    }))
}

pub async fn user_latencies(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let users = st.stats.users.lock();
    match q.get("u") {
        Some(u) => {
            let l = users
                .get(u)
                .ok_or_else(|| ApiError::bad(format!("no latencies recorded for user {u:?}")))?;
            Ok(json(&serde_json::to_value(l).expect("latencies serialize")))
        }
        None => Ok(json(
            &serde_json::to_value(&*users).expect("latencies serialize"),
        )),
    }
}

pub async fn action(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(action): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let admin_only = || -> ApiResult<()> {
        if caller.admin {
            Ok(())
        } else {
            Err(ApiError(tessera_engine::Error::Unauthorized(format!(
                "{action} requires an admin token"
            ))))
        }
    };
    let resp = match action.as_str() {
        "info" => {
            let cores = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .to_string();
            json(&json!({
                "Cores": cores, "Maximum Cores": cores, "Datastore Version": "0.11.0",
                "DVID Version": format!("v0.11.0-tessera-{}", env!("CARGO_PKG_VERSION")),
                "Tessera Version": env!("CARGO_PKG_VERSION"),
                "Storage backend": st.engine.store_engine_names(),
                "Server time": chrono::Utc::now().to_rfc3339(),
                "Server uptime": format!("{:?}", st.started.elapsed()),
                "RPC Address": "", "Host": hostname(), "Note": st.config.server.note,
                "TOML location": "", "Compute": format!("{} ({})", st.engine.compute().backend().name(), st.engine.compute().adapter()),
                "Mode": st.config.server.rwmode,
            }))
        }
        "note" => (
            [(header::CONTENT_TYPE, "text/plain")],
            st.config.server.note.clone(),
        )
            .into_response(),
        "config" => {
            admin_only()?;
            (
                [(header::CONTENT_TYPE, "text/plain")],
                st.config_text.clone(),
            )
                .into_response()
        }
        "sync" => sync_status(&st, q.get("wait")).await?,
        // Server administration under access control, like gc (`auth::PUBLIC_SERVER_ACTIONS`).
        "storage" => json(&stores_json(&st)),
        "types" => type_map(&st, false),
        "routes" => routes_json(&st),
        "compiled-types" => type_map(&st, true),
        other => return Err(ApiError::bad(format!("unknown server action {other:?}"))),
    };
    Ok(resp)
}

/// `GET /api/server/storage` (Tessera's own; admin when access control is on): each store with
/// its engine, where its objects live, and the instances placed on it.
fn stores_json(st: &AppState) -> Value {
    let mut placed = st.engine.instances_by_store();
    let out: Map<String, Value> = st
        .engine
        .store_io()
        .into_iter()
        .map(|(alias, engine, _)| {
            let objects = st.content_stores.get(&alias).map(|c| c.objects_url());
            let instances = placed.remove(&alias).unwrap_or_default();
            let v = json!({"Engine": engine, "Objects": objects, "Instances": instances});
            (alias, v)
        })
        .collect();
    Value::Object(out)
}

/// `POST /api/server/gc[?grace=SECONDS]` (Tessera's own, admin): mark and sweep of every store
/// keeping blocks as objects, deleting objects no key references at any version and older than
/// the grace period (default one hour; docs/storage.md). Writes may go on meanwhile.
pub async fn gc(
    State(st): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let grace = match q.get("grace") {
        None => Duration::from_secs(3600),
        Some(g) => match g
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
        {
            Some(d) => d,
            None => {
                return Err(ApiError::bad(format!(
                    "grace must be a non-negative number of seconds, not {g:?}"
                )));
            }
        },
    };
    let stores = st.content_stores.clone();
    let reports = tokio::task::spawn_blocking(move || {
        let mut out = Map::new();
        for (alias, store) in stores {
            let r = store.gc(grace)?;
            tracing::info!(store = %alias, referenced = r.referenced, objects = r.objects, deleted = r.deleted, deleted_bytes = r.deleted_bytes, kept_recent = r.kept_recent, "gc");
            out.insert(
                alias,
                json!({"Referenced": r.referenced, "Objects": r.objects, "Deleted": r.deleted,
                       "DeletedBytes": r.deleted_bytes, "KeptRecent": r.kept_recent}),
            );
        }
        Ok::<_, tessera_storage::Error>(out)
    })
    .await
    .map_err(|e| ApiError(tessera_engine::Error::Internal(format!("gc task: {e}"))))?
    .map_err(|e| ApiError(e.into()))?;
    Ok(json(&Value::Object(reports)))
}

/// `GET /api/server/sync[?wait=SECONDS]` (Tessera's own): whether every sync subscriber
/// (KeepMeshes, …) has applied every committed change, waiting up to `wait` seconds (at most
/// 600) for it, and the events waiting per subscription.
async fn sync_status(st: &Shared, wait: Option<&String>) -> ApiResult<Response> {
    let wait = match wait {
        None => 0.0,
        Some(w) => match w.parse::<f64>() {
            Ok(s) if (0.0..=600.0).contains(&s) => s,
            _ => {
                return Err(ApiError::bad(format!(
                    "wait={w:?} must be a number of seconds from 0 to 600"
                )));
            }
        },
    };
    let engine = st.engine.clone();
    let (caught_up, backlog) = tokio::task::spawn_blocking(move || {
        let caught_up = engine.wait_caught_up(std::time::Duration::from_secs_f64(wait));
        engine.sync_backlog().map(|b| (caught_up, b))
    })
    .await
    .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))??;
    let backlog: Map<String, Value> = backlog
        .into_iter()
        .map(|(id, n)| (id, Value::from(n)))
        .collect();
    Ok(json(&json!({"CaughtUp": caught_up, "Backlog": backlog})))
}

/// `GET /api/server/routes` (Tessera's own): every route template with the access it asks
/// for (docs/access.md), and every datatype's keywords — what the access tests enumerate.
fn routes_json(st: &Shared) -> Response {
    let routes: Vec<Value> = super::table()
        .into_iter()
        .map(|(path, _, access)| json!({"path": path, "access": access}))
        .collect();
    let keywords: Map<String, Value> = st
        .engine
        .datatypes()
        .map(|t| (t.type_name().to_string(), json!(t.keywords())))
        .collect();
    json(&json!({"routes": routes, "keywords": keywords, "enforced": st.auth.enforced()}))
}

fn type_map(st: &Shared, all: bool) -> Response {
    let used = st.engine.types_in_use();
    let map: Map<String, Value> = st
        .engine
        .datatypes()
        .filter(|t| all || used.contains(&t.type_name()))
        .map(|t| {
            (
                t.type_name().to_string(),
                Value::String(t.type_url().to_string()),
            )
        })
        .collect();
    json(&Value::Object(map))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
