//! `POST load` tar archives of tarsupervoxels (`archive::parse_load`): arbitrary bytes,
//! mutated real archives (checksums repaired so the damage reaches past the header check),
//! and headers claiming huge sizes.

use std::sync::OnceLock;

use proptest::prelude::*;
use tessera_engine::datatypes::tarsupervoxels::archive::{
    END, append_entry, entry_name, parse_load,
};

use crate::support::{self, apply, bytes, edits, measure, within};

/// Fixed allowance for the tar reader's own buffers (long names are read up to 128 KiB).
const SLACK: usize = 1 << 18;

/// Recomputes the checksum of every 512-byte block that looks like a tar header.
fn fix_checksums(b: &mut [u8]) {
    for h in b.chunks_exact_mut(512) {
        if h.iter().all(|&x| x == 0) {
            continue;
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let cubes = support::real_cubes();
        let mut out = Vec::new();
        // Members whose data are real label bytes.
        let mut a = Vec::new();
        for (i, (_, cube)) in cubes.iter().enumerate() {
            let data: Vec<u8> = cube[..100 + 300 * i]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            append_entry(&mut a, &entry_name(100 + i as u64, Some("dat")), &data).unwrap();
        }
        append_entry(&mut a, &entry_name(1, Some("dat")), b"").unwrap();
        a.extend_from_slice(&END);
        out.push(a);
        // GNU long names and pax headers, as tar tools write them.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, format!("{}12.dat", "0".repeat(120)), &b"abc"[..])
            .unwrap();
        b.append_pax_extensions([("comment", &b"fuzz"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(600);
        b.append_data(&mut h, "13.dat", &[9u8; 600][..]).unwrap();
        out.push(b.into_inner().unwrap());
        out
    })
}

fn check(b: &[u8]) {
    let (r, u) = measure(|| parse_load(b, "dat"));
    within(u, 4 * b.len() + SLACK, "parse_load");
    let Ok(members) = r else { return };
    let total: usize = members.iter().map(|m| m.1.len()).sum();
    assert!(total <= b.len());
    // Round trip: the members written as an archive load back the same.
    let mut again = Vec::new();
    for (sv, data) in &members {
        append_entry(&mut again, &entry_name(*sv, Some("dat")), data).unwrap();
    }
    again.extend_from_slice(&END);
    assert_eq!(parse_load(&again, "dat").unwrap(), members);
}

/// One header with a valid checksum whose size field says anything (octal or GNU base-256).
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), any::<bool>(), bytes(2048)).prop_map(|(size, binary, tail)| {
        let mut h = tar::Header::new_gnu();
        h.set_path("5.dat").unwrap();
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let mut b = h.as_bytes().to_vec();
        if binary {
            b[124] = 0x80;
            b[128..136].copy_from_slice(&size.to_be_bytes());
        } else {
            let s = format!("{:011o}", size & 0o777_7777_7777);
            b[124..135].copy_from_slice(s.as_bytes());
        }
        fix_checksums(&mut b);
        b.extend_from_slice(&tail);
        b
    })
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn tar_arbitrary_bytes(b in bytes(2048)) {
        check(&b);
    }

    #[test]
    fn tar_hostile_sizes(b in hostile()) {
        check(&b);
    }

    #[test]
    fn tar_mutated_archives(i in any::<prop::sample::Index>(), e in edits(4), fix in any::<bool>()) {
        let seeds = seeds();
        let mut b = apply(&seeds[i.index(seeds.len())], &e);
        if fix {
            fix_checksums(&mut b);
        }
        check(&b);
    }
}

#[test]
fn tar_seeds_load() {
    for s in seeds() {
        check(s);
    }
    assert_eq!(parse_load(&seeds()[0], "dat").unwrap().len(), 4);
    assert_eq!(
        parse_load(&seeds()[1], "dat")
            .unwrap()
            .into_iter()
            .map(|m| m.0)
            .collect::<Vec<_>>(),
        vec![12, 13]
    );
}
