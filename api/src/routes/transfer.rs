//! The HTTP halves of a transfer between servers (`tessera push`/`pull`, docs/distribution.md):
//! `export/{step}` on the sender (a read: POST only because the requests carry lists) and
//! `import/{step}` on the receiver. JSON in and out, except the records themselves, which
//! travel as binary frames.

use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tessera_engine::datatype::Caller;
use tessera_engine::engine::transfer::{Cursor, Group, Header, Manifest, RecordId, Selection};

use super::{json, optional_body, required_body};
use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

#[derive(Default, Deserialize)]
struct ExportBody {
    #[serde(default)]
    selection: Selection,
    #[serde(default)]
    cursor: Option<Cursor>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    records: Vec<RecordId>,
}

#[derive(Deserialize)]
struct BeginBody {
    manifest: Manifest,
    #[serde(default)]
    new_branch: Option<String>,
}

#[derive(Default, Deserialize)]
struct CompareBody {
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    headers: Vec<Header>,
}

fn to_json<T: serde::Serialize>(v: &T) -> Response {
    json(&serde_json::to_value(v).expect("transfer answers serialize"))
}

/// Runs engine work off the async threads: transfers scan whole instances.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> tessera_engine::Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError(tessera_engine::Error::Internal(format!(
                "transfer task: {e}"
            )))
        })?
        .map_err(ApiError)
}

pub async fn export(
    State(st): State<Shared>,
    Path((uuid, step)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let b: ExportBody = optional_body(&body)?;
    let engine = st.engine.clone();
    Ok(match step.as_str() {
        "manifest" => {
            to_json(&blocking(move || engine.transfer_manifest(&uuid, &b.selection)).await?)
        }
        "groups" => {
            to_json(&blocking(move || engine.transfer_groups(&uuid, &b.selection, b.cursor)).await?)
        }
        "list" => {
            to_json(&blocking(move || engine.transfer_list(&uuid, &b.selection, &b.groups)).await?)
        }
        "fetch" => {
            let frames =
                blocking(move || engine.transfer_fetch(&uuid, &b.selection, &b.records)).await?;
            ([(header::CONTENT_TYPE, "application/octet-stream")], frames).into_response()
        }
        other => return Err(unknown(other, "manifest, groups, list or fetch")),
    })
}

pub async fn import(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((uuid, step)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    // Without access control, a server with an admin token takes transfers only with it (as
    // it creates repos only with it); with access control the gate asked for write rights.
    if st.auth.has_admin_token() && !st.auth.enforced() && !caller.admin {
        return Err(ApiError(tessera_engine::Error::Unauthorized(
            "receiving a transfer requires a valid admin token (--to-token)".into(),
        )));
    }
    let engine = st.engine.clone();
    Ok(match step.as_str() {
        "begin" => {
            let b: BeginBody = required_body(&body)?;
            to_json(
                &blocking(move || {
                    engine.receive_begin(&uuid, &b.manifest, b.new_branch.as_deref())
                })
                .await?,
            )
        }
        "compare" => {
            let b: CompareBody = required_body(&body)?;
            let differ = blocking(move || engine.receive_compare(&uuid, &b.groups)).await?;
            json(&json!({ "differ": differ }))
        }
        "missing" => {
            let b: CompareBody = required_body(&body)?;
            to_json(&blocking(move || engine.receive_missing(&uuid, &b.headers)).await?)
        }
        "records" => to_json(&blocking(move || engine.receive_records(&uuid, &body)).await?),
        "finish" => to_json(&blocking(move || engine.receive_finish(&uuid)).await?),
        other => {
            return Err(unknown(other, "begin, compare, missing, records or finish"));
        }
    })
}

fn unknown(step: &str, steps: &str) -> ApiError {
    ApiError::bad(format!("unknown transfer step {step:?}: use {steps}"))
}
