//! The URL grammar: `x_y_z` points and sizes, labels and supervoxel ids, `blocks=` lists,
//! block-aligned boxes, `Range` headers, compression settings, and UUID specs (prefixes,
//! `uuid:branch`, `:master`, `branch~N`) resolved against a real version DAG.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use tessera_engine::Engine;
use tessera_engine::block::Stored;
use tessera_engine::block::geom::{parse_point, parse_size};
use tessera_engine::block::records::{aligned_box, parse_list};
use tessera_engine::compute::Shape;
use tessera_engine::datatype::parse_label;
use tessera_engine::datatype::range::{HttpRange, parse_range_header};
use tessera_engine::datatypes::annotation::element::parse_pos;
use tessera_engine::datatypes::tarsupervoxels::keys::parse_id;
use tessera_engine::engine::EngineOptions;
use tessera_storage::MemoryStore;

use crate::support::{self, measure, within};

/// A parse of a URL piece allocates at most a few times its length.
fn bound(s: &str) -> usize {
    64 * s.len() + 4096
}

/// Strings near the grammar: numbers (some huge, some signed) joined by '_' or ',', with
/// stray characters.
fn near() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        4 => (-99i64..1000).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{10,25}",
        1 => "[-+ 0-9a-fx.]{0,4}",
    ];
    (
        prop::collection::vec(num, 0..8),
        prop::sample::select(vec!["_", ",", "-", ":", "~", "__"]),
    )
        .prop_map(|(parts, sep)| parts.join(sep))
}

fn url_string() -> impl Strategy<Value = String> {
    prop_oneof![3 => near(), 1 => any::<String>(), 1 => "\\PC{0,40}"]
}

fn check(s: &str) {
    let (r, u) = measure(|| parse_point(s, "point"));
    within(u, bound(s), "parse_point");
    if let Ok(p) = r {
        assert_eq!(
            parse_point(&format!("{}_{}_{}", p[0], p[1], p[2]), "p").unwrap(),
            p
        );
        assert!(p.iter().all(|v| i32::try_from(*v).is_ok()));
    }
    for n in [2, 3] {
        let (r, u) = measure(|| parse_size(s, n, "size"));
        within(u, bound(s), "parse_size");
        if let Ok(v) = r {
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&d| d > 0));
            let again: Vec<String> = v.iter().map(|d| d.to_string()).collect();
            assert_eq!(parse_size(&again.join("_"), n, "size").unwrap(), v);
        }
    }
    let (r, u) = measure(|| parse_label(s));
    within(u, bound(s), "parse_label");
    if let Ok(l) = r {
        assert!(l > 0);
        assert_eq!(parse_label(&l.to_string()).unwrap(), l);
    }
    let (r, u) = measure(|| parse_id(s, "supervoxel"));
    within(u, bound(s), "parse_id");
    if let Ok(l) = r {
        assert_eq!(parse_id(&l.to_string(), "sv").unwrap(), l);
    }
    let (r, u) = measure(|| parse_list(s));
    within(u, bound(s), "parse_list");
    if let Ok(v) = r {
        let again: Vec<String> = v.iter().flatten().map(|c| c.to_string()).collect();
        assert_eq!(parse_list(&again.join(",")).unwrap(), v);
    }
    let (r, u) = measure(|| parse_pos(s));
    within(u, bound(s), "parse_pos");
    if let Ok(p) = r {
        assert_eq!(
            parse_pos(&format!("{}_{}_{}", p[0], p[1], p[2])).unwrap(),
            p
        );
    }
    let (r, u) = measure(|| parse_range_header(s));
    within(u, bound(s), "parse_range_header");
    if let Some(range) = r {
        let again = match range {
            HttpRange::Closed { start, end } => format!("bytes={start}-{end}"),
            HttpRange::From(start) => format!("bytes={start}-"),
            HttpRange::Suffix(n) => format!("bytes=-{n}"),
        };
        assert_eq!(parse_range_header(&again), Some(range));
        for len in [0, 1, 100, u64::MAX] {
            if let Ok((a, b)) = range.resolve(len) {
                assert!(a <= b && b < len);
            }
        }
    }
    let (r, u) = measure(|| Stored::from_setting(s, Shape::new(64, 64, 64)));
    within(u, bound(s), "Stored::from_setting");
    let _ = r;
}

