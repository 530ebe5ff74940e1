//! labelmap surface extraction: `GET mesh/<label>[?scale=N&format=ngmesh|obj|ply&supervoxels=true]`.
//!
//! A label's mesh is marching cubes on its binary mask with vertices at the midpoints between
//! voxel centres, in physical units (voxel i spans [i, i+1)·VoxelSize·2^scale): closed,
//! edge-manifold, wound outward, one vertex per exposed voxel face, |V − N| ≤ F/2 in voxel
//! units (see `tessera_tests::mesh::check_label_mesh`). Every check compares against the
//! test-side volume, never against the server's other reads.
//!
//! The instances use VoxelSize 4,6,40 (anisotropic, so a swapped axis shows), 64³ blocks and
//! MaxDownresLevel 1. The trimesh checks need `bash scripts/pyenv.sh` (they fail, not skip,
//! without it).

use std::collections::BTreeMap;

use tessera_tests::labels::*;
use tessera_tests::mesh::*;
use tessera_tests::*;

const LEVELS: u32 = 1;

/// A labelmap "seg" at a new repo's root holding `vol`.
fn setup<'a>(srv: &'a Server, vol: &Volume) -> Seg<'a> {
    let root = srv.create_repo("mesh");
    let seg = Seg::create(srv, &root, "seg", &mesh_settings(LEVELS));
    seg.write(vol);
    seg
}

/// Checks the scale-0 mesh (default format) of every label of `vol`; returns label → report.
#[track_caller]
fn check_all(seg: &Seg, vol: &Volume, query: &str) -> BTreeMap<u64, MeshReport> {
    let by = voxels_by_label(vol);
    let scale = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("scale="))
        .map_or(0, |s| s.parse().expect("scale"));
    let voxel = at_scale(VOXEL_SIZE, scale);
    by.iter()
        .map(|(&l, voxels)| (l, seg.mesh_checked(l, query, vol, voxels, voxel).2))
        .collect()
}

#[test]
fn single_voxel_is_an_octahedron() {
    let srv = Server::start();
    let root = srv.create_repo("octahedron");
    let seg = Seg::create(&srv, &root, "seg", &mesh_settings(LEVELS));
    let p = [70, 3, 65];
    let mut vol = Volume::zeros([64; 3]);
    vol.origin = [64, 0, 64];
    vol.set(p, 77);
    seg.write(&vol);
    let (_, m, r) = seg.mesh_checked(77, "", &vol, &[p], VOXEL_SIZE);
    assert_eq!((r.vertices, r.triangles), (6, 8), "an octahedron: {m:?}");
    // the six face centres, exactly
    let [vx, vy, vz] = VOXEL_SIZE;
    let c = [
        (f64::from(p[0]) + 0.5) * vx,
        (f64::from(p[1]) + 0.5) * vy,
        (f64::from(p[2]) + 0.5) * vz,
    ];
    let mut want: Vec<[f32; 3]> = Vec::new();
    for (a, half) in [vx / 2.0, vy / 2.0, vz / 2.0].into_iter().enumerate() {
        for s in [-half, half] {
            let mut v = c;
            v[a] += s;
            want.push(v.map(|x| x as f32));
        }
    }
    let mut got = m.vertices.clone();
    let key = |v: &[f32; 3]| v.map(|x| (x * 4.0) as i64);
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want, "vertices of the octahedron of voxel {p:?}");
    // each triangle takes one vertex per axis
    for t in &m.triangles {
        let mut axes: Vec<usize> = t
            .iter()
            .map(|&i| {
                let v = m.vertices[i as usize];
                (0..3)
                    .find(|&a| (f64::from(v[a]) - c[a]).abs() > 1e-3)
                    .expect("off centre")
            })
            .collect();
        axes.sort_unstable();
        assert_eq!(axes, vec![0, 1, 2], "triangle {t:?} of {m:?}");
    }
    // volume of the octahedron with half-diagonals vx/2, vy/2, vz/2: (4/3)·(vx/2)(vy/2)(vz/2)
    let want_volume = 4.0 / 3.0 * vx / 2.0 * vy / 2.0 * vz / 2.0;
    assert!(
        (signed_volume(&m) - want_volume).abs() < 1e-6 * want_volume,
        "volume {} want {want_volume}",
        signed_volume(&m)
    );
    for f in ["obj", "ply", "ngmesh"] {
        let (_, other) = seg.mesh_ok(77, &format!("format={f}"));
        assert_eq!(
            canonical_triangles(&other, VOXEL_SIZE),
            canonical_triangles(&m, VOXEL_SIZE),
            "format={f} describes another surface"
        );
    }
}

