//! Node endpoints (spec §3.4).

use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tessera_engine::datatype::Caller;

use super::{exact_json, json, optional_body, required_body};
use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

pub async fn get_action(
    State(st): State<Shared>,
    Path((uuid, action)): Path<(String, String)>,
) -> ApiResult<Response> {
    let e = &st.engine;
    Ok(match action.as_str() {
        "note" => json(&json!({ "note": e.node_note(&uuid)? })),
        "log" => json(&json!({ "log": e.node_log(&uuid)? })),
        "commit" | "status" => exact_json(format!("{{\"Locked\":{}}}", e.is_locked(&uuid)?)),
        "info" => json(&e.node_json(&uuid)?),
        other => return Err(ApiError::bad(format!("unknown node action {other:?}"))),
    })
}

#[derive(Default, Deserialize)]
struct NoteBody {
    note: Option<String>,
}

#[derive(Default, Deserialize)]
struct CommitBody {
    note: Option<String>,
    #[serde(default)]
    log: Vec<String>,
}

#[derive(Default, Deserialize)]
struct ChildBody {
    #[serde(default)]
    note: String,
    uuid: Option<String>,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    tag: String,
}

#[derive(Default, Deserialize)]
struct LogBody {
    #[serde(default)]
    log: Vec<String>,
}

pub async fn post_action(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((uuid, action)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let e = &st.engine;
    // Node-level POSTs on a committed node are refused, except those making children.
    if matches!(action.as_str(), "note" | "log") && !caller.admin && e.is_locked(&uuid)? {
        return Err(ApiError::bad(format!(
            "Cannot do POST on {action:?} of locked node {uuid}"
        )));
    }
    Ok(match action.as_str() {
        "note" => {
            let b: NoteBody = required_body(&body)?;
            let note = b
                .note
                .ok_or_else(|| ApiError::bad("note body must be {\"note\": \"...\"}"))?;
            e.set_node_note(&uuid, note)?;
            ().into_response()
        }
        "log" => {
            let b: LogBody = required_body(&body)?;
            e.append_node_log(&uuid, &b.log)?;
            ().into_response()
        }
        "commit" => {
            let b: CommitBody = optional_body(&body)?;
            let committed = e.commit(&uuid, b.note, b.log)?;
            exact_json(format!("{{\"committed\": \"{committed}\"}}"))
        }
        "newversion" => {
            let b: ChildBody = optional_body(&body)?;
            let child = e.new_version(&uuid, None, b.note, b.uuid.as_deref())?;
            exact_json(format!("{{\"child\": \"{child}\"}}"))
        }
        "branch" => {
            let b: ChildBody = required_body(&body)?;
            if b.branch.is_empty() || b.branch == "master" {
                return Err(ApiError::bad(
                    "branch needs a \"branch\" name other than \"master\"",
                ));
            }
            let child = e.new_version(&uuid, Some(&b.branch), b.note, b.uuid.as_deref())?;
            exact_json(format!("{{\"child\": \"{child}\"}}"))
        }
        "tag" => {
            let b: ChildBody = required_body(&body)?;
            let child = e.tag(&uuid, &b.tag, b.note)?;
            exact_json(format!("{{\"child\": \"{child}\"}}"))
        }
        other => return Err(ApiError::bad(format!("unknown node action {other:?}"))),
    })
}
