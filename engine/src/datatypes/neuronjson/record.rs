//! One neuron annotation: a JSON object keyed by body ID, with DVID's per-field `<field>_user`
//! and `<field>_time` metadata. Pure functions: parsing and checking a posted record, merging
//! it into the stored one (DVID's `updateJSON`), and choosing the fields a read shows.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::{Error, Result};

/// A record: field name → value (sorted by name, as Go writes a map).
pub type Record = Map<String, Value>;

/// Whether a field is metadata of another field (`<field>_user`, `<field>_time`).
pub fn is_meta(field: &str) -> bool {
    field.ends_with("_user") || field.ends_with("_time")
}

/// A body ID key: a decimal uint64, not 0 (DVID reserves body 0).
pub fn parse_bodyid(key: &str) -> Result<u64> {
    let digits = !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit());
    let id = key.parse::<u64>().ok().filter(|_| digits).ok_or_else(|| {
        Error::bad(format!(
            "neuronjson key {key:?} must be a body ID (a uint64 in decimal)"
        ))
    })?;
    if id == 0 {
        return Err(Error::bad("body id 0 is reserved and so cannot be stored"));
    }
    Ok(id)
}

/// Parses a posted record for `bodyid`: a JSON object whose "bodyid" is that uint64, without
/// `bodyid_user`/`bodyid_time`.
pub fn parse_posted(body: &[u8], bodyid: u64) -> Result<Record> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("neuronjson value must be a JSON object: {e}")))?;
    let Value::Object(rec) = value else {
        return Err(Error::bad(format!(
            "neuronjson value must be a JSON object, got {value}"
        )));
    };
    match rec.get("bodyid") {
        None => return Err(Error::bad("neuronjson data must have 'bodyid' field")),
        Some(v) => match v.as_u64() {
            None => return Err(Error::bad("neuronjson 'bodyid' field must be uint64")),
            Some(b) if b != bodyid => {
                return Err(Error::bad(format!(
                    "neuronjson 'bodyid' field {b} must match key {bodyid}"
                )));
            }
            Some(_) => {}
        },
    }
    for f in ["bodyid_user", "bodyid_time"] {
        if rec.contains_key(f) {
            return Err(Error::bad(format!("'{f}' field not allowed")));
        }
    }
    Ok(rec)
}

