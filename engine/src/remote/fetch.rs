//! Where a chunked volume's files come from: a local directory, or any URL the object store
//! layer reaches (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`), fetched concurrently
//! with its retries.

use std::path::PathBuf;

use anyhow::Context;
use rayon::prelude::*;
use tessera_storage::{ObjectConfig, Objects};

/// Files by path under a volume's root (`info`, `s0/0-64_0-64_0-64`, `c/0/0/0`).
pub trait Fetch: Send + Sync {
    /// The files at `paths`, fetched together; `None` for one that does not exist.
    fn get(&self, paths: &[String]) -> anyhow::Result<Vec<Option<Vec<u8>>>>;
    /// The root, for messages.
    fn describe(&self) -> String;
}

pub struct LocalDir(pub PathBuf);

impl Fetch for LocalDir {
    fn get(&self, paths: &[String]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        paths
            .par_iter()
            .map(|p| {
                let path = p.split('/').fold(self.0.clone(), |at, part| at.join(part));
                match std::fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
                }
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.0.display().to_string()
    }
}

/// A volume's root on object storage or an HTTP server.
pub struct Remote {
    objects: Objects,
}

impl Remote {
    pub fn open(cfg: &ObjectConfig) -> anyhow::Result<Remote> {
        Ok(Remote {
            objects: Objects::open(cfg)?,
        })
    }
}

impl Fetch for Remote {
    fn get(&self, paths: &[String]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        Ok(self
            .objects
            .get_files(paths)?
            .into_iter()
            .map(|b| b.map(|b| b.to_vec()))
            .collect())
    }

    fn describe(&self) -> String {
        self.objects.url().to_string()
    }
}
