//! numpy `.npy` volumes: (z, y, x) arrays, as the pyramid and bench commands take and write.
//!
//! [`open`] maps the file where its bytes already are the array as this machine holds it (C
//! order, little-endian, elements aligned after the header, as numpy writes them), so a job
//! starts computing at once and the volume is never copied; otherwise, and in [`read`], the
//! elements are read straight into one vector of the array's element type, so a volume costs
//! its own size in memory and no more (the pyramid command promises a peak under 3× its input).
//! [`Writer`] streams a file out in pieces, so a job writes while it computes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use bytemuck::Pod;
use tessera_engine::compute::Shape;

/// A volume read from disk, its elements in (z, y, x) C order.
pub enum Volume {
    U64(Shape, Vec<u64>),
    U32(Shape, Vec<u32>),
    U16(Shape, Vec<u16>),
    U8(Shape, Vec<u8>),
}

impl Volume {
    pub fn shape(&self) -> Shape {
        match self {
            Volume::U64(s, _) | Volume::U32(s, _) | Volume::U16(s, _) | Volume::U8(s, _) => *s,
        }
    }

    pub fn dtype(&self) -> &'static str {
        self.view().dtype()
    }

    pub fn view(&self) -> View<'_> {
        match self {
            Volume::U64(_, v) => View::U64(v),
            Volume::U32(_, v) => View::U32(v),
            Volume::U16(_, v) => View::U16(v),
            Volume::U8(_, v) => View::U8(v),
        }
    }
}

/// A volume's elements in (z, y, x) C order, wherever they are held.
#[derive(Clone, Copy)]
pub enum View<'a> {
    U64(&'a [u64]),
    U32(&'a [u32]),
    U16(&'a [u16]),
    U8(&'a [u8]),
}

impl View<'_> {
    pub fn dtype(&self) -> &'static str {
        match self {
            View::U64(..) => "uint64",
            View::U32(..) => "uint32",
            View::U16(..) => "uint16",
            View::U8(..) => "uint8",
        }
    }
}

/// A volume opened by [`open`]: its file mapped into memory, or its elements read.
pub struct Opened {
    held: Held,
}

enum Held {
    Mapped { map: memmap2::Mmap, layout: Layout },
    Read(Volume),
}

impl Opened {
    pub fn shape(&self) -> Shape {
        match &self.held {
            Held::Mapped { layout, .. } => layout.shape,
            Held::Read(v) => v.shape(),
        }
    }

    /// Whether the elements are the mapped file's own bytes (else they were read).
    pub fn is_mapped(&self) -> bool {
        matches!(self.held, Held::Mapped { .. })
    }

    pub fn view(&self) -> View<'_> {
        match &self.held {
            Held::Read(v) => v.view(),
            Held::Mapped { map, layout } => {
                let bytes = &map[layout.data_at as usize..];
                // `open` checked the length and the alignment, so these casts cannot fail.
                match layout.elem_size {
                    8 => View::U64(bytemuck::cast_slice(bytes)),
                    4 => View::U32(bytemuck::cast_slice(bytes)),
                    2 => View::U16(bytemuck::cast_slice(bytes)),
                    _ => View::U8(bytes),
                }
            }
        }
    }
}

/// Whether a file laid out as `layout` can be used in place: its bytes are the C-order array as
/// this machine's memory holds it, and the first element is aligned for its type once the file
/// is mapped at a page boundary. numpy pads its headers so the data starts on a 64-byte
/// boundary; a header padded otherwise, a Fortran-order file or a big-endian machine is read.
fn mappable(layout: &Layout) -> bool {
    cfg!(target_endian = "little")
        && !layout.fortran_order
        && (layout.data_at as usize).is_multiple_of(layout.elem_size)
}

