//! The sender's half of a transfer: the manifest, group listings, record headers and values
//! of a selection, read from the stores as they are (the sender changes nothing).

use std::collections::HashMap;
use std::sync::Arc;

use tessera_storage::versioned::{self, encode_value, prefix_end, resolve, space};
use tessera_storage::{Dag, KvStore, VersionId, VersionedStore};

use super::{
    Cursor, Digest, GROUP_BYTES, GROUP_UNITS, Group, GroupPage, Header, InstanceRecord, KIND_BLOB,
    KIND_DATA, KIND_LOG, Manifest, NodeRecord, RecordId, Selection, Transmit, write_frame,
};
use crate::block::held::{Held, HeldRoi};
use crate::block::keys::{CLASS_BLOCK, block_key_coord};
use crate::datatypes::roi::Roi;
use crate::engine::{Caller, Engine, match_uuid};
use crate::instance::InstanceMeta;
use crate::mutation::log as mutlog;
use crate::repo::Repo;
use crate::{Error, Result};

/// Groups per listing page at most.
const PAGE_GROUPS: usize = 64;

/// A selection resolved against the sender's repo.
struct Selected {
    manifest: Manifest,
    dag: Arc<Dag>,
    /// The flattened version, for `flatten`.
    flat: Option<VersionId>,
    /// Sent nodes in manifest order: (version, UUID).
    nodes: Vec<(VersionId, String)>,
    uuid_of: HashMap<VersionId, String>,
    instances: Vec<InstanceMeta>,
    stores: Vec<Arc<dyn KvStore>>,
}

/// One unit of a listing: a key and its records (several versions of one data key; one record
/// otherwise), as (node UUID, value as stored).
type Unit = (Vec<u8>, Vec<(String, Vec<u8>)>);

impl Selected {
    fn instance(&self, name: &str) -> Result<usize> {
        self.instances
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::bad(format!("instance {name:?} is not in this transfer")))
    }

    fn node(&self, uuid: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|(_, u)| u == uuid)
            .ok_or_else(|| Error::bad(format!("node {uuid:?} is not in this transfer")))
    }

    /// Whether a data key passes the block filter.
    fn keeps(&self, i: usize, tkey: &[u8]) -> bool {
        let Some(held) = &self.manifest.held else {
            return true;
        };
        if tkey.len() != 14 || tkey[0] != CLASS_BLOCK {
            return true;
        }
        let Ok(c) = block_key_coord(tkey) else {
            return true;
        };
        let size = block_size(&self.instances[i].config);
        size.is_none_or(|bs| held.holds(tkey[1], c, bs))
    }

    /// The data records of one key's stored versions that this selection sends.
    fn data_records(&self, i: usize, tkey: &[u8], entries: &[versioned::Entry]) -> Result<Unit> {
        let mut recs = Vec::new();
        if !self.keeps(i, tkey) {
            return Ok((tkey.to_vec(), recs));
        }
        for (ver, value) in entries {
            // Version 0 holds repo-wide values (labelmap's label ceiling).
            if *ver == 0 {
                recs.push((String::new(), encode_value(value.as_deref())));
            } else if self.flat.is_none()
                && let Some(u) = self.uuid_of.get(ver)
            {
                recs.push((u.clone(), encode_value(value.as_deref())));
            }
        }
        if let Some(v) = self.flat {
            let own: Vec<versioned::Entry> = entries.iter().filter(|e| e.0 != 0).cloned().collect();
            if let Some(value) = resolve(&self.dag, v, &own, tkey)? {
                recs.push((self.nodes[0].1.clone(), encode_value(Some(value))));
            }
        }
        Ok((tkey.to_vec(), recs))
    }

    /// Visits the units of instance `i`, `kind` (and node `n`, for log records) with keys in
    /// `(after, to]` (`from` inclusive instead when `inclusive`), in key order, until `visit`
    /// answers false.
    fn units(
        &self,
        (i, kind, n): (usize, u8, usize),
        from: Option<&[u8]>,
        inclusive: bool,
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(Unit) -> Result<bool>,
    ) -> Result<()> {
        let meta = &self.instances[i];
        let kv = &self.stores[i];
        let start = |base: &[u8]| -> Vec<u8> {
            match from {
                None => base.to_vec(),
                Some(k) if inclusive => [base, k].concat(),
                Some(k) => [base, k, &[0]].concat(),
            }
        };
        let mut err = None;
        let mut guard = |r: Result<bool>| match r {
            Ok(more) => Ok(more),
            Err(e) => {
                err = Some(e);
                Ok(false)
            }
        };
        match kind {
            KIND_DATA => {
                let tstart = start(&[]);
                VersionedStore::new(kv.clone()).scan_grouped(
                    meta.id,
                    &tstart,
                    to,
                    &mut |tkey, entries| {
                        guard(
                            self.data_records(i, tkey, entries)
                                .and_then(|u| if u.1.is_empty() { Ok(true) } else { visit(u) }),
                        )
                    },
                )?;
            }
            KIND_LOG => {
                let (version, uuid) = &self.nodes[n];
                let (base, end) = mutlog::range(meta.id, *version);
                let hi = to.map_or(end, |t| prefix_end(&[&base[..], t].concat()));
                kv.scan(&start(&base), &hi, &mut |k, v| {
                    let unit = (k[base.len()..].to_vec(), vec![(uuid.clone(), v.to_vec())]);
                    guard(visit(unit))
                })?;
            }
            _ => {
                let base = [space::BLOB];
                let hi = to.map_or(vec![space::BLOB + 1], |t| {
                    prefix_end(&[&base[..], t].concat())
                });
                kv.scan(&start(&base), &hi, &mut |k, v| {
                    guard(visit((k[1..].to_vec(), vec![(String::new(), v.to_vec())])))
                })?;
            }
        }
        err.map_or(Ok(()), Err)
    }

    /// The (kind, node) passes of instance `i`, in listing order.
    fn passes(&self) -> Vec<(u8, usize)> {
        let mut out = vec![(KIND_DATA, 0)];
        if self.flat.is_none() {
            out.extend((0..self.nodes.len()).map(|n| (KIND_LOG, n)));
        }
        out.push((KIND_BLOB, 0));
        out
    }

    fn group(&self, (i, kind, n): (usize, u8, usize), lo: &[u8], hi: &[u8], d: &Digest) -> Group {
        Group {
            i: self.instances[i].name.clone(),
            kind,
            node: if kind == KIND_LOG {
                self.nodes[n].1.clone()
            } else {
                String::new()
            },
            lo: lo.to_vec(),
            hi: hi.to_vec(),
            count: d.count,
            bytes: d.bytes,
            digest: d.acc.to_vec(),
        }
    }
}

