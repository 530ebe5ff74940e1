//! The volumes `tessera load` reads: a `.npy` file, a directory of 2-D slices (TIFF or PNG),
//! a neuroglancer precomputed volume or a zarr array. Each is read plane range by plane
//! range, in z order, so memory stays a few slabs whatever the volume's size.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use rayon::prelude::*;

use crate::cli::npy;
use tessera_engine::remote::{self, ChunkedVolume, LocalDir};

pub use tessera_engine::remote::Dtype;

/// The instance type of an element type.
pub fn typename(d: Dtype) -> &'static str {
    match d {
        Dtype::U8 => "uint8blk",
        Dtype::U16 => "uint16blk",
        Dtype::U64 => "uint64blk",
    }
}

/// The element type of an instance type, if `tessera load` writes it.
pub fn dtype_of_typename(typename: &str) -> Option<Dtype> {
    match typename {
        "uint8blk" => Some(Dtype::U8),
        "uint16blk" => Some(Dtype::U16),
        "uint64blk" => Some(Dtype::U64),
        _ => None,
    }
}

/// A volume on disk.
pub trait Source: Send {
    /// (x, y, z) voxels.
    fn shape(&self) -> [usize; 3];
    fn dtype(&self) -> Dtype;
    /// Where the volume's first voxel goes when `--offset` is not given.
    fn origin(&self) -> [i64; 3] {
        [0; 3]
    }
    /// What was opened, for messages: `"uint8 .npy"`.
    fn kind(&self) -> String;
    /// Planes `z0..z0 + n` into `out` (n·x·y elements, x fastest, then y, then z;
    /// little-endian).
    fn read_planes(&mut self, z0: usize, n: usize, out: &mut [u8]) -> anyhow::Result<()>;
    /// Something the user should know once the volume has been read (missing chunks).
    fn notes(&self) -> Option<String> {
        None
    }
}

/// Opens `path` as whichever kind of volume it is.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn Source>> {
    let name = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("{name}"))?;
    if meta.is_file() {
        let ext = extension(path);
        return match ext.as_str() {
            "npy" => Ok(Box::new(NpySource::open(path)?)),
            "tif" | "tiff" | "png" => bail!(
                "{name} is a single 2-D image: give the directory that holds the volume's slices, one file per z"
            ),
            _ => bail!(
                "{name}: unknown input kind: expected a .npy file, or a directory of TIFF/PNG slices, a neuroglancer precomputed volume (with an `info` file) or a zarr array (with `.zarray` or `zarr.json`)"
            ),
        };
    }
    ensure!(meta.is_dir(), "{name} is neither a file nor a directory");
    if path.join("info").is_file()
        || path.join(".zarray").is_file()
        || path.join("zarr.json").is_file()
    {
        let fetch = std::sync::Arc::new(LocalDir(path.to_path_buf()));
        return Ok(Box::new(ChunkedSource {
            volume: remote::open(fetch)?,
            row: None,
        }));
    }
    if path.join(".zgroup").is_file() {
        bail!(
            "{name} is a zarr group, not an array: give the directory of one of its arrays (e.g. {name}/0)"
        );
    }
    Ok(Box::new(SliceSource::open(path)?))
}

/// A chunked volume read one row of chunks (all chunks of one z-index) at a time.
struct ChunkedSource {
    volume: ChunkedVolume,
    /// The last row read: (z-index, its planes).
    row: Option<(usize, Vec<u8>)>,
}

impl Source for ChunkedSource {
    fn shape(&self) -> [usize; 3] {
        self.volume.shape
    }

    fn dtype(&self) -> Dtype {
        self.volume.dtype
    }

    fn origin(&self) -> [i64; 3] {
        self.volume.origin
    }

    fn kind(&self) -> String {
        self.volume.kind.clone()
    }

