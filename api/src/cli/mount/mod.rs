//! `tessera mount URL/<uuid>/<instance> DIR`: a keyvalue instance of a running server, at one
//! version, as a directory of files (FUSE), one file per key (docs/mount.md).
//!
//! Every operation is an HTTP request to the server; nothing is kept on local disk. A file's
//! contents are read whole when it is opened and written whole (`POST key/<k>`) when it is
//! flushed or closed after a write, so several writers of one key keep the last close.
//! Values fetched for `stat` are reused for a second, the time the kernel too keeps names and
//! sizes, so changes made by others show after at most that long.
//!
//! * [`names`] — the file name of each key, reversibly;
//! * [`remote`] — the instance's HTTP endpoints;
//! * [`fs`] — the filesystem the kernel talks to.

mod fs;
mod names;
mod remote;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fuser::MountOption;

use fs::KvFs;
use remote::Remote;

pub struct MountArgs {
    /// `http://HOST:PORT[/prefix]/<uuid>/<instance>`.
    pub url: String,
    pub dir: PathBuf,
    pub token: Option<String>,
    pub read_only: bool,
}

/// Mounts, then blocks until the directory is unmounted (`umount DIR`) or a SIGINT or SIGTERM
/// arrives, which unmounts it.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.url, args.token)?;
    let typename = remote
        .typename()
        .with_context(|| format!("reading instance {:?} at {}", remote.kv, remote.uuid))?;
    ensure!(
        typename == "keyvalue",
        "instance {:?} is a {typename}; only keyvalue instances can be mounted",
        remote.kv
    );
    let locked = remote
        .locked()
        .with_context(|| format!("reading whether version {} is committed", remote.uuid))?;
    let read_only = args.read_only || locked;
    ensure!(
        args.dir.is_dir(),
        "{} is not a directory",
        args.dir.display()
    );

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("tessera:{}/{}", remote.uuid, remote.kv)),
        MountOption::Subtype("tessera".into()),
        MountOption::DefaultPermissions,
        MountOption::NoExec,
        MountOption::NoAtime,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    let what = format!("{}/{} at {}", remote.uuid, remote.kv, remote.base);
    let fs = KvFs::new(remote, read_only);
    let session = fuser::spawn_mount(fs, &args.dir, &config).with_context(|| {
        format!(
            "mounting {} with FUSE (needs /dev/fuse, and root or the fusermount3 helper of \
             the fuse3 package)",
            args.dir.display()
        )
    })?;
    let mode = if read_only {
        if locked {
            "read-only: the version is committed"
        } else {
            "read-only"
        }
    } else {
        "read-write"
    };
    tracing::info!("mounted {what} on {} ({mode})", args.dir.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signalled = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        // An unmount from outside ends the session thread; nothing signals that, so look.
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = int.recv() => return anyhow::Ok(true),
                _ = term.recv() => return Ok(true),
                _ = tick.tick() => if session.guard.is_finished() { return Ok(false) },
            }
        }
    })?;
    drop(runtime);

    if !signalled {
        tracing::info!("{} was unmounted", args.dir.display());
        // Dropping the session would unmount once more, and log that failing: keep its mount
        // from being dropped, and join the finished thread through a stand-in.
        let mut session = session;
        let served = std::mem::replace(&mut session.guard, std::thread::spawn(|| Ok(())));
        std::mem::forget(session);
        return served
            .join()
            .map_err(|_| anyhow::anyhow!("the FUSE session thread panicked"))?
            .with_context(|| format!("serving {}", args.dir.display()));
    }
    tracing::info!("unmounting {}", args.dir.display());
    if let Err(e) = session.umount_and_join() {
        // Busy (a process has a file open or its working directory inside): detach it, so
        // the directory is free now and the mount goes when the last user lets go. Exiting
        // then closes the connection, and those users see errors rather than a hang.
        tracing::warn!(
            "unmounting {}: {e}; detaching it instead",
            args.dir.display()
        );
        let path = std::ffi::CString::new(args.dir.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; umount2 reads it only during the call.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            bail!("detaching {}: {e}", args.dir.display());
        }
    }
    Ok(())
}
