//! Repo endpoints (spec §3.3).

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tessera_engine::datatype::{Caller, Settings};

use super::{exact_json, json, optional_body, required_body};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

#[derive(Default, Deserialize)]
struct NewRepo {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    description: String,
    root: Option<String>,
    #[serde(default)]
    passcode: String,
}

pub async fn create(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    // Open when no admin token is configured (older DVIDs; current DVID makes it admin-only).
    // With access control on, the gate has already asked for write on every repo.
    if st.auth.has_admin_token() && !st.auth.enforced() && !caller.admin {
        return Err(ApiError(tessera_engine::Error::Unauthorized(
            "creating a repo requires a valid admintoken".into(),
        )));
    }
    let r: NewRepo = optional_body(&body)?;
    let root = st
        .engine
        .create_repo(&r.alias, &r.description, r.root.as_deref(), &r.passcode)?;
    Ok(exact_json(format!("{{\"root\": \"{root}\"}}")))
}

/// Every repo the caller may see (all of them unless access control is on).
pub async fn all_info(
    State(st): State<Shared>,
    Extension(who): Extension<Arc<Identity>>,
) -> Response {
    let mut repos = st.engine.repos_info();
    if let Some(map) = repos.as_object_mut() {
        map.retain(|root, _| st.auth.may_list(&st.engine, &who, root));
    }
    json(&repos)
}

pub async fn exists(State(st): State<Shared>, Path(uuid): Path<String>) -> ApiResult<Response> {
    let info = st.engine.repo_info(&uuid)?;
    Ok(format!(
        "Repo available with root UUID {}",
        info["Root"].as_str().unwrap_or_default()
    )
    .into_response())
}

pub async fn info(State(st): State<Shared>, Path(uuid): Path<String>) -> ApiResult<Response> {
    Ok(json(&st.engine.repo_info(&uuid)?))
}

#[derive(Default, Deserialize)]
struct RepoEdit {
    alias: Option<String>,
    description: Option<String>,
}

pub async fn set_info(
    State(st): State<Shared>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let e: RepoEdit = required_body(&body)?;
    st.engine.set_repo_info(&uuid, e.alias, e.description)?;
    Ok(().into_response())
}

pub async fn new_instance(
    State(st): State<Shared>,
    Path(uuid): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let settings = Settings::from_json(&body)?;
    let engine = st.engine.clone();
    let node = engine.resolve_uuid(&uuid)?;
    let (name, type_name) = engine.create_instance(&uuid, &settings, &caller)?;
    Ok(exact_json(format!(
        "{{\"result\": \"Added {name} [{type_name}] to node {node}\"}}"
    )))
}

#[derive(Default, Deserialize)]
struct LogBody {
    #[serde(default)]
    log: Vec<String>,
}

pub async fn log(State(st): State<Shared>, Path(uuid): Path<String>) -> ApiResult<Response> {
    Ok(json(&json!({ "log": st.engine.repo_log(&uuid)? })))
}

pub async fn append_log(
    State(st): State<Shared>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: LogBody = required_body(&body)?;
    st.engine.append_repo_log(&uuid, &b.log)?;
    Ok(().into_response())
}

pub async fn branch_versions(
    State(st): State<Shared>,
    Path((uuid, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(json(&json!(st.engine.branch_versions(&uuid, &name)?)))
}

#[derive(Deserialize)]
struct MergeBody {
    #[serde(rename = "mergeType")]
    merge_type: String,
    parents: Vec<String>,
    #[serde(default)]
    note: String,
}

pub async fn merge(
    State(st): State<Shared>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let m: MergeBody = required_body(&body)?;
    if m.merge_type != "conflict-free" {
        return Err(ApiError::bad(format!(
            "merge type {:?} is not supported: only \"conflict-free\"",
            m.merge_type
        )));
    }
    let child = st.engine.merge(&uuid, &m.parents, m.note)?;
    Ok(exact_json(format!("{{\"child\": \"{child}\"}}")))
}

#[derive(Deserialize)]
struct ResolveBody {
    data: Vec<String>,
    parents: Vec<String>,
    #[serde(default)]
    note: String,
}

pub async fn resolve(
    State(st): State<Shared>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let r: ResolveBody = required_body(&body)?;
    let engine = st.engine.clone();
    let child =
        tokio::task::spawn_blocking(move || engine.resolve(&uuid, &r.data, &r.parents, r.note))
            .await
            .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))??;
    Ok(exact_json(format!("{{\"child\": \"{child}\"}}")))
}