/// Opens a 3-D uint64, uint32, uint16 or uint8 array for computing on: mapped where
/// [`mappable`], read otherwise. The file must not shrink while the volume is in use (reading a
/// page past its new end kills the process, as it would numpy's `mmap_mode`).
pub fn open(path: &Path) -> anyhow::Result<Opened> {
    let layout = inspect(path)?;
    if !mappable(&layout) {
        return Ok(Opened {
            held: Held::Read(read(path)?),
        });
    }
    let name = path.display();
    let f = File::open(path).with_context(|| format!("opening {name}"))?;
    // SAFETY: the map is read-only, and its bytes are only ever viewed as plain integers, valid
    // at any value: another process writing the file can change the numbers read, not make
    // them invalid. Truncation is the caveat documented above.
    let map = unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("mapping {name}"))?;
    // `inspect` saw the right length, but the file may have changed since.
    let want = layout.data_at as usize + layout.shape.voxels() * layout.elem_size;
    ensure!(
        map.len() == want,
        "{name} changed while it was being opened"
    );
    // Jobs read the volume front to back: let the kernel read ahead.
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Opened {
        held: Held::Mapped { map, layout },
    })
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy itself writes headers of a few hundred bytes; refuse absurd ones.
const MAX_HEADER: usize = 1 << 16;

#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// The text after `'key':` in a header dictionary, up to the end of the dictionary.
fn field<'a>(dict: &'a str, key: &str) -> anyhow::Result<&'a str> {
    let at = dict
        .find(&format!("'{key}'"))
        .with_context(|| format!("the .npy header has no '{key}'"))?;
    let rest = dict[at + key.len() + 2..].trim_start();
    let rest = rest.strip_prefix(':').context("malformed .npy header")?;
    Ok(rest.trim_start())
}

fn parse_header(dict: &str) -> anyhow::Result<Header> {
    let descr = field(dict, "descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .context("the .npy header's 'descr' is not a string")?;
    let fortran = field(dict, "fortran_order")?;
    let fortran_order = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        bail!("the .npy header's 'fortran_order' is neither True nor False");
    };
    let shape = field(dict, "shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .context("the .npy header's 'shape' is not a tuple")?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad .npy dimension {s:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Header {
        descr: descr.to_string(),
        fortran_order,
        shape,
    })
}

fn read_header(r: &mut impl Read) -> anyhow::Result<(Header, u64)> {
    let mut start = [0u8; 8];
    r.read_exact(&mut start)
        .context("not a .npy file (too short)")?;
    ensure!(&start[..6] == MAGIC, "not a .npy file (bad magic)");
    let (len, prefix) = match start[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => bail!(".npy format version {v} is not supported"),
    };
    ensure!(len <= MAX_HEADER, ".npy header of {len} bytes is too long");
    let mut dict = vec![0u8; len];
    r.read_exact(&mut dict)
        .context("the .npy header is truncated")?;
    let dict = String::from_utf8(dict).context("the .npy header is not text")?;
    Ok((parse_header(&dict)?, (prefix + len) as u64))
}

/// Reads `n` little-endian elements into a vector of `T`.
fn read_elements<T: Pod + Default>(r: &mut impl Read, n: usize) -> anyhow::Result<Vec<T>> {
    let mut v = vec![T::default(); n];
    r.read_exact(bytemuck::cast_slice_mut(&mut v))
        .context("the .npy data is shorter than its shape says")?;
    Ok(v)
}

/// C order from a Fortran-order file, whose first axis varies fastest.
fn to_c_order<T: Copy>(f: Vec<T>, [d0, d1, d2]: [usize; 3]) -> Vec<T> {
    let mut c = Vec::with_capacity(f.len());
    for i0 in 0..d0 {
        for i1 in 0..d1 {
            for i2 in 0..d2 {
                c.push(f[i0 + d0 * (i1 + d1 * i2)]);
            }
        }
    }
    c
}

fn finish<T: Copy>(header: &Header, dims: [usize; 3], v: Vec<T>) -> (Shape, Vec<T>) {
    let v = if header.fortran_order {
        to_c_order(v, dims)
    } else {
        v
    };
    (Shape::new(dims[2], dims[1], dims[0]), v)
}

/// Where a 3-D array's elements are in its file, and how they are laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// (x, y, z) = the array's (d2, d1, d0).
    pub shape: Shape,
    /// numpy's type string, e.g. `"<u2"`.
    pub descr: String,
    /// Bytes per element: 8 (uint64), 4 (uint32), 2 (uint16) or 1 (uint8).
    pub elem_size: usize,
    /// Fortran order: the file's first axis (z) varies fastest.
    pub fortran_order: bool,
    /// Byte offset of the first element.
    pub data_at: u64,
}

