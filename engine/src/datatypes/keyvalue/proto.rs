//! The keyvalue protobuf messages (proto3, package `proto`; spec §4.5), derived with prost so no
//! `protoc` is needed. Field numbers are the wire contract with DVID clients.

use prost::Message;

use crate::{Error, Result};

/// One key and its value.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A key whose value is wanted only from `byte_start` through `byte_end` (inclusive).
#[derive(Clone, PartialEq, Message)]
pub struct KeyRange {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    pub byte_start: u64,
    #[prost(uint64, tag = "3")]
    pub byte_end: u64,
}

/// The request body of `GET keyvalues`: whole values for `keys`, slices for `key_ranges`.
#[derive(Clone, PartialEq, Message)]
pub struct Keys {
    #[prost(string, repeated, tag = "1")]
    pub keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub key_ranges: Vec<KeyRange>,
}

/// The response of `GET keyvalues` / `GET keyrangevalues` and the body of `POST keyvalues`.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValues {
    #[prost(message, repeated, tag = "1")]
    pub kvs: Vec<KeyValue>,
}

/// Decodes a protobuf request body, naming the expected message when it is malformed.
pub fn decode<M: Message + Default>(body: &[u8], what: &str) -> Result<M> {
    M::decode(body)
        .map_err(|e| Error::bad(format!("malformed protobuf {what} in request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_wire_bytes_match_proto3() {
        let kv = KeyValue {
            key: "a".into(),
            value: vec![1, 2],
        };
        // field 1 (len-delimited) "a", field 2 (len-delimited) [1, 2]
        assert_eq!(kv.encode_to_vec(), [0x0a, 1, b'a', 0x12, 2, 1, 2]);
        let kvs = KeyValues { kvs: vec![kv] };
        assert_eq!(kvs.encode_to_vec(), [0x0a, 7, 0x0a, 1, b'a', 0x12, 2, 1, 2]);
    }

    #[test]
    fn keys_wire_bytes_match_proto3() {
        let keys = Keys {
            keys: vec!["x".into()],
            key_ranges: vec![KeyRange {
                key: "y".into(),
                byte_start: 1,
                byte_end: 300,
            }],
        };
        let bytes = keys.encode_to_vec();
        // field 1 "x"; field 2 message { field 1 "y", field 2 varint 1, field 3 varint 300 }
        assert_eq!(
            bytes,
            [
                0x0a, 1, b'x', 0x12, 8, 0x0a, 1, b'y', 0x10, 1, 0x18, 0xac, 0x02
            ]
        );
        assert_eq!(decode::<Keys>(&bytes, "Keys").unwrap(), keys);
    }

    #[test]
    fn round_trips() {
        let kvs = KeyValues {
            kvs: vec![
                KeyValue {
                    key: "k1".into(),
                    value: b"v1".to_vec(),
                },
                KeyValue {
                    key: "".into(),
                    value: vec![],
                },
                KeyValue {
                    key: "ключ".into(),
                    value: vec![0, 255, 7],
                },
            ],
        };
        let back: KeyValues = decode(&kvs.encode_to_vec(), "KeyValues").unwrap();
        assert_eq!(back, kvs);
        let empty: Keys = decode(&[], "Keys").unwrap();
        assert!(empty.keys.is_empty() && empty.key_ranges.is_empty());
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        // Truncated length-delimited field.
        let err = decode::<KeyValues>(&[0x0a, 5, 1], "KeyValues").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("KeyValues"), "{err}");
        // A key that is not UTF-8.
        let err = decode::<Keys>(&[0x0a, 1, 0xff], "Keys").unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
