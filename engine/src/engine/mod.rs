//! The engine facade: every repo, version and instance of a server, persisted in the metadata
//! store, the entry points the API calls, and the [`Catalog`] datatypes reach each other
//! through. It sits above the datatypes and the services; nothing below it names it.

mod common;
mod migrate;
pub mod transfer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tessera_storage::versioned::{self, space};
use tessera_storage::{Dag, KvStore, StoreIo, VersionId, VersionedStore, View, WriteBatch};

use crate::compute::cpu::CpuCompute;
use crate::compute::{Compute, Metered};
pub use crate::datatype::Caller;
use crate::datatype::{Catalog, DataCtx, DataRequest, DataResponse, Datatype, Method, Settings};
use crate::instance::InstanceMeta;
use crate::mutation::{ANY_PUBLISHER, Subscriber, Subscription};
use crate::repo::{INITIAL_MUTATION_ID, MUTATION_ID_STRIDE, Node, Repo, log_line, now};
use crate::services::Services;
use crate::sync::{MUTATION_LOGGED, SyncBus};
use crate::{Error, Result, datatypes};
pub use migrate::Migrated;

/// How the engine is set up: its stores and the rules assigning instances to them (DVID's
/// `[store.*]` and `[backend.*]`).
pub struct EngineOptions {
    /// Store alias → store. At least one.
    pub stores: BTreeMap<String, Arc<dyn KvStore>>,
    /// Backend spec (`default`, `metadata`, a type name, `name:rootUUID`, a DataUUID, or a
    /// `key=value` tag) → store alias.
    pub backends: BTreeMap<String, String>,
    pub instance_id_start: u32,
    pub min_mutation_id_start: u64,
    /// The kernel backend every datatype computes with, chosen once at start.
    pub compute: Arc<dyn Compute>,
    /// Whether labelmap `POST split` is served (`[server] allow_labelmap_split`).
    pub allow_labelmap_split: bool,
    /// A read replica (`serve --read-only`): no background workers, and `follow` brings the
    /// writer's changes in.
    pub read_only: bool,
}

impl EngineOptions {
    /// One store serving everything, kernels on the CPU.
    pub fn single(store: Arc<dyn KvStore>) -> Self {
        EngineOptions {
            stores: BTreeMap::from([("default".to_string(), store)]),
            backends: BTreeMap::new(),
            instance_id_start: 1,
            min_mutation_id_start: 0,
            compute: Arc::new(CpuCompute::new()),
            allow_labelmap_split: true,
            read_only: false,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ids {
    next_version: VersionId,
    next_instance: u32,
}

#[derive(Default)]
struct State {
    repos: HashMap<VersionId, Repo>,
    /// Every node UUID of the server → (repo root, version).
    uuids: BTreeMap<String, (VersionId, VersionId)>,
    ids: Ids,
}

const IDS_KEY: &[u8] = b"\x00ids";
/// How long locking a node waits for the rebuilds of its last edits' lower resolutions.
const SETTLE: Duration = Duration::from_secs(60);
const REPO_KEY_PREFIX: &[u8] = b"\x00repo\x00";

/// The server's ids and every persisted repo, as the metadata store holds them.
fn load_state(meta: &dyn KvStore, instance_id_start: u32) -> Result<State> {
    let ids = match meta.get(IDS_KEY)? {
        Some(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::Internal(format!("bad ids record: {e}")))?,
        None => Ids {
            next_version: 1,
            next_instance: instance_id_start.max(1),
        },
    };
    let mut state = State {
        ids,
        ..State::default()
    };
    let mut repos = Vec::new();
    meta.scan(
        REPO_KEY_PREFIX,
        &versioned::prefix_end(REPO_KEY_PREFIX),
        &mut |_, v| {
            repos.push(v.to_vec());
            Ok(true)
        },
    )?;
    for bytes in repos {
        let mut repo: Repo = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("bad repo record: {e}")))?;
        // Mutation IDs persist in strides: resume past the last saved ceiling.
        repo.mutation_id = repo.saved_mutation_id;
        repo.rebuild_dag();
        for n in repo.nodes.values() {
            state.uuids.insert(n.uuid.clone(), (repo.root, n.version));
        }
        state.repos.insert(repo.root, repo);
    }
    Ok(state)
}

fn repo_key(root: VersionId) -> Vec<u8> {
    let mut k = REPO_KEY_PREFIX.to_vec();
    k.extend_from_slice(&root.to_be_bytes());
    k
}

/// What an instance request does (`Engine::request_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    /// `Datatype::is_mutation`.
    Write,
    /// `Datatype::admin_only`: for server admins only.
    Admin,
}

/// Where a UUID spec lands (`Engine::node_place`): what access control needs to know.
#[derive(Debug, Clone)]
pub struct NodePlace {
    /// The repo's root UUID, which tokens name.
    pub root: String,
    pub uuid: String,
    pub locked: bool,
    /// The node and every ancestor, by UUID.
    pub lineage: Vec<String>,
}

pub struct Engine {
    meta: Arc<dyn KvStore>,
    /// The configured stores, each behind a counting `Metered` (also in `io`).
    stores: BTreeMap<String, Arc<dyn KvStore>>,
    io: Vec<(String, Arc<tessera_storage::Metered>)>,
    backends: BTreeMap<String, String>,
    default_store: String,
    types: BTreeMap<&'static str, Arc<dyn Datatype>>,
    state: RwLock<State>,
    /// Data mutations hold this shared while they run; commit holds it exclusively, so a write
    /// can't land in a node after the node was committed.
    commit_gate: Arc<RwLock<()>>,
    min_mutation_id_start: u64,
    instance_id_start: u32,
    read_only: bool,
    services: Arc<Services>,
    /// This engine, for the contexts it hands out (they reach it as their `Catalog`).
    me: Weak<Engine>,
}

