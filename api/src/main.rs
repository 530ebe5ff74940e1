//! The `tessera` binary.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Block work allocates and frees buffers of hundreds of KiB per block; glibc's malloc
/// serves those with fresh mmaps, so every block paid its page faults again (a fifth of a
/// grayscale pyramid's time, docs/benchmarks.md). mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3), which the bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep the memory it frees for reuse instead of handing it back to the OS
/// (after 1 s by default), unless `MIMALLOC_PURGE_DELAY` says otherwise. Block work frees and
/// allocates megabytes at a time (a decoded block is 2 MiB, a kept mesh tens of MB), and every
/// page handed back was faulted in and zeroed again on its next use. On the edit bench a
/// 10M-voxel body's kept mesh was current 24 % sooner after a merge, a split answered 12 %
/// sooner and readers got 9 % more requests through, for 14 % more peak RSS
/// (docs/benchmarks.md).
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

mod auth;
mod cli;
mod config;
mod error;
mod lanes;
mod metrics;
mod routes;
mod server;
mod stream;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "A versioned, image-oriented data service speaking DVID's HTTP API"
)]
struct Cli {
    /// Log lines on stderr as text, or as JSON objects (one per line, for log shippers).
    #[arg(long, global = true, env = "TESSERA_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// TOML configuration in DVID's shape.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; port 0 picks a free port (the bound address is printed).
        #[arg(long)]
        addr: Option<String>,
        /// Directory of the embedded RocksDB store when the config names no store.
        #[arg(long, default_value = "tessera-data")]
        data: PathBuf,
        /// Compute backend for label kernels.
        #[arg(long, value_parser = ["auto", "gpu", "cpu"])]
        compute: Option<String>,
        /// Serve as a read replica of the writer using the same configuration (its RocksDB
        /// directories reachable here, blocks on the same object store): writes are refused and
        /// the writer's changes are followed (docs/storage.md).
        #[arg(long)]
        read_only: bool,
        /// How often a read replica brings the writer's changes in, in seconds.
        #[arg(long, default_value_t = 1.0, requires = "read_only")]
        follow_secs: f64,
    },
    /// Build a multiscale pyramid of a numpy volume: DIR/s1.npy … sN.npy.
    Pyramid {
        /// (z, y, x) C-order .npy: uint64 or uint32 labels, or uint8 grayscale.
        #[arg(long)]
        input: PathBuf,
        /// Number of 2×2×2 levels to build.
        #[arg(long, default_value_t = 1)]
        levels: u32,
        /// A directory, or an object store URL (s3://bucket/prefix, gs://, az://, file:///)
        /// to get the levels as zarr arrays s1 … sN written there (docs/compute.md).
        #[arg(long)]
        out_dir: PathBuf,
        /// labels (mode) or gray (mean); by default from the array's dtype.
        #[arg(long, value_parser = ["labels", "gray"])]
        kind: Option<String>,
        #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
        compute: String,
        /// Build only part I of N of the levels (z-slabs), e.g. one task of a Slurm array
        /// (`--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) writing into the same
        /// directory; the last part to finish names the files. Reruns are safe.
        #[arg(long, default_value = "0/1")]
        shard: cli::shard::Shard,
    },
    /// Closed surface meshes of every label of a numpy volume: DIR/<label>.<format>.
    Mesh {
        /// (z, y, x) C-order .npy of uint64, uint32, uint16 or uint8 labels; 0 is background.
        #[arg(long)]
        input: PathBuf,
        /// A directory, or an object store URL (s3://bucket/prefix, gs://, az://, file:///)
        /// to get every file as an object there.
        #[arg(long)]
        out_dir: PathBuf,
        /// ngmesh (neuroglancer legacy), obj or ply, one file per label; or a neuroglancer
        /// precomputed mesh directory: precomputed (multi-resolution, 3 levels of detail) or
        /// precomputed-legacy.
        #[arg(long, default_value = "ngmesh")]
        format: String,
        #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
        compute: String,
        /// Physical size of a voxel, x,y,z (vertices are written in these units).
        #[arg(long, default_value = "1,1,1")]
        voxel_size: String,
        /// Mesh only the labels of part I of N (label mod N = I), e.g. one task of a Slurm
        /// array writing into the same directory. Reruns are safe.
        #[arg(long, default_value = "0/1")]
        shard: cli::shard::Shard,
    },
    /// Ingest a volume on disk into an image instance of a running server, over HTTP.
    ///
    /// The volume is written as block-aligned slabs (one z-layer of blocks per request,
    /// zero-padded to whole blocks). Acknowledged slabs are recorded in a resume file, so
    /// rerunning the same command after a failure sends only what is missing.
    Load {
        /// A (z, y, x) C-order .npy (uint8, uint16, uint64); a directory of 2-D TIFF/PNG
        /// slices (8-bit gray, or 16-bit for uint16), one per z in file-name order; a
        /// neuroglancer precomputed volume directory (raw, png or jpeg encoding;
        /// gzip-compressed files too); or a zarr v2/v3 array directory (uncompressed, gzip or
        /// zlib).
        input: PathBuf,
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        server: String,
        /// Version (node) to write to.
        #[arg(long)]
        uuid: String,
        /// Data instance; created if missing. Pyramid levels go to <instance>_1 … _N.
        #[arg(long)]
        instance: String,
        /// Instance type when creating it; by default from the input's element type.
        #[arg(long = "type", value_parser = ["uint8blk", "uint16blk", "uint64blk"])]
        typename: Option<String>,
        /// Compression setting of a created instance.
        #[arg(long, value_parser = ["jpeg", "lz4", "gzip", "none"])]
        compression: Option<String>,
        /// BlockSize of a created instance: n or x,y,z (an existing instance keeps its own).
        #[arg(long)]
        block_size: Option<String>,
        /// Where the volume's first voxel goes, x,y,z (default: 0,0,0, or a precomputed
        /// volume's voxel_offset).
        #[arg(long, allow_hyphen_values = true)]
        offset: Option<String>,
        /// Also write N 2×2×2 mean levels to <instance>_1 … <instance>_N (uint8 only).
        #[arg(long, default_value_t = 0)]
        pyramid: u32,
        /// Compute backend for the pyramid's mean kernel.
        #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
        compute: String,
        /// Where to record acknowledged slabs (default: <INPUT>.tessera-load beside it).
        #[arg(long)]
        resume_file: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Largest request body, MiB: a wider slab is sent as bands of block rows.
        #[arg(long, default_value_t = 256)]
        max_request_mb: u64,
    },
    /// Send a repo to another server, moving only what it lacks (docs/distribution.md).
    ///
    /// Reads from --from (default: this machine's server) and writes into --to. Rerun the
    /// same command to resume an interrupted push; it prints what moved as JSON.
    Push {
        /// The repo (any node UUID or prefix; the version for --transmit branch/flatten).
        repo: String,
        /// The receiving server.
        #[arg(long)]
        to: String,
        /// The sending server.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        from: String,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Fetch a repo from another server, moving only what this one lacks
    /// (docs/distribution.md).
    ///
    /// Reads from --from and writes into --to (default: this machine's server). Rerun the
    /// same command to resume an interrupted pull; it prints what moved as JSON.
    Pull {
        /// The repo (any node UUID or prefix; the version for --transmit branch/flatten).
        repo: String,
        /// The sending server.
        #[arg(long)]
        from: String,
        /// The receiving server.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        to: String,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Mount a keyvalue instance of a running server as a directory, one file per key (FUSE).
    ///
    /// Read-write at an open version, read-only at a committed one. Stays in the foreground
    /// until DIR is unmounted (`umount DIR`) or the command is interrupted (Ctrl-C, SIGTERM),
    /// which unmounts it. Keys that are no valid file names are escaped (docs/mount.md).
    Mount {
        /// http://HOST:PORT/<uuid>/<instance>; the version may be a UUID prefix or uuid:branch.
        url: String,
        /// The directory to mount on.
        dir: PathBuf,
        /// Bearer token sent with every request (Authorization: Bearer TOKEN).
        #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Refuse writes even at an open version.
        #[arg(long)]
        read_only: bool,
    },
    /// Serve a demo dataset built on the fly (grayscale, segmentation with meshes, synapses,
    /// labelsz, an ROI, bookmarks, a committed root and a child with edits) and print the
    /// neuroglancer link and layer sources. A data directory that holds it is served as is.
    Demo {
        /// Listen address; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: String,
        /// Directory of the embedded store.
        #[arg(long, default_value = "tessera-demo-data")]
        data: PathBuf,
        #[arg(long, value_parser = ["auto", "gpu", "cpu"])]
        compute: Option<String>,
    },
    /// Access tokens (docs/access.md).
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// The stores of a stopped server.
    Store {
        #[command(subcommand)]
        what: StoreCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed token giving USER a role on repos, signed with [auth] jwt_secret of
    /// the config (or TESSERA_JWT_SECRET / DVID_JWT_SECRET_KEY).
    New {
        #[arg(long)]
        user: String,
        /// A repo's root UUID (all 32 hex digits), or `*` for every repo; repeatable.
        #[arg(long = "repo", required = true)]
        repos: Vec<String>,
        /// admin on `*` is server administration.
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        /// Lifetime in days (default: no expiry).
        #[arg(long)]
        days: Option<u64>,
        /// The server's TOML configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Print, per store, its key count, size and a SHA-256 of every key and value: equal
    /// digests mean byte-identical contents.
    Digest {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory of the embedded store when the config names no store.
        #[arg(long, default_value = "tessera-data")]
        data: PathBuf,
        /// Also print every key (hex) with the SHA-256 of its value.
        #[arg(long)]
        keys: bool,
    },
    /// Delete the objects no key references at any version, in every store keeping blocks as
    /// objects (a running server does the same on `POST /api/server/gc`).
    Gc {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "tessera-data")]
        data: PathBuf,
        /// Keep unreferenced objects younger than this many seconds: writes of another
        /// process may not have committed their references yet.
        #[arg(long, default_value_t = 3600.0)]
        grace: f64,
    },
    /// Move an instance, every version of its data and its mutation log, to another store of
    /// the configuration; resumable (run it again after an interruption).
    Migrate {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value = "tessera-data")]
        data: PathBuf,
        /// UUID (or prefix) of any node of the repo, a slash, and the instance name.
        #[arg(long)]
        instance: String,
        /// Alias of the destination store ([store.ALIAS]).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-kernel medians and Gvox/s on one backend.
    Kernels {
        /// Labels .npy (uint64/uint32); default: a synthetic 256³ segmentation.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Grayscale .npy (uint8) for the mean kernels; default: synthetic, input's shape.
        #[arg(long)]
        gray: Option<PathBuf>,
        #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
        compute: String,
        /// Timed runs per kernel (after one warm-up).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// One JSON object per kernel instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these kernels (comma-separated names as the report prints them).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Every kernel and the fused batches on the GPU beside the CPU, with device time, bytes
    /// over the bus and the share of the device's copy bandwidth (docs/compute.md).
    Gpu {
        /// Labels .npy (uint64/uint32); default: a synthetic segmentation of --size³.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Edge of the synthetic volume.
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// Timed runs per kernel and backend (after one warm-up).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Also write the whole report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for a person at a terminal: log files and shippers get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Serve {
            config,
            addr,
            data,
            compute,
            read_only,
            follow_secs,
        } => {
            let follow = std::time::Duration::try_from_secs_f64(follow_secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("--follow-secs must be a positive number"))?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(server::serve(server::ServeArgs {
                config,
                addr,
                data,
                compute,
                read_only,
                follow,
                on_ready: None,
            }))
        }
        Command::Pyramid {
            input,
            levels,
            out_dir,
            kind,
            compute,
            shard,
        } => cli::pyramid::run(cli::pyramid::PyramidArgs {
            input,
            levels,
            out_dir,
            kind,
            compute,
            shard,
        }),
        Command::Mesh {
            input,
            out_dir,
            format,
            compute,
            voxel_size,
            shard,
        } => cli::mesh::run(cli::mesh::MeshArgs {
            input,
            out_dir,
            format,
            compute,
            voxel_size,
            shard,
        }),
        Command::Load {
            input,
            server,
            uuid,
            instance,
            typename,
            compression,
            block_size,
            offset,
            pyramid,
            compute,
            resume_file,
            quiet,
            max_request_mb,
        } => cli::load::run(cli::load::LoadArgs {
            server,
            uuid,
            instance,
            input,
            typename,
            compression,
            block_size,
            offset,
            pyramid,
            compute,
            resume_file,
            quiet,
            max_request_mb,
        }),
        Command::Push {
            repo,
            to,
            from,
            transfer,
        }
        | Command::Pull {
            repo,
            from,
            to,
            transfer,
        } => transfer.run(repo, from, to),
        Command::Mount {
            url,
            dir,
            token,
            read_only,
        } => cli::mount::run(cli::mount::MountArgs {
            url,
            dir,
            token,
            read_only,
        }),
        Command::Demo {
            addr,
            data,
            compute,
        } => cli::demo::run(cli::demo::DemoArgs {
            addr: Some(addr),
            data,
            compute,
        }),
        Command::Store {
            what: StoreCommand::Digest { config, data, keys },
        } => cli::store::digest(config.as_deref(), &data, keys),
        Command::Store {
            what:
                StoreCommand::Gc {
                    config,
                    data,
                    grace,
                },
        } => cli::store::gc(config.as_deref(), &data, grace),
        Command::Store {
            what:
                StoreCommand::Migrate {
                    config,
                    data,
                    instance,
                    to,
                },
        } => cli::store::migrate(&config, &data, &instance, &to),
        Command::Token {
            what:
                TokenCommand::New {
                    user,
                    repos,
                    role,
                    days,
                    config,
                },
        } => {
            let auth_config = match config {
                Some(p) => config::Config::load(&p)?.0.auth,
                None => config::AuthConfig::default(),
            };
            let role: auth::Role = role.parse()?;
            for r in &repos {
                let root_uuid = r.len() == 32 && r.bytes().all(|b| b.is_ascii_hexdigit());
                anyhow::ensure!(
                    r == "*" || root_uuid,
                    "--repo {r:?}: give a repo's root UUID in full (32 hex digits) or *"
                );
            }
            let repos = repos
                .into_iter()
                .map(|r| (r.to_ascii_lowercase(), role))
                .collect();
            let ttl = days.map(|d| std::time::Duration::from_secs(d * 86_400));
            let token = auth::Auth::from_config(&auth_config)?.issue(&user, repos, ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::Bench {
            what:
                BenchCommand::Kernels {
                    input,
                    gray,
                    compute,
                    repeats,
                    json,
                    only,
                },
        } => cli::bench::run(cli::bench::BenchArgs {
            input,
            gray,
            compute,
            repeats,
            json,
            only,
        }),
        Command::Bench {
            what:
                BenchCommand::Gpu {
                    input,
                    size,
                    repeats,
                    json,
                },
        } => cli::gpu_bench::run(cli::gpu_bench::GpuBenchArgs {
            input,
            size,
            repeats,
            json,
        }),
    }
}

/// What `push` and `pull` send, and how.
#[derive(clap::Args)]
struct TransferArgs {
    /// all: every version; branch: the version and its ancestors; flatten: what is visible
    /// at the version, as the single root of a new repo.
    #[arg(long, default_value = "all", value_parser = ["all", "branch", "flatten"])]
    transmit: String,
    /// Only these instances (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    data: Vec<String>,
    /// Only blocks meeting this roi instance (a partial replica: reads elsewhere answer 404).
    #[arg(long)]
    roi: Option<String>,
    /// Only blocks meeting these voxels, x0,y0,z0,x1,y1,z1 (end exclusive).
    #[arg(long = "box", allow_hyphen_values = true)]
    bbox: Option<String>,
    /// Only blocks of scales up to this one.
    #[arg(long)]
    max_scale: Option<u8>,
    /// When the receiver already extended a branch the sender extends too, the branch the
    /// sender's nodes take there.
    #[arg(long)]
    new_branch: Option<String>,
    /// Token for the sending server (default: $TESSERA_TOKEN).
    #[arg(long, env = "TESSERA_TOKEN")]
    from_token: Option<String>,
    /// Token for the receiving server (default: $TESSERA_TOKEN).
    #[arg(long, env = "TESSERA_TOKEN")]
    to_token: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl TransferArgs {
    fn run(self, repo: String, from: String, to: String) -> anyhow::Result<()> {
        let selection = tessera_engine::engine::transfer::Selection {
            transmit: cli::transfer::parse_transmit(&self.transmit)?,
            version: None,
            nodes: None,
            data: self.data,
            roi: self.roi,
            bbox: self
                .bbox
                .as_deref()
                .map(cli::transfer::parse_box)
                .transpose()?,
            max_scale: self.max_scale,
        };
        let report = cli::transfer::run(cli::transfer::Args {
            source: from,
            dest: to,
            source_token: self.from_token,
            dest_token: self.to_token,
            repo,
            selection,
            new_branch: self.new_branch,
            progress: !self.quiet && std::io::stderr().is_terminal(),
        })?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_kept_unless_the_environment_says_otherwise() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // The option at that index is the purge delay: its default is mimalloc v3's 1 s (v2's
        // 10 ms), where the options next to it default to 0 or 1.
        assert!(matches!(get(), 1000 | 10), "default {}", get());
        keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
