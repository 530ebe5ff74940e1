//! GPU = CPU for surface extraction: a server on the GPU backend (lavapipe in CI) answers every
//! `GET mesh` — every body and supervoxel, scales 0 and 1, all three formats, after merges,
//! a split and a cleave — with the same bytes as a server on the CPU backend, and
//! `tessera mesh --compute gpu` writes the same files as `--compute cpu`.

use tessera_tests::labels::*;
use tessera_tests::mesh::*;
use tessera_tests::*;

fn server(compute: &str) -> Server {
    Server::builder()
        .compute(compute)
        .env("TESSERA_GPU_ALLOW_SOFTWARE", "1")
        .start()
}

/// The same data and mutations on one server; returns the labelmaps, the split/cleave ids and
/// the model of "seg".
fn populate(srv: &Server) -> (Seg<'_>, Seg<'_>, Vec<u64>, Model) {
    let root = srv.create_repo("mesh-gpu");
    let seg = Seg::create(srv, &root, "seg", &mesh_settings(1));
    let mut model = Model::new(mesh_fixture());
    seg.write(&model.sv);
    seg.merge_ok(&[3, 1, 2], "");
    model.merge(3, &[1, 2]);
    seg.merge_ok(&[8, 7, 9], "");
    model.merge(8, &[7, 9]);
    let part = voxels_where(&model.sv, [0, 0, 0], [100, 128, 128], |l| l == 15);
    let (split, _) = seg.split_ok(15, &part, "");
    model.split(15, &part, split);
    seg.merge_ok(&[13, 12], "");
    model.merge(13, &[12]);
    let (cleaved, _) = seg.cleave_ok(13, &[12], "");
    model.cleave(13, &[12], cleaved);
    let tubes = Seg::create(srv, &root, "tubes", &mesh_settings(1));
    tubes.write(&block_crossing_fixture());
    (seg, tubes, vec![split, cleaved], model)
}

#[test]
fn gpu_and_cpu_servers_give_the_same_mesh_bytes() {
    let cpu = server("cpu");
    let gpu = server("gpu");
    let info = gpu.get("/api/server/info").expect(200).json();
    assert!(
        info.to_string().contains("gpu ("),
        "the GPU server is not on the GPU backend: {info}"
    );
    let (cseg, ctubes, cids, model) = populate(&cpu);
    let (gseg, gtubes, gids, _) = populate(&gpu);
    assert_eq!(cids, gids, "the same mutations allocated different ids");
    let mut bodies = cseg.existing_labels();
    assert_eq!(bodies, gseg.existing_labels());
    bodies.push(424_242); // missing: both 404
    let svs: Vec<u64> = model.sv.labels();
    let mut compared = 0;
    let mut cases: Vec<(&Seg, &Seg, u64, String)> = Vec::new();
    for &b in &bodies {
        for q in [
            "",
            "format=obj",
            "format=ply",
            "scale=1",
            "scale=1&format=ply",
        ] {
            cases.push((&cseg, &gseg, b, q.to_string()));
        }
    }
    for &s in svs.iter().chain(&cids).chain(&[1, 15]) {
        for q in ["supervoxels=true", "supervoxels=true&scale=1&format=obj"] {
            cases.push((&cseg, &gseg, s, q.to_string()));
        }
    }
    for l in [20u64, 21, 22, 23] {
        for q in ["", "scale=1"] {
            cases.push((&ctubes, &gtubes, l, q.to_string()));
        }
    }
    for (c, g, l, q) in cases {
        let (a, b) = (c.mesh(l, &q), g.mesh(l, &q));
        assert_eq!(
            a.status, b.status,
            "mesh/{l}?{q}: CPU status {}, GPU status {}",
            a.status, b.status
        );
        if a.status == 200 {
            assert!(
                a.body == b.body,
                "mesh/{l}?{q}: the GPU server's {} bytes differ from the CPU server's {}",
                b.body.len(),
                a.body.len()
            );
            assert_eq!(a.header("content-type"), b.header("content-type"));
            compared += 1;
        }
    }
    assert!(compared > 80, "only {compared} meshes compared");
    // and the GPU's meshes are right, not just equal
    let mapped = model.mapped();
    let by = voxels_by_label(&mapped);
    for b in [3u64, 8, 13, 15, cids[0], cids[1]] {
        gseg.mesh_checked(b, "", &mapped, &by[&b], VOXEL_SIZE);
    }
}

#[test]
fn gpu_and_cpu_cli_write_the_same_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut vol = mesh_fixture().region([36, 36, 36], [64, 92, 80]);
    vol.origin = [0; 3];
    let input = dir.path().join("labels.npy");
    write_volume_npy(&input, &vol, "u32");
    let by = voxels_by_label(&vol);
    for format in ["ngmesh", "ply", "obj"] {
        let mut outs = Vec::new();
        for backend in ["cpu", "gpu"] {
            let out = dir.path().join(format!("{backend}-{format}"));
            let o = run_tessera(
                &[
                    "mesh",
                    "--input",
                    input.to_str().unwrap(),
                    "--out-dir",
                    out.to_str().unwrap(),
                    "--format",
                    format,
                    "--voxel-size",
                    "4,6,40",
                    "--compute",
                    backend,
                ],
                &[("TESSERA_GPU_ALLOW_SOFTWARE", "1")],
            );
            assert!(
                o.status.success(),
                "tessera mesh --compute {backend} failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            outs.push(mesh_files(&out, format));
        }
        assert_eq!(
            outs[0].keys().collect::<Vec<_>>(),
            outs[1].keys().collect::<Vec<_>>(),
            "{format}: the backends wrote different label sets"
        );
        for (l, bytes) in &outs[0] {
            assert!(
                *bytes == outs[1][l],
                "{format}: {l}.{format} differs between --compute cpu and --compute gpu"
            );
        }
        if format != "ngmesh" {
            continue;
        }
        for (l, bytes) in &outs[1] {
            let m = decode_as(format, bytes).unwrap_or_else(|e| panic!("gpu {l}.{format}: {e}"));
            check_label_mesh_voxels(&m, &vol, *l, &by[l], VOXEL_SIZE)
                .unwrap_or_else(|e| panic!("gpu {l}.{format}: {e}"));
        }
    }
}
