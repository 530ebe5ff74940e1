//! The tar archives of the datatype, as pure functions over bytes: `POST load` bodies, read and
//! validated whole before anything is written, and `GET tarfile` answers, written entry by
//! entry so a body's archive can stream.

use std::collections::BTreeMap;
use std::io::Read;

use tar::{Archive, EntryType, Header};

use super::keys::parse_id;
use crate::{Error, Result};

/// The file name of a supervoxel without data in `GET tarfile`.
pub const MISSING_EXTENSION: &str = "missing";

/// The bytes that end a tar archive: two zero blocks.
pub const END: [u8; 1024] = [0; 1024];

/// The supervoxels and blobs of a `POST load` archive, ascending by supervoxel (a supervoxel
/// named twice keeps its last member, as writing them in order would). Every member must be a
/// regular file named `<sv>.<ext>` with a positive decimal id; any other member, or damage
/// anywhere in the archive, refuses the whole body with a message naming the member.
pub fn parse_load(body: &[u8], ext: &str) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut archive = Archive::new(body);
    let entries = archive
        .entries()
        .map_err(|e| Error::bad(format!("POST load body is not a tar archive: {e}")))?;
    let mut out = BTreeMap::new();
    for (i, entry) in entries.enumerate() {
        let n = i + 1;
        let mut entry =
            entry.map_err(|e| Error::bad(format!("tar member {n} is damaged or missing: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            // Archive-wide metadata (e.g. `git archive`'s comment), not a member.
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(Error::bad(format!(
                    "tar member {n} ({name:?}) is a {other:?} entry, not a regular file"
                )));
            }
        }
        let sv = member_supervoxel(&name, ext).map_err(|why| {
            Error::bad(format!(
                "tar member {n} is named {name:?}: {why}; members must be named \
                 <supervoxel id>.{ext}, e.g. 18491823.{ext}"
            ))
        })?;
        let size = entry.size();
        // Never preallocate from the header's claim: the body bounds what is read.
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| Error::bad(format!("tar member {n} ({name:?}) is damaged: {e}")))?;
        if data.len() as u64 != size {
            return Err(Error::bad(format!(
                "tar member {n} ({name:?}) is cut short: {} of its {size} bytes are in the body",
                data.len()
            )));
        }
        out.insert(sv, data);
    }
    Ok(out.into_iter().collect())
}

/// The supervoxel a member named `<sv>.<ext>` holds, or why the name is refused.
pub fn member_supervoxel(name: &str, ext: &str) -> std::result::Result<u64, String> {
    let (id, e) = name
        .split_once('.')
        .ok_or_else(|| "the name has no extension".to_string())?;
    if e != ext {
        return Err(format!("the extension is not {ext:?}"));
    }
    parse_id(id, "supervoxel").map_err(|e| e.to_string())
}

/// The tar entry name of supervoxel `sv`: `<sv>.<ext>` with data, `<sv>.missing` without.
pub fn entry_name(sv: u64, ext: Option<&str>) -> String {
    format!("{sv}.{}", ext.unwrap_or(MISSING_EXTENSION))
}