fn check_box(size: &str, offset: &str) {
    let path = [size.to_string(), offset.to_string()];
    let (r, u) = measure(|| aligned_box(&path, [64, 64, 64], "subvolblocks"));
    within(u, bound(size) + bound(offset), "aligned_box");
    if let Ok(b) = r {
        assert!(b.is_block_aligned([64, 64, 64]));
        assert!(b.voxels() > 0);
    }
}

/// A repo with a few branches; its UUIDs share prefixes.
fn engine() -> &'static (Arc<Engine>, Vec<String>) {
    static ENGINE: OnceLock<(Arc<Engine>, Vec<String>)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let e = Engine::open(EngineOptions::single(Arc::new(MemoryStore::new()))).unwrap();
        let root = e
            .create_repo(
                "fuzz",
                "",
                Some(format!("{}1", "a".repeat(31)).as_str()),
                "",
            )
            .unwrap();
        e.commit(&root, None, vec![]).unwrap();
        let a = e
            .new_version(
                &root,
                None,
                String::new(),
                Some(format!("{}2", "a".repeat(31)).as_str()),
            )
            .unwrap();
        e.commit(&a, None, vec![]).unwrap();
        let b = e
            .new_version(
                &a,
                None,
                String::new(),
                Some(format!("ab{}", "0".repeat(30)).as_str()),
            )
            .unwrap();
        let dev = e
            .new_version(
                &root,
                Some("dev"),
                String::new(),
                Some(format!("b{}", "1".repeat(31)).as_str()),
            )
            .unwrap();
        (e, vec![root, a, b, dev])
    })
}

/// UUID specs built from real prefixes, branch names, ':' and '~'.
fn uuid_spec() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => (0usize..4, 0usize..=33).prop_map(|(i, n)| {
            let u = &engine().1[i];
            u[..n.min(u.len())].to_string()
        }),
        2 => prop::sample::select(vec!["master", "dev", "", ":", "~", "~0", "~1", "~2", "~99",
            "~18446744073709551616", "~-1", "nope", "A", "\u{e9}", "::"]).prop_map(String::from),
        1 => "\\PC{0,6}",
    ];
    prop::collection::vec(piece, 0..5).prop_map(|p| p.concat())
}

fn check_uuid(spec: &str) {
    let (e, uuids) = engine();
    let (r, u) = measure(|| e.resolve_uuid(spec));
    within(u, bound(spec) + 64 * 1024, "resolve_uuid");
    if let Ok(uuid) = r {
        assert!(uuids.contains(&uuid), "{spec:?} → {uuid}");
        // The resolved UUID is itself a spec that resolves to itself.
        assert_eq!(e.resolve_uuid(&uuid).unwrap(), uuid);
    }
}

proptest! {
    #![proptest_config(support::config(512))]

    #[test]
    fn url_pieces(s in url_string()) {
        check(&s);
    }

    #[test]
    fn url_boxes(size in url_string(), offset in url_string()) {
        check_box(&size, &offset);
    }

    #[test]
    fn url_uuid_specs(spec in uuid_spec()) {
        check_uuid(&spec);
    }
}

#[test]
fn url_known_specs_resolve() {
    let (e, u) = engine();
    assert_eq!(e.resolve_uuid("aaaa").ok(), None); // two UUIDs match
    assert_eq!(e.resolve_uuid(&u[0][..32]).unwrap(), u[0]);
    assert_eq!(e.resolve_uuid("ab").unwrap(), u[2]);
    assert_eq!(e.resolve_uuid("b:dev").unwrap(), u[3]);
    assert!(e.resolve_uuid("ab:master~1").is_ok());
    check("1_2_3");
    check("bytes=0-9");
    check_box("64_64_64", "0_-64_128");
}
