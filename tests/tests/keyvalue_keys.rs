//! keyvalue keys are bytes (as in DVID, whose Go strings hold any bytes): keys that are not
//! UTF-8 are distinct keys end to end; listings and records show their invalid bytes as
//! U+FFFD, as Go's JSON encoding does.

use tessera_tests::*;

#[test]
fn keys_that_are_not_utf8_are_distinct() {
    let srv = Server::start();
    let root = srv.create_repo("bytes");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "%FF%FE", b"first");
    srv.put_key(&root, "kv", "%FF%FD", b"second");
    srv.put_key(&root, "kv", "a", b"plain");
    assert_eq!(
        srv.key_value(&root, "kv", "%FF%FE").as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        srv.key_value(&root, "kv", "%FF%FD").as_deref(),
        Some(&b"second"[..])
    );
    // the same bytes however they are escaped
    assert_eq!(
        srv.key_value(&root, "kv", "%ff%fe").as_deref(),
        Some(&b"first"[..])
    );
    // neither is the key spelled with U+FFFD
    assert_eq!(srv.key_value(&root, "kv", "%EF%BF%BD%EF%BF%BD"), None);
    srv.head(&format!("/api/node/{root}/kv/key/%FF%FD"))
        .expect(200);
    // listed in byte order, shown as JSON shows them
    let fffd = "\u{FFFD}\u{FFFD}";
    assert_eq!(srv.keys(&root, "kv"), ["a", fffd, fffd]);
    let range = srv
        .get(&format!("/api/node/{root}/kv/keyrange/%FF%FE/%FF%FF"))
        .expect(200)
        .json();
    assert_eq!(range, json!([fffd]));
    // deleting one leaves the other
    srv.delete_key(&root, "kv", "%FF%FE");
    assert_eq!(srv.key_value(&root, "kv", "%FF%FE"), None);
    assert_eq!(
        srv.key_value(&root, "kv", "%FF%FD").as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(srv.keys(&root, "kv"), ["a", fffd]);
    // UTF-8 keys are unchanged: "ü" escaped is the key "ü"
    srv.put_key(&root, "kv", "%C3%BC", b"umlaut");
    assert_eq!(
        srv.key_value(&root, "kv", "\u{fc}").as_deref(),
        Some(&b"umlaut"[..])
    );
}
