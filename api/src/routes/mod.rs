//! DVID's URL grammar (spec §3.1): one module per level, thin handlers over engine calls.

mod console;
mod data;
mod node;
mod precomputed;
mod repo;
mod server;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, head, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::asset))
        .route("/api/help", get(server::help))
        .route("/api/help/", get(server::help))
        .route("/api/help/{typename}", get(server::type_help))
        .route("/api/heartbeat", get(server::heartbeat))
        .route("/api/load", get(server::load))
        .route("/api/user-latencies", get(server::user_latencies))
        .route("/api/server/{action}", get(server::action))
        .route("/api/repos", post(repo::create))
        .route("/api/repos/info", get(repo::all_info))
        .route("/api/repo/{uuid}", head(repo::exists))
        .route(
            "/api/repo/{uuid}/info",
            get(repo::info).post(repo::set_info),
        )
        .route("/api/repo/{uuid}/instance", post(repo::new_instance))
        .route(
            "/api/repo/{uuid}/log",
            get(repo::log).post(repo::append_log),
        )
        .route(
            "/api/repo/{uuid}/branch-versions/{name}",
            get(repo::branch_versions),
        )
        .route("/api/repo/{uuid}/merge", post(repo::merge))
        .route("/api/repo/{uuid}/resolve", post(repo::resolve))
        .route(
            "/api/node/{uuid}/{action}",
            get(node::get_action).post(node::post_action),
        )
        .route("/api/node/{uuid}/{data}/{keyword}", any(data::handle))
        .route("/api/node/{uuid}/{data}/{keyword}/", any(data::handle))
        .route(
            "/api/node/{uuid}/{data}/{keyword}/{*rest}",
            any(data::handle),
        )
        .route(
            "/precomputed/{uuid}/{data}/{*rest}",
            get(precomputed::handle),
        )
        .fallback(not_found)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("Could not find the URL: {}", uri.path()),
    )
        .into_response()
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