    fn read_planes(&mut self, z0: usize, n: usize, out: &mut [u8]) -> anyhow::Result<()> {
        let [sx, sy, sz] = self.volume.shape;
        let cz = self.volume.chunk[2];
        let plane = sx * sy * self.volume.dtype.size();
        for (i, z) in (z0..z0 + n).enumerate() {
            let r = z / cz;
            if !matches!(&self.row, Some((at, _)) if *at == r) {
                let depth = cz.min(sz - r * cz);
                let planes = self
                    .volume
                    .read_box([0, 0, (r * cz) as i64], [sx, sy, depth])?;
                self.row = Some((r, planes));
            }
            let Some((_, row)) = &self.row else {
                unreachable!("just loaded")
            };
            let at = (z - r * cz) * plane;
            out[i * plane..(i + 1) * plane].copy_from_slice(&row[at..at + plane]);
        }
        Ok(())
    }

    fn notes(&self) -> Option<String> {
        match self.volume.missing() {
            0 => None,
            n => Some(format!(
                "{n} chunks of {} were missing and loaded as the fill value",
                self.volume.kind
            )),
        }
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// A C-order .npy read plane by plane from disk; a Fortran-order one is read whole first.
struct NpySource {
    path: PathBuf,
    layout: npy::Layout,
    dtype: Dtype,
    file: File,
    whole: Option<Vec<u8>>,
}

impl NpySource {
    fn open(path: &Path) -> anyhow::Result<NpySource> {
        let layout = npy::inspect(path)?;
        let dtype = match layout.elem_size {
            1 => Dtype::U8,
            2 => Dtype::U16,
            8 => Dtype::U64,
            _ => bail!(
                "{}: {} arrays cannot be loaded: the image instances take uint8, uint16 or uint64",
                path.display(),
                layout.dtype()
            ),
        };
        let whole = if layout.fortran_order {
            Some(match npy::read(path)? {
                npy::Volume::U8(_, v) => v,
                npy::Volume::U16(_, v) => bytemuck::cast_slice(&v).to_vec(),
                npy::Volume::U64(_, v) => bytemuck::cast_slice(&v).to_vec(),
                npy::Volume::U32(..) => unreachable!("refused above"),
            })
        } else {
            None
        };
        Ok(NpySource {
            path: path.to_path_buf(),
            file: File::open(path).with_context(|| format!("opening {}", path.display()))?,
            layout,
            dtype,
            whole,
        })
    }
}

impl Source for NpySource {
    fn shape(&self) -> [usize; 3] {
        let s = self.layout.shape;
        [s.x, s.y, s.z]
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn kind(&self) -> String {
        format!("{} .npy", self.dtype.name())
    }

    fn read_planes(&mut self, z0: usize, n: usize, out: &mut [u8]) -> anyhow::Result<()> {
        let plane = self.layout.shape.x * self.layout.shape.y * self.layout.elem_size;
        let at = z0 * plane;
        if let Some(whole) = &self.whole {
            out.copy_from_slice(&whole[at..at + n * plane]);
            return Ok(());
        }
        self.file
            .seek(SeekFrom::Start(self.layout.data_at + at as u64))?;
        self.file
            .read_exact(&mut out[..n * plane])
            .with_context(|| format!("reading {}", self.path.display()))
    }
}

/// A directory of 2-D grayscale images, one per z, in file-name order.
struct SliceSource {
    dir: PathBuf,
    files: Vec<PathBuf>,
    width: usize,
    height: usize,
    dtype: Dtype,
}

/// A decoded slice: (width, height, element type, little-endian pixels).
type Slice = (usize, usize, Dtype, Vec<u8>);

impl SliceSource {
    fn open(dir: &Path) -> anyhow::Result<SliceSource> {
        let name = dir.display();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {name}"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {name}"))?;
        files.retain(|p| p.is_file() && matches!(extension(p).as_str(), "tif" | "tiff" | "png"));
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        ensure!(
            !files.is_empty(),
            "{name}: unknown input kind: the directory holds no .tif, .tiff or .png slices, no precomputed `info` and no zarr `.zarray`/`zarr.json`"
        );
        warn_unpadded_numbers(&files);
        let (width, height, dtype, _) = decode_slice(&files[0])?;
        Ok(SliceSource {
            dir: dir.to_path_buf(),
            files,
            width,
            height,
            dtype,
        })
    }
}

/// Slices sort by name; `z2.png` after `z10.png` usually means numbers without leading zeros.
fn warn_unpadded_numbers(files: &[PathBuf]) {
    let number = |p: &PathBuf| -> Option<u64> {
        let name = p.file_stem()?.to_str()?;
        let digits: String = name
            .chars()
            .rev()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.chars().rev().collect::<String>().parse().ok()
    };
    let numbers: Option<Vec<u64>> = files.iter().map(number).collect();
    if let Some(n) = numbers
        && n.windows(2).any(|w| w[0] > w[1])
    {
        eprintln!(
            "warning: the slices are taken in file-name order, in which their numbers are not increasing (pad them with zeros: z0002 before z0010)"
        );
    }
}

fn decode_slice(path: &Path) -> anyhow::Result<Slice> {
    let name = path.display();
    match extension(path).as_str() {
        "png" => decode_png(path).with_context(|| format!("decoding {name}")),
        _ => decode_tiff(path).with_context(|| format!("decoding {name}")),
    }
}

fn decode_png(path: &Path) -> anyhow::Result<Slice> {
    let file = BufReader::new(File::open(path)?);
    let mut dec = png::Decoder::new(file);
    // Gray of 1, 2 or 4 bits becomes 8 bits; 16 bits stays.
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    ensure!(
        info.color_type == png::ColorType::Grayscale,
        "a {:?} PNG: slices must be grayscale (8 or 16 bits, no alpha)",
        info.color_type
    );
    buf.truncate(info.buffer_size());
    match info.bit_depth {
        png::BitDepth::Sixteen => {
            // PNG samples are big-endian.
            for px in buf.chunks_exact_mut(2) {
                px.swap(0, 1);
            }
            Ok((w, h, Dtype::U16, buf))
        }
        _ => Ok((w, h, Dtype::U8, buf)),
    }
}

fn decode_tiff(path: &Path) -> anyhow::Result<Slice> {
    let file = BufReader::new(File::open(path)?);
    let mut dec =
        tiff::decoder::Decoder::new(file)?.with_limits(tiff::decoder::Limits::unlimited());
    let (w, h) = dec.dimensions()?;
    let color = dec.colortype()?;
    let (w, h) = (w as usize, h as usize);
    let (dtype, pixels) = match (color, dec.read_image()?) {
        (tiff::ColorType::Gray(8), tiff::decoder::DecodingResult::U8(v)) => (Dtype::U8, v),
        (tiff::ColorType::Gray(16), tiff::decoder::DecodingResult::U16(v)) => {
            (Dtype::U16, v.iter().flat_map(|p| p.to_le_bytes()).collect())
        }
        (c, _) => bail!("a {c:?} TIFF: slices must be 8- or 16-bit unsigned grayscale"),
    };
    ensure!(
        pixels.len() == w * h * dtype.size(),
        "{} pixels for a {w}×{h} image",
        pixels.len() / dtype.size()
    );
    Ok((w, h, dtype, pixels))
}

impl Source for SliceSource {
    fn shape(&self) -> [usize; 3] {
        [self.width, self.height, self.files.len()]
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn kind(&self) -> String {
        format!("{} slices of {}", self.files.len(), self.dtype.name())
    }

    fn read_planes(&mut self, z0: usize, n: usize, out: &mut [u8]) -> anyhow::Result<()> {
        let plane = self.width * self.height * self.dtype.size();
        let first = &self.files[0];
        out[..n * plane]
            .par_chunks_mut(plane)
            .zip(&self.files[z0..z0 + n])
            .try_for_each(|(out, path)| {
                let (w, h, dtype, pixels) = decode_slice(path)?;
                ensure!(
                    (w, h) == (self.width, self.height),
                    "{} is {w}×{h}, but {} is {}×{}: all slices must be the same size",
                    path.display(),
                    first.display(),
                    self.width,
                    self.height
                );
                ensure!(
                    dtype == self.dtype,
                    "{} is {}, but {} is {}: all slices must have the same bit depth",
                    path.display(),
                    dtype.name(),
                    first.display(),
                    self.dtype.name()
                );
                out.copy_from_slice(&pixels);
                Ok(())
            })
            .with_context(|| format!("reading slices of {}", self.dir.display()))
    }
}
