//! Push and pull of repos between servers (`tessera push`, `tessera pull`): what moves, how the
//! two sides agree on what the receiver lacks, and the wire shapes of the exchange.
//!
//! A transfer moves *records*: one stored value of one instance, named by the instance, its
//! kind (versioned data, mutation-log entry, blob), the node that wrote it (by UUID, since
//! version ids are local to a server) and its key; each carries the BLAKE3 hash of its stored
//! bytes, the same hash `ContentStore` names block objects by. The sender lists its records in
//! *groups* (a run of keys with the XOR of their record digests); the receiver digests the same
//! key range of its own records, so only groups that differ are listed record by record, and of
//! those only records whose hash the receiver does not hold anywhere move. The CLI drives both
//! servers over HTTP: `export` is the sender's half, `import` the receiver's.

mod export;
mod import;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::block::held::Held;
use crate::{Error, Result};

pub use import::{Begin, Missing, Received};

/// A versioned data value (key: the instance's tkey).
pub const KIND_DATA: u8 = 1;
/// A mutation-log record (key: its sequence number, u64 BE).
pub const KIND_LOG: u8 = 2;
/// A blob of the instance's store (key: its 16-byte FNV-1 hash).
pub const KIND_BLOB: u8 = 3;

/// Records per group at most: small enough that a changed group lists little (a few KiB of
/// headers), large enough that the group list of an unchanged repo is a small fraction of its
/// bytes (about 150 bytes of JSON per group).
const GROUP_UNITS: usize = 32;
/// Bytes of values per group at most.
const GROUP_BYTES: u64 = 2 << 20;

/// Which versions move (DVID's `transmit=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transmit {
    /// Every version of the repo.
    #[default]
    All,
    /// The version and its ancestors.
    Branch,
    /// Only what is visible at the version, as the single root of a new repo.
    Flatten,
}

/// What a transfer sends: the sender reads it from every request of the exchange.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Selection {
    #[serde(default)]
    pub transmit: Transmit,
    /// The version `branch` and `flatten` send; the node the URL names when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// Instance names; every instance when empty.
    #[serde(default)]
    pub data: Vec<String>,
    /// Only blocks meeting this ROI instance (read at the version).
    #[serde(default)]
    pub roi: Option<String>,
    /// Only blocks meeting these scale-0 voxels, `[x0, y0, z0, x1, y1, z1]`, end exclusive.
    #[serde(default, rename = "box")]
    pub bbox: Option<[i64; 6]>,
    /// Only blocks of scales up to this one.
    #[serde(default)]
    pub max_scale: Option<u8>,
    /// The manifest's nodes, which the CLI pins for the rest of a run, so that a node made on
    /// the sender meanwhile waits for the next transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

/// A node as a transfer describes it: parents by UUID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub uuid: String,
    pub branch: String,
    pub note: String,
    pub log: Vec<String>,
    pub locked: bool,
    pub parents: Vec<String>,
    pub created: String,
    pub updated: String,
}

/// An instance as a transfer describes it (everything but its server-local id and store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub name: String,
    pub type_name: String,
    pub data_uuid: String,
    pub versioned: bool,
    pub compression: String,
    pub checksum: String,
    pub tags: BTreeMap<String, String>,
    pub syncs: Vec<String>,
    pub config: Value,
}

/// The first message of a transfer: the repo as the receiver will hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The receiver's repo root: the sender's, or the flattened version.
    pub root: String,
    pub alias: String,
    pub description: String,
    pub properties: serde_json::Map<String, Value>,
    pub log: Vec<String>,
    pub mutation_id: u64,
    pub transmit: Transmit,
    /// Parents before children.
    pub nodes: Vec<NodeRecord>,
    pub instances: Vec<InstanceRecord>,
    /// The sender's instances the selection leaves out.
    #[serde(default)]
    pub omitted: Vec<String>,
    /// What block instances hold when the selection filters blocks.
    pub held: Option<Held>,
    pub records: u64,
    pub bytes: u64,
}

