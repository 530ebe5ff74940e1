//! Triangle meshes of labels: the `surface` kernel's output turned into physical units, the
//! file formats clients read, and the meshes a labelmap serves and keeps current.

pub mod format;

/// A closed triangle mesh in physical units. Triangles wind counter-clockwise seen from
/// outside (right-hand normals point out of the label).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}
