//! The keyvalue instance's HTTP endpoints at one version, as the mount uses them.

use std::time::Duration;

use anyhow::{Context, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use prost::Message;
use tessera_engine::datatypes::keyvalue::proto::{KeyValue, KeyValues};

/// A single HTTP request's limit: a stuck server must not hang every process touching the mount.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of a key left as they are in a URL path; the rest is sent as %XX.
const KEY_IN_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug)]
pub enum Failure {
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
pub struct Remote {
    /// `http://host:port[/prefix]`, no trailing slash.
    pub base: String,
    pub uuid: String,
    pub kv: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

/// Whether `key/<k>` cannot name the key: the server refuses a '/' in it (escaped or not), and
/// URL parsers (reqwest's too) drop a path segment "." or "..", encoded or not. Such keys are
/// read and written through the batch endpoints, which take any key; there is no batch delete.
fn batch_only(key: &str) -> bool {
    key.contains('/') || key == "." || key == ".."
}

impl Remote {
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Remote> {
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

    fn path(&self, rest: &str) -> String {
        format!("/api/node/{}/{}/{rest}", self.uuid, self.kv)
    }

    fn key_path(&self, key: &str) -> String {
        self.path(&format!("key/{}", utf8_percent_encode(key, KEY_IN_PATH)))
    }

    /// The body of a 2xx answer; any other status is a [`Failure::Status`].
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, Failure> {
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
        let body = resp.bytes().map_err(|e| what(&e))?;
        if (200..300).contains(&status) {
            Ok(body.to_vec())
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

    pub fn keys(&self) -> Result<Vec<String>, Failure> {
        let v = self.get_json(&self.path("keys"))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| Some(k.as_str()?.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn typename(&self) -> Result<String, Failure> {
        let info = self.get_json(&self.path("info"))?;
        Ok(info["Base"]["TypeName"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Whether the version is committed, so refuses writes.
    pub fn locked(&self) -> Result<bool, Failure> {
        let v = self.get_json(&format!("/api/node/{}/commit", self.uuid))?;
        Ok(v["Locked"].as_bool().unwrap_or(false))
    }

    /// A key's value; None when the key is absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        if key.is_empty() {
            // The server stores no empty key, and `key/` names none.
            return Ok(None);
        }
        if batch_only(key) {
            return self.get_batched(key);
        }
        match self.call(reqwest::Method::GET, &self.key_path(key), None) {
            Ok(v) => Ok(Some(v)),
            Err(Failure::Status(404, _)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A key `key/<k>` cannot name, from `keyrangevalues` (which answers present keys only)
    /// over bounds that are no dot segments: the key itself when it holds '/', else the
    /// narrowest such bounds around "." or "..".
    fn get_batched(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        let (lo, hi) = match key {
            "." => ("-\u{10FFFF}", ".\u{1}"),
            ".." => (".\u{1}", "..\u{1}"),
            k => (k, k),
        };
        let path = self.path(&format!(
            "keyrangevalues/{}/{}",
            utf8_percent_encode(lo, KEY_IN_PATH),
            utf8_percent_encode(hi, KEY_IN_PATH)
        ));
        let body = self.call(reqwest::Method::GET, &path, None)?;
        let kvs = KeyValues::decode(body.as_slice())
            .map_err(|e| Failure::Transport(format!("GET {path}: not a KeyValues: {e}")))?;
        Ok(kvs
            .kvs
            .into_iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value))
    }

    pub fn put(&self, key: &str, value: Vec<u8>) -> Result<(), Failure> {
        if batch_only(key) {
            let kvs = KeyValues {
                kvs: vec![KeyValue {
                    key: key.to_string(),
                    value,
                }],
            };
            let path = self.path("keyvalues");
            return self
                .call(reqwest::Method::POST, &path, Some(kvs.encode_to_vec()))
                .map(drop);
        }
        self.call(reqwest::Method::POST, &self.key_path(key), Some(value))
            .map(drop)
    }

    pub fn deletable(key: &str) -> bool {
        !batch_only(key)
    }

    pub fn delete(&self, key: &str) -> Result<(), Failure> {
        if !Remote::deletable(key) {
            return Err(Failure::Unsupported(format!(
                "the server's API cannot delete the key {key:?} (it holds '/' or is a dot segment)"
            )));
        }
        self.call(reqwest::Method::DELETE, &self.key_path(key), None)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
