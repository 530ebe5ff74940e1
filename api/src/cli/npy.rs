//! numpy `.npy` volumes: (z, y, x) arrays in C order, as the pyramid and bench commands take.

use std::path::Path;

use anyhow::{Context, bail};
use ndarray::{Array3, ArrayView3};
use ndarray_npy::{ReadNpyError, ReadableElement, WritableElement, read_npy, write_npy};
use tessera_engine::compute::Shape;

/// A volume read from disk, its elements in (z, y, x) C order.
pub enum Volume {
    U64(Shape, Vec<u64>),
    U32(Shape, Vec<u32>),
    U8(Shape, Vec<u8>),
}

impl Volume {
    pub fn shape(&self) -> Shape {
        match self {
            Volume::U64(s, _) | Volume::U32(s, _) | Volume::U8(s, _) => *s,
        }
    }

    pub fn dtype(&self) -> &'static str {
        match self {
            Volume::U64(..) => "uint64",
            Volume::U32(..) => "uint32",
            Volume::U8(..) => "uint8",
        }
    }
}

fn wrong_type(e: &ReadNpyError) -> bool {
    matches!(e, ReadNpyError::WrongDescriptor(_))
}

fn try_read<T: ReadableElement + Clone>(path: &Path) -> anyhow::Result<Option<(Shape, Vec<T>)>> {
    match read_npy::<_, Array3<T>>(path) {
        Ok(a) => {
            let (z, y, x) = a.dim();
            let shape = Shape::new(x, y, z);
            // A Fortran-order file arrives with reversed strides; make it C order.
            let data = if a.is_standard_layout() {
                a.into_raw_vec_and_offset().0
            } else {
                a.as_standard_layout()
                    .into_owned()
                    .into_raw_vec_and_offset()
                    .0
            };
            Ok(Some((shape, data)))
        }
        Err(e) if wrong_type(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads a 3-D uint64, uint32 or uint8 array.
pub fn read(path: &Path) -> anyhow::Result<Volume> {
    if let Some((s, v)) = try_read::<u64>(path)? {
        return Ok(Volume::U64(s, v));
    }
    if let Some((s, v)) = try_read::<u32>(path)? {
        return Ok(Volume::U32(s, v));
    }
    if let Some((s, v)) = try_read::<u8>(path)? {
        return Ok(Volume::U8(s, v));
    }
    bail!(
        "{}: the array must be uint64 or uint32 (labels) or uint8 (grayscale)",
        path.display()
    )
}

/// Writes `data` (shape `shape`, C order) as a (z, y, x) array.
pub fn write<T: WritableElement>(path: &Path, shape: Shape, data: &[T]) -> anyhow::Result<()> {
    let view = ArrayView3::from_shape((shape.z, shape.y, shape.x), data)?;
    write_npy(path, &view).with_context(|| format!("writing {}", path.display()))
}
