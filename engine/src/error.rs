use std::fmt;

/// Engine failures, each mapped to the HTTP status DVID uses for it (spec §3.1: almost
/// everything is 400; 404 only where the spec says so).
#[derive(Debug)]
pub enum Error {
    BadRequest(String),
    NotFound(String),
    Unauthorized(String),
    Forbidden(String),
    PayloadTooLarge(String),
    /// The request contradicts what the server holds (a transfer's diverged history).
    Conflict(String),
    RangeNotSatisfiable {
        len: u64,
    },
    /// The store is out of space: the write was refused whole; reads still work.
    InsufficientStorage(String),
    /// A remote store failed or refused after its retries: try again later.
    Unavailable(String),
    /// A remote store did not answer in time after its retries.
    Timeout(String),
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::PayloadTooLarge(_) => 413,
            Error::Conflict(_) => 409,
            Error::RangeNotSatisfiable { .. } => 416,
            Error::InsufficientStorage(_) => 507,
            Error::Unavailable(_) => 503,
            Error::Timeout(_) => 504,
            Error::Internal(_) => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m)
            | Error::NotFound(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::PayloadTooLarge(m)
            | Error::Conflict(m)
            | Error::InsufficientStorage(m)
            | Error::Unavailable(m)
            | Error::Timeout(m)
            | Error::Internal(m) => f.write_str(m),
            Error::RangeNotSatisfiable { len } => {
                write!(f, "requested range not satisfiable for length {len}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<tessera_storage::Error> for Error {
    fn from(e: tessera_storage::Error) -> Self {
        match e {
            // A lazy merge conflict is the caller's to resolve, so it is a 400 (spec §1.4).
            tessera_storage::Error::Conflict { .. } => Error::BadRequest(e.to_string()),
            tessera_storage::Error::NoSpace(_) => Error::InsufficientStorage(format!(
                "{e}; nothing of this request was written; reads still work, and writes will \
                 succeed again once space is freed"
            )),
            // A write that fails here is refused whole: its objects are uploaded before the
            // KV batch that references them, and that batch is not written.
            tessera_storage::Error::Unavailable(_) => Error::Unavailable(format!(
                "{e}; retry once the object store is reachable again"
            )),
            tessera_storage::Error::Timeout(_) => {
                Error::Timeout(format!("{e}; retry once the object store answers again"))
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::BadRequest(format!("malformed JSON: {e}"))
    }
}

impl From<crate::compute::ComputeError> for Error {
    fn from(e: crate::compute::ComputeError) -> Self {
        match e {
            crate::compute::ComputeError::BadInput(m) => Error::BadRequest(m),
            crate::compute::ComputeError::Device(m) => {
                Error::Internal(format!("compute device: {m}"))
            }
        }
    }
}
