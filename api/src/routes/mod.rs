//! DVID's URL grammar (spec §3.1): one module per level, thin handlers over engine calls.

mod console;
mod data;
mod node;
mod precomputed;
mod repo;
mod server;
mod transfer;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, head, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;

pub use data::data_method;

use crate::auth::Access;
use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

/// Every route with the access it asks of a caller (`auth::Access`): the router and access
/// control are both built from this table, so a route cannot be added without a rule.
pub fn table() -> Vec<(&'static str, MethodRouter<Shared>, Access)> {
    use Access::*;
    vec![
        ("/", get(console::index), Public),
        ("/console/{file}", get(console::asset), Public),
        ("/metrics", get(server::metrics), Public),
        ("/api/help", get(server::help), Public),
        ("/api/help/", get(server::help), Public),
        ("/api/help/{typename}", get(server::type_help), Public),
        ("/api/heartbeat", get(server::heartbeat), Public),
        ("/api/load", get(server::load), Public),
        (
            "/api/user-latencies",
            get(server::user_latencies),
            ServerAdmin,
        ),
        ("/api/server/gc", post(server::gc), ServerAdmin),
        ("/api/server/{action}", get(server::action), ServerAction),
        ("/api/repos", post(repo::create), ServerWrite),
        ("/api/repos/info", get(repo::all_info), Public),
        ("/api/repo/{uuid}", head(repo::exists), Repo),
        (
            "/api/repo/{uuid}/info",
            get(repo::info).post(repo::set_info),
            RepoAdmin,
        ),
        (
            "/api/repo/{uuid}/instance",
            post(repo::new_instance),
            RepoAdmin,
        ),
        (
            "/api/repo/{uuid}/log",
            get(repo::log).post(repo::append_log),
            Repo,
        ),
        (
            "/api/repo/{uuid}/branch-versions/{name}",
            get(repo::branch_versions),
            Repo,
        ),
        ("/api/repo/{uuid}/merge", post(repo::merge), Repo),
        ("/api/repo/{uuid}/resolve", post(repo::resolve), Repo),
        (
            "/api/repo/{uuid}/export/{step}",
            post(transfer::export),
            RepoRead,
        ),
        (
            "/api/repo/{uuid}/import/{step}",
            post(transfer::import),
            Import,
        ),
        (
            "/api/node/{uuid}/{action}",
            get(node::get_action).post(node::post_action),
            Repo,
        ),
        ("/api/node/{uuid}/{data}/{keyword}", any(data::handle), Data),
        (
            "/api/node/{uuid}/{data}/{keyword}/",
            any(data::handle),
            Data,
        ),
        (
            "/api/node/{uuid}/{data}/{keyword}/{*rest}",
            any(data::handle),
            Data,
        ),
        (
            "/precomputed/{uuid}/{data}/{*rest}",
            get(precomputed::handle),
            Repo,
        ),
    ]
}

pub fn routes() -> Router<Shared> {
    table()
        .into_iter()
        .fold(Router::new(), |r, (path, handler, _)| {
            r.route(path, handler)
        })
        .fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("Could not find the URL: {}", uri.path()),
    )
        .into_response()
}

/// A raw URL path's '/'-separated segments, each percent-decoded: from the raw path, so an
/// encoded '/' inside a segment (a keyvalue key) stays inside it.
pub fn decoded_segments(raw: &str) -> Vec<String> {
    raw.split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// A JSON body written by hand, for DVID's exact spacing (`{"root": "<uuid>"}`).
pub fn exact_json(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

pub fn json(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Parses an optional JSON body: empty means `T::default()`.
pub fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    required_body(body)
}

pub fn required_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON body: {e}")))
}