impl Engine {
    /// Opens the engine on its stores, loading every persisted repo.
    pub fn open(opts: EngineOptions) -> Result<Arc<Engine>> {
        if opts.stores.is_empty() {
            return Err(Error::bad("no store configured"));
        }
        let default_store = match opts.backends.get("default") {
            Some(a) => a.clone(),
            None if opts.stores.len() == 1 => {
                opts.stores.keys().next().cloned().unwrap_or_default()
            }
            None if opts.stores.contains_key("default") => "default".to_string(),
            None => {
                return Err(Error::bad(
                    "several stores configured but no [backend.default]",
                ));
            }
        };
        for (spec, alias) in &opts.backends {
            if !opts.stores.contains_key(alias) {
                return Err(Error::bad(format!(
                    "[backend.{spec}] names unknown store {alias:?}"
                )));
            }
        }
        // Every store is counted, so all I/O of the engine shows in `store_io`.
        let io: Vec<(String, Arc<tessera_storage::Metered>)> = opts
            .stores
            .into_iter()
            .map(|(a, s)| (a, Arc::new(tessera_storage::Metered::new(s))))
            .collect();
        let stores: BTreeMap<String, Arc<dyn KvStore>> = io
            .iter()
            .map(|(a, m)| (a.clone(), m.clone() as Arc<dyn KvStore>))
            .collect();
        let meta_alias = opts.backends.get("metadata").unwrap_or(&default_store);
        let meta = stores[meta_alias].clone();

        let state = load_state(meta.as_ref(), opts.instance_id_start)?;
        let types = datatypes::all()
            .into_iter()
            .map(|t| (t.type_name(), t))
            .collect();
        let engine = Arc::new_cyclic(|me| Engine {
            meta,
            stores,
            io,
            backends: opts.backends,
            default_store,
            types,
            state: RwLock::new(state),
            commit_gate: Arc::new(RwLock::new(())),
            min_mutation_id_start: opts.min_mutation_id_start,
            instance_id_start: opts.instance_id_start,
            read_only: opts.read_only,
            // Wrapped here, once, so every kernel call the engine makes is timed.
            services: Arc::new(Services::new(
                Arc::new(Metered::new(opts.compute)),
                opts.allow_labelmap_split,
            )),
            me: me.clone(),
        });
        engine.services.mutations.reserve_in(engine.meta.clone())?;
        if engine.read_only {
            return Ok(engine);
        }
        // Background workers start with the engine and first finish what they had not
        // acknowledged before it stopped.
        let instances: Vec<(String, String)> = {
            let state = engine.state.read();
            state
                .repos
                .values()
                .flat_map(|r| {
                    r.instances
                        .values()
                        .map(|i| (r.root_uuid().to_string(), i.name.clone()))
                })
                .collect()
        };
        for (root, name) in instances {
            engine.subscribe_instance(&root, &name)?;
        }
        Ok(engine)
    }

    /// A read replica's step (`serve --read-only`): makes the writer's latest writes visible in
    /// every store and, when any arrived, reloads the repos and drops what instances keep in
    /// memory (mappings, meshes), which may describe the old state of an open node. Answers
    /// whether anything changed.
    pub fn follow(&self) -> Result<bool> {
        let mut changed = false;
        for s in self.stores.values() {
            changed |= s.refresh()?;
        }
        if changed {
            let fresh = load_state(self.meta.as_ref(), self.instance_id_start)?;
            *self.state.write() = fresh;
            self.services.drop_instance_states();
        }
        Ok(changed)
    }

    /// Subscribes the durable sync subscriptions instance `name` of the repo of `spec` wants.
    fn subscribe_instance(&self, spec: &str, name: &str) -> Result<()> {
        let root = {
            let state = self.state.read();
            let (root, _) = match_uuid(&state, spec)?;
            state.repos[&root].root_uuid().to_string()
        };
        let ctx = self.ctx_at(&root, name, None, &Caller::admin())?;
        let dt = self.datatype(&ctx.instance.type_name)?.clone();
        for sub in dt.subscriptions(&ctx)? {
            self.services.mutations.subscribe(sub)?;
        }
        Ok(())
    }

    /// Follows every mutation-log record as it commits, in commit order per store: `handler`
    /// gets `MUTATION_LOGGED` events through a durable outbox in each store
    /// (`log/<name>/<store alias>`), so records it could not take yet wait there, across
    /// restarts. Call it before serving requests: records committed earlier do not reach it.
    pub fn follow_log(&self, name: &str, handler: Arc<dyn Subscriber>) -> Result<()> {
        for (alias, kv) in &self.stores {
            self.services.mutations.subscribe(Subscription {
                id: format!("log/{name}/{alias}"),
                publisher: ANY_PUBLISHER.into(),
                events: vec![MUTATION_LOGGED],
                kv: kv.clone(),
                handler: handler.clone(),
                awaited: false,
                gather: Duration::ZERO,
            })?;
        }
        Ok(())
    }

    /// The root UUID of the repo holding the instance whose DataUUID is `data_uuid`.
    pub fn repo_of_instance(&self, data_uuid: &str) -> Option<String> {
        let state = self.state.read();
        state
            .repos
            .values()
            .find(|r| r.instances.values().any(|i| i.data_uuid == data_uuid))
            .map(|r| r.root_uuid().to_string())
    }

    fn arc(&self) -> Arc<Engine> {
        self.me
            .upgrade()
            .expect("the engine outlives the calls made on it")
    }

