//! `tessera load`: ingests a volume on local disk into an image instance of a running
//! DVID-compatible server over HTTP.
//!
//! The volume is placed in its block-aligned box (zero padding around it) and written one
//! z-layer of blocks per `POST raw/0_1_2` request; the input is read and decoded on this
//! thread while up to [`IN_FLIGHT`] requests are with the server. With `--pyramid N`, levels
//! 1..N (2×2×2 means, the engine's kernel) are built as the layers stream past, each from two
//! layers of the level below, and written to `<instance>_1` … `<instance>_N`. Every slab the
//! server acknowledges is recorded in a resume file, so a rerun sends only what is missing.

mod client;
mod geometry;
mod input;
mod resume;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tessera_engine::compute::Compute;

use client::Client;
use geometry::{Level, LevelBuilder};
use input::{Dtype, Source};
use resume::Resume;

/// Requests with the server at once.
const IN_FLIGHT: usize = 2;
/// Pyramid levels at most (as `tessera pyramid`).
const MAX_LEVELS: u32 = super::pyramid::MAX_LEVELS;

pub struct LoadArgs {
    pub server: String,
    pub uuid: String,
    pub instance: String,
    pub input: PathBuf,
    pub typename: Option<String>,
    pub compression: Option<String>,
    pub block_size: Option<String>,
    pub offset: Option<String>,
    pub pyramid: u32,
    pub compute: String,
    pub resume_file: Option<PathBuf>,
    pub quiet: bool,
    pub max_request_mb: u64,
}

fn parse_triple<T: std::str::FromStr>(text: &str, what: &str) -> anyhow::Result<[T; 3]> {
    let parts: Vec<T> = text
        .split(',')
        .map(|p| p.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("{what} must be x,y,z integers, not {text:?}"))?;
    let [x, y, z] = <[T; 3]>::try_from(parts)
        .map_err(|_| anyhow::anyhow!("{what} must be three integers x,y,z, not {text:?}"))?;
    Ok([x, y, z])
}

/// `--block-size`: `n` (a cube) or `x,y,z`.
fn parse_block(text: &str) -> anyhow::Result<[usize; 3]> {
    let b = if text.contains(',') {
        parse_triple::<usize>(text, "--block-size")?
    } else {
        let n: usize = text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--block-size must be n or x,y,z, not {text:?}"))?;
        [n; 3]
    };
    ensure!(b.iter().all(|&n| n > 0), "--block-size must be positive");
    Ok(b)
}

/// The default resume file: `<INPUT>.tessera-load`, beside the input.
fn default_resume_path(input: &Path) -> PathBuf {
    let trimmed = input
        .to_str()
        .map(|s| PathBuf::from(s.trim_end_matches('/')))
        .unwrap_or_else(|| input.to_path_buf());
    let mut name = trimmed.file_name().unwrap_or_default().to_os_string();
    name.push(".tessera-load");
    trimmed.with_file_name(name)
}

/// Takes each layer (level, index, data; `None`: not read).
type Sink<'a> = dyn FnMut(usize, usize, Option<&Bytes>) -> anyhow::Result<()> + 'a;

/// One slab for a poster.
struct Job {
    level: usize,
    layer: usize,
    instance: String,
    size: [usize; 3],
    offset: [i64; 3],
    body: Bytes,
}

/// Posts a slab: whole, or, when it is over `max` bytes, as bands of whole block rows (along
/// y) of at most `max` bytes where a block row allows. Returns the number of requests.
fn post_slab(
    client: &Client,
    job: Job,
    block_y: usize,
    es: usize,
    max: usize,
) -> anyhow::Result<usize> {
    let [sx, sy, sz] = job.size;
    let row_bytes = sx * block_y * sz * es;
    let rows = sy / block_y;
    let per = (max / row_bytes).max(1);
    if per >= rows {
        client.post_raw(&job.instance, job.size, job.offset, job.body)?;
        return Ok(1);
    }
    let mut n = 0;
    for r0 in (0..rows).step_by(per) {
        let (y0, ny) = (r0 * block_y, per.min(rows - r0) * block_y);
        let mut band = Vec::with_capacity(sx * ny * sz * es);
        for z in 0..sz {
            let at = (z * sy + y0) * sx * es;
            band.extend_from_slice(&job.body[at..at + ny * sx * es]);
        }
        let [x, y, z] = job.offset;
        client.post_raw(
            &job.instance,
            [sx, ny, sz],
            [x, y + y0 as i64, z],
            Bytes::from(band),
        )?;
        n += 1;
    }
    Ok(n)
}