impl Layout {
    pub fn dtype(&self) -> &'static str {
        match self.elem_size {
            8 => "uint64",
            4 => "uint32",
            2 => "uint16",
            _ => "uint8",
        }
    }
}

/// Reads and checks the header of a 3-D uint64, uint32, uint16 or uint8 array, and that the
/// file holds exactly its data; leaves the elements on disk (`tessera load` streams them).
pub fn inspect(path: &Path) -> anyhow::Result<Layout> {
    let name = path.display();
    let mut f = File::open(path).with_context(|| format!("opening {name}"))?;
    let (header, data_at) = read_header(&mut f).with_context(|| format!("reading {name}"))?;
    let &[d0, d1, d2] = header.shape.as_slice() else {
        bail!(
            "{name}: a (z, y, x) array has 3 dimensions, not {:?}",
            header.shape
        );
    };
    let n = d0
        .checked_mul(d1)
        .and_then(|v| v.checked_mul(d2))
        .with_context(|| format!("{name}: shape {:?} is too large", header.shape))?;
    ensure!(n > 0, "{name}: the array is empty");
    let elem_size = match header.descr.as_str() {
        "<u8" => 8,
        "<u4" => 4,
        "<u2" => 2,
        "|u1" | "<u1" => 1,
        d => bail!(
            "{name}: dtype {d:?}: the array must be little-endian uint64 or uint32 (labels), or uint8 or uint16 (grayscale)"
        ),
    };
    let file_len = f.metadata()?.len();
    let want = n.checked_mul(elem_size).context("shape too large")? as u64 + data_at;
    ensure!(
        file_len == want,
        "{name}: {file_len} bytes, but a {:?} array of {} needs {want}",
        header.shape,
        header.descr
    );
    Ok(Layout {
        shape: Shape::new(d2, d1, d0),
        descr: header.descr,
        elem_size,
        fortran_order: header.fortran_order,
        data_at,
    })
}

/// Reads a 3-D uint64, uint32, uint16 or uint8 array.
pub fn read(path: &Path) -> anyhow::Result<Volume> {
    let layout = inspect(path)?;
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(layout.data_at))?;
    let header = Header {
        descr: layout.descr.clone(),
        fortran_order: layout.fortran_order,
        shape: vec![layout.shape.z, layout.shape.y, layout.shape.x],
    };
    let dims = [layout.shape.z, layout.shape.y, layout.shape.x];
    let n = layout.shape.voxels();
    Ok(match layout.elem_size {
        8 => {
            let (s, v) = finish(&header, dims, read_elements::<u64>(&mut f, n)?);
            Volume::U64(s, v)
        }
        4 => {
            let (s, v) = finish(&header, dims, read_elements::<u32>(&mut f, n)?);
            Volume::U32(s, v)
        }
        2 => {
            let (s, v) = finish(&header, dims, read_elements::<u16>(&mut f, n)?);
            Volume::U16(s, v)
        }
        _ => {
            let (s, v) = finish(&header, dims, read_elements::<u8>(&mut f, n)?);
            Volume::U8(s, v)
        }
    })
}

/// Element types the pyramid writes.
pub trait Element: Pod {
    const DESCR: &'static str;
}

impl Element for u64 {
    const DESCR: &'static str = "<u8";
}

impl Element for u32 {
    const DESCR: &'static str = "<u4";
}

impl Element for u16 {
    const DESCR: &'static str = "<u2";
}

impl Element for u8 {
    const DESCR: &'static str = "|u1";
}