    /// Waits up to `timeout` for every sync subscriber to have applied every committed
    /// change; returns whether they have.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        self.services.mutations.wait_idle(timeout)
    }

    /// Every sync subscription with the events waiting in its outbox.
    pub fn sync_backlog(&self) -> Result<Vec<(String, usize)>> {
        self.services.mutations.backlog()
    }

    /// Each store's traffic since the engine opened: (store alias, engine name, counts).
    pub fn store_io(&self) -> Vec<(String, &'static str, StoreIo)> {
        self.io
            .iter()
            .map(|(a, m)| (a.clone(), m.engine_name(), m.io()))
            .collect()
    }

    /// Makes every store durable (on shutdown).
    /// Stops the sync workers (waiting for runs in progress, up to 30 s) and flushes every
    /// store: what a server does last before it exits.
    pub fn flush(&self) -> Result<()> {
        if !self.services.mutations.stop_all(Duration::from_secs(30)) {
            tracing::warn!("sync workers still running at shutdown; their events stay queued");
        }
        for s in self.stores.values() {
            s.flush()?;
        }
        Ok(())
    }

    pub fn compute(&self) -> &Arc<dyn Compute> {
        &self.services.compute
    }

    /// Live watchers of committed sync events.
    pub fn sync_bus(&self) -> &SyncBus {
        self.services.mutations.bus()
    }

    pub fn datatypes(&self) -> impl Iterator<Item = &Arc<dyn Datatype>> {
        self.types.values()
    }

    pub fn datatype(&self, name: &str) -> Result<&Arc<dyn Datatype>> {
        self.types.get(name).ok_or_else(|| {
            Error::bad(format!(
                "no datatype named {name:?} is compiled into this server"
            ))
        })
    }

    /// Store alias → the instances placed on it, as `repo-root-uuid/name`.
    pub fn instances_by_store(&self) -> BTreeMap<String, Vec<String>> {
        let state = self.state.read();
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for repo in state.repos.values() {
            for meta in repo.instances.values() {
                out.entry(meta.store.clone()).or_default().push(format!(
                    "{}/{}",
                    repo.root_uuid(),
                    meta.name
                ));
            }
        }
        out
    }

    pub fn store_engine_names(&self) -> String {
        let names: Vec<String> = self
            .stores
            .iter()
            .map(|(a, s)| format!("{a}: {}", s.engine_name()))
            .collect();
        names.join(", ")
    }

    /// Type names that have at least one instance.
    pub fn types_in_use(&self) -> Vec<&'static str> {
        let state = self.state.read();
        let mut out: Vec<&'static str> = self
            .types
            .keys()
            .copied()
            .filter(|t| {
                state
                    .repos
                    .values()
                    .any(|r| r.instances.values().any(|i| i.type_name == *t))
            })
            .collect();
        out.dedup();
        out
    }

    fn persist(&self, state: &State, roots: &[VersionId]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(
            IDS_KEY,
            serde_json::to_vec(&state.ids).expect("ids serialize"),
        );
        for root in roots {
            let repo = &state.repos[root];
            batch.put(
                repo_key(*root),
                serde_json::to_vec(repo).expect("repos serialize"),
            );
        }
        Ok(self.meta.write(batch)?)
    }

    /// Runs `f` on the repo holding `spec`'s version under the write lock and persists the repo
    /// when `f` succeeds. On failure the in-memory repo is restored, so nothing changes.
    fn modify<T>(
        &self,
        spec: &str,
        f: impl FnOnce(&mut State, VersionId, VersionId) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.write();
        let (root, version) = match_uuid(&state, spec)?;
        let saved = (state.repos[&root].clone(), state.uuids.clone());
        match f(&mut state, root, version).and_then(|t| self.persist(&state, &[root]).map(|_| t)) {
            Ok(t) => Ok(t),
            Err(e) => {
                // Ids stay advanced: data written under them before the failure must never
                // show up under a later node.
                let (repo, uuids) = saved;
                state.repos.insert(root, repo);
                state.uuids = uuids;
                Err(e)
            }
        }
    }

    // ---- repos -------------------------------------------------------------------------------

    /// `POST /api/repos`: a new repo with a root node; returns the root UUID.
    pub fn create_repo(
        &self,
        alias: &str,
        description: &str,
        root_uuid: Option<&str>,
        passcode: &str,
    ) -> Result<String> {
        let mut state = self.state.write();
        let uuid = new_uuid(&state, root_uuid)?;
        let version = state.ids.next_version;
        state.ids.next_version += 1;
        let first = INITIAL_MUTATION_ID.max(self.min_mutation_id_start);
        let mut repo = Repo::new(
            Node::new(uuid.clone(), version, String::new(), vec![], String::new()),
            alias.into(),
            description.into(),
            passcode.into(),
            first,
        );
        repo.saved_mutation_id = first + MUTATION_ID_STRIDE;
        state.uuids.insert(uuid.clone(), (version, version));
        state.repos.insert(version, repo);
        if let Err(e) = self.persist(&state, &[version]) {
            state.repos.remove(&version);
            state.uuids.remove(&uuid);
            return Err(e);
        }
        Ok(uuid)
    }

    /// Resolves a UUID spec (prefix, `prefix:branch`, `:master`, `branch~N`) to its node UUID.
    pub fn resolve_uuid(&self, spec: &str) -> Result<String> {
        let state = self.state.read();
        let (root, v) = match_uuid(&state, spec)?;
        Ok(state.repos[&root].nodes[&v].uuid.clone())
    }

    /// `GET /api/repos/info`: every repo keyed by root UUID.
    pub fn repos_info(self: &Arc<Self>) -> Value {
        let state = self.state.read();
        let mut out = serde_json::Map::new();
        for repo in state.repos.values() {
            out.insert(repo.root_uuid().to_string(), self.repo_json(repo));
        }
        Value::Object(out)
    }

    pub fn repo_info(self: &Arc<Self>, spec: &str) -> Result<Value> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, spec)?;
        Ok(self.repo_json(&state.repos[&root]))
    }

    fn repo_json(self: &Arc<Self>, repo: &Repo) -> Value {
        let nodes: serde_json::Map<String, Value> = repo
            .nodes
            .values()
            .map(|n| (n.uuid.clone(), n.to_json()))
            .collect();
        let master = repo.branch_leaves.get("").copied().unwrap_or(repo.root);
        let instances: serde_json::Map<String, Value> = repo
            .instances
            .values()
            .map(|i| {
                (
                    i.name.clone(),
                    self.instance_json(repo, i, master).unwrap_or(Value::Null),
                )
            })
            .collect();
        json!({
            "Root": repo.root_uuid(), "Alias": repo.alias, "Description": repo.description,
            "Log": repo.log, "Properties": repo.properties, "DataInstances": instances,
            "DAG": {"Root": repo.root_uuid(), "Nodes": nodes},
            "MutationID": repo.mutation_id, "SavedMutationID": repo.saved_mutation_id,
            "Created": repo.created, "Updated": repo.updated,
        })
    }

    /// `POST /api/repo/{uuid}/info`: alias and/or description.
    pub fn set_repo_info(
        &self,
        spec: &str,
        alias: Option<String>,
        description: Option<String>,
    ) -> Result<()> {
        self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            if let Some(a) = alias {
                repo.alias = a;
            }
            if let Some(d) = description {
                repo.description = d;
            }
            repo.touch();
            Ok(())
        })
    }

    pub fn repo_log(&self, spec: &str) -> Result<Vec<String>> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, spec)?;
        Ok(state.repos[&root].log.clone())
    }

    pub fn append_repo_log(&self, spec: &str, lines: &[String]) -> Result<()> {
        self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            repo.log.extend(lines.iter().map(|l| log_line(l)));
            repo.touch();
            Ok(())
        })
    }

    /// `GET /api/repo/{uuid}/branch-versions/{name}`.
    pub fn branch_versions(&self, spec: &str, branch: &str) -> Result<Vec<String>> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, spec)?;
        let repo = &state.repos[&root];
        let name = if branch == "master" { "" } else { branch };
        Ok(repo
            .branch_versions(name)
            .iter()
            .map(|v| repo.nodes[v].uuid.clone())
            .collect())
    }

    /// The next mutation ID of the repo holding `spec` (spec §1.5); persisted in strides.
    pub fn next_mutation_id(&self, spec: &str) -> Result<u64> {
        let mut state = self.state.write();
        let (root, _) = match_uuid(&state, spec)?;
        let repo = state.repos.get_mut(&root).expect("matched repo exists");
        let id = repo.mutation_id;
        repo.mutation_id += 1;
        if repo.mutation_id >= repo.saved_mutation_id {
            repo.saved_mutation_id = repo.mutation_id + MUTATION_ID_STRIDE;
            self.persist(&state, &[root])?;
        }
        Ok(id)
    }

    // ---- nodes -------------------------------------------------------------------------------

    pub fn node_json(&self, spec: &str) -> Result<Value> {
        self.with_node(spec, |_, n| n.to_json())
    }

    fn with_node<T>(&self, spec: &str, f: impl FnOnce(&Repo, &Node) -> T) -> Result<T> {
        let state = self.state.read();
        let (root, v) = match_uuid(&state, spec)?;
        let repo = &state.repos[&root];
        Ok(f(repo, &repo.nodes[&v]))
    }

    pub fn is_locked(&self, spec: &str) -> Result<bool> {
        self.with_node(spec, |_, n| n.locked)
    }

    /// Where a UUID spec lands, for access control.
    pub fn node_place(&self, spec: &str) -> Result<NodePlace> {
        self.with_node(spec, |repo, n| {
            let mut lineage = vec![n.uuid.clone()];
            let mut todo = n.parents.clone();
            while let Some(v) = todo.pop() {
                if let Ok(p) = repo.node(v)
                    && !lineage.contains(&p.uuid)
                {
                    lineage.push(p.uuid.clone());
                    todo.extend(&p.parents);
                }
            }
            NodePlace {
                root: repo.root_uuid().to_string(),
                uuid: n.uuid.clone(),
                locked: n.locked,
                lineage,
            }
        })
    }

    pub fn node_note(&self, spec: &str) -> Result<String> {
        self.with_node(spec, |_, n| n.note.clone())
    }

    pub fn node_log(&self, spec: &str) -> Result<Vec<String>> {
        self.with_node(spec, |_, n| n.log.clone())
    }

    fn modify_node(&self, spec: &str, f: impl FnOnce(&mut Node) -> Result<()>) -> Result<()> {
        self.modify(spec, |state, root, v| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            let node = repo.nodes.get_mut(&v).expect("matched node exists");
            f(node)?;
            node.updated = now();
            repo.touch();
            Ok(())
        })
    }

    pub fn set_node_note(&self, spec: &str, note: String) -> Result<()> {
        self.modify_node(spec, |n| {
            n.note = note;
            Ok(())
        })
    }

    pub fn append_node_log(&self, spec: &str, lines: &[String]) -> Result<()> {
        self.modify_node(spec, |n| {
            n.log.extend(lines.iter().map(|l| log_line(l)));
            Ok(())
        })
    }

    /// `POST commit`: locks the node; returns its UUID.
    pub fn commit(&self, spec: &str, note: Option<String>, log: Vec<String>) -> Result<String> {
        let _gate = self.commit_gate.write();
        // A committed node's data is final: the coarse scales of its last edits too.
        self.settle_pyramids(&format!("committing {spec}"))?;
        self.modify(spec, |state, root, v| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            repo.commit(v, note, log)?;
            Ok(repo.nodes[&v].uuid.clone())
        })
    }

    /// Waits until the lower resolutions of the labelmap edits answered so far are rebuilt
    /// (`labelmap::pyramid`), before `what` reads or freezes them.
    pub(crate) fn settle_pyramids(&self, what: &str) -> Result<()> {
        let mutations = &self.services.mutations;
        if !mutations.settle_where(crate::datatypes::labelmap::pyramid::is_pyramid, SETTLE)? {
            tracing::warn!("{what} before lower resolutions were rebuilt ({SETTLE:?} passed)");
        }
        Ok(())
    }

    /// `POST newversion` (branch `None`) and `POST branch`: returns the child's UUID.
    pub fn new_version(
        &self,
        spec: &str,
        branch: Option<&str>,
        note: String,
        uuid: Option<&str>,
    ) -> Result<String> {
        self.modify(spec, |state, root, parent| {
            let branch = match branch {
                Some(b) => b.to_string(),
                None => state.repos[&root].nodes[&parent].branch.clone(),
            };
            state.repos[&root].check_new_child(parent, &branch)?;
            let child = new_uuid(state, uuid)?;
            let version = allocate_node(state, root, &child);
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            repo.new_child(parent, version, child.clone(), branch, note)?;
            Ok(child)
        })
    }

    /// `POST tag`: a committed child whose UUID is the tag.
    pub fn tag(&self, spec: &str, tag: &str, note: String) -> Result<String> {
        if tag.is_empty() || tag.contains(':') || tag.contains('/') || tag.contains('~') {
            return Err(Error::bad(format!(
                "invalid tag {tag:?}: must be non-empty without ':', '/' or '~'"
            )));
        }
        self.modify(spec, |state, root, parent| {
            // Tags are UUIDs by fiat (spec §1.3) and are not hex-validated.
            check_unused(state, tag)?;
            let child = tag.to_string();
            let version = allocate_node(state, root, &child);
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            repo.tag(parent, version, child.clone(), note)?;
            Ok(child)
        })
    }

    /// `POST /api/repo/{uuid}/merge` (conflict-free): returns the child's UUID.
    pub fn merge(&self, spec: &str, parents: &[String], note: String) -> Result<String> {
        self.modify(spec, |state, root, _| {
            let parents = parent_versions(state, root, parents)?;
            merge_child(state, root, &parents, note)
        })
    }

    /// `POST /api/repo/{uuid}/resolve`: merges `parents`, first one winning every conflicting
    /// key of the named instances. For each lower-priority parent that holds a conflicting
    /// value, a committed child is made that holds the winning value, and those children are
    /// merged instead. (DVID writes tombstones there; the winning value resolves the same way
    /// and stays right when the winner is itself an ancestor of that parent.)
    pub fn resolve(
        &self,
        spec: &str,
        data: &[String],
        parents: &[String],
        note: String,
    ) -> Result<String> {
        let _gate = self.commit_gate.write();
        self.modify(spec, |state, root, _| {
            let mut parents = parent_versions(state, root, parents)?;
            if parents.len() < 2 {
                return Err(Error::bad("resolve needs at least two parents"));
            }
            if data.is_empty() {
                return Err(Error::bad(
                    "resolve needs the data instances to resolve in \"data\"",
                ));
            }
            let repo = &state.repos[&root];
            for p in &parents {
                if !repo.nodes[p].locked {
                    return Err(Error::bad(format!(
                        "parent {} must be committed before resolve",
                        repo.nodes[p].uuid
                    )));
                }
            }
            // A scratch DAG with a virtual merge node tells which keys conflict.
            let probe = VersionId::MAX;
            let mut dag: Dag = (*repo.dag).clone();
            dag.add(probe, parents.clone());
            let mut fixes: BTreeMap<usize, Vec<Fix>> = BTreeMap::new();
            for name in data {
                let inst = repo.instance(name)?;
                let store = self.instance_store(inst);
                store.scan_grouped(inst.id, &[], None, &mut |tkey, entries| {
                    if versioned::resolve(&dag, probe, entries, tkey).is_ok() {
                        return Ok(true);
                    }
                    let values = parents
                        .iter()
                        .map(|p| versioned::resolve(&dag, *p, entries, tkey))
                        .collect::<tessera_storage::Result<Vec<_>>>()?;
                    let Some(winner) = values.iter().flatten().next() else {
                        return Ok(true);
                    };
                    for (j, v) in values.iter().enumerate() {
                        if v.is_some_and(|v| v != *winner) {
                            fixes.entry(j).or_default().push((
                                inst.id,
                                tkey.to_vec(),
                                winner.to_vec(),
                            ));
                        }
                    }
                    Ok(true)
                })?;
            }
            let mut batch = WriteBatch::new();
            for (j, writes) in fixes {
                let parent = parents[j];
                let uuid = new_uuid(state, None)?;
                let version = allocate_node(state, root, &uuid);
                let repo = state.repos.get_mut(&root).expect("matched repo exists");
                let branch = repo.nodes[&parent].branch.clone();
                let mut node = Node::new(
                    uuid,
                    version,
                    branch,
                    vec![parent],
                    format!(
                        "resolve: {} keys take the first parent's value",
                        writes.len()
                    ),
                );
                node.locked = true;
                repo.nodes
                    .get_mut(&parent)
                    .expect("parent exists")
                    .children
                    .push(version);
                repo.nodes.insert(version, node);
                repo.rebuild_dag();
                for (instance, tkey, value) in writes {
                    let view = View {
                        instance,
                        version,
                        dag: repo.dag.clone(),
                    };
                    versioned::put_into(&mut batch, &view, &tkey, &value);
                }
                parents[j] = version;
            }
            // Merge in memory first, so a refused merge writes no data.
            let child = merge_child(state, root, &parents, note)?;
            // Instances may live in different stores; group the batch per store.
            self.write_instance_batches(&state.repos[&root], data, batch)?;
            Ok(child)
        })
    }

    fn write_instance_batches(
        &self,
        repo: &Repo,
        data: &[String],
        batch: WriteBatch,
    ) -> Result<()> {
        let mut per_store: BTreeMap<String, WriteBatch> = BTreeMap::new();
        for op in batch.ops {
            let key = match &op {
                tessera_storage::WriteOp::Put(k, _) | tessera_storage::WriteOp::Delete(k) => k,
            };
            let id =
                u32::from_be_bytes(key[1..5].try_into().expect("data keys hold an instance id"));
            let inst = data
                .iter()
                .filter_map(|n| repo.instances.get(n))
                .find(|i| i.id == id)
                .ok_or_else(|| Error::Internal("resolve wrote to an unknown instance".into()))?;
            per_store
                .entry(inst.store.clone())
                .or_default()
                .ops
                .push(op);
        }
        for (alias, b) in per_store {
            self.stores[&alias].write(b)?;
        }
        Ok(())
    }

    /// The UUID of `version` in the repo holding `any_uuid`.
    pub fn uuid_of_version(&self, any_uuid: &str, version: VersionId) -> Result<String> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, any_uuid)?;
        state.repos[&root]
            .nodes
            .get(&version)
            .map(|n| n.uuid.clone())
            .ok_or_else(|| Error::Internal(format!("no node has version {version}")))
    }

    /// Versions from `begin` to `end` along `end`'s first-parent ancestry, oldest first.
    pub fn version_path(&self, any_uuid: &str, begin: &str, end: &str) -> Result<Vec<VersionId>> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, any_uuid)?;
        let (r1, b) = match_uuid(&state, begin)?;
        let (r2, e) = match_uuid(&state, end)?;
        if r1 != root || r2 != root {
            return Err(Error::bad(
                "mutations-range versions must be in the instance's repo",
            ));
        }
        let repo = &state.repos[&root];
        let mut path = vec![e];
        let mut cur = e;
        while cur != b {
            match repo.nodes[&cur].parents.first() {
                Some(p) => {
                    cur = *p;
                    path.push(cur);
                }
                None => return Err(Error::bad(format!("{begin} is not an ancestor of {end}"))),
            }
        }
        path.reverse();
        Ok(path)
    }

    // ---- instances ---------------------------------------------------------------------------

    /// `POST /api/repo/{uuid}/instance`: returns the new instance's name and type.
    pub fn create_instance(
        &self,
        spec: &str,
        settings: &Settings,
        caller: &Caller,
    ) -> Result<(String, String)> {
        let type_name = settings
            .get("typename")
            .ok_or_else(|| Error::bad("instance settings need \"typename\""))?;
        let name = settings
            .get("dataname")
            .ok_or_else(|| Error::bad("instance settings need \"dataname\""))?;
        let dt = self.datatype(type_name)?.clone();
        let versioned = settings.bool("versioned")?.unwrap_or(true);
        let compression = parse_compression(
            settings
                .get("compression")
                .unwrap_or(dt.default_compression()),
        )?;
        let checksum = match settings
            .get("checksum")
            .unwrap_or("none")
            .to_ascii_lowercase()
            .as_str()
        {
            c @ ("none" | "crc32") => c.to_string(),
            other => {
                return Err(Error::bad(format!(
                    "unknown checksum {other:?}: use none or crc32"
                )));
            }
        };
        let tags = parse_tags(settings.get("tags").unwrap_or(""))?;
        let config = dt.configure(settings)?;
        let created = self.modify(spec, |state, root, version| {
            let repo = &state.repos[&root];
            if repo.nodes[&version].locked && !caller.admin {
                return Err(Error::bad(format!(
                    "can't create instance {name:?} on committed node {}",
                    repo.nodes[&version].uuid
                )));
            }
            repo.check_instance_name(name)?;
            let id = state.ids.next_instance;
            state.ids.next_instance += 1;
            let mut meta = InstanceMeta {
                name: name.to_string(),
                type_name: dt.type_name().to_string(),
                data_uuid: uuid::Uuid::new_v4().simple().to_string(),
                id,
                versioned,
                compression,
                checksum,
                tags,
                syncs: Vec::new(),
                store: String::new(),
                config,
                held: None,
                receiving: false,
            };
            meta.store = self.store_for(&meta, state.repos[&root].root_uuid());
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            repo.instances.insert(name.to_string(), meta);
            repo.log.push(log_line(&format!(
                "added data instance {name} of type {type_name}"
            )));
            repo.touch();
            Ok((name.to_string(), dt.type_name().to_string()))
        })?;
        self.subscribe_instance(spec, &created.0)?;
        Ok(created)
    }

    /// DVID's backend precedence (spec §2.4): DataUUID, `name:rootUUID`, tag, type, default.
    fn store_for(&self, meta: &InstanceMeta, root_uuid: &str) -> String {
        let by_tag = meta
            .tags
            .iter()
            .find_map(|(k, v)| self.backends.get(&format!("{k}={v}")));
        self.backends
            .get(&meta.data_uuid)
            .or_else(|| self.backends.get(&format!("{}:{root_uuid}", meta.name)))
            .or(by_tag)
            .or_else(|| self.backends.get(&meta.type_name))
            .cloned()
            .unwrap_or_else(|| self.default_store.clone())
    }

    fn instance_store(&self, meta: &InstanceMeta) -> VersionedStore {
        VersionedStore::new(self.stores[&meta.store].clone())
    }

    pub(crate) fn instance_json(
        self: &Arc<Self>,
        repo: &Repo,
        meta: &InstanceMeta,
        version: VersionId,
    ) -> Result<Value> {
        let dt = self.datatype(&meta.type_name)?.clone();
        let ctx = self.ctx_for(repo, meta, version, &Caller::default());
        let syncs: Vec<&str> = meta
            .syncs
            .iter()
            .filter_map(|u| repo.instance_by_uuid(u).map(|i| i.name.as_str()))
            .collect();
        Ok(json!({
            "Base": {
                "TypeName": dt.type_name(), "TypeURL": dt.type_url(), "TypeVersion": dt.type_version(),
                "DataUUID": meta.data_uuid, "Name": meta.name, "RepoUUID": repo.root_uuid(),
                "Compression": compression_description(&meta.compression),
                "Checksum": if meta.checksum == "crc32" { "CRC32 checksum" } else { "No checksum" },
                "Syncs": syncs, "Versioned": meta.versioned, "KVStore": meta.store,
                "LogStore": meta.store, "Tags": meta.tags,
            },
            "Extended": dt.extended_info(&ctx)?,
        }))
    }

    /// `GET info` of an instance at the version `spec` names.
    pub fn instance_info(self: &Arc<Self>, spec: &str, name: &str) -> Result<Value> {
        let state = self.state.read();
        let (root, version) = match_uuid(&state, spec)?;
        let repo = &state.repos[&root];
        self.instance_json(repo, repo.instance(name)?, version)
    }

    fn ctx_for(
        &self,
        repo: &Repo,
        meta: &InstanceMeta,
        version: VersionId,
        caller: &Caller,
    ) -> DataCtx {
        let node = version;
        let version = if meta.versioned { version } else { repo.root };
        DataCtx {
            services: self.services.clone(),
            catalog: self.arc(),
            node,
            instance: meta.clone(),
            uuid: repo.nodes[&version].uuid.clone(),
            view: View {
                instance: meta.id,
                version,
                dag: repo.dag.clone(),
            },
            store: self.instance_store(meta),
            user: caller.user.clone(),
            app: caller.app.clone(),
            admin: caller.admin,
        }
    }

    /// A context for the instance `name_or_uuid` (name or DataUUID) of the repo holding node
    /// `spec`, at `version` (the node's own when `None`): for work done outside a request,
    /// such as sync workers.
    pub fn ctx_at(
        &self,
        spec: &str,
        name_or_uuid: &str,
        version: Option<VersionId>,
        caller: &Caller,
    ) -> Result<DataCtx> {
        let state = self.state.read();
        let (root, own) = match_uuid(&state, spec)?;
        let repo = &state.repos[&root];
        let meta = match repo.instance_by_uuid(name_or_uuid) {
            Some(m) => m,
            None => repo.instance(name_or_uuid)?,
        };
        let version = version.unwrap_or(own);
        if !repo.nodes.contains_key(&version) {
            return Err(Error::not_found(format!(
                "version {version} is not in the repo of {spec}"
            )));
        }
        Ok(self.ctx_for(repo, meta, version, caller))
    }

    /// Changes an instance's persisted description (tags, syncs).
    pub(crate) fn modify_instance(
        &self,
        spec: &str,
        name: &str,
        f: impl FnOnce(&Repo, &mut InstanceMeta) -> Result<()>,
    ) -> Result<()> {
        self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            let mut meta = repo.instance(name)?.clone();
            f(repo, &mut meta)?;
            repo.instances.insert(name.to_string(), meta);
            repo.touch();
            Ok(())
        })?;
        // New syncs may want subscriptions.
        self.subscribe_instance(spec, name)
    }

    /// The datatype of instance `name` in the repo holding `spec`, if both resolve.
    fn instance_type(&self, spec: &str, name: &str) -> Option<Arc<dyn Datatype>> {
        let state = self.state.read();
        let (root, _) = match_uuid(&state, spec).ok()?;
        let meta = state.repos[&root].instance(name).ok()?;
        self.types.get(meta.type_name.as_str()).cloned()
    }

    /// Whether the instance's datatype wants this request's body streamed; false when the
    /// instance doesn't resolve (the request then fails in `data_request`).
    pub fn streams_body(&self, spec: &str, name: &str, method: Method, keyword: &str) -> bool {
        self.instance_type(spec, name)
            .is_some_and(|dt| dt.streams_body(method, keyword))
    }

    /// What an instance request does, for access control; when the instance doesn't
    /// resolve, every method but GET and HEAD counts as a write.
    pub fn request_kind(
        &self,
        spec: &str,
        name: &str,
        method: Method,
        keyword: &str,
    ) -> RequestKind {
        match self.instance_type(spec, name) {
            Some(dt) if dt.admin_only(method, keyword) => RequestKind::Admin,
            Some(dt) if dt.is_mutation(method, keyword) => RequestKind::Write,
            Some(_) => RequestKind::Read,
            None if matches!(method, Method::Get | Method::Head) => RequestKind::Read,
            None => RequestKind::Write,
        }
    }

    /// Handles `/api/node/{uuid}/{name}/{keyword}/...`: the common keywords here, the rest by
    /// the instance's datatype, behind the locked-node write guard.
    pub fn data_request(
        self: &Arc<Self>,
        spec: &str,
        name: &str,
        req: &DataRequest,
        caller: &Caller,
    ) -> Result<DataResponse> {
        let (dt, ctx, locked, mirror) = {
            let state = self.state.read();
            let (root, version) = match_uuid(&state, spec)?;
            let repo = &state.repos[&root];
            let meta = repo.instance(name)?;
            if meta.receiving {
                return Err(Error::Unavailable(format!(
                    "instance {name:?} of repo {} is being received by a transfer and is \
                     readable once it finishes (an interrupted transfer resumes when run again)",
                    repo.root_uuid()
                )));
            }
            let dt = self.datatype(&meta.type_name)?.clone();
            let ctx = self.ctx_for(repo, meta, version, caller);
            let node = &repo.nodes[&version];
            (dt, ctx, node.locked, node.mirror)
        };
        if dt.admin_only(req.method, &req.keyword) && !caller.admin {
            return Err(Error::Unauthorized(format!(
                "{} {} needs admin rights (admintoken=)",
                req.method.as_str(),
                req.keyword
            )));
        }
        let mutation = dt.is_mutation(req.method, &req.keyword);
        let _gate = if mutation {
            Some(self.commit_gate.read_arc())
        } else {
            None
        };
        if mutation && !caller.admin && ctx.instance.versioned {
            // Re-read under the gate: a commit may have landed since the snapshot above.
            if locked || self.is_locked(&ctx.uuid)? {
                return Err(Error::bad(format!(
                    "Cannot do {} on endpoint {:?} of locked node {}",
                    req.method.as_str(),
                    req.keyword,
                    ctx.uuid
                )));
            }
        }
        if mutation && mirror {
            // Written here, the node is this server's own: a transfer may no longer overwrite it.
            self.modify(spec, |state, root, version| {
                let repo = state.repos.get_mut(&root).expect("matched repo exists");
                repo.nodes.get_mut(&version).expect("matched node").mirror = false;
                Ok(())
            })?;
        }
        if let Some(resp) = common::handle(self, &dt, &ctx, spec, req)? {
            return Ok(resp);
        }
        if !dt.keywords().contains(&req.keyword.as_str()) {
            return Err(Error::bad(format!(
                "Bad API call ({}) for data {:?}. See API help at /api/help/{}",
                req.keyword,
                ctx.instance.name,
                dt.type_name()
            )));
        }
        dt.handle(&ctx, req)
    }
}

