//! The receiver's half of a transfer: `begin` checks the sent history against this server's and
//! stages the repo (its instances answer 503 until `finish`), `compare` and `missing` say what
//! is lacking, `records` writes verified records, `finish` makes the repo readable.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tessera_storage::versioned::{self, encode_value, is_stored_value, prefix_end, space};
use tessera_storage::{VersionId, VersionedStore, WriteBatch};

use super::{
    Digest, Group, Header, KIND_BLOB, KIND_DATA, KIND_LOG, Manifest, RecordId, read_frames,
};
use crate::engine::{Engine, State, allocate_node, match_uuid};
use crate::instance::InstanceMeta;
use crate::mutation::log as mutlog;
use crate::repo::{INITIAL_MUTATION_ID, MUTATION_ID_STRIDE, Node, Receiving, Repo, now};
use crate::{Error, Result};

/// Values at least this long are indexed by hash, so a later transfer reuses them.
const REUSE_MIN: u64 = 64;

#[derive(Debug, Serialize, Deserialize)]
pub struct Begin {
    pub root: String,
    pub new_nodes: usize,
    pub new_instances: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Missing {
    /// Indexes of the headers whose records must be sent.
    pub missing: Vec<usize>,
    /// Records this server already held under another key and copied instead.
    pub reused: u64,
    pub reused_bytes: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Received {
    pub records: u64,
    pub bytes: u64,
}

/// A staged repo as the receiving requests see it.
struct Target {
    /// Sent node UUID ("" for repo-wide values) → local version.
    version_of: HashMap<String, VersionId>,
    uuid_of: HashMap<VersionId, String>,
    instances: HashMap<String, InstanceMeta>,
}

impl Target {
    fn instance(&self, name: &str) -> Result<&InstanceMeta> {
        self.instances.get(name).ok_or_else(|| {
            Error::bad(format!(
                "instance {name:?} is not part of the transfer in progress"
            ))
        })
    }

    fn version(&self, node: &str) -> Result<VersionId> {
        self.version_of.get(node).copied().ok_or_else(|| {
            Error::bad(format!(
                "node {node:?} is not part of the transfer in progress"
            ))
        })
    }

    /// Where a record lives in this server's store.
    fn raw_key(&self, meta: &InstanceMeta, id: &RecordId) -> Result<Vec<u8>> {
        match id.kind {
            KIND_DATA => Ok(versioned::data_key(
                meta.id,
                &id.key,
                self.version(&id.node)?,
            )),
            KIND_LOG if !id.node.is_empty() => {
                let seq: [u8; 8] =
                    id.key.as_slice().try_into().map_err(|_| {
                        Error::bad("a log record's key is its 8-byte sequence number")
                    })?;
                Ok(mutlog::key(
                    meta.id,
                    self.version(&id.node)?,
                    u64::from_be_bytes(seq),
                ))
            }
            KIND_BLOB if id.key.len() == 16 => Ok([&[space::BLOB][..], &id.key].concat()),
            k => Err(Error::bad(format!(
                "malformed record of kind {k} for instance {:?}",
                id.i
            ))),
        }
    }
}

fn hash_key(hash: &[u8]) -> Vec<u8> {
    [&[space::HASHES][..], hash].concat()
}

fn conflict(msg: String) -> Error {
    Error::Conflict(msg)
}

/// Checks a manifest's names before anything of it is stored.
fn check_manifest(m: &Manifest) -> Result<()> {
    let Some(first) = m.nodes.first() else {
        return Err(Error::bad("a transfer manifest needs at least one node"));
    };
    if first.uuid != m.root || !first.parents.is_empty() {
        return Err(Error::bad(
            "a transfer manifest's first node must be its root, without parents",
        ));
    }
    for n in &m.nodes {
        if n.uuid.is_empty() || n.uuid.len() > 128 || n.uuid.contains(['/', ':']) {
            return Err(Error::bad(format!(
                "bad node UUID {:?} in the manifest",
                n.uuid
            )));
        }
    }
    Ok(())
}

impl Engine {
    fn target(&self, spec: &str) -> Result<Target> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, spec)?;
        let repo = &state.repos[&root];
        let r = repo.receiving.as_ref().ok_or_else(|| {
            conflict(format!(
                "no transfer is in progress into repo {}: begin one first",
                repo.root_uuid()
            ))
        })?;
        let mut version_of = HashMap::from([(String::new(), 0)]);
        for u in &r.nodes {
            if let Some(&(_, v)) = state.uuids.get(u) {
                version_of.insert(u.clone(), v);
            }
        }
        let uuid_of = version_of.iter().map(|(u, v)| (*v, u.clone())).collect();
        let instances = r
            .instances
            .iter()
            .filter_map(|n| repo.instances.get(n).map(|m| (n.clone(), m.clone())))
            .collect();
        Ok(Target {
            version_of,
            uuid_of,
            instances,
        })
    }