/// Makes sure `name` exists (creating it with `settings`) and returns its type and blocks.
fn ensure_instance(
    client: &Client,
    existing: &[String],
    name: &str,
    typename: &str,
    settings: &[(&str, String)],
) -> anyhow::Result<(client::InstanceInfo, bool)> {
    let created = !existing.iter().any(|n| n == name);
    if created {
        client.create_instance(typename, name, settings)?;
    }
    let info = client.instance_info(name)?;
    ensure!(
        info.typename == typename,
        "instance {name} is {}, but this load writes {typename}{}",
        info.typename,
        if created {
            ""
        } else {
            " (load into another instance, or pass the matching --type)"
        }
    );
    Ok((info, created))
}

fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {percent:>3}% {human_pos}/{human_len} voxels, {mvox} eta {eta}",
        )
        .expect("a valid template")
        .with_key("mvox", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} Mvox/s", s.per_sec() / 1e6);
        }),
    );
    bar
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    ensure!(
        args.pyramid <= MAX_LEVELS,
        "--pyramid must be at most {MAX_LEVELS}, not {}",
        args.pyramid
    );
    ensure!(
        !args.instance.is_empty() && !args.instance.contains('/'),
        "--instance must be a data instance name, not {:?}",
        args.instance
    );
    let mut source = input::open(&args.input)?;
    let dtype = source.dtype();
    let shape = source.shape();
    let typename = match &args.typename {
        None => input::typename(dtype),
        Some(t) => {
            let want = input::dtype_of_typename(t).with_context(|| {
                format!("--type must be uint8blk, uint16blk or uint64blk, not {t:?}")
            })?;
            ensure!(
                want == dtype,
                "--type {t} takes {} voxels, but {} is {}",
                want.name(),
                args.input.display(),
                source.kind()
            );
            input::typename(dtype)
        }
    };
    if args.pyramid > 0 {
        ensure!(
            dtype == Dtype::U8,
            "--pyramid needs uint8 input (the mean kernel is 8-bit); {} is {}",
            args.input.display(),
            source.kind()
        );
    }
    // The backend first: `--compute gpu` without a GPU fails before anything is written.
    let compute: Option<Arc<dyn Compute>> = if args.pyramid > 0 {
        Some(super::open_compute(&args.compute)?)
    } else {
        None
    };
    let offset = match &args.offset {
        Some(o) => parse_triple::<i64>(o, "--offset")?,
        None => source.origin(),
    };
    let asked_block = args.block_size.as_deref().map(parse_block).transpose()?;

    // Instances: the level-0 one, then `<instance>_k` for each pyramid level.
    let client = Client::new(&args.server, &args.uuid)?;
    let existing = client.instance_names()?;
    let mut settings: Vec<(&str, String)> = Vec::new();
    if let Some(b) = asked_block {
        settings.push(("BlockSize", format!("{},{},{}", b[0], b[1], b[2])));
    }
    if let Some(c) = &args.compression {
        settings.push(("Compression", c.clone()));
    }
    let (info, created) = ensure_instance(&client, &existing, &args.instance, typename, &settings)?;
    let block = info.block;
    if !created && let Some(b) = asked_block.filter(|&b| b != block) {
        eprintln!(
            "note: instance {} exists with BlockSize {:?}; loading with that, not --block-size {:?}",
            args.instance, block, b
        );
    }
    let mut names = vec![args.instance.clone()];
    if args.pyramid > 0 {
        ensure!(
            block[2] % 2 == 0,
            "--pyramid needs an even block depth, but {} has blocks of {block:?}",
            args.instance
        );
        // The levels get the same blocks and compression as level 0.
        let mut level_settings = vec![(
            "BlockSize",
            format!("{},{},{}", block[0], block[1], block[2]),
        )];
        if let Some(c) = args.compression.clone().or(info.compression.clone()) {
            level_settings.push(("Compression", c));
        }
        for k in 1..=args.pyramid as usize {
            let name = format!("{}_{k}", args.instance);
            let (info, _) = ensure_instance(&client, &existing, &name, typename, &level_settings)?;
            ensure!(
                info.block == block,
                "instance {name} has blocks of {:?}, but {} has {block:?}: a pyramid's levels need the same block size",
                info.block,
                args.instance
            );
            names.push(name);
        }
    }

    let mut levels = vec![Level::base(offset, shape, block)];
    for _ in 0..args.pyramid {
        let next = levels.last().expect("level 0").half();
        levels.push(next);
    }

    // The resume file, keyed by everything that decides what a slab holds and where it goes.
    let input_path = args
        .input
        .canonicalize()
        .with_context(|| format!("{}", args.input.display()))?;
    let key = format!(
        "server={} uuid={} instance={} input={} type={} shape={},{},{} offset={},{},{} block={},{},{} pyramid={}",
        client.base(),
        args.uuid,
        args.instance,
        input_path.display(),
        typename,
        shape[0],
        shape[1],
        shape[2],
        offset[0],
        offset[1],
        offset[2],
        block[0],
        block[1],
        block[2],
        args.pyramid
    );
    let resume_path = args
        .resume_file
        .clone()
        .unwrap_or_else(|| default_resume_path(&args.input));
    let resume = Resume::open(&resume_path, &key)?;
    // Slabs already loaded, within this load's levels (anything else is ignored).
    let skipped: usize = levels
        .iter()
        .enumerate()
        .map(|(l, lv)| (0..lv.layers()).filter(|&j| resume.is_done(l, j)).count())
        .sum();
    if skipped > 0 && !args.quiet {
        eprintln!(
            "resuming from {}: {skipped} slabs already loaded",
            resume_path.display()
        );
    }
    // A layer need not even be read when it and every layer it feeds are loaded.
    let mut unread: Vec<Vec<bool>> = Vec::with_capacity(levels.len());
    for l in (0..levels.len()).rev() {
        let row = (0..levels[l].layers())
            .map(|j| {
                resume.is_done(l, j)
                    && match unread.last() {
                        None => true,
                        Some(above) => above[geometry::parent(&levels[l], &levels[l + 1], j).0],
                    }
            })
            .collect();
        unread.push(row);
    }
    unread.reverse();

    let total: u64 = levels
        .iter()
        .enumerate()
        .map(|(l, lv)| {
            (0..lv.layers()).filter(|&j| !resume.is_done(l, j)).count() as u64
                * lv.slab_voxels() as u64
        })
        .sum();
    let bar = progress(total, args.quiet);

    let done_before = resume.done().clone();
    let resume = Mutex::new(resume);
    let abort = AtomicBool::new(false);
    let requests = AtomicUsize::new(0);
    ensure!(
        args.max_request_mb > 0,
        "--max-request-mb must be at least 1"
    );
    let max_request = (args.max_request_mb as usize).saturating_mul(1 << 20);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let (tx, rx) = mpsc::sync_channel::<Job>(1);
    let rx = Mutex::new(rx);
    let t_load = Instant::now();
    let produced = std::thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            s.spawn(|| {
                loop {
                    let job = rx.lock().expect("receiver").recv();
                    let Ok(job) = job else { break };
                    if abort.load(Ordering::Relaxed) {
                        continue;
                    }
                    let voxels = job.body.len() / dtype.size();
                    let (level, layer) = (job.level, job.layer);
                    let what = format!("writing slab {} of {}", job.layer, job.instance);
                    let done = post_slab(&client, job, block[1], dtype.size(), max_request)
                        .map(|n| {
                            requests.fetch_add(n, Ordering::Relaxed);
                        })
                        .context(what)
                        .and_then(|()| resume.lock().expect("resume").mark(level, layer));
                    match done {
                        Ok(()) => bar.inc(voxels as u64),
                        Err(e) => {
                            abort.store(true, Ordering::Relaxed);
                            failure.lock().expect("failure").get_or_insert(e);
                        }
                    }
                }
            });
        }
        let produced = {
            let mut sink =
                |level: usize, layer: usize, data: Option<&Bytes>| -> anyhow::Result<()> {
                    let is_done = done_before.contains(&(level, layer));
                    match data {
                        Some(body) if !is_done => {
                            if abort.load(Ordering::Relaxed) {
                                bail!("stopped");
                            }
                            let lv = &levels[level];
                            let job = Job {
                                level,
                                layer,
                                instance: names[level].clone(),
                                size: lv.slab_size(),
                                offset: lv.slab_offset(layer),
                                body: body.clone(),
                            };
                            tx.send(job).map_err(|_| anyhow::anyhow!("stopped"))
                        }
                        Some(_) => Ok(()),
                        None if is_done => Ok(()),
                        None => bail!("internal error: slab {layer} of level {level} was not read"),
                    }
                };
            produce(
                source.as_mut(),
                &levels,
                offset,
                &unread,
                compute.as_deref(),
                &mut sink,
            )
        };
        drop(tx);
        produced
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e.context(format!(
            "load stopped; rerun the same command to resume from {}",
            resume_path.display()
        )));
    }
    produced.with_context(|| {
        format!(
            "load stopped; rerun the same command to resume from {}",
            resume_path.display()
        )
    })?;
    if let Some(note) = source.notes() {
        eprintln!("note: {note}");
    }
    resume.into_inner().expect("resume").remove()?;
    let secs = t_load.elapsed().as_secs_f64();
    let slabs: usize = levels.iter().map(Level::layers).sum::<usize>() - skipped;
    let level_names = if args.pyramid > 0 {
        format!(
            " and {}_1..{}_{}",
            args.instance, args.instance, args.pyramid
        )
    } else {
        String::new()
    };
    println!(
        "load: {} ({}×{}×{} at {},{},{}) into {}{level_names}: {total} voxels in {slabs} slabs ({} requests), {secs:.2} s, {:.1} Mvox/s, {skipped} slabs skipped (already loaded); {:.2} s in all",
        source.kind(),
        shape[0],
        shape[1],
        shape[2],
        offset[0],
        offset[1],
        offset[2],
        args.instance,
        requests.load(Ordering::Relaxed),
        total as f64 / secs.max(1e-9) / 1e6,
        t0.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Reads level 0 layer by layer, builds the levels above as their inputs arrive, and hands
/// every layer to `sink` (`None`: not read, as it and all it feeds are loaded already).
fn produce(
    source: &mut dyn Source,
    levels: &[Level],
    offset: [i64; 3],
    unread: &[Vec<bool>],
    compute: Option<&dyn Compute>,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    let mut builders: Vec<LevelBuilder> = levels
        .windows(2)
        .map(|w| LevelBuilder::new(w[0], w[1]))
        .collect();
    let base = &levels[0];
    let shape = source.shape();
    let es = source.dtype().size();
    let plane = shape[0] * shape[1] * es;
    let mut planes = Vec::new();
    for (j, &skip) in unread[0].iter().enumerate() {
        let data = if skip {
            None
        } else {
            let mut slab = vec![0u8; base.slab_voxels() * es];
            // The input planes inside this layer.
            let z_lo = base.layer_z(j).max(offset[2]);
            let z_hi = (base.layer_z(j) + base.block[2] as i64).min(offset[2] + shape[2] as i64);
            if z_lo < z_hi {
                let n = (z_hi - z_lo) as usize;
                planes.resize(n * plane, 0);
                source.read_planes((z_lo - offset[2]) as usize, n, &mut planes)?;
                geometry::place_planes(
                    base,
                    offset,
                    [shape[0], shape[1]],
                    es,
                    (z_lo - base.layer_z(j)) as usize,
                    &planes,
                    &mut slab,
                );
            }
            Some(Bytes::from(slab))
        };
        push(&mut builders, compute, 0, j, data, sink)?;
    }
    for k in 0..builders.len() {
        let compute = compute.expect("a backend for the pyramid");
        for (m, data) in builders[k].finish(compute)? {
            push(&mut builders, Some(compute), k + 1, m, data, sink)?;
        }
    }
    Ok(())
}

/// Hands layer `j` of `level` to the sink and to the builder of the level above.
fn push(
    builders: &mut [LevelBuilder],
    compute: Option<&dyn Compute>,
    level: usize,
    j: usize,
    data: Option<Bytes>,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    sink(level, j, data.as_ref())?;
    if level < builders.len() {
        let compute = compute.expect("a backend for the pyramid");
        for (m, up) in builders[level].add(j, data, compute)? {
            push(builders, Some(compute), level + 1, m, up, sink)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        assert_eq!(parse_block("64").unwrap(), [64; 3]);
        assert_eq!(parse_block("32,64,16").unwrap(), [32, 64, 16]);
        assert!(parse_block("0").is_err() && parse_block("1,2").is_err());
        assert_eq!(
            parse_triple::<i64>("-3, 4,5", "--offset").unwrap(),
            [-3, 4, 5]
        );
        assert_eq!(
            default_resume_path(Path::new("/d/slices/")),
            PathBuf::from("/d/slices.tessera-load")
        );
        assert_eq!(
            default_resume_path(Path::new("v.npy")),
            PathBuf::from("v.npy.tessera-load")
        );
    }
}