/// A block instance's block size, from its configuration.
fn block_size(config: &serde_json::Value) -> Option<[usize; 3]> {
    serde_json::from_value(config.get("BlockSize")?.clone()).ok()
}

impl Engine {
    fn select(&self, spec: &str, sel: &Selection) -> Result<Selected> {
        let (repo, version) = {
            let state = self.state.read();
            let at = sel.version.as_deref().unwrap_or(spec);
            let (root, v) = match_uuid(&state, at)?;
            let (root_of_spec, _) = match_uuid(&state, spec)?;
            if root != root_of_spec {
                return Err(Error::bad(format!(
                    "version {at} is not in the repo of {spec}"
                )));
            }
            (state.repos[&root].clone(), v)
        };
        if repo.receiving.is_some() {
            return Err(Error::Unavailable(format!(
                "repo {} is itself being received by a transfer; send it when that finishes",
                repo.root_uuid()
            )));
        }
        let versions: Vec<VersionId> = match sel.transmit {
            Transmit::All => repo.nodes.keys().copied().collect(),
            Transmit::Branch => {
                let mut vs: Vec<VersionId> = repo
                    .nodes
                    .keys()
                    .copied()
                    .filter(|v| *v == version || repo.dag.is_ancestor(*v, version))
                    .collect();
                vs.sort_unstable();
                vs
            }
            Transmit::Flatten => vec![version],
        };
        let versions: Vec<VersionId> = match &sel.nodes {
            Some(pinned) => versions
                .into_iter()
                .filter(|v| pinned.contains(&repo.nodes[v].uuid))
                .collect(),
            None => versions,
        };
        if versions.is_empty() {
            return Err(Error::bad("the selection holds no node of the repo"));
        }
        let nodes = ordered_nodes(&repo, &versions);
        let mut node_records: Vec<NodeRecord> = nodes
            .iter()
            .map(|v| {
                let n = &repo.nodes[v];
                NodeRecord {
                    uuid: n.uuid.clone(),
                    branch: n.branch.clone(),
                    note: n.note.clone(),
                    log: n.log.clone(),
                    locked: n.locked,
                    parents: n
                        .parents
                        .iter()
                        .map(|p| repo.nodes[p].uuid.clone())
                        .collect(),
                    created: n.created.clone(),
                    updated: n.updated.clone(),
                }
            })
            .collect();
        if sel.transmit == Transmit::Flatten {
            node_records[0].parents.clear();
            node_records[0].branch = String::new();
        }
        for name in &sel.data {
            repo.instance(name)?;
        }
        let instances: Vec<InstanceMeta> = repo
            .instances
            .values()
            .filter(|m| sel.data.is_empty() || sel.data.contains(&m.name))
            .cloned()
            .collect();
        let held = self.held_of(&repo, version, sel)?;
        let manifest = Manifest {
            root: node_records[0].uuid.clone(),
            alias: repo.alias.clone(),
            description: repo.description.clone(),
            properties: repo.properties.clone(),
            log: repo.log.clone(),
            mutation_id: repo.mutation_id,
            transmit: sel.transmit,
            nodes: node_records,
            instances: instances
                .iter()
                .map(|m| InstanceRecord {
                    name: m.name.clone(),
                    type_name: m.type_name.clone(),
                    data_uuid: m.data_uuid.clone(),
                    versioned: m.versioned,
                    compression: m.compression.clone(),
                    checksum: m.checksum.clone(),
                    tags: m.tags.clone(),
                    syncs: m.syncs.clone(),
                    config: m.config.clone(),
                })
                .collect(),
            omitted: repo
                .instances
                .keys()
                .filter(|n| !instances.iter().any(|m| &m.name == *n))
                .cloned()
                .collect(),
            held,
            records: 0,
            bytes: 0,
        };
        let nodes: Vec<(VersionId, String)> = nodes
            .iter()
            .map(|v| (*v, repo.nodes[v].uuid.clone()))
            .collect();
        Ok(Selected {
            manifest,
            dag: repo.dag.clone(),
            flat: (sel.transmit == Transmit::Flatten).then_some(version),
            uuid_of: nodes.iter().cloned().collect(),
            nodes,
            stores: instances
                .iter()
                .map(|m| self.stores[&m.store].clone())
                .collect(),
            instances,
        })
    }

