//! The mutation log published to NATS JetStream (`[nats]`, docs/reliability.md): every
//! committed record reaches its instance's subject exactly as `GET mutations` returns it, in
//! commit order, with the mutation id as the message id — also when NATS was down while edits
//! were made and the server was killed in between (the durable outbox catches up).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tessera_tests::labels::*;
use tessera_tests::nats::Nats;
use tessera_tests::*;

const STREAM: &str = "DVID_MUTATIONS";

struct Msg {
    subject: String,
    id: String,
    record: Value,
}

/// Every message of the stream, oldest first.
fn messages(nats: &Nats) -> Vec<Msg> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client);
        let Ok(mut stream) = js.get_stream(STREAM).await else {
            return Vec::new();
        };
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = stream.get_raw_message(seq).await.expect("message");
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .expect("every message has a Nats-Msg-Id");
            out.push(Msg {
                subject: m.subject.to_string(),
                id,
                record: serde_json::from_slice(&m.payload).expect("JSON payload"),
            });
        }
        out
    })
}

struct Instance {
    name: &'static str,
    data_uuid: String,
}

/// The records of each instance at `uuid`, as `GET mutations` returns them.
fn logged(srv: &Server, uuid: &str, instances: &[Instance]) -> BTreeMap<String, Vec<Value>> {
    instances
        .iter()
        .map(|i| {
            let recs = srv
                .get(&format!("/api/node/{uuid}/{}/mutations", i.name))
                .expect(200)
                .json();
            (i.data_uuid.clone(), recs.as_array().unwrap().clone())
        })
        .collect()
}

/// Waits until the stream, repeats dropped by message id, holds exactly the log of every
/// instance, on its own subject, in log order.
#[track_caller]
fn assert_stream_matches_log(srv: &Server, nats: &Nats, root: &str, instances: &[Instance]) {
    let want = logged(srv, root, instances);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut first: BTreeMap<String, Value> = BTreeMap::new();
        for m in messages(nats) {
            if let Some(prev) = first.get(&m.id) {
                assert_eq!(
                    prev, &m.record,
                    "message id {} reused for another record",
                    m.id
                );
                continue;
            }
            first.insert(m.id.clone(), m.record.clone());
            let data = m
                .subject
                .strip_prefix(&format!("dvid.dvidrepo-{root}-data-"))
                .unwrap_or_else(|| panic!("unexpected subject {}", m.subject))
                .to_string();
            let seq = m.record["CommitSeq"].as_u64().expect("CommitSeq");
            let expected_id = match m.record["MutationID"].as_u64() {
                Some(id) => format!("{data}-{id}"),
                None => format!("{data}-c{seq}"),
            };
            assert_eq!(m.id, expected_id, "message id of {}", m.record);
            got.entry(data).or_default().push(m.record);
        }
        if got == want {
            for recs in want.values() {
                let seqs: Vec<u64> = recs
                    .iter()
                    .map(|r| r["CommitSeq"].as_u64().unwrap())
                    .collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "log not in commit order: {seqs:?}"
                );
            }
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "the stream never matched the log\nlog: {want:#?}\nstream: {got:#?}\n--- server log ---\n{}",
                srv.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn data_uuid(srv: &Server, root: &str, name: &str) -> String {
    srv.get(&format!("/api/node/{root}/{name}/info"))
        .expect(200)
        .json()["Base"]["DataUUID"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_record_reaches_jetstream_in_commit_order_across_outages_and_kills() {
    let mut nats = Nats::start();
    let mut srv = Server::builder()
        .config(&format!("[nats]\nurl = \"{}\"\n", nats.url()))
        .start();
    let root = srv.create_repo("stream");
    srv.create_instance(&root, "keyvalue", "kv");
    {
        let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
        seg.write(&spec_cubes_fixture());
        seg.merge_ok(&[1, 2], "");
        seg.cleave_ok(1, &[2], "");
    }
    srv.put_key(&root, "kv", "a", b"1");
    srv.put_key(&root, "kv", "b", b"22");
    srv.delete_key(&root, "kv", "a");
    let instances = [
        Instance {
            name: "seg",
            data_uuid: data_uuid(&srv, &root, "seg"),
        },
        Instance {
            name: "kv",
            data_uuid: data_uuid(&srv, &root, "kv"),
        },
    ];
    assert_stream_matches_log(&srv, &nats, &root, &instances);

    // NATS goes away: edits still succeed, and wait in the outbox ...
    nats.kill();
    {
        let seg = Seg::open(&srv, &root, "seg");
        seg.merge_ok(&[13, 209], "");
    }
    srv.put_key(&root, "kv", "c", b"333");
    // ... across a crash of the server, too.
    srv.kill();
    srv.start_again();
    {
        let seg = Seg::open(&srv, &root, "seg");
        seg.merge_ok(&[13, 311], "");
    }
    srv.put_key(&root, "kv", "d", b"4444");
    nats.start_again();
    assert_stream_matches_log(&srv, &nats, &root, &instances);
}

/// A record larger than the NATS server takes in one message goes out as a stand-in naming it
/// (and how to read it whole) instead of blocking the stream behind it.
#[test]
fn a_record_too_large_for_one_message_is_published_as_a_stand_in() {
    let nats = Nats::start_with_config(Some("max_payload: 4096\n"));
    let srv = Server::builder()
        .config(&format!("[nats]\nurl = \"{}\"\n", nats.url()))
        .start();
    let root = srv.create_repo("big");
    srv.create_instance(&root, "keyvalue", "kv");
    let long_key = "k".repeat(3500);
    srv.put_key(&root, "kv", &long_key, b"1");
    srv.put_key(&root, "kv", "after", b"2");
    let log = srv
        .get(&format!("/api/node/{root}/kv/mutations"))
        .expect(200)
        .json();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = messages(&nats);
        if got.len() >= 2 || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(got.len(), 2, "both records published: {log}");
    let big = &got[0].record;
    assert_eq!(big["Truncated"], true, "{big}");
    assert_eq!(big["CommitSeq"], log[0]["CommitSeq"]);
    assert_eq!(big["Action"], "postkv");
    assert!(big["Bytes"].as_u64().unwrap() > 3500);
    assert_eq!(got[1].record, log[1], "the stream goes on after it");
}