impl Catalog for Engine {
    fn ctx_at(
        &self,
        spec: &str,
        name_or_uuid: &str,
        version: Option<VersionId>,
        caller: &Caller,
    ) -> Result<DataCtx> {
        Engine::ctx_at(self, spec, name_or_uuid, version, caller)
    }

    fn uuid_of_version(&self, any_uuid: &str, version: VersionId) -> Result<String> {
        Engine::uuid_of_version(self, any_uuid, version)
    }

    fn version_path(&self, any_uuid: &str, begin: &str, end: &str) -> Result<Vec<VersionId>> {
        Engine::version_path(self, any_uuid, begin, end)
    }

    fn next_mutation_id(&self, spec: &str) -> Result<u64> {
        Engine::next_mutation_id(self, spec)
    }

    fn create_instance(
        &self,
        spec: &str,
        settings: &Settings,
        caller: &Caller,
    ) -> Result<(String, String)> {
        Engine::create_instance(self, spec, settings, caller)
    }

    fn set_config(&self, spec: &str, name: &str, config: serde_json::Value) -> Result<()> {
        self.modify_instance(spec, name, |_, meta| {
            meta.config = config;
            Ok(())
        })
    }
}

/// A conflict-free merge child of `parents` in `root`'s repo; returns its UUID.
fn merge_child(
    state: &mut State,
    root: VersionId,
    parents: &[VersionId],
    note: String,
) -> Result<String> {
    let child = new_uuid(state, None)?;
    let version = allocate_node(state, root, &child);
    state
        .repos
        .get_mut(&root)
        .expect("matched repo exists")
        .merge(parents, version, child.clone(), note)?;
    Ok(child)
}