    /// The block filter of a selection, with its ROI read at the version.
    fn held_of(&self, repo: &Repo, version: VersionId, sel: &Selection) -> Result<Option<Held>> {
        if let Some(b) = sel.bbox
            && (0..3).any(|a| b[a] >= b[a + 3])
        {
            return Err(Error::bad(format!(
                "box {b:?} is empty: give x0,y0,z0,x1,y1,z1 with each end past its start"
            )));
        }
        let roi = match &sel.roi {
            None => None,
            Some(name) => {
                let uuid = repo.nodes[&version].uuid.clone();
                let ctx = self.ctx_at(&uuid, name, None, &Caller::admin())?;
                if ctx.instance.type_name != "roi" {
                    return Err(Error::bad(format!("roi={name:?} is not an roi instance")));
                }
                let roi = Roi::load(&ctx)?;
                Some(HeldRoi {
                    name: name.clone(),
                    block_size: roi.block_size,
                    spans: roi.spans().to_vec(),
                })
            }
        };
        if sel.bbox.is_none() && roi.is_none() && sel.max_scale.is_none() {
            return Ok(None);
        }
        Ok(Some(Held {
            bbox: sel.bbox,
            roi,
            max_scale: sel.max_scale,
        }))
    }

    /// `POST /api/repo/{uuid}/transfer/manifest`: what a transfer of `sel` sends, with the
    /// number of records and bytes (one pass over them, for progress bars).
    pub fn transfer_manifest(&self, spec: &str, sel: &Selection) -> Result<Manifest> {
        self.settle_pyramids(&format!("sending {spec}"))?;
        let s = self.select(spec, sel)?;
        let (mut records, mut bytes) = (0u64, 0u64);
        for i in 0..s.instances.len() {
            for (kind, n) in s.passes() {
                s.units((i, kind, n), None, false, None, &mut |(_, recs)| {
                    records += recs.len() as u64;
                    bytes += recs.iter().map(|r| r.1.len() as u64).sum::<u64>();
                    Ok(true)
                })?;
            }
        }
        let mut m = s.manifest;
        (m.records, m.bytes) = (records, bytes);
        tracing::info!(
            repo = %m.root,
            transmit = ?m.transmit,
            nodes = m.nodes.len(),
            instances = m.instances.len(),
            records,
            bytes,
            "sending a transfer"
        );
        Ok(m)
    }

