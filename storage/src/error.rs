use std::fmt;

/// Storage failures. `Conflict` is the lazy conflict of a conflict-free merge (spec §1.4): a
/// key that has different values on two parent paths of a merge node.
#[derive(Debug)]
pub enum Error {
    Engine(String),
    /// The disk (or a quota) is full: writes fail until space is freed; reads still work.
    NoSpace(String),
    Conflict {
        key: Vec<u8>,
        versions: Vec<u32>,
    },
    Corrupt(String),
    /// A configuration the engine cannot open (a bad object store URL or option).
    Config(String),
    /// A remote store (object storage) refused or failed the request after its retries.
    Unavailable(String),
    /// A remote store did not answer in time after its retries.
    Timeout(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Engine(m) => write!(f, "storage engine error: {m}"),
            Error::NoSpace(m) => write!(f, "storage is out of space: {m}"),
            Error::Conflict { key, versions } => write!(
                f,
                "found multiple values for key {} among parents (versions {versions:?}); resolve the merge",
                String::from_utf8_lossy(key)
            ),
            Error::Corrupt(m) => write!(f, "corrupt stored data: {m}"),
            Error::Config(m) => write!(f, "storage configuration: {m}"),
            Error::Unavailable(m) => write!(f, "storage unavailable: {m}"),
            Error::Timeout(m) => write!(f, "storage timed out: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        let m = e.into_string();
        // RocksDB reports ENOSPC, EDQUOT and EFBIG (a file-size limit) as IO errors with the
        // OS's message; once it has seen one it refuses writes with the same message.
        const FULL: [&str; 3] = [
            "No space left on device",
            "Disk quota exceeded",
            "File too large",
        ];
        if FULL.iter().any(|f| m.contains(f)) {
            Error::NoSpace(m)
        } else {
            Error::Engine(m)
        }
    }
}
