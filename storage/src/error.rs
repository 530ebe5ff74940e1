use std::fmt;

/// Storage failures. `Conflict` is the lazy conflict of a conflict-free merge (spec §1.4): a
/// key that has different values on two parent paths of a merge node.
#[derive(Debug)]
pub enum Error {
    Engine(String),
    Conflict { key: Vec<u8>, versions: Vec<u32> },
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Engine(m) => write!(f, "storage engine error: {m}"),
            Error::Conflict { key, versions } => write!(
                f,
                "found multiple values for key {} among parents (versions {versions:?}); resolve the merge",
                String::from_utf8_lossy(key)
            ),
            Error::Corrupt(m) => write!(f, "corrupt stored data: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Engine(e.into_string())
    }
}
