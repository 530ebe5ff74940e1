//! Type-specific keys (TKeys) of keyvalue data and the key ranges scanned over them.
//!
//! DVID's TKey for key `k` is `177 ‖ 0x01 ‖ k ‖ 0x00` (spec §2.1). Tessera's versioned layer
//! escapes tkeys so that none is a prefix of another and byte order is kept, so the TKey here is
//! simply `177 ‖ k`: ordering by TKey is ordering by key bytes, and an inclusive tkey range
//! `[tkey(k1), tkey(k2)]` holds exactly the keys `k1 <= k <= k2` (`"ca"` is not `<= "c"`).
//!
//! Keys are bytes, as in DVID (a Go string holds any bytes): `key/%FF%FE` and `key/%FF%FD` are
//! two keys. Where a key must become text (JSON listings, records, messages) its bytes that are
//! not UTF-8 show as U+FFFD, as Go's JSON encoding writes them.

use tessera_storage::{VersionedStore, View};

use crate::{Error, Result};

/// The TKey class byte of keyvalue entries (DVID's `keyStandard`).
pub const CLASS: u8 = 177;

/// The TKey of `key`.
pub fn tkey(key: impl AsRef<[u8]>) -> Vec<u8> {
    let key = key.as_ref();
    let mut t = Vec::with_capacity(key.len() + 1);
    t.push(CLASS);
    t.extend_from_slice(key);
    t
}

/// The key of a keyvalue TKey; `None` for a TKey of another class.
pub fn decode_tkey(tkey: &[u8]) -> Option<&[u8]> {
    match tkey.split_first() {
        Some((&CLASS, rest)) => Some(rest),
        _ => None,
    }
}

/// A key as text: its bytes that are not UTF-8 become U+FFFD.
pub fn shown(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

/// Checks a key named in a URL or written by a client: keys are non-empty.
pub fn check_key(key: impl AsRef<[u8]>) -> Result<()> {
    if key.as_ref().is_empty() {
        return Err(Error::bad("key must not be empty"));
    }
    Ok(())
}

/// The key named by the path after `key/` (segments as bytes,
/// [`DataRequest::path_bytes`](crate::datatype::DataRequest::path_bytes)): exactly one
/// non-empty segment (a trailing slash is tolerated).
pub fn key_from_path(path: &[Vec<u8>]) -> Result<&[u8]> {
    let segs: &[Vec<u8>] = match path {
        [rest @ .., last] if last.is_empty() && !rest.is_empty() => rest,
        p => p,
    };
    match segs {
        [] => Err(Error::bad("expected a key after \"key/\"")),
        [k] if k.contains(&b'/') => Err(Error::bad(format!(
            "key {:?} must not contain '/'",
            shown(k)
        ))),
        [k] => {
            check_key(k)?;
            Ok(k.as_slice())
        }
        _ => Err(Error::bad(format!(
            "a key is a single path segment, got {:?}",
            shown(&segs.join(&b'/'))
        ))),
    }
}

/// The two keys bounding a range endpoint (`keyrange/<k1>/<k2>`, `keyrangevalues/<k1>/<k2>`).
pub fn range_from_path<'a>(keyword: &str, path: &'a [Vec<u8>]) -> Result<(&'a [u8], &'a [u8])> {
    match path {
        [k1, k2] | [k1, k2, _] if path.get(2).is_none_or(|s| s.is_empty()) => {
            Ok((k1.as_slice(), k2.as_slice()))
        }
        _ => Err(Error::bad(format!(
            "expected beginning and end keys after \"{keyword}/\", e.g. {keyword}/a/z"
        ))),
    }
}

