//! The `keyvalue` datatype (spec §4.5): opaque values under string keys, versioned like all
//! instance data.
//!
//! * [`keys`] — TKeys and inclusive key-range scans,
//! * [`range`] — `byte_start`/`byte_end` and HTTP `Range` handling,
//! * [`proto`] — the protobuf messages,
//! * [`formats`] — batch request/response encodings (protobuf, JSON, tar),
//! * `handlers` — the endpoints; [`KeyValue`] — the typed handle other instances write with.

pub mod formats;
mod handle;
pub(crate) mod handlers;
pub mod keys;
pub mod proto;
pub mod range;
#[cfg(test)]
mod tests;

use serde_json::json;

pub use handle::KeyValue;

use crate::Result;
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Datatype, Description, Settings};

/// The keyvalue datatype.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyValueType;

const KEYWORDS: &[&str] = &[
    "keys",
    "keyrange",
    "key",
    "keyvalues",
    "keyrangevalues",
    "mutations",
    "mutations-range",
];

const HELP: &str = r#"
API for datatype "keyvalue" (github.com/janelia-flyem/dvid/datatype/keyvalue)
=============================================================================

Opaque values stored under string keys. Keys order byte-lexicographically. Keys are bytes: a
percent-escaped path segment may name any (key/%FF%FE); listings and records show bytes that
are not UTF-8 as U+FFFD. Every path below is relative to /api/node/<UUID>/<data name>/.

Creation settings: only the common ones (e.g. "versioned": "false" stores one value per key for
the whole repo).

GET  help                      This text.
GET  info                      Instance description; "Extended" is {}.

GET  keys                      JSON array of every key visible at this version, sorted.
GET  keyrange/<k1>/<k2>        JSON array of the keys k with k1 <= k <= k2 (inclusive).

GET    key/<key>               The value (application/octet-stream); 404 if absent.
         byte_start=a&byte_end=b   Only bytes a..b (inclusive). Both bounds are required,
                                   a <= b and b must lie within the value, else 400.
         Range: bytes=a-b | a- | -n
                                   One HTTP byte range: 206 with Content-Range, the end clamped
                                   to the value; 416 when it starts past the end. Several
                                   ranges or a malformed header are ignored (200, whole value).
                                   Range together with byte_start/byte_end is a 400.
HEAD   key/<key>               200 if the key exists, 404 if not.
POST   key/<key>               Stores the request body (which may be empty) as the value.
DELETE key/<key>               Deletes the key at this version (200 even when absent).

GET  keyvalues[?json=true[&check=true] | ?jsontar=true | ?tar=true]
    Batch read; the key list travels in the GET request body.
    default:  body is a protobuf Keys; the answer a protobuf KeyValues holding every key of
              "keys" and then every range of "key_ranges", in request order. Missing keys
              get empty values.
    json:     body is a JSON array of keys or {"key": k, "byte_start": a, "byte_end": b}
              objects; the answer {"k1":<value>,"k2":<value>,...} with each value inserted
              as is (values must be JSON). Missing keys and empty values appear as {}.
              check=true verifies each value is valid JSON; byte-range slices are always
              verified.
    jsontar, tar:
              same JSON body; the answer is a tar archive with one file per requested key,
              in order, named by the key (empty for missing keys).

POST keyvalues
    Body is a protobuf KeyValues; every pair is stored in one atomic write.

GET  keyrangevalues/<k1>/<k2>[?json=true[&check=true] | ?tar=true | ?protobuf=true]
    Every key k1 <= k <= k2 with its value, as protobuf KeyValues (default), a JSON object or
    a tar archive, in key order.

GET  mutations[?userid=<user>]
GET  mutations-range/<begin UUID>/<end UUID>[?userid=<user>]
    JSON array of the mutation records of this version (or of every version from begin to
    end): {"Action":"postkv","Key":k,"Bytes":n,"UUID":u,"Timestamp":t} for stored values and
    {"Action":"delete","Key":k,"UUID":u,"Timestamp":t} for deletions, with "User"/"App" when
    the request named u=/app=.

Protobuf messages (proto3, package proto):

    message KeyValue  { string key = 1; bytes value = 2; }
    message KeyRange  { string key = 1; uint64 byte_start = 2; uint64 byte_end = 3; }
    message Keys      { repeated string keys = 1; repeated KeyRange key_ranges = 2; }
    message KeyValues { repeated KeyValue kvs = 1; }
"#;

static DESCRIPTION: Description = Description {
    name: "keyvalue",
    url: "github.com/janelia-flyem/dvid/datatype/keyvalue",
    version: "0.2",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &[],
    default_compression: "lz4",
};

impl Datatype for KeyValueType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, _settings: &Settings) -> Result<serde_json::Value> {
        Ok(json!({}))
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        handlers::handle(ctx, req)
    }
}
