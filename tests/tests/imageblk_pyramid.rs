//! Grayscale pyramids as sibling instances (`grayscale`, `grayscale_1`, `grayscale_2`): each
//! level synced to the one above keeps itself the 2×2×2 mean of it — after every write
//! (through the durable sync) and in bulk (`POST resync`) — equal to an independent mean
//! computed here and by numpy (`tests/python/check_gray_pyramid.py`, under the pyenv of
//! `scripts/pyenv.sh`), on the CPU and the GPU (lavapipe in CI) backends alike, per version.

use tessera_tests::mesh::python;
use tessera_tests::*;

/// A volume at `at` of `size` voxels (x fastest).
#[derive(Clone)]
struct Vol {
    at: [i64; 3],
    size: [usize; 3],
    v: Vec<u8>,
}

impl Vol {
    fn get(&self, p: [i64; 3]) -> u8 {
        if (0..3).any(|a| p[a] < self.at[a] || p[a] >= self.at[a] + self.size[a] as i64) {
            return 0;
        }
        let l: Vec<usize> = (0..3).map(|a| (p[a] - self.at[a]) as usize).collect();
        self.v[(l[2] * self.size[1] + l[1]) * self.size[0] + l[0]]
    }

    /// The next level over the even-aligned hull: each voxel the mean of its eight children,
    /// rounded half up, absent voxels counting as zeros.
    fn half(&self) -> Vol {
        let at: [i64; 3] = std::array::from_fn(|a| self.at[a].div_euclid(2));
        let end: [i64; 3] =
            std::array::from_fn(|a| (self.at[a] + self.size[a] as i64 + 1).div_euclid(2));
        let size: [usize; 3] = std::array::from_fn(|a| (end[a] - at[a]) as usize);
        let mut v = Vec::with_capacity(size.iter().product());
        for z in at[2]..end[2] {
            for y in at[1]..end[1] {
                for x in at[0]..end[0] {
                    let mut sum = 0u32;
                    for o in 0..8 {
                        let p = [2 * x + (o & 1), 2 * y + ((o >> 1) & 1), 2 * z + (o >> 2)];
                        sum += self.get(p) as u32;
                    }
                    v.push(((sum + 4) / 8) as u8);
                }
            }
        }
        Vol { at, size, v }
    }

    fn path(&self, inst: &str) -> String {
        let (s, a) = (self.size, self.at);
        format!(
            "{inst}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
            s[0], s[1], s[2], a[0], a[1], a[2]
        )
    }
}

fn noise(at: [i64; 3], size: [usize; 3], seed: u64) -> Vol {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..size.iter().product::<usize>())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    Vol { at, size, v }
}

fn start(compute: &str) -> (Server, String) {
    let srv = Server::builder()
        .compute(compute)
        .env("TESSERA_GPU_ALLOW_SOFTWARE", "1")
        .start();
    let root = srv.create_repo("pyramid");
    let bs = json!({"BlockSize": "16,16,16"});
    for name in ["grayscale", "grayscale_1", "grayscale_2"] {
        srv.create_instance_with(&root, "uint8blk", name, &bs);
    }
    srv.post_json(
        &format!("/api/node/{root}/grayscale_1/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    srv.post_json(
        &format!("/api/node/{root}/grayscale_2/sync"),
        &json!({"sync": "grayscale_1"}),
    )
    .expect(200);
    (srv, root)
}

fn caught_up(srv: &Server) {
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "sync not caught up: {s}");
}

/// Reads `want`'s box of `inst` at `node` and compares.
#[track_caller]
fn check(srv: &Server, node: &str, inst: &str, want: &Vol) {
    let got = srv
        .get(&format!("/api/node/{node}/{}", want.path(inst)))
        .expect(200);
    let bad = got.body.iter().zip(&want.v).filter(|(a, b)| a != b).count();
    assert_eq!(
        bad,
        0,
        "{inst}: {bad} of {} voxels differ from the mean",
        want.v.len()
    );
}

