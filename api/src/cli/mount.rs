//! `tessera mount URL/<uuid>/<instance> DIR`: a keyvalue instance of a running server, at one
//! version, as a directory of files (FUSE), one file per key (docs/mount.md).
//!
//! Every operation is an HTTP request to the server; nothing is kept on local disk. A file's
//! contents are read whole when it is opened and written whole (`POST key/<k>`) when it is
//! flushed or closed after a write, so several writers of one key keep the last close.
//! Values fetched for `stat` are reused for [`FRESH`], the time the kernel too keeps names and
//! sizes, so changes made by others show after at most that long.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// How long a fetched value (and so a file's size) is trusted, and how long the kernel may keep
/// a name's entry and attributes before asking again.
const FRESH: Duration = Duration::from_secs(1);
/// Longest file name Linux tools handle (NAME_MAX); keys escaping to longer names are not listed.
const NAME_MAX: usize = 255;
/// A single HTTP request's limit: a stuck server must not hang every process touching the mount.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

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

// ---------------------------------------------------------------------------------------------
// File names

/// The file name of a key, reversibly ([`key_of_name`] undoes it).
///
/// The rule: `%` becomes `%25`, `/` becomes `%2F` and NUL becomes `%00`, anywhere in the key;
/// the key `.` becomes `%2E` and the key `..` becomes `%2E.`; the empty key becomes `%`.
/// Nothing else changes (spaces, other punctuation and non-ASCII stay as they are). A `%` in a
/// name is thus always the start of one of these escapes, which is what makes the rule
/// reversible, and every name it makes is a valid file name.
pub fn name_of_key(key: &str) -> String {
    match key {
        "" => return "%".into(),
        "." => return "%2E".into(),
        ".." => return "%2E.".into(),
        _ => {}
    }
    let mut name = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => name.push_str("%25"),
            '/' => name.push_str("%2F"),
            '\0' => name.push_str("%00"),
            c => name.push(c),
        }
    }
    name
}

/// The key a file name stands for; None for a name [`name_of_key`] never makes (a stray `%`,
/// lower-case hex, an escape it does not use, bytes that are not UTF-8), so every key has
/// exactly one name.
pub fn key_of_name(name: &[u8]) -> Option<String> {
    if name == b"%" {
        return Some(String::new());
    }
    let mut key = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        let (byte, tail) = match (b, tail) {
            (b'%', [b'2', b'5', tail @ ..]) => (b'%', tail),
            (b'%', [b'2', b'F', tail @ ..]) => (b'/', tail),
            (b'%', [b'0', b'0', tail @ ..]) => (0, tail),
            (b'%', [b'2', b'E', tail @ ..]) => (b'.', tail),
            (b'%', _) => return None,
            (b, tail) => (b, tail),
        };
        key.push(byte);
        rest = tail;
    }
    let key = String::from_utf8(key).ok()?;
    // `%2E` is right only as the whole of the names of "." and "..".
    (name_of_key(&key).as_bytes() == name).then_some(key)
}

// ---------------------------------------------------------------------------------------------
// The server