#[test]
fn fixture_meshes_match_their_voxels() {
    let srv = Server::start();
    let vol = mesh_fixture();
    let seg = setup(&srv, &vol);
    let reports = check_all(&seg, &vol, "");
    // one closed surface per connected piece, however many blocks it spans
    for (l, sheets) in [
        (1, 2),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (6, 1),
        (7, 1),
        (8, 1),
        (15, 1),
    ] {
        assert_eq!(
            reports[&l].components, sheets,
            "label {l}: closed sheets (outer surfaces + cavity linings): {:?}",
            reports[&l]
        );
    }
    assert!(
        reports[&12].components > 1,
        "noise label 12 is in many pieces"
    );
    // deterministic: the same request twice gives the same bytes, in every format
    for l in [1u64, 10, 13, 4_294_967_301] {
        for q in ["", "format=obj", "format=ply", "format=ngmesh"] {
            let a = seg.mesh(l, q).expect(200).body;
            let b = seg.mesh(l, q).expect(200).body;
            assert!(a == b, "mesh/{l}?{q}: two requests gave different bytes");
        }
    }
    assert!(
        seg.mesh(1, "").body == seg.mesh(1, "format=ngmesh&scale=0").body,
        "ngmesh and scale 0 are the defaults"
    );
}

#[test]
fn labels_crossing_many_blocks_are_one_surface() {
    let srv = Server::start();
    let vol = block_crossing_fixture();
    let seg = setup(&srv, &vol);
    let reports = check_all(&seg, &vol, "");
    for (l, r) in &reports {
        assert_eq!(
            r.components, 1,
            "label {l} crosses block faces and must be one closed surface without seams: {r:?}"
        );
        assert_eq!(
            r.vertices as u64, r.faces,
            "label {l}: one vertex per exposed face"
        );
    }
}

#[test]
fn every_format_describes_the_same_surface_and_loads_in_trimesh() {
    let srv = Server::start();
    let vol = mesh_fixture();
    let seg = setup(&srv, &vol);
    let dir = tempfile::tempdir().expect("tempdir");
    let by = voxels_by_label(&vol);
    let mut files = Vec::new();
    for l in [1u64, 5, 8, 10, 11, 13, 15, 4_294_967_301] {
        let (ng_bytes, ng, _) = seg.mesh_checked(l, "format=ngmesh", &vol, &by[&l], VOXEL_SIZE);
        let want = canonical_triangles(&ng, VOXEL_SIZE);
        for f in ["obj", "ply"] {
            let (bytes, m, r) =
                seg.mesh_checked(l, &format!("format={f}"), &vol, &by[&l], VOXEL_SIZE);
            assert_eq!(
                r.triangles,
                ng.triangles.len(),
                "label {l}: {f} triangle count"
            );
            assert!(
                canonical_triangles(&m, VOXEL_SIZE) == want,
                "label {l}: format={f} describes another surface than ngmesh"
            );
            if f == "obj" {
                let text = String::from_utf8(bytes.clone()).expect("OBJ is UTF-8 text");
                assert!(
                    text.lines().any(|line| line.starts_with("v "))
                        && text.lines().any(|line| line.starts_with("f ")),
                    "label {l}: OBJ without v/f lines"
                );
            } else {
                assert!(
                    bytes.starts_with(b"ply\nformat binary_little_endian 1.0\n"),
                    "label {l}: PLY header {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
                );
            }
            files.push((format!("{l}.{f}"), bytes, m));
        }
        files.push((format!("{l}.ngmesh"), ng_bytes, ng));
    }
    assert_trimesh_agrees(dir.path(), &files);
}

