//! The record frames of a transfer (`engine::transfer::read_frames`), which a receiver reads
//! from whoever holds write rights: arbitrary bytes and mutated valid bodies never panic,
//! allocate no more than a small multiple of the body, and whatever parses re-encodes to the
//! same bytes.

use proptest::prelude::*;
use tessera_engine::engine::transfer::{
    KIND_BLOB, KIND_DATA, KIND_LOG, RecordId, read_frames, write_frame,
};

use crate::support::{self, apply, bytes, edits, measure, within};

fn seed() -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, node, key, value) in [
        (
            KIND_DATA,
            "4a1f",
            b"\xba\x00\x80\x00\x00\x00".to_vec(),
            vec![0u8; 300],
        ),
        (KIND_DATA, "", b"\xef".to_vec(), vec![1u8]),
        (
            KIND_LOG,
            "4a1f",
            7u64.to_be_bytes().to_vec(),
            br#"{"Action":"merge"}"#.to_vec(),
        ),
        (KIND_BLOB, "", vec![9u8; 16], b"blob".to_vec()),
    ] {
        let id = RecordId {
            i: "seg".into(),
            kind,
            node: node.into(),
            key,
        };
        write_frame(&mut body, &id, &value);
    }
    body
}

fn check(b: &[u8]) {
    let (got, u) = measure(|| read_frames(b));
    within(u, 4 * b.len() + 4096, "transfer::read_frames");
    if let Ok(records) = got {
        let mut again = Vec::new();
        for (id, value) in &records {
            write_frame(&mut again, id, value);
        }
        assert_eq!(again, b, "parsed frames re-encode to the same body");
    }
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn transfer_frames_arbitrary_bytes(b in bytes(2048)) {
        check(&b);
    }

    #[test]
    fn transfer_frames_mutated(e in edits(4)) {
        check(&apply(&seed(), &e));
    }
}

#[test]
fn transfer_frames_seed_parses() {
    assert_eq!(read_frames(&seed()).unwrap().len(), 4);
}