/// A write `resolve` makes in a lower-priority parent's child: (instance, tkey, winning value).
type Fix = (u32, Vec<u8>, Vec<u8>);

/// A fresh random UUID, or the caller's, checked for shape and uniqueness.
fn new_uuid(state: &State, wanted: Option<&str>) -> Result<String> {
    match wanted {
        None => Ok(uuid::Uuid::new_v4().simple().to_string()),
        Some(u) => {
            let u = u.to_ascii_lowercase();
            if u.len() != 32 || !u.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::bad(format!(
                    "bad UUID {u:?}: must be 32 hexadecimal characters"
                )));
            }
            check_unused(state, &u)?;
            Ok(u)
        }
    }
}

fn check_unused(state: &State, uuid: &str) -> Result<()> {
    if state.uuids.contains_key(uuid) {
        return Err(Error::bad(format!(
            "UUID {uuid} already exists on this server"
        )));
    }
    Ok(())
}

/// Allocates a version id for a new node of `root`'s repo named `uuid` (already checked).
fn allocate_node(state: &mut State, root: VersionId, uuid: &str) -> VersionId {
    let version = state.ids.next_version;
    state.ids.next_version += 1;
    state.uuids.insert(uuid.to_string(), (root, version));
    version
}

fn parent_versions(state: &State, root: VersionId, parents: &[String]) -> Result<Vec<VersionId>> {
    parents
        .iter()
        .map(|p| {
            let (r, v) = match_uuid(state, p)?;
            if r != root {
                return Err(Error::bad(format!("parent {p} is not in this repo")));
            }
            Ok(v)
        })
        .collect()
}