#[test]
fn scale_1_meshes_the_downsampled_volume() {
    let srv = Server::start();
    let vol = mesh_fixture();
    let seg = setup(&srv, &vol);
    let lo = pyramid(&vol, 1).pop().expect("level 1");
    let by = voxels_by_label(&lo);
    let voxel = at_scale(VOXEL_SIZE, 1);
    assert_eq!(voxel, [8.0, 12.0, 80.0]);
    for (&l, voxels) in &by {
        seg.mesh_checked(l, "scale=1", &lo, voxels, voxel);
    }
    // labels whose voxels all lose the vote have no scale-1 voxels: nothing to assert there,
    // but the big ones are all present
    for l in [1, 3, 4, 7, 15, 4_294_967_301] {
        assert!(
            by.contains_key(&l),
            "label {l} vanished at scale 1 in the reference"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files: Vec<(String, Vec<u8>, Mesh)> = [1u64, 15]
        .iter()
        .flat_map(|&l| {
            ["ngmesh", "obj", "ply"].map(|f| {
                let (b, m) = seg.mesh_ok(l, &format!("scale=1&format={f}"));
                (format!("s1-{l}.{f}"), b, m)
            })
        })
        .collect();
    assert_trimesh_agrees(dir.path(), &files);
}

#[test]
fn bad_requests() {
    let srv = Server::start();
    let vol = mesh_fixture();
    let seg = setup(&srv, &vol);
    seg.mesh(424_242, "").expect(404);
    seg.mesh(424_242, "format=obj").expect(404);
    seg.mesh(424_242, "supervoxels=true").expect(404);
    seg.mesh(0, "").expect(400);
    seg.mesh(0, "supervoxels=true").expect(400);
    seg.mesh("abc", "").expect(400);
    seg.mesh("12abc", "").expect(400);
    seg.mesh("-3", "").expect(400);
    seg.mesh(1, "scale=2").expect(400);
    seg.mesh(1, "scale=9").expect(400);
    seg.mesh(1, "format=stl").expect(400);
    // still fine after the refusals
    seg.mesh_ok(1, "");

    // a label overwritten everywhere no longer has a mesh
    let mut blk = Volume::filled([64; 3], 0);
    blk.set([3, 3, 3], 900);
    seg.post_raw(&blk, "mutate=true").expect(200);
    seg.mesh_ok(900, "");
    let mut blk2 = blk.clone();
    blk2.set([3, 3, 3], 901);
    seg.post_raw(&blk2, "mutate=true").expect(200);
    seg.mesh(900, "").expect(404);
    seg.mesh(900, "supervoxels=true").expect(404);
    seg.mesh_ok(901, "");
}

/// The fixture, committed, with a child branch; returns (seg at root, seg at child, model).
fn versioned(srv: &Server) -> (Seg<'_>, Seg<'_>, Model) {
    let vol = mesh_fixture();
    let seg = setup(srv, &vol);
    srv.commit(&seg.uuid);
    let child = srv.branch(&seg.uuid, "edits");
    let child = seg.at(&child);
    (seg, child, Model::new(vol))
}

/// Mesh bytes (ngmesh, scale 0) of these labels at `seg`'s version.
fn snapshot(seg: &Seg, labels: &[u64]) -> BTreeMap<u64, Vec<u8>> {
    labels
        .iter()
        .map(|&l| (l, seg.mesh(l, "").expect(200).body))
        .collect()
}

#[test]
fn merge_meshes_the_union_in_the_child_only() {
    let srv = Server::start();
    let (root, child, mut model) = versioned(&srv);
    let touched = [1, 2, 3, 7, 8, 9, 12, 13];
    let before = snapshot(&root, &touched);

    child.merge_ok(&[3, 1, 2], "");
    model.merge(3, &[1, 2]);
    // diagonal-only contacts (edge 7–8, corner 8–9) in one body
    child.merge_ok(&[8, 7, 9], "");
    model.merge(8, &[7, 9]);
    // noise pieces interleaved face to face
    child.merge_ok(&[13, 12], "");
    model.merge(13, &[12]);

    let mapped = model.mapped();
    let sizes = model.body_sizes();
    let by = voxels_by_label(&mapped);
    for body in [3, 8, 13] {
        let (_, _, r) = child.mesh_checked(body, "", &mapped, &by[&body], VOXEL_SIZE);
        assert_eq!(
            r.voxels, sizes[&body],
            "body {body}: N is the union's voxels"
        );
    }
    for gone in [1, 2, 7, 9, 12] {
        child.mesh(gone, "").expect(404);
        child.mesh(gone, "format=ply").expect(404);
    }
    // supervoxels keep their own meshes
    let sv = &model.sv;
    let sv_by = voxels_by_label(sv);
    for s in [1, 2, 7, 12] {
        child.mesh_checked(s, "supervoxels=true", sv, &sv_by[&s], VOXEL_SIZE);
    }
    // scale 1 of a merged body: the mapped downsampled supervoxels
    let lo = model.map_volume(&pyramid(sv, 1)[1]);
    let lo_by = voxels_by_label(&lo);
    child.mesh_checked(3, "scale=1", &lo, &lo_by[&3], at_scale(VOXEL_SIZE, 1));
    child.mesh(1, "scale=1").expect(404);

    // the parent still has the old meshes, byte for byte
    assert_eq!(snapshot(&root, &touched), before, "root meshes changed");
}

#[test]
fn split_and_cleave_remesh_both_bodies() {
    let srv = Server::start();
    let (root, child, mut model) = versioned(&srv);
    let touched = [3, 4, 15];
    let before = snapshot(&root, &touched);

    // split the torus in two across x = 100 (both halves keep a piece of the ring)
    let part = voxels_where(&model.sv, [0, 0, 0], [100, 128, 128], |l| l == 15);
    let (new, _) = child.split_ok(15, &part, "");
    model.split(15, &part, new);
    // cleave: merge 4 into 3, then cleave 4 out again
    child.merge_ok(&[3, 4], "");
    model.merge(3, &[4]);
    let (cleaved, _) = child.cleave_ok(3, &[4], "");
    model.cleave(3, &[4], cleaved);

    let mapped = model.mapped();
    let sizes = model.body_sizes();
    let by = voxels_by_label(&mapped);
    for body in [15, new, 3, cleaved] {
        let (_, _, r) = child.mesh_checked(body, "", &mapped, &by[&body], VOXEL_SIZE);
        assert_eq!(
            r.voxels, sizes[&body],
            "body {body}: N is its new voxel count"
        );
    }
    assert!(
        sizes[&new] > 0 && sizes[&15] > 0,
        "the split left both halves of the torus"
    );
    // the supervoxels of the split: meshes of the supervoxel volume
    let sv_by = voxels_by_label(&model.sv);
    assert_eq!(
        child.supervoxels_of(new),
        Some(model.supervoxels(new)),
        "split supervoxel ids (see proofread_split.rs)"
    );
    for s in model.supervoxels(new) {
        child.mesh_checked(s, "supervoxels=true", &model.sv, &sv_by[&s], VOXEL_SIZE);
    }
    child.mesh(4, "").expect(404);
    assert_eq!(snapshot(&root, &touched), before, "root meshes changed");
}

#[test]
fn python_mesh_reader_is_available_and_discriminating() {
    // Fails (does not skip) when the interpreter or trimesh is missing.
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = mesh_fixture().region([0, 0, 0], [64, 64, 64]);
    let mut files = Vec::new();
    for l in [4u64, 5] {
        let m = reference_mesh(&vol, l, VOXEL_SIZE);
        for f in ["ngmesh", "obj", "ply"] {
            files.push((format!("ref{l}.{f}"), encode_as(f, &m), m.clone()));
        }
    }
    assert_trimesh_agrees(dir.path(), &files);
    // an open mesh is reported as such
    let mut open = reference_mesh(&vol, 4, VOXEL_SIZE);
    open.triangles.pop();
    let p = dir.path().join("open.ply");
    std::fs::write(&p, encode_ply(&open)).expect("write");
    let r = trimesh_check(&[p]);
    assert!(!r[0].watertight, "trimesh must see the hole: {r:?}");
}
