//! The one interface every datatype implements. The router hands each instance request
//! (`/api/node/<uuid>/<name>/<keyword>/...`) to the instance's datatype as a [`DataRequest`], so a
//! new datatype plugs in by registering here, without touching the router.

mod request;
mod settings;

pub use request::{Body, BodyStream, DataRequest, DataResponse, Method, Query, RAW_PATH_HEADER};
pub use settings::Settings;

use crate::Result;
use crate::instance::DataCtx;

pub trait Datatype: Send + Sync + 'static {
    /// DVID's type name, e.g. "keyvalue".
    fn type_name(&self) -> &'static str;
    /// DVID's type URL, e.g. "github.com/janelia-flyem/dvid/datatype/keyvalue".
    fn type_url(&self) -> &'static str;
    fn type_version(&self) -> &'static str;
    fn help(&self) -> &'static str;
    /// The keywords this type serves besides the common ones (info, tags, sync, blobstore,
    /// help); any other keyword gets DVID's "Bad API call" 400 from the router.
    fn keywords(&self) -> &'static [&'static str];
    /// Type names this type may sync to (spec §4.0 `POST sync`).
    fn sync_targets(&self) -> &'static [&'static str] {
        &[]
    }
    /// Compression name used when creation settings give none.
    fn default_compression(&self) -> &'static str {
        "lz4"
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
    /// Whether this request's body should reach `handle` as a stream (`DataRequest::stream`)
    /// rather than whole: for large writes that can be processed as they arrive.
    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        let _ = (method, keyword);
        false
    }
    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse>;
}