/// DVID's `MatchingUUID` (spec §1.2).
fn match_uuid(state: &State, spec: &str) -> Result<(VersionId, VersionId)> {
    if let Some((prefix, branch_spec)) = spec.split_once(':') {
        if branch_spec.contains(':') {
            return Err(Error::bad(format!(
                "bad UUID spec {spec:?}: more than one ':'"
            )));
        }
        let root = if prefix.is_empty() {
            if state.repos.len() != 1 {
                return Err(Error::bad(format!(
                    "UUID spec {spec:?} has no UUID prefix, which is allowed only when the server holds one repo"
                )));
            }
            *state.repos.keys().next().expect("one repo")
        } else {
            match_prefix(state, prefix)?.0
        };
        let repo = &state.repos[&root];
        let (branch, nth) = match branch_spec.rsplit_once('~') {
            Some((b, n)) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| Error::bad(format!("bad ancestor count in {spec:?}")))?;
                (b, n)
            }
            None => (branch_spec, 0),
        };
        let branch = if branch == "master" { "" } else { branch };
        let versions = repo.branch_versions(branch);
        if versions.is_empty() {
            return Err(Error::bad(format!(
                "no branch {branch:?} in the repo of {spec:?}"
            )));
        }
        let v = *versions.get(nth).ok_or_else(|| {
            Error::bad(format!(
                "branch {branch:?} has fewer than {} versions",
                nth + 1
            ))
        })?;
        return Ok((root, v));
    }
    match_prefix(state, spec)
}

