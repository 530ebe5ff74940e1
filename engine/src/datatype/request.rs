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
    /// DVID's boolean flags: "true", "1" and "on" are true; "false", "0", "off", an empty value
    /// or no parameter false (case-insensitive). Anything else is a 400 naming the parameter:
    /// a typo must not quietly mean "false".
    pub fn flag(&self, name: &str) -> crate::Result<bool> {
        self.flag_or(name, false)
    }

    /// `flag`, with `default` when the parameter is absent.
    pub fn flag_or(&self, name: &str, default: bool) -> crate::Result<bool> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "on" => Ok(true),
            "false" | "0" | "off" | "" => Ok(false),
            _ => Err(crate::Error::bad(format!(
                "query parameter {name}={v:?} must be true or false"
            ))),
        }
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

/// The pseudo-header (no HTTP header name can begin with ':') under which the API passes the
/// path segments after the keyword as the client sent them, still percent-encoded and joined by
/// '/', so that datatypes whose segments are bytes (keyvalue keys) see them exactly; `path`
/// holds them as text, with U+FFFD for bytes that are not UTF-8.
pub const RAW_PATH_HEADER: &str = ":raw-path";

impl DataRequest {
    /// The one path segment after the keyword; a 400 naming `what` otherwise.
    pub fn one_segment(&self, what: &str) -> crate::Result<&str> {
        match self.path.as_slice() {
            [one] => Ok(one),
            _ => Err(crate::Error::bad(format!(
                "{} needs exactly one path segment: {what}",
                self.keyword
            ))),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The path segments after the keyword as bytes: percent-decoded from the raw path the API
    /// passed ([`RAW_PATH_HEADER`]), else (requests built inside the engine) `path`'s text.
    pub fn path_bytes(&self) -> Vec<Vec<u8>> {
        if let Some(raw) = self
            .header(RAW_PATH_HEADER)
            .filter(|_| !self.path.is_empty())
        {
            let segs: Vec<Vec<u8>> = raw.split('/').map(percent_decode).collect();
            if segs.len() == self.path.len() {
                return segs;
            }
        }
        self.path.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// `hash=<md5 hex of the body>`, checked when given (labelmap and tarsupervoxels reads
    /// that carry a body).
    pub fn check_hash(&self) -> crate::Result<()> {
        if let Some(want) = self.query.get("hash") {
            let got = format!("{:x}", md5::compute(&self.body));
            if !got.eq_ignore_ascii_case(want) {
                return Err(crate::Error::bad(format!(
                    "hash {want} does not match the body's MD5 {got}"
                )));
            }
        }
        Ok(())
    }

    /// The body's reader: the stream when there is one, else the buffered body.
    pub fn body_reader(&self) -> Box<dyn Read + Send + '_> {
        match &self.stream {
            Some(s) => Box::new(s.clone()),
            None => Box::new(&self.body[..]),
        }
    }
}

/// `%XX` (two hex digits) → that byte; anything else, a lone '%' included, stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
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
    /// Produces a streamed body's first chunk now, so a failure there (a store that is down)
    /// becomes the response's status and message instead of a body cut off after a 200.
    pub fn first_chunk_checked(mut self) -> crate::Result<Self> {
        if let Body::Stream(mut iter) = self.body {
            self.body = match iter.next() {
                None => Body::Full(Bytes::new()),
                Some(first) => Body::Stream(Box::new(std::iter::once(Ok(first?)).chain(iter))),
            };
        }
        Ok(self)
    }

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

/// A label named in a path: a positive 64-bit integer (0 is the background).
pub fn parse_label(s: &str) -> crate::Result<u64> {
    match s.parse::<u64>() {
        Ok(0) => Err(crate::Error::bad(
            "label 0 is the background and can't be used here",
        )),
        Ok(l) => Ok(l),
        Err(_) => Err(crate::Error::bad(format!(
            "{s:?} is not a label (a positive 64-bit integer)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &[&str], raw: Option<&str>) -> DataRequest {
        DataRequest {
            method: Method::Get,
            keyword: "key".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Query::default(),
            headers: raw
                .map(|r| (RAW_PATH_HEADER.to_string(), r.to_string()))
                .into_iter()
                .collect(),
            body: Bytes::new(),
            stream: None,
        }
    }

    #[test]
    fn path_bytes_come_from_the_raw_path() {
        assert_eq!(
            percent_decode("%FF%fe%2Fa%"),
            [0xFF, 0xFE, b'/', b'a', b'%']
        );
        assert_eq!(percent_decode("%G1%4"), b"%G1%4");
        let r = req(&["\u{FFFD}\u{FFFD}", "b"], Some("%FF%FE/b"));
        assert_eq!(r.path_bytes(), [vec![0xFF, 0xFE], b"b".to_vec()]);
        assert_eq!(req(&["a"], None).path_bytes(), [b"a".to_vec()]);
        assert_eq!(req(&[], Some("")).path_bytes(), Vec::<Vec<u8>>::new());
        assert_eq!(req(&[""], Some("")).path_bytes(), [Vec::<u8>::new()]);
        // a raw path that doesn't match the segments is not used
        assert_eq!(req(&["a"], Some("x/y")).path_bytes(), [b"a".to_vec()]);
    }
}