/// A scan's visitor: key and value; `false` stops the scan.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Visits every key in `[first, last]` (inclusive; `None` bounds are open) visible at the view's
/// version, in key order, with its value; the visitor returns `false` to stop.
pub fn scan(
    store: &VersionedStore,
    view: &View,
    first: Option<&[u8]>,
    last: Option<&[u8]>,
    visit: &mut KeyVisitor<'_>,
) -> Result<()> {
    if let (Some(a), Some(b)) = (first, last)
        && a > b
    {
        return Ok(());
    }
    let start = tkey(first.unwrap_or_default());
    let end = last.map(tkey);
    let mut failure = None;
    store.range(view, &start, end.as_deref(), &mut |tk, value| {
        if tk.first() != Some(&CLASS) {
            // Past the keyvalue class: nothing more to see.
            return Ok(false);
        }
        let Some(key) = decode_tkey(tk) else {
            return Ok(true);
        };
        match visit(key, value) {
            Ok(more) => Ok(more),
            Err(e) => {
                failure = Some(e);
                Ok(false)
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// The keys in `[first, last]` visible at the view's version, sorted by their bytes, as text
/// ([`shown`]).
pub fn list(
    store: &VersionedStore,
    view: &View,
    first: Option<&[u8]>,
    last: Option<&[u8]>,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    scan(store, view, first, last, &mut |k, _| {
        keys.push(shown(k).into_owned());
        Ok(true)
    })?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tessera_storage::{Dag, MemoryStore};

    use super::*;

    fn store_with(keys: &[&str]) -> (VersionedStore, View) {
        let store = VersionedStore::new(Arc::new(MemoryStore::new()));
        let mut dag = Dag::new();
        dag.add(1, vec![]);
        let view = View {
            instance: 3,
            version: 1,
            dag: Arc::new(dag),
        };
        for k in keys {
            store.put(&view, &tkey(k), k.as_bytes()).unwrap();
        }
        // Another class of the same instance must never show up as a key.
        store.put(&view, &[CLASS + 1, b'z'], b"other").unwrap();
        store.put(&view, &[CLASS - 1, b'a'], b"other").unwrap();
        (store, view)
    }

    #[test]
    fn tkeys_round_trip_and_order() {
        assert_eq!(tkey("ab"), [177, b'a', b'b']);
        assert_eq!(decode_tkey(&tkey("ab")), Some("ab".as_bytes()));
        assert_eq!(decode_tkey(&tkey([0xFF, 0xFE])), Some(&[0xFF, 0xFE][..]));
        assert_eq!(decode_tkey(&[1, b'a']), None);
        assert!(tkey("c") < tkey("ca"));
        assert!(tkey("ca") < tkey("d"));
    }

    #[test]
    fn ranges_are_inclusive_and_exact() {
        let (store, view) = store_with(&["a", "b", "c", "ca", "c\u{0}", "d", "ü"]);
        let all = list(&store, &view, None, None).unwrap();
        assert_eq!(all, ["a", "b", "c", "c\u{0}", "ca", "d", "ü"]);
        assert_eq!(
            list(&store, &view, Some("b".as_bytes()), Some("c".as_bytes())).unwrap(),
            ["b", "c"]
        );
        assert_eq!(
            list(&store, &view, Some("c".as_bytes()), Some("ca".as_bytes())).unwrap(),
            ["c", "c\u{0}", "ca"]
        );
        assert_eq!(
            list(&store, &view, Some("c".as_bytes()), Some("c".as_bytes())).unwrap(),
            ["c"]
        );
        assert_eq!(
            list(&store, &view, Some("bb".as_bytes()), Some("bz".as_bytes())).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            list(&store, &view, Some("d".as_bytes()), Some("a".as_bytes())).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            list(
                &store,
                &view,
                Some("".as_bytes()),
                Some("\u{7f}".as_bytes())
            )
            .unwrap()
            .len(),
            6
        );
    }

    #[test]
    fn keys_that_are_not_utf8_are_distinct_and_listed_as_text() {
        let (store, view) = store_with(&["a"]);
        store.put(&view, &tkey([0xFF, 0xFE]), b"1").unwrap();
        store.put(&view, &tkey([0xFF, 0xFD]), b"2").unwrap();
        let mut seen = Vec::new();
        scan(&store, &view, None, None, &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (b"a".to_vec(), b"a".to_vec()),
                (vec![0xFF, 0xFD], b"2".to_vec()),
                (vec![0xFF, 0xFE], b"1".to_vec())
            ]
        );
        assert_eq!(
            list(&store, &view, None, None).unwrap(),
            ["a", "\u{FFFD}\u{FFFD}", "\u{FFFD}\u{FFFD}"]
        );
    }

    #[test]
    fn deleted_keys_are_not_listed() {
        let (store, view) = store_with(&["a", "b"]);
        store.delete(&view, &tkey("a")).unwrap();
        assert_eq!(list(&store, &view, None, None).unwrap(), ["b"]);
    }

    #[test]
    fn visitor_errors_stop_the_scan() {
        let (store, view) = store_with(&["a", "b", "c"]);
        let mut seen = 0;
        let err = scan(&store, &view, None, None, &mut |k, _| {
            seen += 1;
            if k == b"b" {
                Err(Error::bad("stop"))
            } else {
                Ok(true)
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "stop");
        assert_eq!(seen, 2);
    }

    #[test]
    fn key_paths() {
        let p = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(key_from_path(&p(&["k"])).unwrap(), b"k");
        assert_eq!(key_from_path(&p(&["k", ""])).unwrap(), b"k");
        assert!(key_from_path(&p(&[])).is_err());
        assert!(key_from_path(&p(&[""])).is_err());
        assert!(key_from_path(&p(&["", ""])).is_err());
        assert!(key_from_path(&p(&["a", "b"])).is_err());
        assert!(key_from_path(&p(&["a/b"])).is_err());
        assert_eq!(
            range_from_path("keyrange", &p(&["a", "z"])).unwrap(),
            (&b"a"[..], &b"z"[..])
        );
        assert_eq!(
            range_from_path("keyrange", &p(&["a", "z", ""])).unwrap(),
            (&b"a"[..], &b"z"[..])
        );
        assert!(range_from_path("keyrange", &p(&["a"])).is_err());
        assert!(range_from_path("keyrange", &p(&["a", "b", "c"])).is_err());
    }
}
