//! The few DVID HTTP calls `tessera load` makes, over a blocking client.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};

/// Attempts per request when the server is unreachable or answers 503 (busy).
const ATTEMPTS: u32 = 3;

pub struct Client {
    base: String,
    uuid: String,
    http: reqwest::blocking::Client,
}

/// What `tessera load` needs of an existing instance.
pub struct InstanceInfo {
    pub typename: String,
    pub block: [usize; 3],
    /// The first word of its compression, e.g. `"jpeg"`, to give its pyramid levels.
    pub compression: Option<String>,
}

impl Client {
    pub fn new(server: &str, uuid: &str) -> anyhow::Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--server must be an http:// URL, not {server:?}");
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base,
            uuid: uuid.to_string(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request (retried on connection failures and 503), and turns any answer but
    /// 200 into an error carrying the server's message.
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {url}");
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            match req.send() {
                Ok(resp) if resp.status().as_u16() == 503 && attempt < ATTEMPTS => {}
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp
                        .bytes()
                        .with_context(|| format!("{what}: reading the answer"))?;
                    if !status.is_success() {
                        let text = String::from_utf8_lossy(&bytes);
                        bail!("{what}: the server answered {status}: {}", text.trim());
                    }
                    return Ok(bytes.to_vec());
                }
                Err(e) if (e.is_connect() || e.is_timeout()) && attempt < ATTEMPTS => {
                    tracing::debug!("{what}: {e}; retrying");
                }
                Err(e) => {
                    let mut msg = format!("{what}: {e}");
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(&format!(": {s}"));
                        src = s.source();
                    }
                    bail!(msg);
                }
            }
            std::thread::sleep(Duration::from_millis(500 << attempt));
            attempt += 1;
        }
    }

    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let body = self.send(reqwest::Method::GET, path, None)?;
        serde_json::from_slice(&body).with_context(|| format!("GET {}{path}: not JSON", self.base))
    }

    /// Names of the repo's data instances.
    pub fn instance_names(&self) -> anyhow::Result<Vec<String>> {
        let info = self.get_json(&format!("/api/repo/{}/info", self.uuid))?;
        Ok(info["DataInstances"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    pub fn instance_info(&self, name: &str) -> anyhow::Result<InstanceInfo> {
        let path = format!("/api/node/{}/{name}/info", self.uuid);
        let info = self.get_json(&path)?;
        let typename = info["Base"]["TypeName"]
            .as_str()
            .with_context(|| format!("{path}: no Base.TypeName in {info}"))?
            .to_string();
        let block = info["Extended"]["BlockSize"]
            .as_array()
            .filter(|b| b.len() == 3)
            .and_then(|b| {
                let v: Option<Vec<usize>> = b
                    .iter()
                    .map(|d| d.as_u64().filter(|&d| d > 0).map(|d| d as usize))
                    .collect();
                v.map(|v| [v[0], v[1], v[2]])
            })
            .with_context(|| {
                format!("{path}: instance {name} ({typename}) has no Extended.BlockSize [x, y, z]")
            })?;
        let compression = info["Base"]["Compression"]
            .as_str()
            .and_then(|c| c.split_whitespace().next())
            .map(|c| c.trim_end_matches(',').to_ascii_lowercase())
            .filter(|c| ["none", "lz4", "gzip", "jpeg", "snappy"].contains(&c.as_str()));
        Ok(InstanceInfo {
            typename,
            block,
            compression,
        })
    }

    pub fn create_instance(
        &self,
        typename: &str,
        name: &str,
        settings: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let mut body = json!({"typename": typename, "dataname": name});
        for (k, v) in settings {
            body[*k] = Value::String(v.clone());
        }
        self.send(
            reqwest::Method::POST,
            &format!("/api/repo/{}/instance", self.uuid),
            Some(Bytes::from(body.to_string())),
        )
        .with_context(|| format!("creating instance {name}"))?;
        Ok(())
    }

    /// `POST raw/0_1_2/<size>/<offset>`: one block-aligned box of voxels.
    pub fn post_raw(
        &self,
        name: &str,
        size: [usize; 3],
        offset: [i64; 3],
        body: Bytes,
    ) -> anyhow::Result<()> {
        let path = format!(
            "/api/node/{}/{name}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
            self.uuid, size[0], size[1], size[2], offset[0], offset[1], offset[2]
        );
        self.send(reqwest::Method::POST, &path, Some(body))?;
        Ok(())
    }
}