/// Bytes carried as base64 in JSON.
pub mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// One record's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordId {
    /// Instance name.
    pub i: String,
    pub kind: u8,
    /// The node that wrote it; "" for a labelmap's repo-wide values and for blobs.
    pub node: String,
    #[serde(with = "b64")]
    pub key: Vec<u8>,
}

/// A record as listed: its name, hash and size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub id: RecordId,
    #[serde(with = "b64")]
    pub hash: Vec<u8>,
    pub len: u64,
}

/// A run of keys `lo..=hi` of one instance and kind (and node, for log records), with the
/// number of records, their bytes and the XOR of their digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub i: String,
    pub kind: u8,
    pub node: String,
    #[serde(with = "b64")]
    pub lo: Vec<u8>,
    #[serde(with = "b64")]
    pub hi: Vec<u8>,
    pub count: u64,
    pub bytes: u64,
    #[serde(with = "b64")]
    pub digest: Vec<u8>,
}

/// Where a group listing goes on: the instance (index in the manifest), kind, node (index,
/// for log records) and the last key listed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cursor {
    pub i: usize,
    pub kind: u8,
    pub node: usize,
    #[serde(default, with = "opt_b64")]
    pub after: Option<Vec<u8>>,
}

mod opt_b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        b: &Option<Vec<u8>>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => STANDARD
                .decode(s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupPage {
    pub groups: Vec<Group>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<Cursor>,
}

/// The XOR of record digests over a run of records: equal on both sides exactly when they
/// hold the same records (up to BLAKE3 collisions), whatever order they were visited in.
#[derive(Debug, Clone, Default)]
struct Digest {
    acc: [u8; 32],
    count: u64,
    bytes: u64,
}

impl Digest {
    fn add(&mut self, kind: u8, node: &str, key: &[u8], value: &[u8]) {
        let hash = blake3::hash(value);
        let mut h = blake3::Hasher::new();
        h.update(&[kind, node.len() as u8]);
        h.update(node.as_bytes());
        h.update(&(key.len() as u32).to_be_bytes());
        h.update(key);
        h.update(hash.as_bytes());
        for (a, b) in self.acc.iter_mut().zip(h.finalize().as_bytes()) {
            *a ^= b;
        }
        self.count += 1;
        self.bytes += value.len() as u64;
    }

    fn matches(&self, g: &Group) -> bool {
        self.count == g.count && self.bytes == g.bytes && self.acc[..] == g.digest[..]
    }
}

/// Longest key a record may carry.
const MAX_KEY: usize = 1 << 16;

/// Appends one record to a body of `POST transfer/records`: kind u8, instance name (u16 BE
/// length), node UUID (u8 length), key (u32 BE length), BLAKE3 hash of the value (32 bytes),
/// value (u32 BE length).
pub fn write_frame(out: &mut Vec<u8>, id: &RecordId, value: &[u8]) {
    out.push(id.kind);
    out.extend_from_slice(&(id.i.len() as u16).to_be_bytes());
    out.extend_from_slice(id.i.as_bytes());
    out.push(id.node.len() as u8);
    out.extend_from_slice(id.node.as_bytes());
    out.extend_from_slice(&(id.key.len() as u32).to_be_bytes());
    out.extend_from_slice(&id.key);
    out.extend_from_slice(blake3::hash(value).as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// Parses a body of frames, checking each value against its hash. Any malformed, truncated
/// or tampered frame fails the whole body, naming the record.
pub fn read_frames(mut body: &[u8]) -> Result<Vec<(RecordId, Vec<u8>)>> {
    fn take<'a>(body: &mut &'a [u8], n: usize, what: &str, at: usize) -> Result<&'a [u8]> {
        if body.len() < n {
            return Err(Error::bad(format!(
                "transfer record {at} is truncated in its {what}"
            )));
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Ok(head)
    }
    let text = |b: &[u8], what: &str, at: usize| {
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::bad(format!("transfer record {at}: its {what} is not UTF-8")))
    };
    let mut out = Vec::new();
    while !body.is_empty() {
        let at = out.len();
        let kind = take(&mut body, 1, "kind", at)?[0];
        if !(KIND_DATA..=KIND_BLOB).contains(&kind) {
            return Err(Error::bad(format!(
                "transfer record {at} has unknown kind {kind}"
            )));
        }
        let n = u16::from_be_bytes(take(&mut body, 2, "instance", at)?.try_into().expect("2"));
        let i = text(take(&mut body, n as usize, "instance", at)?, "instance", at)?;
        let n = take(&mut body, 1, "node", at)?[0];
        let node = text(take(&mut body, n as usize, "node", at)?, "node", at)?;
        let n = u32::from_be_bytes(take(&mut body, 4, "key", at)?.try_into().expect("4"));
        if n as usize > MAX_KEY {
            return Err(Error::bad(format!(
                "transfer record {at} has a {n}-byte key"
            )));
        }
        let key = take(&mut body, n as usize, "key", at)?.to_vec();
        let hash: [u8; 32] = take(&mut body, 32, "hash", at)?.try_into().expect("32");
        let n = u32::from_be_bytes(take(&mut body, 4, "value", at)?.try_into().expect("4"));
        let value = take(&mut body, n as usize, "value", at)?.to_vec();
        let id = RecordId { i, kind, node, key };
        if blake3::hash(&value).as_bytes() != &hash {
            return Err(Error::bad(format!(
                "transfer record {at} (instance {:?}, node {:?}) does not match its hash: \
                 refused, nothing of this request was written",
                id.i, id.node
            )));
        }
        out.push((id, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &[u8]) -> RecordId {
        RecordId {
            i: "grayscale".into(),
            kind: KIND_DATA,
            node: "abc".into(),
            key: key.to_vec(),
        }
    }

    #[test]
    fn frames_round_trip_and_every_damage_is_refused() {
        let mut body = Vec::new();
        write_frame(&mut body, &id(b"k1"), b"\x00value one");
        let first = body.len();
        write_frame(&mut body, &id(b""), b"\x01");
        let back = read_frames(&body).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], (id(b"k1"), b"\x00value one".to_vec()));
        assert_eq!(back[1], (id(b""), b"\x01".to_vec()));
        for cut in 0..body.len() {
            // Only a cut between whole frames parses.
            match read_frames(&body[..cut]) {
                Ok(r) => assert!(
                    (cut, r.len()) == (0, 0) || (cut, r.len()) == (first, 1),
                    "cut at {cut}"
                ),
                Err(e) => assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}"),
            }
        }
        for at in 0..body.len() {
            let mut bad = body.clone();
            bad[at] ^= 0x40;
            // A flipped bit changes a value (hash mismatch), a length (truncation or
            // mismatch) or a name; it never parses into the same records.
            if let Ok(r) = read_frames(&bad) {
                assert_ne!(r, back, "flip at {at}");
            }
        }
    }

    #[test]
    fn digests_ignore_order_and_see_every_change() {
        let g = |d: &Digest| Group {
            i: String::new(),
            kind: 0,
            node: String::new(),
            lo: vec![],
            hi: vec![],
            count: d.count,
            bytes: d.bytes,
            digest: d.acc.to_vec(),
        };
        let (mut a, mut b, mut c) = (Digest::default(), Digest::default(), Digest::default());
        a.add(KIND_DATA, "n1", b"k", b"v1");
        a.add(KIND_DATA, "n2", b"k", b"v2");
        b.add(KIND_DATA, "n2", b"k", b"v2");
        b.add(KIND_DATA, "n1", b"k", b"v1");
        c.add(KIND_DATA, "n1", b"k", b"v2");
        c.add(KIND_DATA, "n2", b"k", b"v1");
        assert!(a.matches(&g(&b)));
        assert!(!a.matches(&g(&c)));
    }
}