    /// `POST /api/repo/{root}/transfer/begin`: checks the sent history against this server's
    /// and stages what is new. A repo already here must share every sent node's parents, and
    /// none of its open nodes among them may have been written here since it was received;
    /// a sent node that would become a second child on its parent's branch is refused too,
    /// unless `new_branch` names the branch such nodes take instead. Rerunning begin on a
    /// staged repo resumes.
    pub fn receive_begin(
        &self,
        spec: &str,
        m: &Manifest,
        new_branch: Option<&str>,
    ) -> Result<Begin> {
        check_manifest(m)?;
        if spec != m.root {
            return Err(Error::bad(format!(
                "the URL names repo {spec} but the manifest's root is {}",
                m.root
            )));
        }
        for i in &m.instances {
            self.datatype(&i.type_name)?;
        }
        let mut state = self.state.write();
        let existing = match state.uuids.get(&m.root) {
            Some(&(root, v)) if root == v => Some(root),
            Some(_) => {
                return Err(conflict(format!(
                    "{} is a node of a repo here, not a repo's root",
                    m.root
                )));
            }
            None => None,
        };
        let saved = (
            existing.map(|r| state.repos[&r].clone()),
            state.uuids.clone(),
        );
        let result = self.stage(&mut state, existing, m, new_branch);
        let result = result.and_then(|(root, b)| self.persist(&state, &[root]).map(|_| b));
        if result.is_err() {
            let (repo, uuids) = saved;
            match (existing, repo) {
                (Some(root), Some(repo)) => {
                    state.repos.insert(root, repo);
                }
                _ => {
                    if let Some(&(root, _)) = state.uuids.get(&m.root) {
                        state.repos.remove(&root);
                    }
                }
            }
            state.uuids = uuids;
        }
        result
    }

