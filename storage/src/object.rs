//! Object storage (S3 and S3-compatible servers, GCS, Azure, local files) through the
//! `object_store` crate, holding immutable objects named by the BLAKE3 hash of their bytes.
//!
//! The KV layer above is synchronous, so a private tokio runtime runs the requests and callers
//! wait on a channel: that works from any thread, inside another runtime or not. Many objects
//! move in one call, with at most `concurrency` requests in flight, so a 512³ read is not 512
//! sequential round trips. Transient failures (5xx, timeouts, refused connections) are retried
//! with backoff by the crate's own retry layer until `retry_timeout`; what still fails becomes
//! [`Error::Unavailable`] or [`Error::Timeout`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::{Error, Result};

/// A BLAKE3 hash: the name of one object.
pub type Hash = [u8; 32];

pub fn hash_of(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, out) in h.iter_mut().enumerate() {
        *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(h)
}

/// Where the objects live and how to reach them.
#[derive(Debug, Clone)]
pub struct ObjectConfig {
    /// `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir` or `memory://` (tests).
    pub url: String,
    /// Builder options (`endpoint`, `region`, `allow_http`, `access_key_id`, …), as the
    /// `object_store` crate names them; they override the usual environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), which are read first.
    pub options: BTreeMap<String, String>,
    /// Requests in flight at once per call.
    pub concurrency: usize,
    /// How long a failing request is retried before the caller sees the error.
    pub retry_timeout: Duration,
    /// The limit on one request (connect, send, receive).
    pub request_timeout: Duration,
}

