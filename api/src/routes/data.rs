//! Instance requests, `/api/node/{uuid}/{data}/{keyword}/...`, handed to the engine.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use tessera_engine::datatype::{self, DataRequest};

use crate::error::{ApiError, ApiResult};
use crate::server::Shared;

pub async fn handle(
    State(st): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let method = match method {
        Method::GET => datatype::Method::Get,
        Method::HEAD => datatype::Method::Head,
        Method::POST => datatype::Method::Post,
        Method::PUT => datatype::Method::Put,
        Method::DELETE => datatype::Method::Delete,
        other => return Err(ApiError::bad(format!("method {other} is not supported"))),
    };
    // Segments come from the raw path so an encoded '/' inside a key stays inside it.
    let raw = uri.path().strip_prefix("/api/node/").unwrap_or_default();
    let mut segs: Vec<String> = raw
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    if segs.len() < 3 {
        return Err(ApiError::bad(
            "instance requests need /api/node/<uuid>/<data>/<keyword>",
        ));
    }
    let path = segs.split_off(3);
    let (uuid, name, keyword) = (segs[0].clone(), segs[1].clone(), segs[2].clone());
    let caller = st.caller(&q);
    let req = DataRequest {
        method,
        keyword,
        path,
        query: datatype::Query(q),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    };
    let engine = st.engine.clone();
    let resp =
        tokio::task::spawn_blocking(move || engine.data_request(&uuid, &name, &req, &caller))
            .await
            .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))??;
    Ok(into_response(resp))
}

fn into_response(r: datatype::DataResponse) -> Response {
    let body = match r.body {
        datatype::Body::Full(b) => Body::from(b),
        datatype::Body::Stream(iter) => {
            // Produce chunks on a blocking thread; the channel bounds memory to a few chunks.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            tokio::task::spawn_blocking(move || {
                for chunk in iter {
                    let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        break;
                    }
                }
            });
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            h.insert(k, v);
        }
    }
    resp
}
