//! JSON bodies: ROI spans, annotation elements, merge/cleave/renumber label lists and point
//! lists (`Vec<u64>`, `Vec<[i32; 3]>` as the handlers take them), keyvalue key requests (JSON
//! and protobuf), neuronjson queries and records, and instance settings.

use proptest::prelude::*;
use serde_json::{Value, json};
use tessera_engine::datatype::Settings;
use tessera_engine::datatypes::annotation::element::parse_elements;
use tessera_engine::datatypes::keyvalue::formats::{requests_from_json, requests_from_proto};
use tessera_engine::datatypes::neuronjson::{query, record};
use tessera_engine::datatypes::roi::spans;

use crate::support::{self, apply, bytes, edits, measure, within};

/// serde_json builds at most a few dozen bytes of values per input byte (`[[],[],…]`).
fn bound(b: &[u8]) -> usize {
    128 * b.len() + 64 * 1024
}

fn check(b: &[u8]) {
    let (r, u) = measure(|| spans::parse(b));
    within(u, bound(b), "spans::parse");
    if let Ok(s) = r {
        let again = serde_json::to_vec(&s).unwrap();
        assert_eq!(spans::parse(&again).unwrap(), s);
        let n = spans::normalize(s);
        assert_eq!(spans::decode(&spans::encode(&n)).unwrap(), n);
    }
    let (r, u) = measure(|| parse_elements(b));
    within(u, bound(b), "parse_elements");
    if let Ok(e) = r {
        let again = serde_json::to_vec(&e).unwrap();
        assert_eq!(parse_elements(&again).unwrap(), e);
    }
    let (r, u) = measure(|| serde_json::from_slice::<Vec<u64>>(b));
    within(u, bound(b), "label list");
    if let Ok(l) = r {
        assert_eq!(
            serde_json::from_slice::<Vec<u64>>(&serde_json::to_vec(&l).unwrap()).unwrap(),
            l
        );
    }
    let (r, u) = measure(|| serde_json::from_slice::<Vec<[i32; 3]>>(b));
    within(u, bound(b), "point list");
    let _ = r;
    let (r, u) = measure(|| requests_from_json(b));
    within(u, bound(b), "requests_from_json");
    let _ = r;
    let (r, u) = measure(|| requests_from_proto(b));
    within(u, bound(b), "requests_from_proto");
    let _ = r;
    let (r, u) = measure(|| query::parse(b));
    within(u, bound(b), "neuronjson query");
    let _ = r;
    let (r, u) = measure(|| record::parse_posted(b, 12));
    within(u, bound(b), "neuronjson record");
    if let Ok(rec) = r {
        let again = serde_json::to_vec(&rec).unwrap();
        assert_eq!(record::parse_posted(&again, 12).unwrap(), rec);
    }
    let (r, u) = measure(|| Settings::from_json(b));
    within(u, bound(b), "Settings");
    let _ = r;
}

/// JSON values of the shapes these bodies take, and near misses.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-300i64..300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "PostSyn",
            "PreSyn",
            "Gap",
            "Note",
            "Unknown",
            "PostSynTo",
            "PreSynTo",
            "ConvergentTo",
            "GroupedWith",
            "bodyid",
            "x",
            "",
            "\u{0}",
            "Pos",
            "Kind",
            "Tags",
            "Prop",
            "Rels",
            "Rel",
            "To",
            "key",
            "byte_start",
            "byte_end",
            "versioned",
            "BlockSize",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "Pos",
                        "Kind",
                        "Tags",
                        "Prop",
                        "Rels",
                        "Rel",
                        "To",
                        "bodyid",
                        "key",
                        "byte_start",
                        "byte_end",
                        "versioned",
                        "type",
                        "x",
                        "bodyid_user",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

/// Valid bodies to mutate: spans, elements, label lists.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        b"[[0,0,1,5],[0,1,-3,3],[2,-1,0,0]]".to_vec(),
        br#"[{"Pos":[10,20,30],"Kind":"PreSyn","Tags":["a"],"Prop":{"c":"1"},"Rels":[{"Rel":"PreSynTo","To":[11,20,30]}]},{"Pos":[11,20,30],"Kind":"PostSyn"}]"#.to_vec(),
        b"[1, 2, 18446744073709551615]".to_vec(),
        br#"[{"key":"a","byte_start":0,"byte_end":3},"b"]"#.to_vec(),
        br#"{"bodyid":12,"type":"KC","status":["a",1,null]}"#.to_vec(),
        br#"{"versioned":"false","BlockSize":"64,64,64","Compression":"gzip:3"}"#.to_vec(),
    ]
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn json_arbitrary_bytes(b in bytes(512)) {
        check(&b);
    }

    #[test]
    fn json_structured(v in value()) {
        check(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn json_mutated(i in 0usize..6, e in edits(3)) {
        check(&apply(&seeds()[i], &e));
    }
}

#[test]
fn json_seeds_parse() {
    let s = seeds();
    assert_eq!(spans::parse(&s[0]).unwrap().len(), 3);
    assert_eq!(parse_elements(&s[1]).unwrap().len(), 2);
    assert_eq!(requests_from_json(&s[3]).unwrap().len(), 2);
    assert!(record::parse_posted(&s[4], 12).is_ok());
    assert!(Settings::from_json(&s[5]).is_ok());
    for b in s {
        check(&b);
    }
}

/// Deep nesting is refused by serde_json's recursion limit, without a stack overflow.
#[test]
fn json_deep_nesting() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    check(deep.as_bytes());
}