/// Level 0 written in two pieces; each level is then the mean of the one above.
fn build(srv: &Server, root: &str) -> Vec<Vol> {
    let a = noise([-16, 0, 16], [64, 48, 32], 1);
    srv.post(
        &format!("/api/node/{root}/{}", a.path("grayscale")),
        a.v.clone(),
    )
    .expect(200);
    caught_up(srv);
    // A second write over part of it: the levels below follow incrementally.
    let b = noise([0, 16, 32], [16, 16, 16], 2);
    srv.post(
        &format!("/api/node/{root}/{}", b.path("grayscale")),
        b.v.clone(),
    )
    .expect(200);
    caught_up(srv);
    let mut l0 = a.clone();
    for z in 0..16 {
        for y in 0..16 {
            for x in 0..16 {
                let l = [x + 16, y + 16, z + 16];
                l0.v[(l[2] * 48 + l[1]) * 64 + l[0]] = b.v[(z * 16 + y) * 16 + x];
            }
        }
    }
    let l1 = l0.half();
    let l2 = l1.half();
    check(srv, root, "grayscale", &l0);
    check(srv, root, "grayscale_1", &l1);
    check(srv, root, "grayscale_2", &l2);
    vec![l0, l1, l2]
}

#[test]
fn levels_follow_every_write_and_resync_rebuilds_them() {
    let (srv, root) = start("cpu");
    let levels = build(&srv, &root);
    // neuroglancer finds the levels by name.
    let info = srv
        .get(&format!("/api/repo/{root}/info"))
        .expect(200)
        .json();
    for n in ["grayscale_1", "grayscale_2"] {
        assert!(info["DataInstances"].get(n).is_some());
    }
    // A level added after the data: resync builds it in bulk.
    srv.create_instance_with(
        &root,
        "uint8blk",
        "late_1",
        &json!({"BlockSize": "16,16,16"}),
    );
    srv.post_json(
        &format!("/api/node/{root}/late_1/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    let r = srv
        .post_empty(&format!("/api/node/{root}/late_1/resync"))
        .expect(200)
        .json();
    assert!(r["blocks"].as_u64().unwrap() > 0);
    check(&srv, &root, "late_1", &levels[1]);
    // resync needs exactly one source; levels need the source's block size.
    srv.post_empty(&format!("/api/node/{root}/grayscale/resync"))
        .expect_4xx();
    srv.create_instance_with(&root, "uint16blk", "u16", &json!({}));
    srv.post_json(
        &format!("/api/node/{root}/u16/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect_4xx();

    // A child version's write moves the child's levels only.
    srv.commit(&root);
    let child = srv.newversion(&root);
    let c = noise([-16, 0, 16], [16, 16, 16], 3);
    srv.post(
        &format!("/api/node/{child}/{}", c.path("grayscale")),
        c.v.clone(),
    )
    .expect(200);
    caught_up(&srv);
    check(&srv, &root, "grayscale_1", &levels[1]);
    check(&srv, &root, "grayscale_2", &levels[2]);
    let mut l0 = levels[0].clone();
    for z in 0..16 {
        for y in 0..16 {
            for x in 0..16 {
                l0.v[(z * 48 + y) * 64 + x] = c.v[(z * 16 + y) * 16 + x];
            }
        }
    }
    check(&srv, &child, "grayscale_1", &l0.half());
    check(&srv, &child, "grayscale_2", &l0.half().half());
}

#[test]
fn levels_equal_a_numpy_mean() {
    let (srv, root) = start("cpu");
    build(&srv, &root);
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/check_gray_pyramid.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .args([
            srv.base_url(),
            &root,
            "grayscale",
            "2",
            "-16,0,16",
            "64,48,32",
        ])
        .output()
        .expect("running the numpy checker (bash scripts/pyenv.sh makes its interpreter)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "numpy pyramid check failed:\n{text}");
    assert!(text.contains("level 2:"), "{text}");
}

#[test]
fn gpu_and_cpu_levels_are_the_same_bytes() {
    let (gpu, groot) = start("gpu");
    let (cpu, croot) = start("cpu");
    build(&gpu, &groot);
    build(&cpu, &croot);
    for inst in ["grayscale_1", "grayscale_2"] {
        let p = |root: &str| format!("/api/node/{root}/{inst}/raw/0_1_2/48_32_32/-16_-16_0");
        assert_eq!(
            gpu.get(&p(&groot)).expect(200).body,
            cpu.get(&p(&croot)).expect(200).body
        );
    }
}
