//! The context a datatype handler works in, and how it reaches the rest of the server: the
//! engine's services, the catalog of repos and instances (for the instances it syncs with,
//! through typed handles), and the mutation service (through [`Mutation`]).

use std::sync::{Arc, Weak};

use serde_json::Value;
use tessera_storage::{VersionId, VersionedStore, View, WriteBatch};

use super::Settings;
use crate::instance::InstanceMeta;
use crate::mutation::{Commit, log};
use crate::services::Services;
use crate::sync::{Delta, SyncEvent};
use crate::{Error, Result};

/// Who is making a request: `u=`/`app=` and whether they hold admin privilege.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user: Option<String>,
    pub app: Option<String>,
    pub admin: bool,
}

impl Caller {
    pub fn admin() -> Caller {
        Caller {
            admin: true,
            ..Caller::default()
        }
    }
}

/// The repos and instances of the server, as datatypes see them (the engine implements it).
pub trait Catalog: Send + Sync {
    /// A context for the instance `name_or_uuid` (name or DataUUID) of the repo holding node
    /// `spec`, at `version` (the node's own when `None`).
    fn ctx_at(
        &self,
        spec: &str,
        name_or_uuid: &str,
        version: Option<VersionId>,
        caller: &Caller,
    ) -> Result<DataCtx>;
    /// The UUID of `version` in the repo holding node `any_uuid`.
    fn uuid_of_version(&self, any_uuid: &str, version: VersionId) -> Result<String>;
    /// The versions from `begin` to `end` along `end`'s first-parent ancestry, oldest first.
    fn version_path(&self, any_uuid: &str, begin: &str, end: &str) -> Result<Vec<VersionId>>;
    /// A new mutation ID of the repo holding node `spec`.
    fn next_mutation_id(&self, spec: &str) -> Result<u64>;
    /// Replaces the configuration of instance `name` (its datatype's `configure` output) in
    /// the repo holding `spec`, e.g. a new voxel size.
    fn set_config(&self, spec: &str, name: &str, config: serde_json::Value) -> Result<()>;
    /// Creates an instance in the repo holding `spec`; returns (name, type name).
    fn create_instance(
        &self,
        spec: &str,
        settings: &Settings,
        caller: &Caller,
    ) -> Result<(String, String)>;
}

/// How a sync worker reaches instances: the catalog, held weakly so that a worker never keeps
/// the engine alive, and a node of the repo to find versions by.
pub struct WorkerCatalog {
    catalog: Weak<dyn Catalog>,
    uuid: String,
}

impl WorkerCatalog {
    /// For workers of `ctx`'s repo.
    pub fn new(ctx: &DataCtx) -> WorkerCatalog {
        WorkerCatalog {
            catalog: Arc::downgrade(&ctx.catalog),
            uuid: ctx.uuid.clone(),
        }
    }

    /// The catalog; an error once the engine is shutting down.
    pub fn catalog(&self) -> Result<Arc<dyn Catalog>> {
        self.catalog
            .upgrade()
            .ok_or_else(|| Error::Internal("the server is shutting down".into()))
    }

    /// The UUID of `version`.
    pub fn node(&self, version: VersionId) -> Result<String> {
        self.catalog()?.uuid_of_version(&self.uuid, version)
    }

    /// Instance `name_or_uuid` at `version`, with admin rights (workers act for the server).
    pub fn ctx_at(&self, version: VersionId, name_or_uuid: &str) -> Result<DataCtx> {
        let node = self.node(version)?;
        self.catalog()?
            .ctx_at(&node, name_or_uuid, Some(version), &Caller::admin())
    }
}

/// Everything a datatype handler needs for one request: the instance, the version it reads and
/// writes (the repo root for unversioned instances), the store, and who is asking.
pub struct DataCtx {
    pub services: Arc<Services>,
    pub catalog: Arc<dyn Catalog>,
    pub instance: InstanceMeta,
    /// The node UUID the request named (resolved from a prefix or branch spec).
    pub uuid: String,
    /// The version requests read and write: the node's, or the root's when unversioned.
    pub view: View,
    /// The version of the node the request named, even when `view` is the root's (unversioned
    /// instances): the version synced instances are read at.
    pub node: VersionId,
    pub store: VersionedStore,
    pub user: Option<String>,
    pub app: Option<String>,
    /// Whether the caller holds admin rights (admin-only endpoints check it).
    pub admin: bool,
}

/// A datatype's typed view of one instance, for the instances that read and write each other
/// (synced datatypes, workers): never a synthetic HTTP request.
pub trait Handle: Sized {
    /// The datatype the handle is for.
    const TYPE_NAME: &'static str;
    /// The handle of a context already checked to be of `TYPE_NAME`.
    fn from_ctx(ctx: DataCtx) -> Result<Self>;

    fn open(ctx: DataCtx) -> Result<Self> {
        if ctx.instance.type_name != Self::TYPE_NAME {
            return Err(Error::bad(format!(
                "data {:?} is a {}, not a {}",
                ctx.instance.name,
                ctx.instance.type_name,
                Self::TYPE_NAME
            )));
        }
        Self::from_ctx(ctx)
    }
}

