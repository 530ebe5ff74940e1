//! The filesystem the kernel talks to: one directory of files, one per key, each read whole on
//! open and sent back whole on flush or close after a write.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use super::names::{key_of_name, name_of_key};
use super::remote::{Failure, Remote};

/// How long a fetched value (and so a file's size) is trusted, and how long the kernel may keep
/// a name's entry and attributes before asking again.
const FRESH: Duration = Duration::from_secs(1);
/// Longest file name Linux tools handle (NAME_MAX); keys escaping to longer names are not listed.
const NAME_MAX: usize = 255;

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

pub struct KvFs {
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
    pub fn new(remote: Remote, read_only: bool) -> KvFs {
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
