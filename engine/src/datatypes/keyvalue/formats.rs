//! Batch request and response formats of `GET keyvalues` and `GET keyrangevalues` (spec §4.5):
//! protobuf `Keys`/`KeyValues`, the JSON key list and JSON object, and tar archives. Pure
//! functions over bytes; the handlers do the reads.

use prost::Message;
use serde_json::Value;
use tar::{Builder, EntryType, Header};

use super::proto::{KeyValue, KeyValues, Keys};
use super::range::ByteRange;
use crate::datatype::Query;
use crate::{Error, Result};

/// How a batch read answers, chosen by query flags: `json=true`, `tar=true` or `jsontar=true`,
/// else protobuf (`protobuf=true` names the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    /// A JSON object of raw values; `check` validates whole values as JSON.
    Json {
        check: bool,
    },
    Tar,
}

impl Format {
    pub fn from_query(q: &Query) -> Result<Format> {
        let tar = q.flag("tar")? || q.flag("jsontar")?;
        let json = q.flag("json")?;
        match (json, tar) {
            (true, true) => Err(Error::bad("can only specify tar or json output, not both")),
            (true, false) => Ok(Format::Json {
                check: q.flag("check")?,
            }),
            (false, true) => Ok(Format::Tar),
            (false, false) => Ok(Format::Protobuf),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/octet-stream",
            Format::Json { .. } => "application/json",
            Format::Tar => "application/tar",
        }
    }
}

/// One value a batch read asks for: a key, optionally only a byte range of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    pub key: String,
    pub range: Option<ByteRange>,
}

impl KeyRequest {
    pub fn whole(key: impl Into<String>) -> Self {
        KeyRequest {
            key: key.into(),
            range: None,
        }
    }
}

/// The requests of a protobuf `Keys` body, in order: every `keys` entry, then every
/// `key_ranges` entry.
pub fn requests_from_proto(body: &[u8]) -> Result<Vec<KeyRequest>> {
    let keys: Keys = super::proto::decode(body, "Keys")?;
    let mut out: Vec<KeyRequest> = keys.keys.into_iter().map(KeyRequest::whole).collect();
    for kr in keys.key_ranges {
        let range = ByteRange::new(kr.byte_start, kr.byte_end)
            .map_err(|e| Error::bad(format!("key range of key {:?}: {e}", kr.key)))?;
        out.push(KeyRequest {
            key: kr.key,
            range: Some(range),
        });
    }
    Ok(out)
}