/// Merges the posted `new` record into the stored `orig` (DVID's `updateJSON`), leaving the
/// record to store in `new`:
///
/// * a field set to null is removed (with `<field>_user`/`_time` saying who removed it when);
/// * without `replace`, stored fields not posted are kept; `conditionals` name fields whose
///   stored value is kept even when posted;
/// * every field newly set or changed gets `<field>_user` (when `user` is not empty) and
///   `<field>_time` = `now`, unless the post sets them explicitly; unchanged fields keep theirs;
/// * with `replace`, posted fields keep their stored `_user`/`_time` (or get new ones).
pub fn update(
    mut orig: Option<Record>,
    new: &mut Record,
    user: &str,
    conditionals: &[String],
    replace: bool,
    now: &str,
) {
    // Explicitly posted _user and _time fields, by their field (a non-string is "").
    let mut field_user: BTreeMap<String, String> = BTreeMap::new();
    let mut field_time: BTreeMap<String, String> = BTreeMap::new();
    for (field, value) in new.iter() {
        let s = value.as_str().unwrap_or_default().to_string();
        if let Some(base) = field.strip_suffix("_user") {
            field_user.insert(base.to_string(), s);
        } else if let Some(base) = field.strip_suffix("_time") {
            field_time.insert(base.to_string(), s);
        }
    }

    // Fields set to null are deleted.
    let nulls: Vec<String> = new
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    let mut deleted = BTreeSet::new();
    for field in nulls {
        new.remove(&field);
        if !is_meta(&field) {
            let set_user = field_user
                .get(&field)
                .cloned()
                .unwrap_or_else(|| user.to_string());
            let set_time = field_time
                .get(&field)
                .cloned()
                .unwrap_or_else(|| now.to_string());
            if !set_user.is_empty() {
                new.insert(format!("{field}_user"), set_user.into());
            }
            if !set_time.is_empty() {
                new.insert(format!("{field}_time"), set_time.into());
            }
        }
        if let Some(o) = orig.as_mut() {
            o.remove(&field);
        }
        deleted.insert(field);
    }

    // Fields set for the first time or changed.
    let mut newly_set: BTreeSet<String> = BTreeSet::new();
    let mut new_fields: BTreeSet<String> = BTreeSet::new();
    match &orig {
        None => {
            for field in new.keys() {
                newly_set.insert(field.clone());
                if let Some(base) = field.strip_suffix("_user") {
                    newly_set.insert(base.to_string());
                }
            }
        }
        Some(o) => {
            for (field, value) in new.iter() {
                if is_meta(field) || o.get(field) != Some(value) {
                    newly_set.insert(field.clone());
                }
                if !is_meta(field) {
                    new_fields.insert(field.clone());
                }
            }
            if !replace {
                for (field, value) in o {
                    if deleted.contains(field) {
                        continue;
                    }
                    if !new.contains_key(field) {
                        new.insert(field.clone(), value.clone());
                    } else if conditionals.iter().any(|c| c == field) {
                        new.insert(field.clone(), value.clone());
                        newly_set.remove(field);
                    }
                }
            }
        }
    }

    for field in &newly_set {
        if field == "bodyid" || field == "user" || deleted.contains(field) || is_meta(field) {
            continue;
        }
        if !newly_set.contains(&format!("{field}_user")) && !user.is_empty() {
            new.insert(format!("{field}_user"), user.into());
        }
        if !newly_set.contains(&format!("{field}_time")) {
            new.insert(format!("{field}_time"), now.into());
        }
    }
    if replace {
        for field in &new_fields {
            if field == "bodyid" || deleted.contains(field) {
                continue;
            }
            for (suffix, fresh) in [("_user", user), ("_time", now)] {
                let meta = format!("{field}{suffix}");
                if !new.contains_key(&meta) {
                    let kept = orig
                        .as_ref()
                        .and_then(|o| o.get(&meta))
                        .cloned()
                        .unwrap_or_else(|| fresh.into());
                    new.insert(meta, kept);
                }
            }
        }
    }
}

/// Which metadata a read shows (`show=user|time|all`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Show {
    pub user: bool,
    pub time: bool,
}

impl Show {
    /// DVID's `show`: "user", "time", "all"; anything else shows neither.
    pub fn parse(show: Option<&str>) -> Show {
        match show {
            Some("user") => Show {
                user: true,
                time: false,
            },
            Some("time") => Show {
                user: false,
                time: true,
            },
            Some("all") => Show {
                user: true,
                time: true,
            },
            _ => Show::default(),
        }
    }
}