impl ObjectConfig {
    pub fn new(url: impl Into<String>) -> ObjectConfig {
        ObjectConfig {
            url: url.into(),
            options: BTreeMap::new(),
            concurrency: 64,
            retry_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// One object as a listing shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub hash: Hash,
    pub size: u64,
    pub modified: SystemTime,
}

pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    concurrency: usize,
    rt: Option<tokio::runtime::Runtime>,
}

impl Objects {
    pub fn open(cfg: &ObjectConfig) -> Result<Objects> {
        let (store, prefix) = store_for(cfg)?;
        Ok(Objects {
            store,
            prefix: Path::from(prefix),
            url: cfg.url.clone(),
            concurrency: cfg.concurrency.max(1),
            rt: Some(runtime("tessera-objects")?),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `<prefix>/b3/<first two hex digits>/<64 hex digits>`: the two-digit fan-out spreads keys
    /// over S3's partitions.
    fn path(&self, h: &Hash) -> Path {
        let name = hex(h);
        self.prefix.clone().join("b3").join(&name[..2]).join(name)
    }

    fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        block_on(self.rt.as_ref().expect("runtime until drop"), fut)
    }

    /// The objects' bytes, in the order asked.
    pub fn get_many(&self, hashes: &[Hash]) -> Result<Vec<Bytes>> {
        let store = self.store.clone();
        let reqs: Vec<(Hash, Path)> = hashes.iter().map(|h| (*h, self.path(h))).collect();
        let n = self.concurrency;
        self.block_on(async move {
            futures::stream::iter(reqs)
                .map(|(h, p)| {
                    let store = store.clone();
                    async move {
                        let got = store.get(&p).await.map_err(|e| from_object(e, &h))?;
                        got.bytes().await.map_err(|e| from_object(e, &h))
                    }
                })
                .buffered(n)
                .try_collect()
                .await
        })
    }

    /// Stores each object under its hash (overwriting an identical copy is harmless: the name
    /// is the content).
    pub fn put_many(&self, objects: Vec<(Hash, Bytes)>) -> Result<()> {
        let store = self.store.clone();
        let reqs: Vec<(Hash, Path, Bytes)> = objects
            .into_iter()
            .map(|(h, b)| (h, self.path(&h), b))
            .collect();
        let n = self.concurrency;
        self.block_on(async move {
            futures::stream::iter(reqs)
                .map(|(h, p, b)| {
                    let store = store.clone();
                    async move {
                        store
                            .put(&p, PutPayload::from_bytes(b))
                            .await
                            .map_err(|e| from_object(e, &h))
                    }
                })
                .buffer_unordered(n)
                .try_for_each(|_| async { Ok(()) })
                .await
        })
    }

    /// Files by path under the prefix (`info`, `s0/0-64_0-64_0-64`), fetched together; `None`
    /// for a file that does not exist. For stores of files other than hash-named objects:
    /// remote volumes.
    pub fn get_files(&self, paths: &[String]) -> Result<Vec<Option<Bytes>>> {
        let store = self.store.clone();
        let reqs: Vec<Path> = paths.iter().map(|p| self.file_path(p)).collect();
        let n = self.concurrency;
        self.block_on(async move {
            futures::stream::iter(reqs)
                .map(|p| {
                    let store = store.clone();
                    async move {
                        match store.get(&p).await {
                            Ok(got) => got.bytes().await.map(Some),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                        .map_err(|e| from_object(e, &[0; 32]))
                    }
                })
                .buffered(n)
                .try_collect()
                .await
        })
    }

    /// `path` (`/`-separated) under the prefix.
    fn file_path(&self, path: &str) -> Path {
        path.split('/')
            .filter(|s| !s.is_empty())
            .fold(self.prefix.clone(), |at, part| at.join(part))
    }

    /// Writes files by path under the prefix, together (batch jobs writing their outputs).
    pub fn put_files(&self, files: Vec<(String, Bytes)>) -> Result<()> {
        let store = self.store.clone();
        let reqs: Vec<(Path, Bytes)> = files
            .into_iter()
            .map(|(p, b)| (self.file_path(&p), b))
            .collect();
        let n = self.concurrency;
        self.block_on(async move {
            futures::stream::iter(reqs)
                .map(|(p, b)| {
                    let store = store.clone();
                    async move {
                        store
                            .put(&p, PutPayload::from_bytes(b))
                            .await
                            .map_err(|e| from_object(e, &[0; 32]))
                    }
                })
                .buffer_unordered(n)
                .try_for_each(|_| async { Ok(()) })
                .await
        })
    }

    /// Deletes files by path under the prefix; a missing one is no error.
    pub fn delete_files(&self, paths: &[String]) -> Result<()> {
        let store = self.store.clone();
        let reqs: Vec<Path> = paths.iter().map(|p| self.file_path(p)).collect();
        self.block_on(async move {
            for p in reqs {
                match store.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(from_object(e, &[0; 32])),
                }
            }
            Ok(())
        })
    }

    /// Every object under the prefix (names that are not hashes are skipped).
    pub fn list(&self) -> Result<Vec<Listed>> {
        let store = self.store.clone();
        let root = self.prefix.clone().join("b3");
        self.block_on(async move {
            let mut out = Vec::new();
            let mut s = store.list(Some(&root));
            while let Some(meta) = s.next().await {
                let meta = meta.map_err(|e| from_object(e, &[0; 32]))?;
                if let Some(hash) = meta.location.filename().and_then(unhex) {
                    out.push(Listed {
                        hash,
                        size: meta.size,
                        modified: meta.last_modified.into(),
                    });
                }
            }
            Ok(out)
        })
    }

    pub fn delete(&self, h: &Hash) -> Result<()> {
        let store = self.store.clone();
        let (h, p) = (*h, self.path(h));
        self.block_on(async move {
            match store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(from_object(e, &h)),
            }
        })
    }
}

/// The object store a configuration names, and the prefix (a path inside it) its URL gives.
pub(crate) fn store_for(cfg: &ObjectConfig) -> Result<(Arc<dyn ObjectStore>, String)> {
    // reqwest's rustls has no built-in crypto provider here (see the workspace manifest);
    // installing ring's twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = url::Url::parse(&cfg.url)
        .map_err(|e| Error::Config(format!("object store URL {:?}: {e}", cfg.url)))?;
    let retry = RetryConfig {
        max_retries: 10,
        retry_timeout: cfg.retry_timeout,
        ..RetryConfig::default()
    };
    let mut client = ClientOptions::new()
        .with_timeout(cfg.request_timeout)
        .with_connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)));
    // The builders read `*_ALLOW_HTTP` from the environment into client options, which the
    // options set here replace: carry it over (a self-hosted S3 on plain HTTP).
    let env_allows = |var: &str| std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if env_allows("AWS_ALLOW_HTTP") || env_allows("AZURE_ALLOW_HTTP") {
        client = client.with_allow_http(true);
    }
    let bad_option =
        |k: &str, e: object_store::Error| Error::Config(format!("object store option {k:?}: {e}"));
    let path = url.path().trim_matches('/').to_string();
    // Each cloud's builder: the environment's settings first, then the URL, the retry and
    // client settings, and the configuration's options (an unknown one is refused).
    macro_rules! build {
        ($builder:expr, $url:expr, $client:expr) => {{
            let mut b = $builder
                .with_url($url)
                .with_retry(retry)
                .with_client_options($client);
            for (k, v) in &cfg.options {
                b = b.with_config(k.parse().map_err(|e| bad_option(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| Error::Config(e.to_string()))?)
        }};
    }
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => build!(
            object_store::aws::AmazonS3Builder::from_env(),
            cfg.url.as_str(),
            client
        ),
        "gs" => build!(
            object_store::gcp::GoogleCloudStorageBuilder::from_env(),
            cfg.url.as_str(),
            client
        ),
        "az" | "azure" | "abfs" | "abfss" => build!(
            object_store::azure::MicrosoftAzureBuilder::from_env(),
            cfg.url.as_str(),
            client
        ),
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|()| Error::Config(format!("bad file URL {:?}", cfg.url)))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Config(format!("creating {}: {e}", dir.display())))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| Error::Config(e.to_string()))?;
            return Ok((Arc::new(fs), String::new()));
        }
        // A read-only tree of files served over HTTP (remote volumes): the URL's path is
        // the prefix under the server's root.
        "http" | "https" => {
            let root = format!("{}://{}", url.scheme(), url.authority());
            // An http:// URL says plain HTTP is meant.
            let client = client.with_allow_http(url.scheme() == "http");
            build!(object_store::http::HttpBuilder::new(), root, client)
        }
        "memory" => Arc::new(object_store::memory::InMemory::new()),
        other => {
            return Err(Error::Config(format!(
                "object store URL scheme {other:?} is not supported: use s3://, gs://, \
                 az://, http(s)://, file:// or memory://"
            )));
        }
    };
    // For s3/gs/az the URL's host is the bucket and its path the prefix inside it.
    let prefix = if url.scheme() == "memory" {
        String::new()
    } else {
        path
    };
    Ok((store, prefix))
}