impl DataCtx {
    pub fn version(&self) -> VersionId {
        self.view.version
    }

    pub fn caller(&self) -> Caller {
        Caller {
            user: self.user.clone(),
            app: self.app.clone(),
            admin: self.admin,
        }
    }

    /// Another instance of this repo (by name or DataUUID), at the node this request named
    /// (also for an unversioned instance, whose own view is the root), with this caller.
    pub fn sibling(&self, name_or_uuid: &str) -> Result<DataCtx> {
        self.catalog
            .ctx_at(&self.uuid, name_or_uuid, Some(self.node), &self.caller())
    }

    /// A typed handle on another instance of this repo, as `sibling` finds it.
    pub fn handle<H: Handle>(&self, name_or_uuid: &str) -> Result<H> {
        H::open(self.sibling(name_or_uuid)?)
    }

    /// A numbered mutation of this instance at this version: a new mutation ID of the repo.
    pub fn mutation(&self) -> Result<Mutation<'_>> {
        let id = self.catalog.next_mutation_id(&self.uuid)?;
        Ok(Mutation::new(self, Some(id)))
    }

    /// A write of this instance at this version that takes no mutation ID (keyvalue values,
    /// voxel ingest: DVID numbers only proofreading mutations).
    pub fn write(&self) -> Mutation<'_> {
        Mutation::new(self, None)
    }

    /// The mutation-log records of this instance at this version, oldest first.
    pub fn mutations(&self) -> Result<Vec<Vec<u8>>> {
        log::read(
            self.store.kv().as_ref(),
            self.instance.id,
            self.view.version,
        )
    }

    /// The records of every version from `begin` to `end` along `end`'s first-parent ancestry,
    /// oldest version first (`GET mutations-range`).
    pub fn mutations_range(&self, begin: &str, end: &str) -> Result<Vec<Vec<u8>>> {
        let versions = self.catalog.version_path(&self.uuid, begin, end)?;
        let mut out = Vec::new();
        for v in versions {
            out.extend(log::read(self.store.kv().as_ref(), self.instance.id, v)?);
        }
        Ok(out)
    }
}

/// One change of an instance at one version on its way to the mutation service: the storage
/// batch, the log records and the sync events that commit with it.
pub struct Mutation<'a> {
    ctx: &'a DataCtx,
    /// The mutation ID, for numbered mutations.
    pub id: Option<u64>,
    pub batch: WriteBatch,
    records: Vec<Value>,
    events: Vec<SyncEvent>,
    /// Run once the batch is durable, before subscribers are woken.
    committed: Vec<Box<dyn FnOnce() + Send + 'a>>,
}

impl<'a> Mutation<'a> {
    fn new(ctx: &'a DataCtx, id: Option<u64>) -> Mutation<'a> {
        Mutation {
            ctx,
            id,
            batch: WriteBatch::new(),
            records: Vec::new(),
            events: Vec::new(),
            committed: Vec::new(),
        }
    }

    /// Runs `f` once the change is durable and before subscribers hear of it: for in-memory
    /// state the change invalidates (a subscriber woken by the change must not read it stale).
    pub fn on_commit(&mut self, f: impl FnOnce() + Send + 'a) {
        self.committed.push(Box::new(f));
    }

    /// The context the change is made in.
    pub fn ctx(&self) -> &'a DataCtx {
        self.ctx
    }

    /// The mutation ID (0 for unnumbered writes).
    pub fn mutation_id(&self) -> u64 {
        self.id.unwrap_or(0)
    }

    /// Adds a mutation-log record; the caller's `u`/`app` are added as `User`/`App`.
    pub fn record(&mut self, mut record: Value) {
        if let Some(obj) = record.as_object_mut() {
            if let Some(u) = &self.ctx.user {
                obj.insert("User".into(), u.clone().into());
            }
            if let Some(a) = &self.ctx.app {
                obj.insert("App".into(), a.clone().into());
            }
        }
        self.records.push(record);
    }

    /// Whether anyone wants this instance's `event`: publishers skip building unwanted ones.
    pub fn wants(&self, event: &'static str) -> bool {
        self.ctx
            .services
            .mutations
            .wanted(&self.ctx.instance.data_uuid, event)
    }

    /// Adds a sync event about this change, delivered once it committed.
    pub fn event(&mut self, name: &'static str, delta: Delta) {
        self.events.push(SyncEvent {
            name,
            publisher: self.ctx.instance.data_uuid.clone(),
            version: self.ctx.view.version,
            mutation_id: self.mutation_id(),
            delta,
        });
    }

    /// Commits everything in one atomic storage batch, then delivers.
    pub fn commit(self) -> Result<()> {
        let committed = self.committed;
        self.ctx.services.mutations.commit_then(
            Commit {
                kv: self.ctx.store.kv().clone(),
                datatype: self.ctx.instance.type_name.clone(),
                publisher: self.ctx.instance.data_uuid.clone(),
                instance: self.ctx.instance.id,
                version: self.ctx.view.version,
                batch: self.batch,
                records: self.records,
                events: self.events,
            },
            || committed.into_iter().for_each(|f| f()),
        )
    }
}
