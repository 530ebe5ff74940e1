//! File names of keys: every key has exactly one name, and every name it makes is a valid file
//! name (docs/mount.md).

/// The file name of a key, reversibly ([`key_of_name`] undoes it).
///
/// The rule: `%` becomes `%25`, `/` becomes `%2F` and NUL becomes `%00`, anywhere in the key;
/// the key `.` becomes `%2E` and the key `..` becomes `%2E.`; the empty key becomes `%`.
/// Nothing else changes (spaces, other punctuation and non-ASCII stay as they are). A `%` in a
/// name is thus always the start of one of these escapes, which is what makes the rule
/// reversible, and every name it makes is a valid file name.
pub fn name_of_key(key: &str) -> String {
    match key {
        "" => return "%".into(),
        "." => return "%2E".into(),
        ".." => return "%2E.".into(),
        _ => {}
    }
    let mut name = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' => name.push_str("%25"),
            '/' => name.push_str("%2F"),
            '\0' => name.push_str("%00"),
            c => name.push(c),
        }
    }
    name
}

/// The key a file name stands for; None for a name [`name_of_key`] never makes (a stray `%`,
/// lower-case hex, an escape it does not use, bytes that are not UTF-8), so every key has
/// exactly one name.
pub fn key_of_name(name: &[u8]) -> Option<String> {
    if name == b"%" {
        return Some(String::new());
    }
    let mut key = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        let (byte, tail) = match (b, tail) {
            (b'%', [b'2', b'5', tail @ ..]) => (b'%', tail),
            (b'%', [b'2', b'F', tail @ ..]) => (b'/', tail),
            (b'%', [b'0', b'0', tail @ ..]) => (0, tail),
            (b'%', [b'2', b'E', tail @ ..]) => (b'.', tail),
            (b'%', _) => return None,
            (b, tail) => (b, tail),
        };
        key.push(byte);
        rest = tail;
    }
    let key = String::from_utf8(key).ok()?;
    // `%2E` is right only as the whole of the names of "." and "..".
    (name_of_key(&key).as_bytes() == name).then_some(key)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn awkward_keys_get_these_names() {
        for (key, name) in [
            ("a/b", "a%2Fb"),
            ("..", "%2E."),
            (".", "%2E"),
            ("...", "..."),
            (".hidden", ".hidden"),
            ("%x", "%25x"),
            ("with space", "with space"),
            ("nul\0byte", "nul%00byte"),
            ("", "%"),
            ("ünï/cödé", "ünï%2Fcödé"),
        ] {
            assert_eq!(name_of_key(key), name, "{key:?}");
            assert_eq!(
                key_of_name(name.as_bytes()).as_deref(),
                Some(key),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_no_key_has_are_refused() {
        for name in [
            "%%", "50%", "%2f", "%zz", "%2E%2E", "%2Ex", "a%2E", "%41", "%0", "%2",
        ] {
            assert_eq!(key_of_name(name.as_bytes()), None, "{name:?}");
        }
        assert_eq!(key_of_name(b"\xff"), None);
    }

    proptest! {
        #[test]
        fn names_round_trip(key in any::<String>()) {
            let name = name_of_key(&key);
            prop_assert!(!name.is_empty());
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.contains('/') && !name.contains('\0'));
            prop_assert_eq!(key_of_name(name.as_bytes()), Some(key));
        }

        #[test]
        fn dotted_and_percent_keys_round_trip(key in "[./%\\x00a]{0,8}") {
            prop_assert_eq!(key_of_name(name_of_key(&key).as_bytes()), Some(key));
        }

        #[test]
        fn every_accepted_name_is_the_name_of_its_key(name in proptest::collection::vec(
            prop_oneof![Just(b'%'), Just(b'2'), Just(b'5'), Just(b'F'), Just(b'E'), Just(b'0'),
                        Just(b'.'), Just(b'a'), any::<u8>()], 0..10)) {
            if let Some(key) = key_of_name(&name) {
                prop_assert_eq!(name_of_key(&key).into_bytes(), name);
            }
        }
    }
}
