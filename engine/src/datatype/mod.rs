//! The one interface every datatype implements, and what a datatype works with: the request
//! it is handed, its context ([`DataCtx`]: services, catalog, store, caller), typed handles on
//! other instances, and mutations. The router hands each instance request
//! (`/api/node/<uuid>/<name>/<keyword>/...`) to the instance's datatype as a [`DataRequest`],
//! so a new datatype plugs in by registering in `datatypes::all`, without touching the router.

mod ctx;
pub mod log;
pub mod pseudocolor;
pub mod range;
mod request;
mod settings;

pub use ctx::{Caller, Catalog, DataCtx, Handle, Mutation, WorkerCatalog};
pub use request::{
    Body, BodyStream, DataRequest, DataResponse, Method, Query, RAW_PATH_HEADER, parse_label,
};
pub use settings::Settings;

use crate::Result;
use crate::mutation::Subscription;

/// What a datatype says about itself, declared once per type.
#[derive(Debug)]
pub struct Description {
    /// DVID's type name, e.g. "keyvalue".
    pub name: &'static str,
    /// DVID's type URL, e.g. "github.com/janelia-flyem/dvid/datatype/keyvalue".
    pub url: &'static str,
    pub version: &'static str,
    pub help: &'static str,
    /// The keywords this type serves besides the common ones (info, tags, sync, blobstore,
    /// help); any other keyword gets DVID's "Bad API call" 400 from the router.
    pub keywords: &'static [&'static str],
    /// Type names this type may sync to (spec §4.0 `POST sync`).
    pub sync_targets: &'static [&'static str],
    /// Compression name used when creation settings give none.
    pub default_compression: &'static str,
}

pub trait Datatype: Send + Sync + 'static {
    fn description(&self) -> &'static Description;

    fn type_name(&self) -> &'static str {
        self.description().name
    }
    fn type_url(&self) -> &'static str {
        self.description().url
    }
    fn type_version(&self) -> &'static str {
        self.description().version
    }
    fn help(&self) -> &'static str {
        self.description().help
    }
    fn keywords(&self) -> &'static [&'static str] {
        self.description().keywords
    }
    fn sync_targets(&self) -> &'static [&'static str] {
        self.description().sync_targets
    }
    fn default_compression(&self) -> &'static str {
        self.description().default_compression
    }

    /// Validates type-specific creation settings and returns the type's configuration, kept
    /// with the instance and handed back in every [`DataCtx`].
    fn configure(&self, settings: &Settings) -> Result<serde_json::Value>;
    /// The `Extended` object of `GET info`.
    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let _ = ctx;
        Ok(serde_json::json!({}))
    }
    /// Whether a request writes (the locked-node guard applies to those). DVID's rule: POST,
    /// PUT and DELETE write, with per-type exceptions.
    fn is_mutation(&self, method: Method, keyword: &str) -> bool {
        let _ = keyword;
        matches!(method, Method::Post | Method::Put | Method::Delete)
    }
    /// Whether only a server admin (the admin token) may make this request: DVID's rule for
    /// labelmap `POST maxlabel` and `set-nextlabel`. The engine refuses it for anyone else
    /// before `handle` runs.
    fn admin_only(&self, method: Method, keyword: &str) -> bool {
        let _ = (method, keyword);
        false
    }
    /// Whether this request's body should reach `handle` as a stream (`DataRequest::stream`)
    /// rather than whole: for large writes that can be processed as they arrive.
    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        let _ = (method, keyword);
        false
    }
    /// The durable sync subscriptions the instance of `ctx` wants (its background workers).
    /// The engine subscribes them when it starts and whenever the instance's description
    /// changes; `ctx` is at the repo's root.
    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        let _ = ctx;
        Ok(Vec::new())
    }
    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse>;
}