    fn stage(
        &self,
        state: &mut State,
        existing: Option<VersionId>,
        m: &Manifest,
        new_branch: Option<&str>,
    ) -> Result<(VersionId, Begin)> {
        // Checks first: nothing changes until they all pass.
        let in_repo = |state: &State, uuid: &str| -> Result<Option<VersionId>> {
            match (state.uuids.get(uuid), existing) {
                (None, _) => Ok(None),
                (Some(&(r, v)), Some(root)) if r == root => Ok(Some(v)),
                (Some(_), _) => Err(conflict(format!(
                    "node {uuid} belongs to another repo on this server"
                ))),
            }
        };
        let mut renamed = BTreeMap::new();
        for n in &m.nodes {
            match in_repo(state, &n.uuid)? {
                Some(v) => {
                    let repo = &state.repos[&existing.expect("node found in the repo")];
                    let mine = &repo.nodes[&v];
                    let parents: Vec<&str> = mine
                        .parents
                        .iter()
                        .map(|p| repo.nodes[p].uuid.as_str())
                        .collect();
                    if parents != n.parents {
                        return Err(conflict(format!(
                            "the histories diverged: node {} has parents {parents:?} here and \
                             {:?} on the sender",
                            n.uuid, n.parents
                        )));
                    }
                    if mine.locked && !n.locked {
                        return Err(conflict(format!(
                            "the histories diverged: node {} is committed here but open on \
                             the sender",
                            n.uuid
                        )));
                    }
                    if !mine.locked && !mine.mirror {
                        return Err(conflict(format!(
                            "the histories diverged: open node {} was written here since it \
                             was received (or was made here); commit it on one side and branch \
                             from it on the other, or pull with transmit=flatten into a new repo",
                            n.uuid
                        )));
                    }
                }
                None if existing.is_some() => {
                    for p in &n.parents {
                        let known =
                            in_repo(state, p)?.is_some() || m.nodes.iter().any(|x| &x.uuid == p);
                        if !known {
                            return Err(Error::bad(format!(
                                "node {} has parent {p}, which is neither here nor sent",
                                n.uuid
                            )));
                        }
                    }
                    let branch = renamed.get(&n.branch).unwrap_or(&n.branch);
                    if let [p] = n.parents.as_slice()
                        && let Some(pv) = in_repo(state, p)?
                    {
                        let repo = &state.repos[&existing.expect("checked")];
                        let taken = repo.nodes[&pv].children.iter().any(|c| {
                            let child = &repo.nodes[c];
                            &child.branch == branch && !m.nodes.iter().any(|x| x.uuid == child.uuid)
                        });
                        if taken {
                            let Some(nb) = new_branch else {
                                return Err(conflict(format!(
                                    "the histories diverged: node {p} already has a child on \
                                     branch {branch:?} here, and the sender adds {}; push again \
                                     naming a new branch for the sender's nodes",
                                    n.uuid
                                )));
                            };
                            if repo.nodes.values().any(|x| x.branch == nb) {
                                return Err(conflict(format!(
                                    "branch {nb:?} already exists in repo {}",
                                    repo.root_uuid()
                                )));
                            }
                            renamed.insert(n.branch.clone(), nb.to_string());
                        }
                    }
                }
                None => {}
            }
        }
        for i in &m.instances {
            let owner = state
                .repos
                .values()
                .find(|r| r.instance_by_uuid(&i.data_uuid).is_some());
            let mine = existing.and_then(|r| state.repos[&r].instances.get(&i.name));
            match mine {
                Some(mine) if mine.data_uuid != i.data_uuid || mine.type_name != i.type_name => {
                    return Err(conflict(format!(
                        "instance {:?} here is not the sender's (DataUUID {} here, {} sent)",
                        i.name, mine.data_uuid, i.data_uuid
                    )));
                }
                Some(_) => {}
                None => {
                    if owner.is_some() {
                        return Err(conflict(format!(
                            "DataUUID {} of instance {:?} already names an instance of another \
                             repo here",
                            i.data_uuid, i.name
                        )));
                    }
                    if let Some(r) = existing {
                        state.repos[&r].check_instance_name(&i.name)?;
                    }
                }
            }
        }

        // Stage the nodes.
        let mut new_nodes = 0;
        let root = match existing {
            Some(r) => r,
            None => {
                let r = &m.nodes[0];
                let v = allocate_node(state, 0, &r.uuid);
                state.uuids.insert(r.uuid.clone(), (v, v));
                let first = INITIAL_MUTATION_ID.max(self.min_mutation_id_start);
                let mut repo = Repo::new(
                    received_node(r, v, Vec::new(), &r.branch),
                    m.alias.clone(),
                    m.description.clone(),
                    String::new(),
                    first,
                );
                repo.properties = m.properties.clone();
                repo.log = m.log.clone();
                state.repos.insert(v, repo);
                new_nodes += 1;
                v
            }
        };
        for n in &m.nodes {
            if let Some(&(_, v)) = state.uuids.get(&n.uuid) {
                let node = state
                    .repos
                    .get_mut(&root)
                    .expect("staged")
                    .nodes
                    .get_mut(&v)
                    .expect("in repo");
                if node.mirror || (n.locked && !node.locked) {
                    node.locked = n.locked;
                    node.note = n.note.clone();
                    node.log = n.log.clone();
                    node.updated = n.updated.clone();
                    node.mirror = !n.locked;
                }
                continue;
            }
            let v = allocate_node(state, root, &n.uuid);
            let parents = n.parents.iter().map(|p| state.uuids[p].1).collect();
            let branch = renamed.get(&n.branch).unwrap_or(&n.branch);
            state
                .repos
                .get_mut(&root)
                .expect("staged")
                .receive_node(received_node(n, v, parents, branch))?;
            new_nodes += 1;
        }

        // Stage the instances.
        let mut new_instances = Vec::new();
        for i in &m.instances {
            let meta = match state.repos[&root].instances.get(&i.name).cloned() {
                Some(mut meta) => {
                    // The latest pull's filter says what is held; a whole pull holds all.
                    if meta.held.is_some() || m.held.is_none() {
                        meta.held = m.held.clone();
                    }
                    meta.receiving = true;
                    meta
                }
                None => {
                    let id = state.ids.next_instance;
                    state.ids.next_instance += 1;
                    let mut meta = InstanceMeta {
                        name: i.name.clone(),
                        type_name: i.type_name.clone(),
                        data_uuid: i.data_uuid.clone(),
                        id,
                        versioned: i.versioned,
                        compression: i.compression.clone(),
                        checksum: i.checksum.clone(),
                        tags: i.tags.clone(),
                        syncs: i.syncs.clone(),
                        store: String::new(),
                        config: i.config.clone(),
                        held: m.held.clone(),
                        receiving: true,
                    };
                    meta.store = self.store_for(&meta, &m.root);
                    new_instances.push(i.name.clone());
                    meta
                }
            };
            state
                .repos
                .get_mut(&root)
                .expect("staged")
                .instances
                .insert(i.name.clone(), meta);
        }
        let repo = state.repos.get_mut(&root).expect("staged");
        for name in &m.omitted {
            if !repo.instances.contains_key(name) && !repo.not_held.contains(name) {
                repo.not_held.push(name.clone());
            }
        }
        let held: Vec<String> = repo.instances.keys().cloned().collect();
        repo.not_held.retain(|n| !held.contains(n));
        repo.mutation_id = repo.mutation_id.max(m.mutation_id);
        repo.saved_mutation_id = repo
            .saved_mutation_id
            .max(repo.mutation_id + MUTATION_ID_STRIDE);
        let mut receiving = repo.receiving.take().unwrap_or(Receiving {
            nodes: Vec::new(),
            instances: Vec::new(),
            new_instances: Vec::new(),
            started: now(),
            records: 0,
            bytes: 0,
            reused: 0,
        });
        for n in &m.nodes {
            if !receiving.nodes.contains(&n.uuid) {
                receiving.nodes.push(n.uuid.clone());
            }
        }
        for i in &m.instances {
            if !receiving.instances.contains(&i.name) {
                receiving.instances.push(i.name.clone());
            }
        }
        receiving
            .new_instances
            .extend(new_instances.iter().cloned());
        repo.receiving = Some(receiving);
        repo.rebuild_dag();
        repo.touch();
        Ok((
            root,
            Begin {
                root: m.root.clone(),
                new_nodes,
                new_instances: new_instances.len(),
            },
        ))
    }