/// The version-1.0 header of a (z, y, x) C-order array of `T`.
fn header<T: Element>(shape: Shape) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        T::DESCR,
        shape.z,
        shape.y,
        shape.x
    );
    // numpy pads the header with spaces so the data starts on a 64-byte boundary.
    while !(MAGIC.len() + 4 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// A .npy array written by z-planes at any position, by one process or by several at once
/// (the workers of a sharded job, each writing its own planes): every opener writes the same
/// header and sizes the file to the whole array, so the order in which they come does not
/// matter. Planes nobody wrote read as zeros; naming the file when every part is written is
/// the caller's (`shard::finish`).
pub struct PlaneFile<T> {
    file: File,
    path: PathBuf,
    data_at: u64,
    shape: Shape,
    _elements: std::marker::PhantomData<T>,
}

impl<T: Element> PlaneFile<T> {
    pub fn open(path: &Path, shape: Shape) -> anyhow::Result<Self> {
        let head = header::<T>(shape);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let size = head.len() as u64 + (shape.voxels() * std::mem::size_of::<T>()) as u64;
        file.write_all_at(&head, 0)
            .and_then(|()| file.set_len(size))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PlaneFile {
            file,
            path: path.to_owned(),
            data_at: head.len() as u64,
            shape,
            _elements: std::marker::PhantomData,
        })
    }

    /// Whether `path` already holds an array of this type and shape (a finished output that a
    /// rerun may write into in place).
    pub fn holds(path: &Path, shape: Shape) -> bool {
        let head = header::<T>(shape);
        let size = head.len() as u64 + (shape.voxels() * std::mem::size_of::<T>()) as u64;
        let mut got = vec![0u8; head.len()];
        File::open(path)
            .and_then(|f| {
                f.read_exact_at(&mut got, 0)?;
                f.metadata()
            })
            .is_ok_and(|m| m.len() == size && got == head)
    }

    /// Whole z-planes, the first at plane `z`.
    pub fn write_planes(&self, z: usize, data: &[T]) -> anyhow::Result<()> {
        let plane = self.shape.x * self.shape.y;
        ensure!(
            data.len().is_multiple_of(plane) && z + data.len() / plane <= self.shape.z,
            "{}: planes {z}.. of {} elements do not fit the array's shape {}",
            self.path.display(),
            data.len(),
            self.shape
        );
        let at = self.data_at + (z * plane * std::mem::size_of::<T>()) as u64;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.file
            .write_all_at(bytes, at)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.start_writeback(at, bytes.len());
        Ok(())
    }

    /// Starts writing the range out to disk without waiting for it, so that a `sync` at the
    /// end finds less left to do: the disk works while the next slab computes. Advisory: an
    /// error here shows again in `sync`.
    #[cfg(target_os = "linux")]
    fn start_writeback(&self, at: u64, len: usize) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a file descriptor this struct owns.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                at as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&self, _at: u64, _len: usize) {}

    /// Makes what was written durable before a shard reports its part done.
    pub fn sync(&self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` (shape `shape`, C order) as a (z, y, x) version-1.0 .npy file.
    fn write<T: Element>(path: &Path, shape: Shape, data: &[T]) -> anyhow::Result<()> {
        PlaneFile::<T>::open(path, shape)?.write_planes(0, data)
    }

    #[test]
    fn round_trips_and_reads_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let shape = Shape::new(4, 3, 2);
        let data: Vec<u32> = (0..24).collect();
        write(&path, shape, &data).unwrap();
        let Volume::U32(s, v) = read(&path).unwrap() else {
            panic!("not u32")
        };
        assert_eq!((s, v), (shape, data.clone()));

        // The same array stored in Fortran order: element (z, y, x) at z + 2·(y + 3·x).
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 24 * 4;
        let f: Vec<u32> = (0..24)
            .map(|i| {
                let (z, y, x) = (i % 2, (i / 2) % 3, i / 6);
                data[(z * 3 + y) * 4 + x]
            })
            .collect();
        bytes.truncate(at);
        let mut text = bytes.clone();
        let pos = text.windows(5).position(|w| w == b"False").unwrap();
        text.splice(pos..pos + 5, *b"True ");
        text.extend_from_slice(bytemuck::cast_slice(&f));
        std::fs::write(&path, text).unwrap();
        let Volume::U32(s, v) = read(&path).unwrap() else {
            panic!("not u32")
        };
        assert_eq!((s, v), (shape, data));
    }

    /// `array` (shape (z, y, x) = (2, 3, 4)) as a .npy whose header is padded so the data
    /// starts at byte `data_at`, in C or Fortran order.
    fn npy_at(descr: &str, elem: usize, array: &[u64], data_at: usize, fortran: bool) -> Vec<u8> {
        let mut dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': (2, 3, 4), }}",
            if fortran { "True" } else { "False" }
        );
        while 10 + dict.len() + 1 < data_at {
            dict.push(' ');
        }
        dict.push('\n');
        assert_eq!(10 + dict.len(), data_at);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        for i in 0..24 {
            // Fortran order: element (z, y, x) at z + 2·(y + 3·x).
            let (z, y, x) = if fortran {
                (i % 2, (i / 2) % 3, i / 6)
            } else {
                (i / 12, (i / 4) % 3, i % 4)
            };
            out.extend_from_slice(&array[(z * 3 + y) * 4 + x].to_le_bytes()[..elem]);
        }
        out
    }

    #[test]
    fn opens_aligned_files_in_place_and_reads_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let array: Vec<u64> = (0..24).map(|i| (i * 0x0123_4567_89ab) ^ 0xfeed).collect();
        for (descr, elem) in [("<u8", 8), ("<u4", 4), ("<u2", 2), ("|u1", 1)] {
            let want: Vec<u64> = array
                .iter()
                .map(|&v| v & (u64::MAX >> (64 - 8 * elem)))
                .collect();
            // (data offset, Fortran order): numpy pads to 64 bytes, which maps; an offset
            // misaligned for the type, or Fortran order, is read.
            for (at, fortran) in [
                (128, false),
                (192, false),
                (132, false),
                (130, false),
                (128, true),
            ] {
                let mapped = !fortran && at % elem == 0;
                std::fs::write(&path, npy_at(descr, elem, &array, at, fortran)).unwrap();
                let opened = open(&path).unwrap();
                assert_eq!(
                    opened.is_mapped(),
                    mapped,
                    "{descr} at {at}, fortran {fortran}"
                );
                assert_eq!(opened.shape(), Shape::new(4, 3, 2));
                let got: Vec<u64> = match opened.view() {
                    View::U64(v) => v.to_vec(),
                    View::U32(v) => v.iter().map(|&l| l.into()).collect(),
                    View::U16(v) => v.iter().map(|&l| l.into()).collect(),
                    View::U8(v) => v.iter().map(|&l| l.into()).collect(),
                };
                assert_eq!(got, want, "{descr} at {at}, fortran {fortran}");
                assert_eq!(opened.view().dtype(), read(&path).unwrap().dtype());
            }
        }
        // What `open` refuses, `read` refuses too.
        std::fs::write(&path, &npy_at("<u8", 8, &array, 128, false)[..200]).unwrap();
        assert!(format!("{:#}", open(&path).err().unwrap()).contains("needs"));
    }

    #[test]
    fn plane_files_take_planes_in_any_order_from_several_openers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.npy");
        let shape = Shape::new(3, 2, 3);
        let a = PlaneFile::<u16>::open(&path, shape).unwrap();
        a.write_planes(2, &[13, 14, 15, 16, 17, 18]).unwrap();
        assert!(!PlaneFile::<u16>::holds(&path, Shape::new(3, 2, 2)));
        assert!(PlaneFile::<u16>::holds(&path, shape), "sized whole at open");
        let b = PlaneFile::<u16>::open(&path, shape).unwrap();
        b.write_planes(0, &(1..=6).collect::<Vec<u16>>()).unwrap();
        assert!(b.write_planes(2, &[1; 12]).is_err(), "past the last plane");
        assert!(b.write_planes(0, &[1; 5]).is_err(), "not whole planes");
        a.sync().unwrap();
        let Volume::U16(s, v) = read(&path).unwrap() else {
            panic!("not u16")
        };
        let mut want: Vec<u16> = (1..=6).collect();
        want.extend([0; 6]);
        want.extend(13..=18);
        assert_eq!((s, v), (shape, want));
    }

    #[test]
    fn reads_uint16_and_inspects_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let shape = Shape::new(5, 3, 2);
        let data: Vec<u16> = (0..30).map(|i| i * 1000 + 7).collect();
        write(&path, shape, &data).unwrap();
        let layout = inspect(&path).unwrap();
        assert_eq!(
            (layout.shape, layout.elem_size, layout.dtype()),
            (shape, 2, "uint16")
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.data_at + 60);
        let Volume::U16(s, v) = read(&path).unwrap() else {
            panic!("not u16")
        };
        assert_eq!((s, v), (shape, data));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let cases: [(&str, &[u8]); 4] = [
            ("bad magic", b"\x93NUMPZ\x01\x00\x10\x00{}              "),
            ("dtype", b"\x93NUMPY\x01\x00\x3a\x00{'descr': '>u8', 'fortran_order': False, 'shape': (1, 1, 1), }"),
            ("3 dimensions", b"\x93NUMPY\x01\x00\x37\x00{'descr': '<u8', 'fortran_order': False, 'shape': (1, 1), }"),
            ("needs", b"\x93NUMPY\x01\x00\x3a\x00{'descr': '<u8', 'fortran_order': False, 'shape': (1, 1, 1), }"),
        ];
        for (want, bytes) in cases {
            std::fs::write(&path, bytes).unwrap();
            let err = format!("{:#}", read(&path).err().expect(want));
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn arbitrary_headers_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            bytes.extend_from_slice(&(tail.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&tail);
            let _ = read_header(&mut bytes.as_slice());
        }

        #[test]
        fn mutated_headers_never_panic(at in 0usize..80, byte in proptest::num::u8::ANY) {
            let mut dict = b"{'descr': '<u8', 'fortran_order': False, 'shape': (2, 3, 4), }".to_vec();
            let i = at % dict.len();
            dict[i] = byte;
            if let Ok(text) = std::str::from_utf8(&dict) {
                let _ = parse_header(text);
            }
        }
    }

    // ---- fuzzing (issue 21): whole files through `inspect` and `read` ------------------------

    use proptest::prelude::*;

    /// Cases per property: `TESSERA_FUZZ_CASES`, else a short run.
    fn fuzz_config() -> proptest::test_runner::Config {
        let cases = std::env::var("TESSERA_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256);
        proptest::test_runner::Config {
            cases,
            failure_persistence: None,
            ..Default::default()
        }
    }

    /// The 16³ crop at (8, 8, 8) of a real pinky40 64³ cube (`engine/tests/data`).
    fn real_crop() -> Vec<u64> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/data/pinky40-200-300-100-64.u64.gz");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let cube: &[u64] = bytemuck::cast_slice(&raw);
        let mut out = Vec::new();
        for z in 8..24 {
            for y in 8..24 {
                out.extend_from_slice(&cube[(z * 64 + y) * 64 + 8..][..16]);
            }
        }
        out
    }

    /// Valid files: real labels as uint64, uint32 and uint8, one of them in Fortran order.
    fn seeds() -> &'static [Vec<u8>] {
        static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.npy");
            let v = real_crop();
            let shape = Shape::new(16, 8, 32);
            let mut out = Vec::new();
            write(&path, shape, &v).unwrap();
            out.push(std::fs::read(&path).unwrap());
            let v32: Vec<u32> = v.iter().map(|&l| l as u32).collect();
            write(&path, shape, &v32).unwrap();
            out.push(std::fs::read(&path).unwrap());
            let v8: Vec<u8> = v.iter().map(|&l| l as u8).collect();
            write(&path, Shape::new(4, 4, 256), &v8).unwrap();
            let mut f = std::fs::read(&path).unwrap();
            out.push(f.clone());
            let pos = f.windows(5).position(|w| w == b"False").unwrap();
            f.splice(pos..pos + 5, *b"True ");
            out.push(f);
            out
        })
    }

    /// Reads `bytes` as a file: never a panic, never more elements than the file holds, and
    /// what reads writes back to a file that reads the same.
    fn check_file(bytes: &[u8]) {
        thread_local! {
            static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
        }
        let path = DIR.with(|d| d.path().join("f.npy"));
        std::fs::write(&path, bytes).unwrap();
        let layout = inspect(&path);
        let Ok(vol) = read(&path) else {
            return;
        };
        let layout = layout.unwrap();
        assert_eq!(vol.shape(), layout.shape);
        assert!(layout.shape.voxels() * layout.elem_size <= bytes.len());
        let again = path.with_extension("again.npy");
        match &vol {
            Volume::U64(s, v) => write(&again, *s, v),
            Volume::U32(s, v) => write(&again, *s, v),
            Volume::U16(s, v) => write(&again, *s, v),
            Volume::U8(s, v) => write(&again, *s, v),
        }
        .unwrap();
        let back = read(&again).unwrap();
        assert_eq!(back.shape(), vol.shape());
        assert_eq!(back.dtype(), vol.dtype());
        let same = match (&vol, &back) {
            (Volume::U64(_, a), Volume::U64(_, b)) => a == b,
            (Volume::U32(_, a), Volume::U32(_, b)) => a == b,
            (Volume::U16(_, a), Volume::U16(_, b)) => a == b,
            (Volume::U8(_, a), Volume::U8(_, b)) => a == b,
            _ => false,
        };
        assert!(same);
    }

    fn dim() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0u64..20).prop_map(|d| d.to_string()),
            1 => proptest::sample::select(vec![
                1u64 << 20, 1 << 31, 1 << 32, 1 << 33, 1 << 62, 1 << 63, u64::MAX,
            ]).prop_map(|d| d.to_string()),
            1 => any::<u64>().prop_map(|d| d.to_string()),
            1 => "[-0-9L ]{0,24}",
        ]
    }

    /// A well-formed header whose shape, dtype and order may be anything, then some data.
    fn hostile() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(dim(), 0..5),
            proptest::sample::select(vec!["<u8", "<u4", "<u2", "|u1", "<u1", ">u8", "<f8", ""]),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(dims, descr, fortran, data, v2)| {
                let order = if fortran { "True" } else { "False" };
                let dict = format!(
                    "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({}), }}\n",
                    dims.join(", ")
                );
                let mut b = MAGIC.to_vec();
                if v2 {
                    b.extend_from_slice(&[2, 0]);
                    b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
                } else {
                    b.extend_from_slice(&[1, 0]);
                    b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
                }
                b.extend_from_slice(dict.as_bytes());
                b.extend_from_slice(&data);
                b
            })
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Flip(usize, u8),
        Cut(usize),
        Insert(usize, Vec<u8>),
    }

    fn edits() -> impl Strategy<Value = Vec<Edit>> {
        let at = prop_oneof![2 => 0usize..128, 1 => any::<usize>()];
        let edit = prop_oneof![
            4 => (at, 1u8..=255).prop_map(|(a, m)| Edit::Flip(a, m)),
            1 => any::<usize>().prop_map(Edit::Cut),
            1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(a, b)| Edit::Insert(a, b)),
        ];
        proptest::collection::vec(edit, 1..4)
    }

    fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
        let mut b = seed.to_vec();
        for e in edits {
            let len = b.len();
            match e {
                Edit::Flip(at, m) if len > 0 => b[at % len] ^= m,
                Edit::Cut(at) => b.truncate(at % (len + 1)),
                Edit::Insert(at, x) => {
                    let at = at % (len + 1);
                    b.splice(at..at, x.iter().copied());
                }
                _ => {}
            }
        }
        b
    }

    proptest::proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn npy_arbitrary_files(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            check_file(&b);
        }

        #[test]
        fn npy_hostile_headers(b in hostile()) {
            check_file(&b);
        }

        #[test]
        fn npy_mutated_real_files(i in 0usize..4, e in edits()) {
            check_file(&apply(&seeds()[i], &e));
        }
    }

    /// Found by `npy_hostile_headers`: a shape whose product overflows usize panicked (in
    /// debug builds) before the checked product refused it.
    #[test]
    fn npy_shape_overflowing_usize_is_refused() {
        let dict =
            "{'descr': '<u8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 1), }";
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        check_file(&b);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.npy");
        std::fs::write(&path, &b).unwrap();
        assert!(format!("{:#}", inspect(&path).unwrap_err()).contains("too large"));
    }

    #[test]
    fn npy_seeds_read() {
        for s in seeds() {
            check_file(s);
        }
    }
}
