//! Type-specific keys (TKeys) of keyvalue data and the key ranges scanned over them.
//!
//! DVID's TKey for key `k` is `177 ‖ 0x01 ‖ k ‖ 0x00` (spec §2.1). Tessera's versioned layer
//! escapes tkeys so that none is a prefix of another and byte order is kept, so the TKey here is
//! simply `177 ‖ k`: ordering by TKey is ordering by key bytes, and an inclusive tkey range
//! `[tkey(k1), tkey(k2)]` holds exactly the keys `k1 <= k <= k2` (`"ca"` is not `<= "c"`).

use tessera_storage::{VersionedStore, View};

use crate::{Error, Result};

/// The TKey class byte of keyvalue entries (DVID's `keyStandard`).
pub const CLASS: u8 = 177;

/// The TKey of `key`.
pub fn tkey(key: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(key.len() + 1);
    t.push(CLASS);
    t.extend_from_slice(key.as_bytes());
    t
}

/// The key of a keyvalue TKey; `None` for a TKey of another class or that is not UTF-8.
pub fn decode_tkey(tkey: &[u8]) -> Option<&str> {
    match tkey.split_first() {
        Some((&CLASS, rest)) => std::str::from_utf8(rest).ok(),
        _ => None,
    }
}

/// Checks a key named in a URL or written by a client: keys are non-empty.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::bad("key must not be empty"));
    }
    Ok(())
}

/// The key named by the path after `key/`: exactly one non-empty segment (a trailing slash is
/// tolerated).
pub fn key_from_path(path: &[String]) -> Result<&str> {
    let segs: &[String] = match path {
        [rest @ .., last] if last.is_empty() && !rest.is_empty() => rest,
        p => p,
    };
    match segs {
        [] => Err(Error::bad("expected a key after \"key/\"")),
        [k] if k.contains('/') => Err(Error::bad(format!("key {k:?} must not contain '/'"))),
        [k] => {
            check_key(k)?;
            Ok(k.as_str())
        }
        _ => Err(Error::bad(format!(
            "a key is a single path segment, got {:?}",
            segs.join("/")
        ))),
    }
}

/// The two keys bounding a range endpoint (`keyrange/<k1>/<k2>`, `keyrangevalues/<k1>/<k2>`).
pub fn range_from_path<'a>(keyword: &str, path: &'a [String]) -> Result<(&'a str, &'a str)> {
    match path {
        [k1, k2] | [k1, k2, _] if path.get(2).is_none_or(|s| s.is_empty()) => {
            Ok((k1.as_str(), k2.as_str()))
        }
        _ => Err(Error::bad(format!(
            "expected beginning and end keys after \"{keyword}/\", e.g. {keyword}/a/z"
        ))),
    }
}

/// Visits every key in `[first, last]` (inclusive; `None` bounds are open) visible at the view's
/// version, in key order, with its value; the visitor returns `false` to stop.
pub fn scan(
    store: &VersionedStore,
    view: &View,
    first: Option<&str>,
    last: Option<&str>,
    visit: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
) -> Result<()> {
    if let (Some(a), Some(b)) = (first, last)
        && a > b
    {
        return Ok(());
    }
    let start = tkey(first.unwrap_or(""));
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

/// The keys in `[first, last]` visible at the view's version, sorted.
pub fn list(
    store: &VersionedStore,
    view: &View,
    first: Option<&str>,
    last: Option<&str>,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    scan(store, view, first, last, &mut |k, _| {
        keys.push(k.to_string());
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
        assert_eq!(decode_tkey(&tkey("ab")), Some("ab"));
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
            list(&store, &view, Some("b"), Some("c")).unwrap(),
            ["b", "c"]
        );
        assert_eq!(
            list(&store, &view, Some("c"), Some("ca")).unwrap(),
            ["c", "c\u{0}", "ca"]
        );
        assert_eq!(list(&store, &view, Some("c"), Some("c")).unwrap(), ["c"]);
        assert_eq!(
            list(&store, &view, Some("bb"), Some("bz")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            list(&store, &view, Some("d"), Some("a")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            list(&store, &view, Some(""), Some("\u{7f}")).unwrap().len(),
            6
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
            if k == "b" {
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
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(key_from_path(&p(&["k"])).unwrap(), "k");
        assert_eq!(key_from_path(&p(&["k", ""])).unwrap(), "k");
        assert!(key_from_path(&p(&[])).is_err());
        assert!(key_from_path(&p(&[""])).is_err());
        assert!(key_from_path(&p(&["", ""])).is_err());
        assert!(key_from_path(&p(&["a", "b"])).is_err());
        assert!(key_from_path(&p(&["a/b"])).is_err());
        assert_eq!(
            range_from_path("keyrange", &p(&["a", "z"])).unwrap(),
            ("a", "z")
        );
        assert_eq!(
            range_from_path("keyrange", &p(&["a", "z", ""])).unwrap(),
            ("a", "z")
        );
        assert!(range_from_path("keyrange", &p(&["a"])).is_err());
        assert!(range_from_path("keyrange", &p(&["a", "b", "c"])).is_err());
    }
}
