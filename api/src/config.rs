//! The TOML configuration, in DVID's shape (spec §2.4) with `[compute]` added.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use tessera_engine::compute::Compute;
use tessera_engine::engine::EngineOptions;
use tessera_storage::faults::DiskFullSwitch;
use tessera_storage::{
    ContentStore, DiskCache, KvStore, MemoryStore, ObjectConfig, Objects, RocksStore, SlateStore,
};

#[derive(Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: BTreeMap<String, StoreConfig>,
    #[serde(default)]
    pub backend: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub compute: ComputeConfig,
    /// Publish the mutation log to NATS JetStream (`stream`).
    pub nats: Option<crate::stream::NatsConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ServerConfig {
    /// `host:port`; DVID's `":8000"` form means every interface.
    #[serde(alias = "httpAddress")]
    pub http_address: Option<String>,
    #[serde(default)]
    pub note: String,
    /// "readonly" allows only GET and HEAD; "fullwrite" lifts the locked-node guards.
    #[serde(default)]
    pub rwmode: String,
    #[serde(alias = "instanceIdStart")]
    pub instance_id_start: Option<u32>,
    #[serde(alias = "minMutationIdStart")]
    pub min_mutation_id_start: Option<u64>,
    /// Largest accepted request body, in MiB.
    pub max_body_mb: Option<u64>,
    /// Serve labelmap `POST split` (default true; DVID's `allowLabelmapSplit` defaults off).
    #[serde(alias = "allowLabelmapSplit")]
    pub allow_labelmap_split: Option<bool>,
    /// Sync every RocksDB write to disk before acknowledging it (default true): an
    /// acknowledged write then survives a power cut, not only a killed process.
    pub sync_writes: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct StoreConfig {
    /// "rocksdb" (also DVID's "badger", mapped to rocksdb), "slatedb" or "memory".
    pub engine: String,
    pub path: Option<PathBuf>,
    /// Where a "slatedb" store keeps its LSM tree: an object store URL (`s3://bucket/meta`,
    /// `gs://…`, `az://…`, `file:///dir`), reached with `object_options`.
    pub url: Option<String>,
    /// Keep blocks as content-addressed objects at this URL (`s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `file:///dir`); the engine above keeps every key and the references
    /// (docs/storage.md).
    pub objects: Option<String>,
    /// Options of the object store client (`endpoint`, `region`, `allow_http`,
    /// `access_key_id`, …; the usual `AWS_*`/`GOOGLE_*`/`AZURE_*` variables are read first).
    #[serde(default)]
    pub object_options: BTreeMap<String, String>,
    /// Memory cache of hot objects, in MiB (default 256).
    pub object_cache_mb: Option<u64>,
    /// A directory keeping the objects this server reads, below the memory cache: hot blocks
    /// then outlive restarts and outgrow RAM (docs/storage.md). Off when absent.
    pub object_disk_cache: Option<PathBuf>,
    /// The disk cache's size, in MiB (default 10240).
    pub object_disk_cache_mb: Option<u64>,
    /// Object requests in flight at once per read or write (default 64).
    pub object_concurrency: Option<usize>,
    /// How long a failing object request is retried before the HTTP request fails with 503
    /// or 504, in seconds (default 30).
    pub object_retry_secs: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct BackendConfig {
    pub store: String,
}

/// `[auth]` (docs/access.md). DVID's own keys where it has them (`enforce`, `public_versions`).
#[derive(Debug, Default, Deserialize)]
pub struct AuthConfig {
    /// Full rights everywhere (also `DVID_ADMIN_TOKEN` or `TESSERA_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// "none" (the default: anyone may do anything, as DVID) or "token": every request but
    /// the public ones needs a token with a role on the repo it touches.
    #[serde(default)]
    pub enforce: String,
    /// The HS256 key signing tokens (also `TESSERA_JWT_SECRET` or DVID's
    /// `DVID_JWT_SECRET_KEY`), or a file holding it.
    pub jwt_secret: Option<String>,
    pub jwt_secret_file: Option<PathBuf>,
    /// Root UUIDs of repos whose every version anyone may read.
    #[serde(default)]
    pub public_repos: Vec<String>,
    /// Committed versions anyone may read, with all their ancestors (DVID's rule).
    #[serde(default)]
    pub public_versions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ComputeConfig {
    /// "auto", "gpu" or "cpu".
    pub backend: Option<String>,
}

/// Names a file whose existence makes every store's writes fail as a full disk's do (tests;
/// rehearsing the out-of-space behaviour): `storage::faults`.
pub const DISK_FULL_ENV: &str = "TESSERA_FAULT_DISK_FULL";

pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
pub const DEFAULT_MAX_BODY_MB: u64 = 1024;

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<(Config, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let cfg: Config =
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
        Ok((cfg, text))
    }

    pub fn addr(&self, flag: Option<&str>) -> anyhow::Result<SocketAddr> {
        let raw = flag
            .or(self.server.http_address.as_deref())
            .unwrap_or(DEFAULT_ADDR);
        let full = if raw.starts_with(':') {
            format!("0.0.0.0{raw}")
        } else {
            raw.to_string()
        };
        full.parse()
            .with_context(|| format!("bad listen address {raw:?}"))
    }

    pub fn max_body_bytes(&self) -> usize {
        (self.server.max_body_mb.unwrap_or(DEFAULT_MAX_BODY_MB) as usize).saturating_mul(1 << 20)
    }

    /// The engine's options over stores opened by `open_stores`.
    pub fn engine_options(
        &self,
        stores: &Stores,
        compute: Arc<dyn Compute>,
        read_only: bool,
    ) -> anyhow::Result<EngineOptions> {
        Ok(EngineOptions {
            stores: stores.kv.clone(),
            backends: self
                .backend
                .iter()
                .map(|(k, v)| (k.clone(), v.store.clone()))
                .collect(),
            instance_id_start: self.server.instance_id_start.unwrap_or(1),
            min_mutation_id_start: self.server.min_mutation_id_start.unwrap_or(0),
            compute,
            allow_labelmap_split: self.server.allow_labelmap_split.unwrap_or(true),
            read_only,
        })
    }

    /// The configured stores by alias; with none configured, `default`: RocksDB in `data_dir`.
    /// A read replica (`read_only`) opens each RocksDB store as a secondary instance of the
    /// writer's directory.
    pub fn open_stores(&self, data_dir: &Path, read_only: bool) -> anyhow::Result<Stores> {
        let mut stores: BTreeMap<String, Arc<dyn KvStore>> = BTreeMap::new();
        let mut content = BTreeMap::new();
        let sync = self.server.sync_writes.unwrap_or(true);
        let open_rocksdb = |alias: &str, path: &Path| -> anyhow::Result<Arc<dyn KvStore>> {
            if read_only {
                open_replica(alias, path)
            } else {
                open_rocks(path, sync)
            }
        };
        if self.store.is_empty() {
            stores.insert("default".into(), open_rocksdb("default", data_dir)?);
        }
        for (alias, sc) in &self.store {
            let store: Arc<dyn KvStore> = match sc.engine.as_str() {
                "rocksdb" | "badger" => {
                    let path = sc
                        .path
                        .as_ref()
                        .with_context(|| format!("[store.{alias}] needs a path"))?;
                    open_rocksdb(alias, path)?
                }
                "slatedb" => {
                    let url = sc.url.as_ref().with_context(|| {
                        format!(
                            "[store.{alias}] engine \"slatedb\" needs a url (s3://bucket/prefix, …)"
                        )
                    })?;
                    // A replica reads beside the writer; opening a writer would fence it out.
                    let cfg = object_config(url, sc)?;
                    let store = if read_only {
                        SlateStore::open_reader(&cfg)
                    } else {
                        SlateStore::open(&cfg)
                    }
                    .with_context(|| format!("[store.{alias}] opening SlateDB at {url}"))?;
                    Arc::new(store)
                }
                "memory" => Arc::new(MemoryStore::new()),
                other => bail!(
                    "[store.{alias}] engine {other:?} is not supported: use rocksdb, slatedb or memory"
                ),
            };
            let store = match &sc.objects {
                Some(url) => {
                    let c = Arc::new(
                        open_content(store, url, sc)
                            .with_context(|| format!("[store.{alias}] objects = {url:?}"))?,
                    );
                    content.insert(alias.clone(), c.clone());
                    c as Arc<dyn KvStore>
                }
                None => store,
            };
            stores.insert(alias.clone(), store);
        }
        if let Some(switch) = std::env::var_os(DISK_FULL_ENV) {
            tracing::warn!(
                "{DISK_FULL_ENV} is set: writes fail as on a full disk while {} exists",
                PathBuf::from(&switch).display()
            );
            for store in stores.values_mut() {
                *store = Arc::new(DiskFullSwitch::new(store.clone(), switch.clone().into()));
            }
        }
        Ok(Stores {
            kv: stores,
            content,
        })
    }
}

/// The opened stores; `content` repeats those keeping blocks as objects, for `gc`.
pub struct Stores {
    pub kv: BTreeMap<String, Arc<dyn KvStore>>,
    pub content: BTreeMap<String, Arc<ContentStore>>,
}

/// How a store reaches the object store at `url`: its `object_*` settings.
fn object_config(url: &str, sc: &StoreConfig) -> anyhow::Result<ObjectConfig> {
    let mut cfg = ObjectConfig::new(url);
    cfg.options = sc.object_options.clone();
    if let Some(n) = sc.object_concurrency {
        cfg.concurrency = n;
    }
    if let Some(secs) = sc.object_retry_secs {
        cfg.retry_timeout = std::time::Duration::try_from_secs_f64(secs)
            .context("object_retry_secs must be a non-negative number")?;
    }
    Ok(cfg)
}

fn open_content(kv: Arc<dyn KvStore>, url: &str, sc: &StoreConfig) -> anyhow::Result<ContentStore> {
    let objects = Objects::open(&object_config(url, sc)?)?;
    let cache = sc.object_cache_mb.unwrap_or(256).saturating_mul(1 << 20);
    let store = ContentStore::new(kv, objects, tessera_engine::block::is_stored_block, cache);
    Ok(match &sc.object_disk_cache {
        Some(dir) => {
            let mb = sc.object_disk_cache_mb.unwrap_or(10240);
            store.with_disk_cache(DiskCache::open(dir, mb.saturating_mul(1 << 20))?)
        }
        None => store,
    })
}

/// RocksDB's secondary instance of the writer's database at `path`, with its own info log in a
/// temporary directory named for this process.
fn open_replica(alias: &str, path: &Path) -> anyhow::Result<Arc<dyn KvStore>> {
    let temp = std::env::temp_dir();
    remove_stale_scratch(&temp);
    let scratch = temp.join(format!("{SCRATCH}{}-{alias}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let store = RocksStore::open_secondary(path, &scratch).map_err(|e| {
        anyhow::anyhow!(
            "opening RocksDB at {} as a read replica (the writer's store must exist): {e}",
            path.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// The prefix of a read replica's scratch directory: `<prefix><pid>-<alias>`.
const SCRATCH: &str = "tessera-replica-";

/// Removes the scratch directories in `temp` of replica processes that are gone: a server that
/// was killed cannot remove its own. Only where `/proc` tells which processes live.
fn remove_stale_scratch(temp: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Another replica may remove it at the same moment; either way it is gone.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn open_rocks(path: &Path, sync: bool) -> anyhow::Result<Arc<dyn KvStore>> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let mut store = RocksStore::open(path)
        .map_err(|e| anyhow::anyhow!("opening RocksDB at {}: {e}", path.display()))?;
    store.set_sync(sync);
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_replica_scratch_of_gone_processes_is_removed_and_the_rest_kept() {
        let temp = tempfile::tempdir().unwrap();
        // A process that has exited: its pid names no live process (short of reuse).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let names = [
            format!("{SCRATCH}{gone}-default"),
            format!("{SCRATCH}{me}-default"),
            format!("{SCRATCH}notapid-x"),
            "something-else".to_string(),
        ];
        for n in &names {
            std::fs::create_dir(temp.path().join(n)).unwrap();
            std::fs::write(temp.path().join(n).join("LOG"), b"log").unwrap();
        }
        remove_stale_scratch(temp.path());
        let left: Vec<bool> = names.iter().map(|n| temp.path().join(n).exists()).collect();
        assert_eq!(left, [false, true, true, true]);
    }
}
