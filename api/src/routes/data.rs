//! Instance requests, `/api/node/{uuid}/{data}/{keyword}/...`, handed to the engine.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use tessera_engine::datatype::{self, BodyStream, Caller, DataRequest};
use tessera_engine::engine::RequestKind;
use tokio_stream::StreamExt;

use crate::error::{ApiError, ApiResult};
use crate::lanes;
use crate::server::Shared;

pub async fn handle(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<Response> {
    let method = data_method(&method)
        .ok_or_else(|| ApiError::bad(format!("method {method} is not supported")))?;
    // Segments come from the raw path so an encoded '/' inside a key stays inside it.
    let raw = uri.path().strip_prefix("/api/node/").unwrap_or_default();
    let mut segs = super::decoded_segments(raw);
    if segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    if segs.len() < 3 {
        return Err(ApiError::bad(
            "instance requests need /api/node/<uuid>/<data>/<keyword>",
        ));
    }
    let path = segs.split_off(3);
    // The same segments still encoded, for datatypes whose segments are bytes (keyvalue keys).
    let raw_path = raw
        .split('/')
        .skip(3)
        .take(path.len())
        .collect::<Vec<_>>()
        .join("/");
    let (uuid, name, keyword) = (segs[0].clone(), segs[1].clone(), segs[2].clone());
    let limit = st.config.max_body_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (body, stream) = if st.engine.streams_body(&uuid, &name, method, &keyword) {
        (Bytes::new(), Some(stream_body(body, limit)))
    } else {
        (collect_body(body, declared, limit).await?, None)
    };
    let req = DataRequest {
        method,
        keyword,
        path,
        query: datatype::Query(q),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .chain([(datatype::RAW_PATH_HEADER.to_string(), raw_path)])
            .collect(),
        body,
        stream,
    };
    let engine = st.engine.clone();
    // Reads by the rule access control uses: POST ptquery or a neuronjson query is a read.
    let read = matches!(
        st.engine.request_kind(&uuid, &name, method, &req.keyword),
        RequestKind::Read
    );
    let resp = lanes::spawn(read, move || {
        engine
            .data_request(&uuid, &name, &req, &caller)
            .and_then(datatype::DataResponse::first_chunk_checked)
    })
    .await
    .map_err(|e| ApiError(tessera_engine::Error::Internal(e.to_string())))??;
    Ok(into_response(resp, read))
}

fn too_large() -> ApiError {
    ApiError(tessera_engine::Error::PayloadTooLarge(
        "request body exceeds the server's limit ([server] max_body_mb)".into(),
    ))
}

/// The whole body, in one buffer sized from Content-Length so a large body is neither
/// copied nor reallocated while it arrives. Past the limit it stops reading and answers 413.
async fn collect_body(body: Body, declared: Option<u64>, limit: usize) -> ApiResult<Bytes> {
    let mut chunks = body.into_data_stream();
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("reading the request body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

/// The body as a blocking reader fed while it arrives; a few chunks are buffered, so a slow
/// consumer holds the client back instead of filling memory. When the handler stops reading
/// early (it refused the request, or the body passed the limit), up to another limit's worth
/// of the body is read and dropped, so the client finishes sending and reads the answer
/// instead of a reset connection.
fn stream_body(body: Body, limit: usize) -> BodyStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(64);
    tokio::spawn(async move {
        let mut chunks = body.into_data_stream();
        let mut total = 0usize;
        // Set once the handler stops reading: how much more to read and drop.
        let mut drain: Option<usize> = None;
        while let Some(chunk) = chunks.next().await {
            let b = match chunk {
                Ok(b) => b,
                Err(e) => {
                    let e = std::io::Error::other(format!("reading the request body: {e}"));
                    if drain.is_none() {
                        let _ = tx.send(Err(e)).await;
                    }
                    break;
                }
            };
            if let Some(left) = drain.as_mut() {
                match left.checked_sub(b.len()) {
                    Some(l) => *left = l,
                    None => break,
                }
                continue;
            }
            total += b.len();
            if total > limit {
                let e = std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    "request body exceeds the server's limit ([server] max_body_mb)",
                );
                let _ = tx.send(Err(e)).await;
                drain = Some(limit);
            } else if tx.send(Ok(b)).await.is_err() {
                // The handler is done (it refused the request).
                drain = Some(limit);
            }
        }
    });
    BodyStream::new(ChannelReader {
        rx,
        chunk: Bytes::new(),
    })
}

struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

/// The datatype layer's name for an HTTP method, for those DVID's routes serve.
pub fn data_method(m: &Method) -> Option<datatype::Method> {
    Some(match *m {
        Method::GET => datatype::Method::Get,
        Method::HEAD => datatype::Method::Head,
        Method::POST => datatype::Method::Post,
        Method::PUT => datatype::Method::Put,
        Method::DELETE => datatype::Method::Delete,
        _ => return None,
    })
}

/// The response; a streamed body's chunks are produced on the read lane when `read`.
pub(super) fn into_response(r: datatype::DataResponse, read: bool) -> Response {
    let body = match r.body {
        datatype::Body::Full(b) => Body::from(b),
        datatype::Body::Stream(iter) => {
            // Produce chunks on a blocking thread; the channel bounds memory to a few chunks.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            lanes::spawn(read, move || {
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
