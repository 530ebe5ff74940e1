//! The `query` language (DVID's `query.go`): a JSON object of field → wanted value, all of
//! which must hold, or a list of such objects of which one must hold.
//!
//! * a number matches a number field (or a list field holding it) numerically;
//! * a string matches a string field (or a list of strings holding it) exactly;
//! * `"re/<regex>"` matches a string field (or an element) the regex finds a match in
//!   (unanchored, as Go's `Regexp.Match`);
//! * `"exists/1"` / `"exists/0"`: the field is present and not null / absent or null;
//! * a list of the above matches when any element does.

use regex::Regex;
use serde_json::Value;

use super::record::Record;
use crate::{Error, Result};

/// One wanted value.
#[derive(Debug, Clone)]
pub enum Atom {
    Num(Value),
    Str(String),
    Regex(Regex),
    /// A value no field matches (booleans, objects, null: DVID accepts but never matches).
    Never,
}

#[derive(Debug, Clone)]
pub enum Cond {
    AnyOf(Vec<Atom>),
    Exists(bool),
}

/// The conditions of one query object, all of which must hold.
pub type Conjunction = Vec<(String, Cond)>;

/// Parses a query body: an object or a non-empty list of objects.
pub fn parse(body: &[u8]) -> Result<Vec<Conjunction>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("unable to parse JSON query: {e}")))?;
    let objects = match value {
        Value::Object(o) => vec![o],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Error::bad("no query provided"));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(o) => Ok(o),
                    other => Err(Error::bad(format!(
                        "query list element {i} must be a JSON object, got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>>>()?
        }
        other => {
            return Err(Error::bad(format!(
                "a query must be a JSON object or a list of objects, got {other}"
            )));
        }
    };
    objects
        .into_iter()
        .map(|o| {
            o.into_iter()
                .map(|(field, v)| Ok((field.clone(), cond(&field, v)?)))
                .collect()
        })
        .collect()
}

fn atom(field: &str, v: Value) -> Result<Atom> {
    Ok(match v {
        Value::Number(_) => Atom::Num(v),
        Value::String(s) => match s.strip_prefix("re/") {
            Some(re) if !re.is_empty() => Atom::Regex(Regex::new(re).map_err(|e| {
                Error::bad(format!("bad regex {re:?} in query on field {field:?}: {e}"))
            })?),
            _ => Atom::Str(s),
        },
        _ => Atom::Never,
    })
}

fn cond(field: &str, v: Value) -> Result<Cond> {
    if let Value::String(s) = &v
        && let Some(flag) = s.strip_prefix("exists/")
        && flag.len() == 1
    {
        return Ok(Cond::Exists(flag != "0"));
    }
    match v {
        Value::Array(items) => Ok(Cond::AnyOf(
            items
                .into_iter()
                .map(|i| atom(field, i))
                .collect::<Result<_>>()?,
        )),
        v => Ok(Cond::AnyOf(vec![atom(field, v)?])),
    }
}

fn num_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn atom_matches_scalar(atom: &Atom, v: &Value) -> bool {
    match (atom, v) {
        (Atom::Num(q), Value::Number(_)) => num_eq(q, v),
        (Atom::Str(q), Value::String(s)) => q == s,
        (Atom::Regex(re), Value::String(s)) => re.is_match(s),
        _ => false,
    }
}

fn atom_matches(atom: &Atom, field: &Value) -> bool {
    match field {
        Value::Array(items) => items.iter().any(|i| atom_matches_scalar(atom, i)),
        v => atom_matches_scalar(atom, v),
    }
}

/// Whether the record satisfies one of the conjunctions.
pub fn matches(query: &[Conjunction], rec: &Record) -> bool {
    query.iter().any(|conj| {
        conj.iter().all(|(field, cond)| {
            let value = rec.get(field).filter(|v| !v.is_null());
            match cond {
                Cond::Exists(want) => value.is_some() == *want,
                Cond::AnyOf(atoms) => {
                    value.is_some_and(|v| atoms.iter().any(|a| atom_matches(a, v)))
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    fn q(v: Value) -> Vec<Conjunction> {
        parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn matching() {
        let r = rec(json!({"bodyid": 7, "type": "KC-ab", "n": 3, "f": 1.5,
                           "tags": ["a", "b"], "ids": [1, 2], "gone": null}));
        assert!(matches(&q(json!({"type": "KC-ab"})), &r));
        assert!(!matches(&q(json!({"type": "KC"})), &r));
        assert!(matches(&q(json!({"type": "re/KC"})), &r));
        assert!(matches(&q(json!({"type": "re/-a"})), &r));
        assert!(!matches(&q(json!({"type": "re/^a"})), &r));
        assert!(matches(&q(json!({"type": ["x", "KC-ab"]})), &r));
        assert!(matches(&q(json!({"n": 3, "bodyid": 7})), &r));
        assert!(matches(&q(json!({"n": 3.0})), &r));
        assert!(!matches(&q(json!({"n": "3"})), &r));
        assert!(matches(&q(json!({"n": [1, 3]})), &r));
        assert!(matches(&q(json!({"f": 1.5})), &r));
        assert!(matches(&q(json!({"tags": "b"})), &r));
        assert!(matches(&q(json!({"ids": 2})), &r));
        assert!(!matches(&q(json!({"missing": "x"})), &r));
        assert!(matches(&q(json!({"type": "exists/1"})), &r));
        assert!(matches(&q(json!({"gone": "exists/0"})), &r));
        assert!(matches(&q(json!({"missing": "exists/0"})), &r));
        assert!(!matches(&q(json!({"type": "exists/0"})), &r));
        assert!(matches(&q(json!([{"type": "x"}, {"n": 3}])), &r));
        assert!(!matches(&q(json!([{"type": "x"}, {"n": 4}])), &r));
        assert!(matches(&q(json!({})), &r));
    }

    #[test]
    fn malformed() {
        for body in [&b"nope"[..], b"[]", b"[1]", b"3", br#"{"a": "re/("}"#] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
        }
    }
}