    /// `POST /api/repo/{uuid}/transfer/groups`: the groups from `cursor` on, a page at a time.
    pub fn transfer_groups(
        &self,
        spec: &str,
        sel: &Selection,
        cursor: Option<Cursor>,
    ) -> Result<GroupPage> {
        let s = self.select(spec, sel)?;
        let passes = s.passes();
        let mut cur = cursor.unwrap_or(Cursor {
            i: 0,
            kind: KIND_DATA,
            node: 0,
            after: None,
        });
        let mut groups = Vec::new();
        while cur.i < s.instances.len() {
            let pass = (cur.i, cur.kind, cur.node);
            let mut d = Digest::default();
            let mut lo: Option<Vec<u8>> = None;
            let mut last = Vec::new();
            let mut full = false;
            s.units(
                pass,
                cur.after.as_deref(),
                false,
                None,
                &mut |(key, recs)| {
                    for (node, value) in &recs {
                        d.add(cur.kind, node, &key, value);
                    }
                    lo.get_or_insert_with(|| key.clone());
                    last = key;
                    if d.count as usize >= GROUP_UNITS || d.bytes >= GROUP_BYTES {
                        groups.push(s.group(pass, &lo.take().expect("set above"), &last, &d));
                        d = Digest::default();
                        if groups.len() >= PAGE_GROUPS {
                            full = true;
                            return Ok(false);
                        }
                    }
                    Ok(true)
                },
            )?;
            if full {
                cur.after = Some(last);
                return Ok(GroupPage {
                    groups,
                    next: Some(cur),
                });
            }
            if let Some(lo) = lo {
                groups.push(s.group(pass, &lo, &last, &d));
            }
            // The pass is done: on to the next, or the next instance.
            let at = passes
                .iter()
                .position(|p| *p == (cur.kind, cur.node))
                .unwrap_or(passes.len());
            cur = match passes.get(at + 1) {
                Some(&(kind, node)) => Cursor {
                    i: cur.i,
                    kind,
                    node,
                    after: None,
                },
                None => Cursor {
                    i: cur.i + 1,
                    kind: KIND_DATA,
                    node: 0,
                    after: None,
                },
            };
            if groups.len() >= PAGE_GROUPS {
                let next = (cur.i < s.instances.len()).then_some(cur);
                return Ok(GroupPage { groups, next });
            }
        }
        Ok(GroupPage { groups, next: None })
    }

    /// `POST /api/repo/{uuid}/transfer/list`: the headers of every record of `groups`.
    pub fn transfer_list(
        &self,
        spec: &str,
        sel: &Selection,
        groups: &[Group],
    ) -> Result<Vec<Header>> {
        let s = self.select(spec, sel)?;
        let mut out = Vec::new();
        for g in groups {
            let i = s.instance(&g.i)?;
            let n = if g.kind == KIND_LOG {
                s.node(&g.node)?
            } else {
                0
            };
            s.units(
                (i, g.kind, n),
                Some(&g.lo),
                true,
                Some(&g.hi),
                &mut |(key, recs)| {
                    for (node, value) in recs {
                        out.push(Header {
                            id: RecordId {
                                i: g.i.clone(),
                                kind: g.kind,
                                node,
                                key: key.clone(),
                            },
                            hash: blake3::hash(&value).as_bytes().to_vec(),
                            len: value.len() as u64,
                        });
                    }
                    Ok(true)
                },
            )?;
        }
        Ok(out)
    }

    /// `POST /api/repo/{uuid}/transfer/fetch`: the named records as frames
    /// (`transfer::write_frame`). A record that is gone or outside the selection is a 4xx.
    pub fn transfer_fetch(&self, spec: &str, sel: &Selection, ids: &[RecordId]) -> Result<Vec<u8>> {
        let s = self.select(spec, sel)?;
        let mut out = Vec::new();
        for id in ids {
            let i = s.instance(&id.i)?;
            let meta = &s.instances[i];
            let value = match id.kind {
                KIND_DATA => {
                    let entries =
                        VersionedStore::new(s.stores[i].clone()).entries(meta.id, &id.key)?;
                    let (_, recs) = s.data_records(i, &id.key, &entries)?;
                    recs.into_iter().find(|(n, _)| *n == id.node).map(|r| r.1)
                }
                KIND_LOG => {
                    let n = s.node(&id.node)?;
                    let seq: [u8; 8] = id.key.as_slice().try_into().map_err(|_| {
                        Error::bad("a log record's key is its 8-byte sequence number")
                    })?;
                    s.stores[i].get(&mutlog::key(meta.id, s.nodes[n].0, u64::from_be_bytes(seq)))?
                }
                KIND_BLOB => s.stores[i].get(&[&[space::BLOB][..], &id.key].concat())?,
                k => return Err(Error::bad(format!("unknown record kind {k}"))),
            };
            let value = value.ok_or_else(|| {
                Error::not_found(format!(
                    "record {:?} of instance {:?} at node {:?} is not here (changed since it \
                     was listed?): run the transfer again",
                    String::from_utf8_lossy(&id.key),
                    id.i,
                    id.node
                ))
            })?;
            write_frame(&mut out, id, &value);
        }
        Ok(out)
    }
}

/// `versions` ordered parents first (version ids grow with creation, and parents are created
/// before their children).
fn ordered_nodes(repo: &Repo, versions: &[VersionId]) -> Vec<VersionId> {
    let mut vs: Vec<VersionId> = versions
        .iter()
        .copied()
        .filter(|v| repo.nodes.contains_key(v))
        .collect();
    vs.sort_unstable();
    vs
}
