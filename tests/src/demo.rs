//! `tessera demo` as the client suites use it: started on a free port with its own data
//! directory, read until its ready lines, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::binary_path;
use serde_json::Value;

/// A running `tessera demo` and the lines it printed up to "demo ready".
pub struct Demo {
    child: Child,
    /// The server's stderr.
    pub log: std::path::PathBuf,
    pub base: String,
    pub ready: Vec<String>,
    client: reqwest::blocking::Client,
}

impl Demo {
    /// Starts the demo on `dir`; its log (with the access log) goes to `<dir>.log`.
    pub fn start(dir: &std::path::Path) -> Demo {
        let log = std::fs::File::create(Self::log_path(dir)).expect("create the demo log");
        let mut child = Command::new(binary_path())
            .args(["demo", "--addr", "127.0.0.1:0", "--data"])
            .arg(dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn tessera demo");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The build takes a while in a debug build; the last line printed is the mutations curl.
        let deadline = Instant::now() + Duration::from_secs(600);
        let (mut base, mut ready) = (String::new(), Vec::<String>::new());
        while !ready
            .last()
            .is_some_and(|l| l.ends_with("/segmentation/mutations"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("tessera demo did not finish its ready lines: {ready:?}")
            });
            match line.strip_prefix("tessera listening on ") {
                Some(b) => base = b.trim().to_string(),
                None => ready.push(line),
            }
        }
        assert!(ready[0].starts_with("tessera demo ready"), "{ready:?}");
        Demo {
            log: Self::log_path(dir),
            child,
            base,
            ready,
            client: reqwest::blocking::Client::new(),
        }
    }

    fn log_path(dir: &std::path::Path) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("{}.log", dir.display()))
    }

    /// (status, method, uri) of every request the access log recorded so far.
    pub fn requests(&self) -> Vec<(u16, String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("tessera::access"))
            .filter_map(|l| {
                let field = |k: &str| {
                    let at = l.find(&format!("{k}="))? + k.len() + 1;
                    Some(l[at..].split_whitespace().next()?.to_string())
                };
                Some((
                    field("status")?.parse().ok()?,
                    field("method")?,
                    field("uri")?,
                ))
            })
            .collect()
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status().as_u16(), 200, "GET {path}");
        r.bytes().expect("body").to_vec()
    }

    pub fn json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get(path)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// (root, child) from the ready line.
    pub fn nodes(&self) -> (String, String) {
        let words: Vec<&str> = self.ready[0].split_whitespace().collect();
        let after = |w: &str| {
            let i = words.iter().position(|x| *x == w).expect(w);
            words[i + 1].to_string()
        };
        (after("root"), after("child"))
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let st = self.child.wait().expect("wait");
        assert!(st.success(), "tessera demo exited with {st:?}");
    }
}

/// A test that fails before `stop` must not leave the demo running.
impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
