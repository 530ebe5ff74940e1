//! `tessera mount`: a keyvalue instance as a directory (FUSE), driven through the real binary
//! against a real server. Where this machine cannot mount FUSE filesystems (no /dev/fuse, a
//! container that forbids mount(2), no fusermount3 helper for a user who is not root) the test
//! says why on stderr and passes without checking anything.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_tests::proto::{KeyValue, KeyValues};
use tessera_tests::*;

/// How long a mount may take to appear, and an unmount to finish.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `dir` is a mount point now (from the kernel's table, not from a stat that a hung
/// filesystem could block).
fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_str().expect("utf-8 tempdir");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir))
}

/// A running `tessera mount`; dropping it unmounts, whatever state the test left.
struct Mounted {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Mounted {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, which must unmount and exit cleanly.
    fn unmount(mut self) {
        let status = terminate(&mut self.child).expect("tessera mount exits on SIGTERM");
        assert!(status.success(), "tessera mount: {status}\n{}", self.log());
        assert!(
            !is_mounted(&self.dir),
            "{} still mounted after SIGTERM",
            self.dir.display()
        );
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if terminate(&mut self.child).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.dir) {
            let path = std::ffi::CString::new(self.dir.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path, read only during the call.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Sends SIGTERM and waits for the exit; None when it did not come in time.
fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < MOUNT_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Mounts `<server>/<uuid>/kv` on `dir`; Err(reason) when this machine cannot mount FUSE.
fn mount(srv: &Server, uuid: &str, dir: &Path) -> Result<Mounted, String> {
    let log = dir.with_extension("log");
    let child = Command::new(binary_path())
        .arg("mount")
        .arg(format!("{}/{uuid}/kv", srv.base_url()))
        .arg(dir)
        .env_remove("TESSERA_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("mount log"))
        .spawn()
        .expect("spawn tessera mount");
    let mut m = Mounted {
        child,
        dir: dir.to_path_buf(),
        log,
    };
    let start = Instant::now();
    while !is_mounted(dir) {
        if let Ok(Some(status)) = m.child.try_wait() {
            let log = m.log();
            // Only the kernel or the helper refusing is a reason to skip, never our own errors.
            let environmental = [
                "Operation not permitted",
                "Permission denied",
                "No such file or directory",
                "fusermount",
            ];
            if log.contains("with FUSE (needs") && environmental.iter().any(|e| log.contains(e)) {
                return Err(format!("tessera mount failed ({status}):\n{log}"));
            }
            panic!("tessera mount exited ({status}) without mounting:\n{log}");
        }
        assert!(
            start.elapsed() < MOUNT_TIMEOUT,
            "{} not mounted after {MOUNT_TIMEOUT:?}:\n{}",
            dir.display(),
            m.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(m)
}

/// A key's value over HTTP, any key: `key/<k>` refuses a '/' in k, a one-key range does not.
fn value(srv: &Server, uuid: &str, key: &str) -> Option<Vec<u8>> {
    let k: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let r = srv
        .get(&format!("/api/node/{uuid}/kv/keyrangevalues/{k}/{k}"))
        .expect(200);
    let kvs: KeyValues = decode(&r.body);
    kvs.kvs
        .into_iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    names
}

#[test]
fn keyvalue_instance_as_a_directory() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP mount: no /dev/fuse on this machine");
        return;
    }
    let srv = Server::start();
    let uuid = srv.post_repos(&json!({"alias": "m"})).expect(200).json()["root"]
        .as_str()
        .expect("root")
        .to_string();
    srv.post_json(
        &format!("/api/repo/{uuid}/instance"),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(200);
    srv.put_key(&uuid, "kv", "%25x", b"percent");
    srv.put_key(&uuid, "kv", "with%20space", b"space");
    srv.put_key(&uuid, "kv", "plain", b"plain value");
    // `key/<k>` takes neither a '/' nor (a URL parser drops it) "..": the batch endpoint does.
    let awkward = KeyValues {
        kvs: vec![
            KeyValue {
                key: "..".into(),
                value: b"dots".to_vec(),
            },
            KeyValue {
                key: "a/b".into(),
                value: b"slash".to_vec(),
            },
        ],
    };
    srv.post(&format!("/api/node/{uuid}/kv/keyvalues"), encode(&awkward))
        .expect(200);

    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("rw");
    fs::create_dir(&dir).unwrap();
    let m = match mount(&srv, &uuid, &dir) {
        Ok(m) => m,
        Err(reason) => {
            eprintln!("SKIP mount: this machine cannot mount FUSE here: {reason}");
            return;
        }
    };
    eprintln!("mount: mounted {}", dir.display());

    // Names: escaped where a key is no valid file name.
    assert_eq!(
        listing(&dir),
        ["%25x", "%2E.", "a%2Fb", "plain", "with space"]
    );
    for (name, value) in [
        ("a%2Fb", &b"slash"[..]),
        ("%25x", b"percent"),
        ("with space", b"space"),
        ("%2E.", b"dots"),
        ("plain", b"plain value"),
    ] {
        assert_eq!(fs::read(dir.join(name)).unwrap(), value, "{name}");
        assert_eq!(
            fs::metadata(dir.join(name)).unwrap().len(),
            value.len() as u64
        );
    }
    assert_eq!(
        fs::read(dir.join("missing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A new file, under an escaped name, is a new key.
    fs::write(dir.join("new%2Fone"), b"fresh").unwrap();
    assert_eq!(
        value(&srv, &uuid, "new/one").as_deref(),
        Some(&b"fresh"[..])
    );
    // Overwriting replaces the whole value (shorter: truncated), appending extends it.
    fs::write(dir.join("plain"), b"x").unwrap();
    assert_eq!(
        srv.key_value(&uuid, "kv", "plain").as_deref(),
        Some(&b"x"[..])
    );
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("plain"))
        .unwrap();
    f.write_all(b"yz").unwrap();
    drop(f);
    assert_eq!(
        srv.key_value(&uuid, "kv", "plain").as_deref(),
        Some(&b"xyz"[..])
    );
    assert_eq!(fs::read(dir.join("plain")).unwrap(), b"xyz");
    // ftruncate(2) on a file open for writing.
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("with space"))
        .unwrap()
        .set_len(2)
        .unwrap();
    assert_eq!(
        srv.key_value(&uuid, "kv", "with%20space").as_deref(),
        Some(&b"sp"[..])
    );
    // An empty file is an empty value.
    fs::File::create(dir.join("empty")).unwrap();
    assert_eq!(
        srv.key_value(&uuid, "kv", "empty").as_deref(),
        Some(&b""[..])
    );

    // Keys written over HTTP show up.
    srv.put_key(&uuid, "kv", "from%20http", b"hi");
    assert!(listing(&dir).contains(&"from http".to_string()));
    assert_eq!(fs::read(dir.join("from http")).unwrap(), b"hi");

    // Deleting a file deletes its key; the API has no way to delete a key holding '/', or
    // "." and ".." (no URL path names them).
    fs::remove_file(dir.join("%25x")).unwrap();
    assert_eq!(srv.key_value(&uuid, "kv", "%25x"), None);
    let e = fs::remove_file(dir.join("a%2Fb")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    assert_eq!(value(&srv, &uuid, "a/b").as_deref(), Some(&b"slash"[..]));
    let e = fs::remove_file(dir.join("%2E.")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    assert!(srv.keys(&uuid, "kv").contains(&"..".to_string()));
    fs::write(dir.join("%2E"), b"dot").unwrap();
    assert!(srv.keys(&uuid, "kv").contains(&".".to_string()));
    assert_eq!(fs::read(dir.join("%2E")).unwrap(), b"dot");

    // Renaming moves the value.
    fs::rename(dir.join("from http"), dir.join("moved")).unwrap();
    assert_eq!(srv.key_value(&uuid, "kv", "from%20http"), None);
    assert_eq!(
        srv.key_value(&uuid, "kv", "moved").as_deref(),
        Some(&b"hi"[..])
    );
    assert_eq!(fs::read(dir.join("moved")).unwrap(), b"hi");

    // No directories; names that no key escapes to are refused.
    assert!(fs::create_dir(dir.join("sub")).is_err());
    let bad = fs::write(dir.join("50%"), b"?").unwrap_err();
    assert_eq!(bad.raw_os_error(), Some(libc::EINVAL), "{bad}");

    assert_eq!(
        listing(&dir),
        [
            "%2E",
            "%2E.",
            "a%2Fb",
            "empty",
            "moved",
            "new%2Fone",
            "plain",
            "with space"
        ]
    );
    m.unmount();

    // A committed version mounts read-only.
    srv.post_json(&format!("/api/node/{uuid}/commit"), &json!({"note": "x"}))
        .expect(200);
    let ro = scratch.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let m = mount(&srv, &uuid, &ro).expect("mounted once already");
    assert_eq!(fs::read(ro.join("plain")).unwrap(), b"xyz");
    for attempt in [
        fs::write(ro.join("plain"), b"no"),
        fs::write(ro.join("brand new"), b"no"),
        fs::remove_file(ro.join("moved")),
        fs::OpenOptions::new()
            .append(true)
            .open(ro.join("plain"))
            .map(drop),
    ] {
        let e = attempt.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    }
    assert_eq!(
        srv.key_value(&uuid, "kv", "plain").as_deref(),
        Some(&b"xyz"[..])
    );
    assert_eq!(srv.key_value(&uuid, "kv", "brand%20new"), None);
    m.unmount();
}
