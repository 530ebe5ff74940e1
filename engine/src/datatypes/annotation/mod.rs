//! The `annotation` datatype (spec §4.7): point annotations (synapses, bookmarks, to-do
//! points) stored by block, with a tag index and, when synced to a labelmap, a label index
//! kept exact through every label edit.

pub mod element;
mod handle;

pub use element::{Kind, Point};
pub use handle::Annotation;
