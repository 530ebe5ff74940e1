use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// HTTP methods the DVID API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Query-string parameters. Unknown parameters are kept and ignored by handlers.
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    /// DVID's boolean flags: "true", "1" and "on" are true (case-insensitive).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "on"))
    }
}

/// One request to a data instance, already routed: `keyword` is the path segment after the
/// instance name and `path` the (percent-decoded) segments after it.
#[derive(Debug, Clone)]
pub struct DataRequest {
    pub method: Method,
    pub keyword: String,
    pub path: Vec<String>,
    pub query: Query,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The whole body, unless it is being streamed (then empty).
    pub body: Bytes,
    /// The body as it arrives, for the requests a datatype asked to stream
    /// (`Datatype::streams_body`).
    pub stream: Option<BodyStream>,
}

impl DataRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body's reader: the stream when there is one, else the buffered body.
    pub fn body_reader(&self) -> Box<dyn Read + Send + '_> {
        match &self.stream {
            Some(s) => Box::new(s.clone()),
            None => Box::new(&self.body[..]),
        }
    }
}

/// A request body read while it arrives (blocking reads). A body past the server's size
/// limit fails with `ErrorKind::FileTooLarge`.
#[derive(Clone)]
pub struct BodyStream(Arc<Mutex<Box<dyn Read + Send>>>);

impl BodyStream {
    pub fn new(reader: impl Read + Send + 'static) -> BodyStream {
        BodyStream(Arc::new(Mutex::new(Box::new(reader))))
    }
}

impl Read for BodyStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().read(buf)
    }
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyStream")
    }
}

/// A response body: whole, or produced chunk by chunk so large reads need not be held in memory.
pub enum Body {
    Full(Bytes),
    Stream(Box<dyn Iterator<Item = crate::Result<Bytes>> + Send>),
}

pub struct DataResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl DataResponse {
    pub fn bytes(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: Body::Full(body.into()),
        }
    }
    pub fn octets(body: impl Into<Bytes>) -> Self {
        Self::bytes("application/octet-stream", body)
    }
    pub fn json(value: &serde_json::Value) -> Self {
        Self::bytes(
            "application/json",
            serde_json::to_vec(value).expect("JSON values serialize"),
        )
    }
    pub fn text(body: impl Into<String>) -> Self {
        Self::bytes("text/plain", body.into())
    }
    /// A 200 whose body is produced chunk by chunk as the client reads it.
    pub fn stream(
        content_type: &'static str,
        chunks: impl Iterator<Item = crate::Result<Bytes>> + Send + 'static,
    ) -> Self {
        Self {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: Body::Stream(Box::new(chunks)),
        }
    }
    /// 200 with an empty body, DVID's answer to most successful POSTs.
    pub fn empty() -> Self {
        Self::bytes("text/plain", Bytes::new())
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}
