//! A real `nats-server` with JetStream on a free loopback port, for the mutation-stream tests
//! (Debian's `nats-server`; `.ci/run` installs it through scripts/setup.sh). Its store is in a
//! temporary directory, so it can be killed and started again with what it had.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub struct Nats {
    dir: tempfile::TempDir,
    port: u16,
    /// nats-server configuration text (`-c`), if any.
    config: Option<String>,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        Nats::start_with_config(None)
    }

    /// With a nats-server configuration file of this text (e.g. `max_payload: 2048`).
    pub fn start_with_config(config: Option<&str>) -> Nats {
        let dir = tempfile::Builder::new()
            .prefix("tessera-nats-")
            .tempdir()
            .expect("nats tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut n = Nats {
            dir,
            port,
            config: config.map(str::to_string),
            child: None,
        };
        n.start_again();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: what JetStream had acknowledged stays in its store.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same port and store.
    pub fn start_again(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nats-server");
        let mut cmd = Command::new(bin);
        if let Some(text) = &self.config {
            let path = self.dir.path().join("nats.conf");
            std::fs::write(&path, text).expect("write nats.conf");
            cmd.arg("-c").arg(path);
        }
        let child = cmd
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting nats-server ({e}): install it with `bash scripts/setup.sh nats-server`")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