    /// `POST /api/repo/{root}/transfer/compare`: the indexes of the groups whose records differ
    /// from this server's in the same key range.
    pub fn receive_compare(&self, spec: &str, groups: &[Group]) -> Result<Vec<usize>> {
        let t = self.target(spec)?;
        let mut differ = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            let meta = t.instance(&g.i)?;
            let kv = self.stores[&meta.store].clone();
            let mut d = Digest::default();
            match g.kind {
                KIND_DATA => VersionedStore::new(kv).scan_grouped(
                    meta.id,
                    &g.lo,
                    Some(&g.hi),
                    &mut |tkey, entries| {
                        for (ver, value) in entries {
                            if let Some(u) = t.uuid_of.get(ver) {
                                d.add(KIND_DATA, u, tkey, &encode_value(value.as_deref()));
                            }
                        }
                        Ok(true)
                    },
                )?,
                KIND_LOG => {
                    let Some(&v) = t.version_of.get(&g.node).filter(|_| !g.node.is_empty()) else {
                        differ.push(gi);
                        continue;
                    };
                    let (base, _) = mutlog::range(meta.id, v);
                    let lo = [&base[..], &g.lo].concat();
                    let hi = prefix_end(&[&base[..], &g.hi].concat());
                    kv.scan(&lo, &hi, &mut |k, value| {
                        d.add(KIND_LOG, &g.node, &k[base.len()..], value);
                        Ok(true)
                    })?
                }
                _ => {
                    let lo = [&[space::BLOB][..], &g.lo].concat();
                    let hi = prefix_end(&[&[space::BLOB][..], &g.hi].concat());
                    kv.scan(&lo, &hi, &mut |k, value| {
                        d.add(KIND_BLOB, "", &k[1..], value);
                        Ok(true)
                    })?
                }
            }
            if !d.matches(g) {
                differ.push(gi);
            }
        }
        Ok(differ)
    }

    /// `POST /api/repo/{root}/transfer/missing`: which listed records must be sent. A record
    /// already here is skipped; one whose value this server holds under another key (a block
    /// identical in two versions, a flatten of a repo already pulled) is copied here and not
    /// sent.
    pub fn receive_missing(&self, spec: &str, headers: &[Header]) -> Result<Missing> {
        let t = self.target(spec)?;
        let mut out = Missing::default();
        let mut batches: BTreeMap<String, WriteBatch> = BTreeMap::new();
        for (hi, h) in headers.iter().enumerate() {
            let meta = t.instance(&h.id.i)?;
            let kv = &self.stores[&meta.store];
            let raw = t.raw_key(meta, &h.id)?;
            let holds = |v: &[u8]| blake3::hash(v).as_bytes()[..] == h.hash[..];
            if kv.get(&raw)?.is_some_and(|v| holds(&v)) {
                continue;
            }
            if h.len >= REUSE_MIN
                && let Some(at) = kv.get(&hash_key(&h.hash))?
                && let Some(v) = kv.get(&at)?
                && holds(&v)
            {
                batches.entry(meta.store.clone()).or_default().put(raw, v);
                out.reused += 1;
                out.reused_bytes += h.len;
                continue;
            }
            out.missing.push(hi);
        }
        for (store, batch) in batches {
            self.stores[&store].write(batch)?;
        }
        if out.reused > 0 {
            self.count_received(spec, 0, 0, out.reused)?;
        }
        Ok(out)
    }

    /// Adds to the staged transfer's tally of what arrived.
    fn count_received(&self, spec: &str, records: u64, bytes: u64, reused: u64) -> Result<()> {
        self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            if let Some(r) = repo.receiving.as_mut() {
                r.records += records;
                r.bytes += bytes;
                r.reused += reused;
            }
            Ok(())
        })
    }

    /// `POST /api/repo/{root}/transfer/records`: writes a body of records after checking every
    /// one (hash, instance, node, shape); one bad record refuses the whole body.
    pub fn receive_records(&self, spec: &str, body: &[u8]) -> Result<Received> {
        let t = self.target(spec)?;
        let mut out = Received::default();
        let mut batches: BTreeMap<String, WriteBatch> = BTreeMap::new();
        for (at, (id, value)) in read_frames(body)?.into_iter().enumerate() {
            let meta = t.instance(&id.i)?;
            if id.kind == KIND_DATA && !is_stored_value(&value) {
                return Err(Error::bad(format!(
                    "transfer record {at} of instance {:?} is not a stored value",
                    id.i
                )));
            }
            let raw = t.raw_key(meta, &id)?;
            let batch = batches.entry(meta.store.clone()).or_default();
            if id.kind != KIND_LOG && value.len() as u64 >= REUSE_MIN {
                batch.put(hash_key(blake3::hash(&value).as_bytes()), raw.clone());
            }
            out.records += 1;
            out.bytes += value.len() as u64;
            batch.put(raw, value);
        }
        for (store, batch) in batches {
            self.stores[&store].write(batch)?;
        }
        self.count_received(spec, out.records, out.bytes, 0)?;
        Ok(out)
    }

    /// `POST /api/repo/{root}/transfer/finish`: the received instances become readable, and
    /// those new here start their sync subscriptions.
    pub fn receive_finish(&self, spec: &str) -> Result<Receiving> {
        let done = self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            let r = repo.receiving.take().ok_or_else(|| {
                conflict(format!(
                    "no transfer is in progress into repo {}",
                    repo.root_uuid()
                ))
            })?;
            for name in &r.instances {
                if let Some(meta) = repo.instances.get_mut(name) {
                    meta.receiving = false;
                }
            }
            repo.touch();
            Ok(r)
        })?;
        tracing::info!(
            repo = spec,
            nodes = done.nodes.len(),
            instances = done.instances.len(),
            records = done.records,
            bytes = done.bytes,
            reused = done.reused,
            started = %done.started,
            "received a transfer"
        );
        // Mappings and meshes kept in memory may describe what was there before.
        self.services.drop_instance_states();
        for name in &done.new_instances {
            self.subscribe_instance(spec, name)?;
        }
        Ok(done)
    }
}

fn received_node(
    n: &super::NodeRecord,
    v: VersionId,
    parents: Vec<VersionId>,
    branch: &str,
) -> Node {
    Node {
        uuid: n.uuid.clone(),
        version: v,
        branch: branch.to_string(),
        note: n.note.clone(),
        log: n.log.clone(),
        locked: n.locked,
        parents,
        children: Vec::new(),
        created: n.created.clone(),
        updated: n.updated.clone(),
        mirror: !n.locked,
    }
}
