//! Where a batch job (`tessera pyramid`, `tessera mesh`) writes: a directory, or an object store
//! named by URL, for workers that share no file system.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use parking_lot::Mutex;
use tessera_storage::{ObjectConfig, Objects};

/// Files gathered before they are sent together.
const BATCH: usize = 256;

pub enum Out {
    Dir(PathBuf),
    /// `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`; credentials and endpoint from the
    /// usual environment variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, …).
    Objects(String),
}

impl Out {
    pub fn parse(s: &str) -> Out {
        if s.contains("://") {
            Out::Objects(s.to_string())
        } else {
            Out::Dir(PathBuf::from(s))
        }
    }

    /// A writer of whole files into this output (a directory is created).
    pub fn files(&self) -> anyhow::Result<Files> {
        Ok(match self {
            Out::Dir(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Files::Dir(dir.clone())
            }
            Out::Objects(url) => Files::Objects {
                objects: open_objects(url)?,
                pending: Mutex::new(Vec::new()),
            },
        })
    }
}

pub fn open_objects(url: &str) -> anyhow::Result<Objects> {
    Objects::open(&ObjectConfig::new(url)).map_err(|e| anyhow::anyhow!("opening {url}: {e}"))
}

/// Whole files written from any thread; into an object store they go in batches, so call
/// [`Files::finish`] at the end.
pub enum Files {
    Dir(PathBuf),
    Objects {
        objects: Objects,
        pending: Mutex<Vec<(String, Bytes)>>,
    },
}

impl Files {
    pub fn write(&self, name: String, bytes: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Files::Dir(dir) => {
                let path = dir.join(name);
                std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
            }
            Files::Objects { pending, .. } => {
                let full = {
                    let mut p = pending.lock();
                    p.push((name, Bytes::from(bytes)));
                    if p.len() < BATCH {
                        return Ok(());
                    }
                    std::mem::take(&mut *p)
                };
                self.send(full)
            }
        }
    }

    fn send(&self, files: Vec<(String, Bytes)>) -> anyhow::Result<()> {
        if let Files::Objects { objects, .. } = self {
            objects
                .put_files(files)
                .map_err(|e| anyhow::anyhow!("writing to {}: {e}", objects.url()))?;
        }
        Ok(())
    }

    /// Sends what is still gathered.
    pub fn finish(&self) -> anyhow::Result<()> {
        match self {
            Files::Dir(_) => Ok(()),
            Files::Objects { pending, .. } => {
                let rest = std::mem::take(&mut *pending.lock());
                self.send(rest)
            }
        }
    }
}