/// `fields=a,b` as a set; empty when absent (all fields).
pub fn parse_fields(fields: Option<&str>) -> BTreeSet<String> {
    fields
        .filter(|f| !f.is_empty())
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The part of a record a read shows (DVID's `selectFields`): always "bodyid"; the named
/// fields (all when none are named) with their `_user`/`_time` as `show` asks.
pub fn select(rec: &Record, fields: &BTreeSet<String>, show: Show) -> Record {
    let mut out = Record::new();
    if let Some(b) = rec.get("bodyid") {
        out.insert("bodyid".into(), b.clone());
    }
    if fields.is_empty() {
        for (k, v) in rec {
            if (!show.user && k.ends_with("_user")) || (!show.time && k.ends_with("_time")) {
                continue;
            }
            out.insert(k.clone(), v.clone());
        }
    } else {
        for f in fields.iter().filter(|f| *f != "bodyid") {
            if let Some(v) = rec.get(f) {
                out.insert(f.clone(), v.clone());
            }
            for (suffix, on) in [("_user", show.user), ("_time", show.time)] {
                let meta = format!("{f}{suffix}");
                if on && let Some(v) = rec.get(&meta) {
                    out.insert(meta, v.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn first_post_adds_user_and_time_except_for_bodyid() {
        let mut new = rec(json!({"bodyid": 5, "type": "KC"}));
        update(None, &mut new, "bob", &[], false, "T1");
        assert_eq!(
            Value::Object(new),
            json!({"bodyid": 5, "type": "KC", "type_user": "bob", "type_time": "T1"})
        );
    }

    #[test]
    fn merge_keeps_unposted_fields_and_unchanged_metadata() {
        let orig = rec(json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T0",
                              "b": 2, "b_user": "x", "b_time": "T0"}));
        let mut new = rec(json!({"bodyid": 5, "a": 1, "c": 3}));
        update(Some(orig), &mut new, "bob", &[], false, "T1");
        assert_eq!(
            Value::Object(new),
            json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T0",
                   "b": 2, "b_user": "x", "b_time": "T0",
                   "c": 3, "c_user": "bob", "c_time": "T1"})
        );
    }

    #[test]
    fn replace_drops_unposted_fields() {
        let orig = rec(json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T0", "b": 2}));
        let mut new = rec(json!({"bodyid": 5, "a": 1}));
        update(Some(orig), &mut new, "bob", &[], true, "T1");
        assert_eq!(
            Value::Object(new),
            json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T0"})
        );
    }

    #[test]
    fn null_deletes_and_records_who() {
        let orig = rec(json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T0", "b": 2}));
        let mut new = rec(json!({"bodyid": 5, "a": null}));
        update(Some(orig), &mut new, "bob", &[], false, "T1");
        assert_eq!(
            Value::Object(new),
            json!({"bodyid": 5, "a_user": "bob", "a_time": "T1", "b": 2})
        );
    }

    #[test]
    fn conditionals_protect_set_fields() {
        let orig = rec(json!({"bodyid": 5, "a": 1}));
        let mut new = rec(json!({"bodyid": 5, "a": 2, "b": 3}));
        update(Some(orig), &mut new, "bob", &["a".into()], false, "T1");
        assert_eq!(new["a"], 1);
        assert!(!new.contains_key("a_user"));
        assert_eq!(new["b_user"], "bob");
    }

    #[test]
    fn explicit_metadata_wins() {
        let mut new = rec(json!({"bodyid": 5, "a": 1, "a_user": "alice"}));
        update(None, &mut new, "bob", &[], false, "T1");
        assert_eq!(new["a_user"], "alice");
        assert_eq!(new["a_time"], "T1");
    }

    #[test]
    fn selection() {
        let r = rec(json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T", "b": 2}));
        let none = BTreeSet::new();
        assert_eq!(
            Value::Object(select(&r, &none, Show::default())),
            json!({"bodyid": 5, "a": 1, "b": 2})
        );
        assert_eq!(
            Value::Object(select(&r, &none, Show::parse(Some("user")))),
            json!({"bodyid": 5, "a": 1, "a_user": "x", "b": 2})
        );
        let a = parse_fields(Some("a"));
        assert_eq!(
            Value::Object(select(&r, &a, Show::parse(Some("all")))),
            json!({"bodyid": 5, "a": 1, "a_user": "x", "a_time": "T"})
        );
    }

    #[test]
    fn posted_records_are_checked() {
        assert!(parse_posted(br#"{"bodyid": 5}"#, 5).is_ok());
        for (body, needle) in [
            (&br#"[1]"#[..], "JSON object"),
            (b"nope", "JSON object"),
            (br#"{"a": 1}"#, "'bodyid'"),
            (br#"{"bodyid": "5"}"#, "uint64"),
            (br#"{"bodyid": 6}"#, "must match key 5"),
            (br#"{"bodyid": 5, "bodyid_user": "x"}"#, "not allowed"),
        ] {
            let e = parse_posted(body, 5).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.to_string().contains(needle), "{e}");
        }
        assert!(parse_bodyid("0").is_err());
        assert!(parse_bodyid("abc").is_err());
        assert!(parse_bodyid("+5").is_err());
        assert!(parse_bodyid("18446744073709551616").is_err());
        assert_eq!(parse_bodyid("12").unwrap(), 12);
    }
}
