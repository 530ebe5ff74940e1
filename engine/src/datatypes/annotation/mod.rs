//! The `annotation` datatype (spec §4.7): point annotations (synapses, bookmarks, to-do
//! points) stored by block, with a tag index and, when synced to a labelmap, a label index
//! kept exact through every label edit.
//!
//! * [`element`] — elements, their JSON and checks,
//! * [`store`] — the keys, and the [`store::Editor`] every write goes through,
//! * `write`, `read` — the endpoints,
//! * `sync` — following the labelmap,
//! * [`Annotation`] — the typed handle labelsz reads through.

pub mod element;
mod handle;
mod read;
pub mod store;
mod sync;
mod write;

use serde_json::json;

pub use element::{Kind, Point};
pub use handle::Annotation;

use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Handle, Method, Settings,
};
use crate::mutation::Subscription;
use crate::{Error, Result};

/// The annotation datatype.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnnotationType;

const KEYWORDS: &[&str] = &[
    "elements",
    "element",
    "blocks",
    "all-elements",
    "label",
    "labels",
    "tag",
    "roi",
    "move",
    "reload",
    "scan",
    "mutations",
];

const HELP: &str = r#"
API for datatype "annotation" (github.com/janelia-flyem/dvid/datatype/annotation)
=================================================================================

Point annotations ("elements"): synapses, bookmarks, to-do points. Every path below is
relative to /api/node/<UUID>/<data name>/.

Element JSON:
  {"Pos":[x,y,z], "Kind":"PostSyn|PreSyn|Gap|Note|Unknown", "Tags":["t",...],
   "Prop":{"k":"v",...}, "Rels":[{"Rel":"PostSynTo|PreSynTo|ConvergentTo|GroupedWith|
   UnknownRelationship", "To":[x,y,z]},...]}
An element is identified by its position: posting at a stored position replaces it.
Coordinates must be within ±268435456; tags non-empty without NUL.

Creation settings: BlockSize "x,y,z" (default 64,64,64), how elements are grouped.
Sync: POST sync {"sync":"<labelmap>"} makes label/<label> answer by body and keeps it
exact through merges, cleaves, splits and renumbers of the labelmap (and its voxel writes).
A read made after an edit was acknowledged sees the edit (reads wait for the sync to apply
what was acknowledged before them). After syncing an instance that holds elements already,
POST reload indexes them.

POST   elements       Body: JSON array of elements. Each relationship must point at an
                      element posted in the same body or stored already; when synced, each
                      point must lie within the labelmap's extents. Otherwise 400, nothing
                      written.
GET    elements/<size>/<offset>
                      The elements inside the box (x_y_z voxels), with relationships.
GET    blocks/<size>/<offset>
                      {"x,y,z":[elements...],...}: every element of every block the box
                      touches (block coordinates in BlockSize units), not filtered.
POST   blocks         Body of that shape: replaces those blocks' elements (each must lie in
                      its block). Indexed by tag and label like POST elements; relationships
                      are not checked (bulk ingest may post partners later).
GET    all-elements   As blocks, over everything.
GET    label/<label>[?relationships=true|verbose]
                      The elements whose voxel is in body <label> (needs a sync); without
                      relationships unless asked; verbose adds each partner's Kind, Tags, Prop.
GET    tag/<tag>[?relationships=true|verbose]
                      The elements carrying <tag>.
GET    roi/<roi name>[,<uuid>]
                      The elements inside an roi instance.
DELETE element/<x_y_z>
                      Deletes the element and the relationships its partners hold to it;
                      400 when there is none.
POST   move/<from x_y_z>/<to x_y_z>
                      Moves an element, rewriting its partners' relationships; 400 when there
                      is none at <from> or one at <to> already.
POST   labels         Body {"<label>":"<JSON array of elements>",...}: stores the elements as
                      belonging to those bodies (until a label edit moves them).
POST   reload         Rebuilds the tag and label indices from the stored elements, reading
                      bodies from the synced labelmap; answers {"Blocks","Elements","Labels"}.
GET    scan           {"num kv pairs": blocks holding elements, "num empty blocks": 0,
                      "num elements": n}.
GET    mutations      The write log: element-post, element-delete, element-move, ...

Sync events: labelsz instances synced to this one are told which bodies' points changed.
"#;

static DESCRIPTION: Description = Description {
    name: "annotation",
    url: "github.com/janelia-flyem/dvid/datatype/annotation",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["labelmap"],
    default_compression: "none",
};

impl Datatype for AnnotationType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let bs = settings.triple::<i32>("BlockSize")?.unwrap_or([64; 3]);
        if bs.iter().any(|&b| !(1..=4096).contains(&b)) {
            return Err(Error::bad(format!(
                "BlockSize {bs:?}: each size must be from 1 to 4096"
            )));
        }
        Ok(json!({ "BlockSize": bs }))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        Ok(json!({ "BlockSize": handle::block_size(&ctx.instance.config)? }))
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        sync::subscriptions(ctx)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        if req.keyword == "mutations" {
            return crate::datatype::log::get_mutations(ctx, req);
        }
        // The handle owns its context: open one for this request.
        let ann = Annotation::open(ctx.sibling(&ctx.instance.data_uuid)?)?;
        match (req.keyword.as_str(), req.method) {
            ("elements", Method::Post) => write::post_elements(&ann, req),
            ("elements", Method::Get) => read::elements(&ann, req),
            ("element", Method::Delete) => write::delete_element(&ann, req),
            ("blocks", Method::Get) => read::blocks(&ann, req),
            ("blocks", Method::Post) => write::post_blocks(&ann, req),
            ("all-elements", Method::Get) => read::all_elements(&ann),
            ("label", Method::Get) => read::label(&ann, req),
            ("labels", Method::Post) => write::post_labels(&ann, req),
            ("tag", Method::Get) => read::tag(&ann, req),
            ("roi", Method::Get) => read::roi(&ann, req),
            ("move", Method::Post) => write::move_element(&ann, req),
            ("reload", Method::Post) => write::reload(&ann),
            ("scan", Method::Get) => read::scan(&ann),
            (kw, m) => Err(Error::bad(format!(
                "{} {kw} is not supported by annotation",
                m.as_str()
            ))),
        }
    }
}
