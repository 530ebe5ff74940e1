//! The `neuronjson` datatype (spec §4.11): neuron annotations, JSON objects under body-ID
//! keys, with per-field `<field>_user`/`<field>_time` metadata and a query language.
//! Versioned like keyvalue; records are kept in body ID order.
//!
//! * [`record`] — parsing, merging (DVID's `updateJSON`) and field selection,
//! * [`query`] — the query language,
//! * `handlers` — the endpoints.

mod handlers;
pub mod query;
pub mod record;

use serde_json::json;

use crate::Result;
use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};

/// The neuronjson datatype.
#[derive(Debug, Default, Clone, Copy)]
pub struct NeuronJsonType;

const KEYWORDS: &[&str] = &[
    "key",
    "keys",
    "keyrange",
    "keyrangevalues",
    "keyvalues",
    "fields",
    "fieldtimes",
    "all",
    "query",
    "json_schema",
    "schema",
    "schema_batch",
    "mutations",
    "mutations-range",
];

const HELP: &str = r#"
API for datatype "neuronjson" (github.com/janelia-flyem/dvid/datatype/neuronjson)
=================================================================================

Neuron annotations: JSON objects under body-ID keys (a uint64 in decimal; 0 is reserved).
Every record holds "bodyid" equal to its key. Fields ending in _user or _time are metadata:
"<field>_user" and "<field>_time" say who last set <field> and when (RFC3339, UTC). Every
path below is relative to /api/node/<UUID>/<data name>/.

Read options (key, keyvalues, keyrangevalues, all, query):
    fields=a,b     only these fields (and always "bodyid")
    show=user|time|all
                   also the *_user, *_time or both metadata fields (hidden by default)

GET    key/<bodyid>            The record (JSON); 404 if absent.
HEAD   key/<bodyid>            200 if the record exists, 404 if not.
POST   key/<bodyid>?u=<user>[&replace=true][&conditional=f1,f2]
    Merges the posted JSON object into the record: fields not posted are kept (replace=true
    drops them), a field posted as null is removed, conditional fields keep a stored value.
    Each field newly set or changed gets <field>_user = u and <field>_time = now unless the
    post sets them. u= is required. The body must be a JSON object whose "bodyid" is the key.
DELETE key/<bodyid>            Deletes the record at this version.
GET|POST|DELETE key/schema, key/schema_batch
                               Same as the schema endpoints below.

GET  keys                      JSON array of every body ID, ascending.
GET  keyrange/<a>/<b>          JSON array of the body IDs a <= id <= b (a bound starting with
                               a character above '9' is the largest ID, below '0' the least).
GET  keyrangevalues/<a>/<b>[?json=true | ?tar=true | ?protobuf=true]
                               The records in the range, as keyvalue's formats (protobuf
                               KeyValues by default).
GET  keyvalues[?json=true | ?jsontar=true | ?tar=true]
                               Batch read; body is a protobuf Keys or a JSON array of keys.
POST keyvalues?u=<user>[&replace=true][&conditional=...]
                               Body is a protobuf KeyValues; each record is posted as by
                               POST key, all in one atomic write.

GET  fields[?counts=true]      JSON array of every field name (metadata included), sorted;
                               counts=true: {"field": number of records holding it}.
GET  fieldtimes                {"field": the latest <field>_time of any record}.
GET  all                       JSON array of every record, ascending body ID.

GET|POST query[?onlyid=true]
    Body: a JSON object of field -> wanted value (all must hold) or a list of such objects
    (any must hold). A number matches numerically, a string exactly; "re/<regex>" matches a
    string the regex finds a match in; "exists/1" / "exists/0" test the field's presence; a
    list matches when any element does; a list field matches when any element does. Answers
    the matching records (or with onlyid=true their body IDs) in ascending body ID. POST
    query does not write and is allowed on committed nodes.

GET|HEAD|POST|DELETE json_schema | schema | schema_batch
    A JSON document kept per version, returned as posted (json_schema is not used to
    validate writes).

GET  mutations[?userid=<user>]
GET  mutations-range/<begin UUID>/<end UUID>[?userid=<user>]
    {"Action":"postneuronjson","Bytes":n,"Key":k,"Timestamp":t,"UUID":u} per posted record,
    {"Action":"delete","Key":k,"Timestamp":t,"UUID":u} per deletion, with "User"/"App".
"#;

static DESCRIPTION: Description = Description {
    name: "neuronjson",
    url: "github.com/janelia-flyem/dvid/datatype/neuronjson",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &[],
    default_compression: "lz4",
};

impl Datatype for NeuronJsonType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, _settings: &Settings) -> Result<serde_json::Value> {
        Ok(json!({}))
    }

    /// `POST query` only reads (DVID's `IsMutationRequest` says so too).
    fn is_mutation(&self, method: Method, keyword: &str) -> bool {
        if keyword == "query" {
            return false;
        }
        matches!(method, Method::Post | Method::Put | Method::Delete)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        handlers::handle(ctx, req)
    }
}
