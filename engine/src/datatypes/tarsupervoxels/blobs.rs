//! Supervoxel blobs at one version: the read path every endpoint shares, and the streamed
//! `GET tarfile` archive built on it.

use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;
use tessera_storage::{VersionedStore, View};

use super::archive::{END, append_entry, entry_name};
use super::keys::tkey;
use crate::Result;
use crate::datatype::DataCtx;
use crate::datatypes::labelmap::Labelmap;
use crate::mesh::format::{self, Format};

/// Bytes gathered before a streamed archive hands out a chunk.
const CHUNK: usize = 1 << 20;

/// An instance's blobs at the version a request reads, owned so a streamed answer can carry it.
#[derive(Clone)]
pub struct Blobs {
    store: VersionedStore,
    view: View,
    pub extension: Arc<str>,
    generator: Option<Arc<Generator>>,
}

/// Meshes supervoxels without a stored blob (the `Generate` setting) from the synced
/// labelmap at the request's node.
pub struct Generator {
    pub labelmap: Labelmap,
    pub format: Format,
}

impl Generator {
    pub fn mesh(&self, sv: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .labelmap
            .mesh(sv, true)?
            .map(|m| format::encode(&m, self.format)))
    }
}

impl Blobs {
    pub fn new(ctx: &DataCtx, extension: &str) -> Blobs {
        Blobs {
            store: ctx.store.clone(),
            view: ctx.view.clone(),
            extension: extension.into(),
            generator: None,
        }
    }

    /// These blobs, with supervoxels that lack one meshed by `generator`.
    pub fn generating(mut self, generator: Generator) -> Blobs {
        self.generator = Some(Arc::new(generator));
        self
    }

    /// The blob of `sv` at this version: the value stored here or at the nearest ancestor
    /// (an empty blob is data), else what [`Blobs::without_data`] gives. Every read goes
    /// through here.
    pub fn get(&self, sv: u64) -> Result<Option<Vec<u8>>> {
        match self.store.get(&self.view, &tkey(sv))? {
            Some(v) => Ok(Some(v)),
            None => self.without_data(sv),
        }
    }

    /// What a supervoxel without stored data gets: its mesh when generating (not stored: a
    /// read never writes; `POST generate` stores), else nothing, so it reads as missing (404,
    /// a `.missing` tar entry, `false` in `exists`).
    fn without_data(&self, sv: u64) -> Result<Option<Vec<u8>>> {
        match &self.generator {
            Some(g) => g.mesh(sv),
            None => Ok(None),
        }
    }

    /// Whether each supervoxel has a blob, in order. When generating, a supervoxel with
    /// voxels has one, without meshing it to find out.
    pub fn present(&self, svs: &[u64]) -> Result<Vec<bool>> {
        svs.par_iter()
            .map(|&sv| {
                if sv == 0 {
                    return Ok(false);
                }
                if self.store.get(&self.view, &tkey(sv))?.is_some() {
                    return Ok(true);
                }
                match &self.generator {
                    Some(g) => g.labelmap.supervoxel_exists(sv),
                    None => Ok(false),
                }
            })
            .collect()
    }

    /// The supervoxels among `svs` without a stored blob, in order (generation aside).
    pub fn unstored(&self, svs: &[u64]) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for &sv in svs {
            if self.store.get(&self.view, &tkey(sv))?.is_none() {
                out.push(sv);
            }
        }
        Ok(out)
    }

    pub fn generator(&self) -> Option<&Generator> {
        self.generator.as_deref()
    }

    /// The supervoxels among `svs` without a blob, in order.
    pub fn missing(&self, svs: &[u64]) -> Result<Vec<u64>> {
        let present = self.present(svs)?;
        Ok(svs
            .iter()
            .zip(present)
            .filter(|(_, p)| !p)
            .map(|(&sv, _)| sv)
            .collect())
    }

    /// The tar archive of `svs` in order, produced in chunks of about 1 MiB as the client
    /// reads it: `<sv>.<ext>` per blob, an empty `<sv>.missing` where there is none.
    pub fn tar_stream(self, svs: Vec<u64>) -> impl Iterator<Item = Result<Bytes>> + Send {
        let mut next = 0;
        let mut ended = false;
        std::iter::from_fn(move || {
            if ended {
                return None;
            }
            let mut out = Vec::new();
            while out.len() < CHUNK && next < svs.len() {
                let sv = svs[next];
                next += 1;
                let blob = match self.get(sv) {
                    Ok(b) => b,
                    Err(e) => {
                        ended = true;
                        return Some(Err(e));
                    }
                };
                let ext = blob.as_ref().map(|_| &*self.extension);
                let name = entry_name(sv, ext);
                if let Err(e) = append_entry(&mut out, &name, blob.as_deref().unwrap_or_default()) {
                    ended = true;
                    return Some(Err(e));
                }
            }
            if next == svs.len() {
                out.extend_from_slice(&END);
                ended = true;
            }
            Some(Ok(Bytes::from(out)))
        })
    }
}