/// The requests of a JSON body: an array whose elements are key strings or
/// `{"key": k[, "byte_start": a, "byte_end": b]}` objects.
pub fn requests_from_json(body: &[u8]) -> Result<Vec<KeyRequest>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::bad(format!(
            "request body must be a JSON array of keys or {{\"key\",\"byte_start\",\"byte_end\"}} objects: {e}"
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(Error::bad(format!(
            "request body must be a JSON array of keys, got {}",
            kind(&value)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| json_request(i, v))
        .collect()
}

fn json_request(i: usize, v: &Value) -> Result<KeyRequest> {
    match v {
        Value::String(k) => Ok(KeyRequest::whole(k.as_str())),
        Value::Object(obj) => {
            let key = obj.get("key").and_then(Value::as_str).ok_or_else(|| {
                Error::bad(format!(
                    "element {i} of the request body has no string \"key\""
                ))
            })?;
            let bound = |name: &str| -> Result<Option<u64>> {
                match obj.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
                    Some(other) => Err(Error::bad(format!(
                        "{name} of key {key:?} must be a non-negative integer, got {other}"
                    ))),
                }
            };
            let range = match (bound("byte_start")?, bound("byte_end")?) {
                (None, None) => None,
                (Some(s), Some(e)) => Some(
                    ByteRange::new(s, e)
                        .map_err(|err| Error::bad(format!("key {key:?}: {err}")))?,
                ),
                _ => {
                    return Err(Error::bad(format!(
                        "key {key:?} needs both byte_start and byte_end, or neither"
                    )));
                }
            };
            Ok(KeyRequest {
                key: key.to_string(),
                range,
            })
        }
        other => Err(Error::bad(format!(
            "element {i} of the request body must be a key string or an object, got {}",
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One answer of a batch read: the (possibly sliced) value, or `None` for a missing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub value: Option<Vec<u8>>,
    /// Whether `value` is a byte range of the stored value (JSON output always checks those).
    pub ranged: bool,
}

/// Encodes the answers in `format`, in order.
pub fn encode(format: Format, items: &[Item]) -> Result<Vec<u8>> {
    match format {
        Format::Protobuf => Ok(encode_protobuf(items)),
        Format::Json { check } => encode_json(items, check),
        Format::Tar => encode_tar(items),
    }
}

/// A protobuf `KeyValues`; missing keys get an empty value.
pub fn encode_protobuf(items: &[Item]) -> Vec<u8> {
    KeyValues {
        kvs: items
            .iter()
            .map(|it| KeyValue {
                key: it.key.clone(),
                value: it.value.clone().unwrap_or_default(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// `{"k1":<value>,"k2":<value>}` with each value inserted verbatim and no whitespace added;
/// a missing key or an empty value is written as `{}`. Values are validated as JSON when
/// `check` is set, and byte-range slices always.
pub fn encode_json(items: &[Item], check: bool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        2 + items
            .iter()
            .map(|it| it.key.len() + it.value.as_ref().map_or(2, Vec::len) + 4)
            .sum::<usize>(),
    );
    out.push(b'{');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &it.key).expect("strings serialize");
        out.push(b':');
        match it.value.as_deref() {
            None | Some([]) => out.extend_from_slice(b"{}"),
            Some(v) => {
                if check || it.ranged {
                    serde_json::from_slice::<serde::de::IgnoredAny>(v).map_err(|e| {
                        let what = if it.ranged {
                            "the requested byte range of"
                        } else {
                            "the value of"
                        };
                        Error::bad(format!("{what} key {:?} is not valid JSON: {e}", it.key))
                    })?;
                }
                out.extend_from_slice(v);
            }
        }
    }
    out.push(b'}');
    Ok(out)
}

/// A tar archive with one regular file per answer, named by its key (missing keys give empty
/// files).
pub fn encode_tar(items: &[Item]) -> Result<Vec<u8>> {
    let mut b = Builder::new(Vec::new());
    for it in items {
        append_file(&mut b, &it.key, it.value.as_deref().unwrap_or_default())
            .map_err(|e| Error::Internal(format!("writing tar entry for key {:?}: {e}", it.key)))?;
    }
    b.into_inner()
        .map_err(|e| Error::Internal(format!("finishing tar archive: {e}")))
}

const NAME_LEN: usize = 100;

/// Appends a file whose name is `name` verbatim. Keys are arbitrary strings, so the name is
/// written as raw bytes rather than through `tar`'s path checks (which refuse e.g. `..`);
/// names longer than the header's 100 bytes get a GNU long-name entry first.
fn append_file(b: &mut Builder<Vec<u8>>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let name = name.as_bytes();
    if name.len() > NAME_LEN {
        let mut payload = name.to_vec();
        payload.push(0);
        let mut long = header(b"././@LongLink", payload.len() as u64, 0o644);
        long.set_entry_type(EntryType::GNULongName);
        long.set_cksum();
        b.append(&long, payload.as_slice())?;
    }
    let mut h = header(&name[..name.len().min(NAME_LEN)], data.len() as u64, 0o755);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    b.append(&h, data)
}

fn header(name: &[u8], size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read;

    use super::super::proto::{KeyRange, Keys};
    use super::*;

    fn item(key: &str, value: Option<&[u8]>) -> Item {
        Item {
            key: key.into(),
            value: value.map(<[u8]>::to_vec),
            ranged: false,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Query {
        Query(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        )
    }

    #[test]
    fn formats_from_flags() {
        assert_eq!(Format::from_query(&query(&[])).unwrap(), Format::Protobuf);
        assert_eq!(
            Format::from_query(&query(&[("protobuf", "true")])).unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            Format::from_query(&query(&[("json", "true"), ("check", "true")])).unwrap(),
            Format::Json { check: true }
        );
        assert_eq!(
            Format::from_query(&query(&[("json", "true"), ("check", "false")])).unwrap(),
            Format::Json { check: false }
        );
        assert_eq!(
            Format::from_query(&query(&[("tar", "true")])).unwrap(),
            Format::Tar
        );
        assert_eq!(
            Format::from_query(&query(&[("jsontar", "true")])).unwrap(),
            Format::Tar
        );
        assert_eq!(
            Format::from_query(&query(&[("json", "false")])).unwrap(),
            Format::Protobuf
        );
        let err = Format::from_query(&query(&[("json", "true"), ("jsontar", "true")])).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn proto_requests_keep_order() {
        let body = Keys {
            keys: vec!["b".into(), "a".into()],
            key_ranges: vec![KeyRange {
                key: "c".into(),
                byte_start: 0,
                byte_end: 2,
            }],
        }
        .encode_to_vec();
        assert_eq!(
            requests_from_proto(&body).unwrap(),
            [
                KeyRequest::whole("b"),
                KeyRequest::whole("a"),
                KeyRequest {
                    key: "c".into(),
                    range: Some(ByteRange { start: 0, end: 2 })
                }
            ]
        );
        let bad = Keys {
            keys: vec![],
            key_ranges: vec![KeyRange {
                key: "c".into(),
                byte_start: 3,
                byte_end: 2,
            }],
        }
        .encode_to_vec();
        assert_eq!(requests_from_proto(&bad).unwrap_err().status(), 400);
        assert_eq!(requests_from_proto(b"\xff\xff").unwrap_err().status(), 400);
    }

    #[test]
    fn json_requests() {
        let reqs = requests_from_json(
            br#"["a", {"key":"b"}, {"key":"c","byte_start":1,"byte_end":4}, {"key":"d","byte_start":null,"byte_end":null}]"#,
        )
        .unwrap();
        assert_eq!(
            reqs,
            [
                KeyRequest::whole("a"),
                KeyRequest::whole("b"),
                KeyRequest {
                    key: "c".into(),
                    range: Some(ByteRange { start: 1, end: 4 })
                },
                KeyRequest::whole("d"),
            ]
        );
        assert!(requests_from_json(b"[]").unwrap().is_empty());
        for (body, needle) in [
            (&b"not json"[..], "JSON array"),
            (b"{\"a\":1}", "an object"),
            (b"[1]", "a number"),
            (b"[{\"byte_start\":1}]", "\"key\""),
            (b"[{\"key\":\"a\",\"byte_start\":1}]", "both"),
            (
                b"[{\"key\":\"a\",\"byte_start\":-1,\"byte_end\":2}]",
                "non-negative",
            ),
            (
                b"[{\"key\":\"a\",\"byte_start\":3,\"byte_end\":2}]",
                "greater than",
            ),
        ] {
            let err = requests_from_json(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn json_output_is_verbatim_and_ordered() {
        let items = [
            item("z", Some(br#"{"a": 1}"#)),
            item("missing", None),
            item("empty", Some(b"")),
            item("q\"uote", Some(b"[1,2]")),
        ];
        let out = encode_json(&items, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"z":{"a": 1},"missing":{},"empty":{},"q\"uote":[1,2]}"#
        );
        assert_eq!(encode_json(&[], false).unwrap(), b"{}");
    }

    #[test]
    fn json_output_checks() {
        let bad = [item("k", Some(b"{not json"))];
        assert_eq!(encode_json(&bad, false).unwrap(), b"{\"k\":{not json}");
        let err = encode_json(&bad, true).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("\"k\""), "{err}");
        let ranged = [Item {
            key: "r".into(),
            value: Some(b"{\"a\"".to_vec()),
            ranged: true,
        }];
        assert_eq!(encode_json(&ranged, false).unwrap_err().status(), 400);
        let ranged_ok = [Item {
            key: "r".into(),
            value: Some(b"12".to_vec()),
            ranged: true,
        }];
        assert_eq!(encode_json(&ranged_ok, false).unwrap(), b"{\"r\":12}");
    }

    #[test]
    fn protobuf_output() {
        let out = encode_protobuf(&[item("a", Some(b"1")), item("m", None)]);
        let kvs: KeyValues = super::super::proto::decode(&out, "KeyValues").unwrap();
        assert_eq!(
            kvs.kvs,
            [
                KeyValue {
                    key: "a".into(),
                    value: b"1".to_vec()
                },
                KeyValue {
                    key: "m".into(),
                    value: vec![]
                }
            ]
        );
    }

    #[test]
    fn tar_output_round_trips() {
        let long = "k".repeat(150);
        let items = [
            item("b", Some(b"hello")),
            item("missing", None),
            item("..", Some(b"dots")),
            item(&long, Some(b"long name")),
            item("a", Some(&[0u8, 1, 2][..])),
        ];
        let tar = encode_tar(&items).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut got = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            assert_eq!(e.header().entry_type(), EntryType::Regular);
            assert_eq!(e.header().mode().unwrap(), 0o755);
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            got.push((name, data));
        }
        let want: Vec<(String, Vec<u8>)> = items
            .iter()
            .map(|it| (it.key.clone(), it.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(got, want);
        // An empty request gives an empty (but valid) archive.
        let empty = encode_tar(&[]).unwrap();
        assert_eq!(
            tar::Archive::new(empty.as_slice())
                .entries()
                .unwrap()
                .count(),
            0
        );
    }
}
