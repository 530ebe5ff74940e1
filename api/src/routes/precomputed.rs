//! `/precomputed/<uuid>/<instance>/…`: any version of a labelmap or uint8blk as a neuroglancer
//! precomputed volume (`tessera_engine::precomputed`), for tools that speak no DVID.

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::Response;
use tessera_engine::datatype::Caller;
use tessera_engine::precomputed;

use super::data::into_response;
use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

pub async fn handle(
    State(st): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let raw = uri.path().strip_prefix("/precomputed/").unwrap_or_default();
    let segs = super::decoded_segments(raw);
    if segs.len() < 3 {
        return Err(ApiError(tessera_engine::Error::not_found(
            "precomputed paths are /precomputed/<uuid>/<instance>/<file>",
        )));
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let engine = st.engine.clone();
    // The precomputed view serves reads only.
    let resp = crate::lanes::spawn(true, move || {
        let range = range.as_deref();
        precomputed::serve(
            engine.as_ref(),
            &segs[0],
            &segs[1],
            &segs[2..],
            range,
            &caller,
        )
        .and_then(tessera_engine::datatype::DataResponse::first_chunk_checked)
    })
    .await
    .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))??;
    Ok(into_response(resp, true))
}