/// Bytes of a key left as they are in a URL path; the rest is sent as %XX.
const KEY_IN_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug)]
enum Failure {
    /// The server answered with this status and message.
    Status(u16, String),
    /// No answer: unreachable, timed out, cut off.
    Transport(String),
    /// Nothing in the HTTP API does this.
    Unsupported(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(s, m) => write!(f, "the server answered {s}: {m}"),
            Failure::Transport(m) | Failure::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

/// The keyvalue instance's endpoints at one version.
struct Remote {
    /// `http://host:port[/prefix]`, no trailing slash.
    base: String,
    uuid: String,
    kv: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Remote {
    fn new(url: &str, token: Option<String>) -> anyhow::Result<Remote> {
        let url = url.trim_end_matches('/');
        if !url.starts_with("http://") {
            bail!("the URL must be http://HOST:PORT/<uuid>/<instance>, not {url:?}");
        }
        let mut parts = url.rsplitn(3, '/');
        let (kv, uuid, base) = match (parts.next(), parts.next(), parts.next()) {
            (Some(kv), Some(uuid), Some(base))
                if !kv.is_empty() && !uuid.is_empty() && base.len() > "http:/".len() =>
            {
                (kv, uuid, base)
            }
            _ => bail!("the URL must be http://HOST:PORT/<uuid>/<instance>, not {url:?}"),
        };
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Remote {
            base: base.to_string(),
            uuid: uuid.to_string(),
            kv: kv.to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    fn key_path(&self, key: &str) -> String {
        format!(
            "/api/node/{}/{}/key/{}",
            self.uuid,
            self.kv,
            utf8_percent_encode(key, KEY_IN_PATH)
        )
    }

    /// One request; the status and body of any answer.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        // URL parsers (reqwest's too) drop a path segment `.` or `..`, encoded or not, so the
        // keys "." and ".." go by hand.
        if path.ends_with("/key/.") || path.ends_with("/key/..") {
            let dots = path.rsplit('/').next().unwrap_or_default();
            let raw = format!(
                "{}{}",
                &path[..path.len() - dots.len()],
                "%2E".repeat(dots.len())
            );
            return self.send_raw(method.as_str(), &raw, body.as_deref());
        }
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let what = |e: &dyn std::error::Error| {
            let mut msg = format!("{method} {url}: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            Failure::Transport(msg)
        };
        let resp = req.send().map_err(|e| what(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().map_err(|e| what(&e))?;
        Ok((status, bytes.to_vec()))
    }

    /// HTTP/1.0 over a plain socket, for a path a URL parser would rewrite: the answer's body
    /// then runs to the end of the connection, with no chunking to undo.
    fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let failed = |e: std::io::Error| Failure::Transport(format!("{method} {path}: {e}"));
        let rest = self.base.trim_start_matches("http://");
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut addrs = std::net::ToSocketAddrs::to_socket_addrs(&if authority.contains(':')
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        })
        .map_err(failed)?;
        let addr = addrs
            .next()
            .ok_or_else(|| Failure::Transport(format!("{authority}: no address")))?;
        let mut conn =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(failed)?;
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(failed)?;
        conn.set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(failed)?;
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {prefix}{path} HTTP/1.0\r\nHost: {authority}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes()).map_err(failed)?;
        conn.write_all(body).map_err(failed)?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).map_err(failed)?;
        let bad = || Failure::Transport(format!("{method} {path}: malformed HTTP answer"));
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(bad)?;
        let status = std::str::from_utf8(&answer[..split])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1)?.parse::<u16>().ok())
            .ok_or_else(bad)?;
        Ok((status, answer[split + 4..].to_vec()))
    }

    /// The body of a 2xx answer; any other status is a [`Failure::Status`].
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Failure> {
        let (status, body) = self.send(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            let msg = String::from_utf8_lossy(&body).trim().to_string();
            Err(Failure::Status(status, msg))
        }
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value, Failure> {
        let body = self.call(reqwest::Method::GET, path, None)?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Transport(format!("GET {path}: not JSON: {e}")))
    }

    fn typename(&self) -> Result<String, Failure> {
        let info = self.get_json(&format!("/api/node/{}/{}/info", self.uuid, self.kv))?;
        Ok(info["Base"]["TypeName"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Whether the version is committed, so refuses writes.
    fn locked(&self) -> Result<bool, Failure> {
        let v = self.get_json(&format!("/api/node/{}/commit", self.uuid))?;
        Ok(v["Locked"].as_bool().unwrap_or(false))
    }

    fn keys(&self) -> Result<Vec<String>, Failure> {
        let v = self.get_json(&format!("/api/node/{}/{}/keys", self.uuid, self.kv))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| Some(k.as_str()?.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    // `key/<k>` refuses a key holding '/', escaped or not; the batch endpoints take any key
    // (a one-key range for reading), but there is no batch delete.

    /// A key's value; None when the key is absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        if key.is_empty() {
            // The server stores no empty key, and `key/` names none.
            return Ok(None);
        }
        if key.contains('/') {
            let k = utf8_percent_encode(key, KEY_IN_PATH);
            let path = format!("/api/node/{}/{}/keyrangevalues/{k}/{k}", self.uuid, self.kv);
            let body = self.call(reqwest::Method::GET, &path, None)?;
            let pairs = decode_key_values(&body)
                .ok_or_else(|| Failure::Transport(format!("GET {path}: not a KeyValues")))?;
            return Ok(pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v));
        }
        match self.call(reqwest::Method::GET, &self.key_path(key), None) {
            Ok(v) => Ok(Some(v)),
            Err(Failure::Status(404, _)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Failure> {
        if key.contains('/') {
            let path = format!("/api/node/{}/{}/keyvalues", self.uuid, self.kv);
            let body = encode_key_value(key, &value);
            return self
                .call(reqwest::Method::POST, &path, Some(body))
                .map(drop);
        }
        self.call(reqwest::Method::POST, &self.key_path(key), Some(value))
            .map(drop)
    }

    fn deletable(key: &str) -> bool {
        !key.contains('/')
    }

    fn delete(&self, key: &str) -> Result<(), Failure> {
        if !Remote::deletable(key) {
            return Err(Failure::Unsupported(
                "the server's API cannot delete a key holding '/'".into(),
            ));
        }
        self.call(reqwest::Method::DELETE, &self.key_path(key), None)
            .map(drop)
    }
}

// The protobuf messages of the batch endpoints (proto3, package proto): KeyValues is
// `repeated KeyValue kvs = 1`, KeyValue is `string key = 1; bytes value = 2`.

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field `field` of wire type 2 (length-delimited).
fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A KeyValues holding one pair.
fn encode_key_value(key: &str, value: &[u8]) -> Vec<u8> {
    let mut pair = Vec::with_capacity(key.len() + value.len() + 12);
    put_bytes(&mut pair, 1, key.as_bytes());
    put_bytes(&mut pair, 2, value);
    let mut out = Vec::with_capacity(pair.len() + 6);
    put_bytes(&mut out, 1, &pair);
    out
}

/// The (field, payload) of each field of a message; the payload of a varint or fixed-width
/// field is empty (none is used here). None when the bytes are no protobuf message.
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let payload: &[u8] = match tag & 7 {
            0 => {
                varint(&mut buf)?;
                &[]
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                buf = buf.get(n..)?;
                &[]
            }
            2 => {
                let n = usize::try_from(varint(&mut buf)?).ok()?;
                let (p, rest) = (buf.get(..n)?, buf.get(n..)?);
                buf = rest;
                p
            }
            _ => return None,
        };
        out.push((tag >> 3, payload));
    }
    Some(out)
}

/// The (key, value) pairs of a KeyValues.
fn decode_key_values(buf: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut pairs = Vec::new();
    for (field, kv) in fields(buf)? {
        if field != 1 {
            continue;
        }
        let (mut key, mut value) = (String::new(), Vec::new());
        for (f, p) in fields(kv)? {
            match f {
                1 => key = String::from_utf8_lossy(p).into_owned(),
                2 => value = p.to_vec(),
                _ => {}
            }
        }
        pairs.push((key, value));
    }
    Some(pairs)
}

// ---------------------------------------------------------------------------------------------
// The filesystem

/// A value as last fetched; None: the key was absent.
struct Fetched {
    value: Option<Arc<Vec<u8>>>,
    at: Instant,
}

/// An open file: the whole value, changed in place and sent back on flush.
struct OpenFile {
    ino: u64,
    data: Vec<u8>,
    /// Changed since it was read or last sent.
    dirty: bool,
    append: bool,
}

#[derive(Default)]
struct State {
    /// Inode numbers, given to keys as they are first seen and kept for the mount's life.
    ino_of: HashMap<String, u64>,
    key_of: HashMap<u64, String>,
    fetched: HashMap<u64, Fetched>,
    files: HashMap<u64, OpenFile>,
    /// Open directory listings: (inode, name) of each key as listed on opendir.
    dirs: HashMap<u64, Arc<Vec<(u64, String)>>>,
    next_fh: u64,
}

struct KvFs {
    remote: Remote,
    /// Set at mount time, and when a write finds the version committed since.
    read_only: AtomicBool,
    uid: u32,
    gid: u32,
    mounted: SystemTime,
    state: Mutex<State>,
}

const ROOT: u64 = INodeNo::ROOT.0;

impl KvFs {
    fn new(remote: Remote, read_only: bool) -> KvFs {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        KvFs {
            remote,
            read_only: AtomicBool::new(read_only),
            uid,
            gid,
            mounted: SystemTime::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    fn ino(&self, key: &str) -> u64 {
        let mut st = self.state.lock();
        if let Some(&ino) = st.ino_of.get(key) {
            return ino;
        }
        // Inode 1 is the root; keys count from 2.
        let ino = st.key_of.len() as u64 + 2;
        st.ino_of.insert(key.to_string(), ino);
        st.key_of.insert(ino, key.to_string());
        ino
    }

    fn key(&self, ino: u64) -> Result<String, Errno> {
        self.state
            .lock()
            .key_of
            .get(&ino)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    fn remember(&self, ino: u64, value: Option<Arc<Vec<u8>>>) {
        let at = Instant::now();
        self.state.lock().fetched.insert(ino, Fetched { value, at });
    }

    /// The key's value, from the last fetch when that is fresh enough.
    fn value(&self, ino: u64) -> Result<Option<Arc<Vec<u8>>>, Errno> {
        if let Some(f) = self.state.lock().fetched.get(&ino)
            && f.at.elapsed() < FRESH
        {
            return Ok(f.value.clone());
        }
        let key = self.key(ino)?;
        let value = self
            .remote
            .get(&key)
            .map_err(|e| self.read_failed("reading", &key, &e))?
            .map(Arc::new);
        self.remember(ino, value.clone());
        Ok(value)
    }

    /// The size to show: that of a file open here with unsent changes, else the stored one.
    fn size(&self, ino: u64, fh: Option<FileHandle>) -> Result<u64, Errno> {
        {
            let st = self.state.lock();
            if let Some(f) = fh.and_then(|fh| st.files.get(&fh.0)) {
                return Ok(f.data.len() as u64);
            }
            if let Some(f) = st.files.values().find(|f| f.ino == ino && f.dirty) {
                return Ok(f.data.len() as u64);
            }
        }
        match self.value(ino)? {
            Some(v) => Ok(v.len() as u64),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, ino: u64, size: u64) -> FileAttr {
        let (kind, perm, nlink) = match (ino == ROOT, self.read_only()) {
            (true, false) => (FileType::Directory, 0o755, 2),
            (true, true) => (FileType::Directory, 0o555, 2),
            (false, false) => (FileType::RegularFile, 0o644, 1),
            (false, true) => (FileType::RegularFile, 0o444, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            // The server keeps no times for keys.
            atime: self.mounted,
            mtime: self.mounted,
            ctime: self.mounted,
            crtime: self.mounted,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn read_failed(&self, doing: &str, key: &str, e: &Failure) -> Errno {
        tracing::warn!("{doing} key {key:?}: {e}");
        match e {
            Failure::Status(401 | 403, _) => Errno::EACCES,
            _ => Errno::EIO,
        }
    }

    /// The errno for a refused write, after asking whether the version was committed meanwhile
    /// (the server answers 400 then); from then on the mount refuses writes itself.
    fn write_failed(&self, doing: &str, key: &str, e: &Failure) -> Errno {
        tracing::warn!("{doing} key {key:?}: {e}");
        match e {
            Failure::Status(401 | 403, _) => Errno::EACCES,
            Failure::Status(413, _) => Errno::EFBIG,
            Failure::Unsupported(_) => Errno::EPERM,
            Failure::Status(400..500, _) => {
                if self.remote.locked().unwrap_or(false) {
                    tracing::warn!(
                        "version {} is committed now; refusing writes",
                        self.remote.uuid
                    );
                    self.read_only.store(true, Ordering::Relaxed);
                    Errno::EROFS
                } else {
                    Errno::EIO
                }
            }
            _ => Errno::EIO,
        }
    }

    fn writable(&self) -> Result<(), Errno> {
        if self.read_only() {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// A name in the root directory, as a key.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        if parent.0 != ROOT {
            return Err(Errno::ENOTDIR);
        }
        key_of_name(name.as_bytes()).ok_or(Errno::ENOENT)
    }

    /// Sends an open file's contents if they changed.
    fn flush_file(&self, fh: u64) -> Result<(), Errno> {
        let (ino, data) = {
            let st = self.state.lock();
            match st.files.get(&fh) {
                Some(f) if f.dirty => (f.ino, f.data.clone()),
                Some(_) => return Ok(()),
                None => return Err(Errno::EBADF),
            }
        };
        let key = self.key(ino)?;
        self.writable()?;
        self.remote
            .put(&key, data.clone())
            .map_err(|e| self.write_failed("writing", &key, &e))?;
        tracing::debug!("wrote key {key:?} ({} bytes)", data.len());
        let value = Arc::new(data);
        let mut st = self.state.lock();
        // Writes that came in while the value was on its way keep the file dirty.
        if let Some(f) = st.files.get_mut(&fh)
            && f.data == *value
        {
            f.dirty = false;
        }
        st.fetched.insert(
            ino,
            Fetched {
                value: Some(value),
                at: Instant::now(),
            },
        );
        Ok(())
    }

    fn open_file(&self, ino: u64, data: Vec<u8>, dirty: bool, append: bool) -> u64 {
        let mut st = self.state.lock();
        st.next_fh += 1;
        let fh = st.next_fh;
        st.files.insert(
            fh,
            OpenFile {
                ino,
                data,
                dirty,
                append,
            },
        );
        fh
    }
}

impl Filesystem for KvFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // open(O_TRUNC) then arrives as one open rather than a separate truncate, which here
        // would be a request of its own writing an empty value first.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.child(parent, name).and_then(|key| {
            let ino = self.ino(&key);
            Ok(self.attr(ino, self.size(ino, None)?))
        });
        match r {
            Ok(attr) => reply.entry(&FRESH, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = if ino.0 == ROOT {
            Ok(self.attr(ROOT, 0))
        } else {
            self.size(ino.0, fh).map(|size| self.attr(ino.0, size))
        };
        match r {
            Ok(attr) => reply.attr(&FRESH, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino.0 == ROOT {
            return reply.attr(&FRESH, &self.attr(ROOT, 0));
        }
        // Only the size means anything here: modes, owners and times are not stored.
        let Some(size) = size else {
            let r = self.size(ino.0, fh).map(|s| self.attr(ino.0, s));
            return match r {
                Ok(attr) => reply.attr(&FRESH, &attr),
                Err(e) => reply.error(e),
            };
        };
        let r = self.writable().and_then(|()| {
            let len = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
            {
                let mut st = self.state.lock();
                if let Some(f) = fh.and_then(|fh| st.files.get_mut(&fh.0)) {
                    f.data.resize(len, 0);
                    f.dirty = true;
                    return Ok(self.attr(ino.0, size));
                }
            }
            // truncate(2) on a path: no open file to hold the change, so send it now.
            let key = self.key(ino.0)?;
            let mut value = self
                .remote
                .get(&key)
                .map_err(|e| self.read_failed("reading", &key, &e))?
                .ok_or(Errno::ENOENT)?;
            value.resize(len, 0);
            self.remote
                .put(&key, value.clone())
                .map_err(|e| self.write_failed("truncating", &key, &e))?;
            self.remember(ino.0, Some(Arc::new(value)));
            Ok(self.attr(ino.0, size))
        });
        match r {
            Ok(attr) => reply.attr(&FRESH, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        // Keys have no hierarchy: a '/' in a key is part of the file name (escaped).
        reply.error(if self.read_only() {
            Errno::EROFS
        } else {
            Errno::EPERM
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name).and_then(|key| {
            self.writable()?;
            self.remote
                .delete(&key)
                .map_err(|e| self.write_failed("deleting", &key, &e))?;
            let ino = self.ino(&key);
            self.remember(ino, None);
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTDIR);
    }

    // The refusals below are fuser's defaults, answered here without its warning per call.

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // isatty() asks every file opened by a program with buffered I/O.
        reply.error(Errno::ENOTTY);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // The kernel then copies by reading and writing (and stops asking).
        reply.error(Errno::ENOSYS);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // Not atomic: the value is copied to the new key, then the old key deleted.
        let r = (|| {
            let from = self.child(parent, name)?;
            let to = self
                .child(newparent, newname)
                .map_err(|e| if e == Errno::ENOENT { Errno::EINVAL } else { e })?;
            self.writable()?;
            if flags.bits() != 0 {
                return Err(Errno::EINVAL);
            }
            if from == to {
                return Ok(());
            }
            if !Remote::deletable(&from) {
                // Copying first would leave the value under both names.
                return Err(Errno::EPERM);
            }
            let value = self
                .remote
                .get(&from)
                .map_err(|e| self.read_failed("reading", &from, &e))?
                .ok_or(Errno::ENOENT)?;
            self.remote
                .put(&to, value.clone())
                .map_err(|e| self.write_failed("writing", &to, &e))?;
            self.remote
                .delete(&from)
                .map_err(|e| self.write_failed("deleting", &from, &e))?;
            // The kernel now knows the moved inode by the new name, and forgets the one the
            // new name had.
            let mut st = self.state.lock();
            let ino = st.ino_of.remove(&from).unwrap_or(0);
            if let Some(old) = st.ino_of.insert(to.clone(), ino) {
                st.key_of.remove(&old);
                st.fetched.remove(&old);
            }
            st.key_of.insert(ino, to);
            st.fetched.insert(
                ino,
                Fetched {
                    value: Some(Arc::new(value)),
                    at: Instant::now(),
                },
            );
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writing = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncating = writing && flags.0 & libc::O_TRUNC != 0;
        let append = flags.0 & libc::O_APPEND != 0;
        let r = (|| {
            if writing {
                self.writable()?;
            }
            let (data, dirty) = if truncating {
                // Still sent on close when nothing is written: it empties the value.
                (Vec::new(), true)
            } else {
                let value = self.value(ino.0)?.ok_or(Errno::ENOENT)?;
                (value.to_vec(), false)
            };
            Ok(self.open_file(ino.0, data, dirty, append))
        })();
        // Direct I/O: reads come here rather than from the page cache, so they see what was
        // fetched at open whatever size the kernel last heard of.
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let st = self.state.lock();
        let Some(f) = st.files.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(f.data.len());
        let end = start.saturating_add(size as usize).min(f.data.len());
        reply.data(&f.data[start..end]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Err(e) = self.writable() {
            return reply.error(e);
        }
        let mut st = self.state.lock();
        let Some(f) = st.files.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = if f.append {
            f.data.len()
        } else {
            match usize::try_from(offset) {
                Ok(o) => o,
                Err(_) => return reply.error(Errno::EFBIG),
            }
        };
        let Some(end) = start.checked_add(data.len()) else {
            return reply.error(Errno::EFBIG);
        };
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[start..end].copy_from_slice(data);
        f.dirty = true;
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.flush_file(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.flush_file(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // close() already flushed; this catches changes made through a copy of the handle
        // that outlived it (mmap aside, which direct I/O rules out).
        let r = self.flush_file(fh.0);
        if let Some(f) = self.state.lock().files.remove(&fh.0)
            && f.dirty
        {
            tracing::warn!("closing inode {}: unsent changes are lost", f.ino);
        }
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            if parent.0 != ROOT {
                return Err(Errno::ENOTDIR);
            }
            self.writable()?;
            // A name no key maps to would list under another name: refuse it.
            let key = key_of_name(name.as_bytes()).ok_or(Errno::EINVAL)?;
            self.remote
                .put(&key, Vec::new())
                .map_err(|e| self.write_failed("creating", &key, &e))?;
            let ino = self.ino(&key);
            self.remember(ino, Some(Arc::new(Vec::new())));
            let fh = self.open_file(ino, Vec::new(), false, flags & libc::O_APPEND != 0);
            Ok((self.attr(ino, 0), fh))
        })();
        match r {
            Ok((attr, fh)) => reply.created(
                &FRESH,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let keys = match self.remote.keys() {
            Ok(k) => k,
            Err(e) => return reply.error(self.read_failed("listing", "*", &e)),
        };
        let mut entries = Vec::with_capacity(keys.len());
        let mut too_long = 0;
        for key in keys {
            let name = name_of_key(&key);
            if name.len() > NAME_MAX {
                too_long += 1;
                continue;
            }
            entries.push((self.ino(&key), name));
        }
        if too_long > 0 {
            tracing::warn!(
                "{too_long} keys not listed: their file names would pass {NAME_MAX} bytes"
            );
        }
        let mut st = self.state.lock();
        st.next_fh += 1;
        let fh = st.next_fh;
        st.dirs.insert(fh, Arc::new(entries));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.state.lock().dirs.get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let dots = [(ROOT, "."), (ROOT, "..")]
            .into_iter()
            .map(|(i, n)| (i, FileType::Directory, n));
        let files = entries
            .iter()
            .map(|(i, n)| (*i, FileType::RegularFile, n.as_str()));
        // An entry's offset is its position plus one: where the next readdir starts.
        for (pos, (ino, kind, name)) in dots.chain(files).enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), pos as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.state.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn awkward_keys_get_these_names() {
        for (key, name) in [
            ("a/b", "a%2Fb"),
            ("..", "%2E."),
            (".", "%2E"),
            ("...", "..."),
            (".hidden", ".hidden"),
            ("%x", "%25x"),
            ("with space", "with space"),
            ("nul\0byte", "nul%00byte"),
            ("", "%"),
            ("ünï/cödé", "ünï%2Fcödé"),
        ] {
            assert_eq!(name_of_key(key), name, "{key:?}");
            assert_eq!(
                key_of_name(name.as_bytes()).as_deref(),
                Some(key),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_no_key_has_are_refused() {
        for name in [
            "%%", "50%", "%2f", "%zz", "%2E%2E", "%2Ex", "a%2E", "%41", "%0", "%2",
        ] {
            assert_eq!(key_of_name(name.as_bytes()), None, "{name:?}");
        }
        assert_eq!(key_of_name(b"\xff"), None);
    }

    #[test]
    fn key_paths_escape_all_but_unreserved() {
        let r = Remote::new("http://h:1/abc/kv", None).unwrap();
        assert_eq!(
            r.key_path("a/b c%~._-Z9é"),
            "/api/node/abc/kv/key/a%2Fb%20c%25~._-Z9%C3%A9"
        );
        assert_eq!(
            (r.base.as_str(), r.uuid.as_str(), r.kv.as_str()),
            ("http://h:1", "abc", "kv")
        );
        let p = Remote::new("http://h:1/pre/fix/abc:master/kv/", None).unwrap();
        assert_eq!(
            (p.base.as_str(), p.uuid.as_str()),
            ("http://h:1/pre/fix", "abc:master")
        );
        assert!(Remote::new("http://h:1/kv", None).is_err());
        assert!(Remote::new("https://h/u/kv", None).is_err());
    }

    #[test]
    fn key_values_encode_and_decode() {
        let buf = encode_key_value("a/b", b"v\0");
        assert_eq!(
            decode_key_values(&buf),
            Some(vec![("a/b".to_string(), b"v\0".to_vec())])
        );
        let big = vec![7u8; 300];
        let buf = [encode_key_value("x", &big), encode_key_value("", b"")].concat();
        assert_eq!(
            decode_key_values(&buf),
            Some(vec![("x".to_string(), big), (String::new(), Vec::new())])
        );
        assert_eq!(decode_key_values(&[0x0a, 5, 1]), None);
        assert_eq!(decode_key_values(&[]), Some(vec![]));
    }

    proptest! {
        #[test]
        fn names_round_trip(key in any::<String>()) {
            let name = name_of_key(&key);
            prop_assert!(!name.is_empty());
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.contains('/') && !name.contains('\0'));
            prop_assert_eq!(key_of_name(name.as_bytes()), Some(key));
        }

        #[test]
        fn dotted_and_percent_keys_round_trip(key in "[./%\\x00a]{0,8}") {
            prop_assert_eq!(key_of_name(name_of_key(&key).as_bytes()), Some(key));
        }

        #[test]
        fn every_accepted_name_is_the_name_of_its_key(name in proptest::collection::vec(
            prop_oneof![Just(b'%'), Just(b'2'), Just(b'5'), Just(b'F'), Just(b'E'), Just(b'0'),
                        Just(b'.'), Just(b'a'), any::<u8>()], 0..10)) {
            if let Some(key) = key_of_name(&name) {
                prop_assert_eq!(name_of_key(&key).into_bytes(), name);
            }
        }
    }
}