/// Appends one regular-file entry (header, data, padding to 512 bytes) to `out`. Names are
/// `entry_name`s, which fit the header's 100 bytes (extensions are at most 32 characters).
pub fn append_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<()> {
    let mut h = Header::new_gnu();
    h.set_path(name)
        .map_err(|e| Error::Internal(format!("tar entry name {name:?}: {e}")))?;
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(EntryType::Regular);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of (name, data) regular files, names written verbatim (at most 100 bytes).
    pub fn build(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn bad(body: &[u8], ext: &str) -> String {
        match parse_load(body, ext) {
            Err(Error::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn loads_members_in_supervoxel_order_last_one_winning() {
        let body = build(&[
            ("20.dat", b"twenty"),
            ("3.dat", b""),
            ("1000.dat", &[7u8; 1300]),
            ("20.dat", b"twenty again"),
        ]);
        let got = parse_load(&body, "dat").unwrap();
        assert_eq!(
            got,
            vec![
                (3, vec![]),
                (20, b"twenty again".to_vec()),
                (1000, vec![7u8; 1300])
            ]
        );
        assert_eq!(parse_load(&[], "dat").unwrap(), vec![]);
        assert_eq!(parse_load(&build(&[]), "dat").unwrap(), vec![]);
    }

    #[test]
    fn long_names_are_read_whole() {
        // Names past the header's 100 bytes travel in a GNU long-name entry first.
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}1.dat", "0".repeat(110));
        let mut h = Header::new_gnu();
        h.set_size(2);
        b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
        assert_eq!(
            parse_load(&b.into_inner().unwrap(), "dat").unwrap(),
            vec![(1, b"ok".to_vec())]
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(1);
        b.append_data(&mut h, format!("{}.dat", "9".repeat(120)), &b"x"[..])
            .unwrap();
        let m = bad(&b.into_inner().unwrap(), "dat");
        assert!(m.contains("tar member 1"), "{m}");
        assert!(m.contains("is not a supervoxel id"), "{m}");
    }

    #[test]
    fn bad_member_names_are_refused_naming_the_member() {
        for (name, why) in [
            ("12.obj", "extension"),
            ("12", "no extension"),
            ("0.dat", "background"),
            ("abc.dat", "not a supervoxel id"),
            ("-4.dat", "not a supervoxel id"),
            ("12.3.dat", "extension"),
            ("dir/12.dat", "not a supervoxel id"),
            ("./12.dat", "extension"),
            ("18446744073709551616.dat", "not a supervoxel id"),
            (".dat", "not a supervoxel id"),
        ] {
            let body = build(&[("1.dat", b"fine"), (name, b"x")]);
            let m = bad(&body, "dat");
            assert!(m.contains("tar member 2"), "{name}: {m}");
            assert!(m.contains(&format!("{name:?}")), "{name}: {m}");
            assert!(m.contains(why), "{name}: {m}");
        }
        // Extensions compare exactly.
        assert!(parse_load(&build(&[("1.DAT", b"")]), "dat").is_err());
        assert_eq!(member_supervoxel("007.drc", "drc"), Ok(7));
    }

    #[test]
    fn non_files_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "5.dat", &[][..]).unwrap();
        let m = bad(&b.into_inner().unwrap(), "dat");
        assert!(m.contains("Directory") && m.contains("5.dat"), "{m}");

        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "6.dat", "1.dat").unwrap();
        let m = bad(&b.into_inner().unwrap(), "dat");
        assert!(m.contains("Symlink"), "{m}");
    }

    #[test]
    fn damaged_archives_are_refused() {
        let body = build(&[("1.dat", &[1u8; 700]), ("2.dat", b"two")]);
        // Cut inside the first member's data, inside the second header, and mid-block.
        for cut in [600, 1100, 1536 + 100, 300] {
            let m = bad(&body[..cut], "dat");
            assert!(m.contains("tar member"), "cut {cut}: {m}");
        }
        // A flipped header byte breaks the checksum.
        let mut flipped = body.clone();
        flipped[10] ^= 0x40;
        assert!(bad(&flipped, "dat").contains("checksum"));
        // Garbage.
        assert!(parse_load(&[0x55; 2048], "dat").is_err());
        assert!(parse_load(b"not a tar archive", "dat").is_err());
    }

    #[test]
    fn written_entries_read_back_in_order() {
        let mut out = Vec::new();
        append_entry(&mut out, &entry_name(9, Some("drc")), b"nine").unwrap();
        append_entry(&mut out, &entry_name(10, None), b"").unwrap();
        append_entry(&mut out, &entry_name(u64::MAX, Some("drc")), &[3u8; 513]).unwrap();
        out.extend_from_slice(&END);
        assert_eq!(out.len() % 512, 0);
        let mut a = Archive::new(&out[..]);
        let got: Vec<(String, Vec<u8>)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                assert_eq!(e.header().entry_type(), EntryType::Regular);
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                (name, d)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("9.drc".to_string(), b"nine".to_vec()),
                ("10.missing".to_string(), vec![]),
                (format!("{}.drc", u64::MAX), vec![3u8; 513]),
            ]
        );
        // What it wrote, load reads (except the .missing entry).
        let back = parse_load(&out, "drc");
        assert!(back.unwrap_err().to_string().contains("10.missing"));
    }
}