fn match_prefix(state: &State, prefix: &str) -> Result<(VersionId, VersionId)> {
    let mut hits = state
        .uuids
        .range(prefix.to_string()..)
        .take_while(|(u, _)| u.starts_with(prefix));
    match (hits.next(), hits.next()) {
        (Some((_, rv)), None) => Ok(*rv),
        (None, _) => Err(Error::bad(format!(
            "could not find UUID with partial match to {prefix:?}"
        ))),
        (Some(_), Some(_)) => Err(Error::bad(format!("more than one UUID matches {prefix:?}"))),
    }
}

/// Normalizes a compression setting (spec §3.3): none, snappy, lz4, gzip, gzip:N, jpeg[:N].
fn parse_compression(s: &str) -> Result<String> {
    let lower = s.to_ascii_lowercase();
    let (name, level) = match lower.split_once(':') {
        Some((n, l)) => (n, Some(l)),
        None => (lower.as_str(), None),
    };
    match (name, level) {
        ("none" | "snappy" | "lz4" | "gzip" | "jpeg", None) => Ok(name.to_string()),
        ("gzip", Some(l)) if matches!(l.parse::<u8>(), Ok(1..=9)) => Ok(lower),
        ("jpeg", Some(l)) if matches!(l.parse::<u8>(), Ok(1..=100)) => Ok(lower),
        _ => Err(Error::bad(format!(
            "unknown compression {s:?}: use none, snappy, lz4, gzip, gzip:1-9 or jpeg"
        ))),
    }
}

fn compression_description(c: &str) -> String {
    let (name, level) = c.split_once(':').unwrap_or((c, "-1"));
    let label = match name {
        "none" => "No",
        "snappy" => "Snappy",
        "lz4" => "LZ4",
        "gzip" => "gzip",
        // Lower case: neuroglancer looks for "jpeg" in it to take the JPEG block path.
        _ => "jpeg",
    };
    format!("{label} compression, level {level}")
}

/// `Tags` setting: `"k=v,k2=v2"`.
fn parse_tags(s: &str) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Error::bad(format!("bad tag {part:?}: tags are written key=value")))?;
        tags.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(tags)
}

/// The key of a blob: DVID's FNV-1 128-bit hash of the content (spec §2.1).
pub(crate) fn blob_key(hash: &[u8; 16]) -> Vec<u8> {
    let mut k = vec![space::BLOB];
    k.extend_from_slice(hash);
    k
}