/// A private runtime for blocking callers (see the module's notes).
pub(crate) fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| Error::Engine(format!("object store runtime: {e}")))
}

/// Runs `fut` on `rt` and waits for it from this (any) thread.
pub(crate) fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Engine("object store request was dropped".into()))?
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime's worker.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn from_object(e: object_store::Error, h: &Hash) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::Corrupt(format!(
            "object {} is referenced but missing from the object store",
            hex(h)
        )),
        other => {
            let m = format!("object store: {other}");
            // Every retried error names the retry_timeout setting; only a request that ran
            // out of time is a timeout.
            let lower = m.to_ascii_lowercase().replace("retry_timeout", "");
            if lower.contains("timed out")
                || lower.contains("timeout")
                || lower.contains("deadline")
            {
                Error::Timeout(m)
            } else {
                Error::Unavailable(m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_names_round_trip() {
        let h = hash_of(b"block");
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn objects_put_get_list_delete_on_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let objects = Objects::open(&ObjectConfig::new(url.as_str())).unwrap();
        let a = Bytes::from_static(b"first");
        let b = Bytes::from(vec![7u8; 100_000]);
        let (ha, hb) = (hash_of(&a), hash_of(&b));
        objects
            .put_many(vec![(ha, a.clone()), (hb, b.clone())])
            .unwrap();
        assert_eq!(
            objects.get_many(&[hb, ha, hb]).unwrap(),
            vec![b.clone(), a, b]
        );
        let mut listed: Vec<Hash> = objects.list().unwrap().iter().map(|l| l.hash).collect();
        listed.sort();
        let mut want = vec![ha, hb];
        want.sort();
        assert_eq!(listed, want);
        objects.delete(&ha).unwrap();
        objects.delete(&ha).unwrap();
        assert!(matches!(objects.get_many(&[ha]), Err(Error::Corrupt(_))));
    }

    #[test]
    fn an_unreachable_server_is_unavailable_not_a_panic() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = ObjectConfig::new("s3://nobucket/p");
        cfg.retry_timeout = Duration::from_millis(300);
        for (k, v) in [
            ("endpoint", format!("http://127.0.0.1:{port}")),
            ("allow_http", "true".into()),
            ("region", "us-east-1".into()),
            ("access_key_id", "k".into()),
            ("secret_access_key", "s".into()),
        ] {
            cfg.options.insert(k.into(), v);
        }
        let objects = Objects::open(&cfg).unwrap();
        let err = objects.get_many(&[hash_of(b"x")]).unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(_) | Error::Timeout(_)),
            "{err}"
        );
    }

    #[test]
    fn unknown_options_and_schemes_are_refused() {
        let mut cfg = ObjectConfig::new("s3://b/p");
        cfg.options.insert("endpiont".into(), "http://x".into());
        assert!(matches!(Objects::open(&cfg), Err(Error::Config(_))));
        assert!(matches!(
            Objects::open(&ObjectConfig::new("ftp://x/y")),
            Err(Error::Config(_))
        ));
    }
}
