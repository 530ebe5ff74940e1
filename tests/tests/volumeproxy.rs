//! `volumeproxy` instances serving volumes that live elsewhere: a zarr v2 and a zarr v3 array
//! written by the `zarr` package and two precomputed volumes (raw gzip grayscale,
//! compressed_segmentation labels) written by CloudVolume
//! (tests/python/remote_volumes.py), served by a loopback HTTP server, read through DVID's
//! `raw` endpoint and compared voxel for voxel with what was written.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_tests::mesh::python;
use tessera_tests::*;

/// `python -m http.server` over `dir` on a free loopback port, stopped on drop.
struct Http {
    child: Child,
    port: u16,
}

impl Http {
    fn serve(dir: &Path) -> Http {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Http::serve_on(dir, port)
    }

    fn serve_on(dir: &Path, port: u16) -> Http {
        let child = Command::new(python())
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the HTTP server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Http { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fixture {
    name: String,
    shape: [usize; 3],
    elem: usize,
    offset: [i64; 3],
    voxels: Vec<u8>,
}

fn fixtures(dir: &Path) -> Vec<Fixture> {
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/remote_volumes.py"))
        .arg(dir)
        .output()
        .expect("running remote_volumes.py");
    assert!(
        out.status.success(),
        "remote_volumes.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let name = v["name"].as_str().unwrap().to_string();
            let nums = |k: &str| -> Vec<i64> {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_i64().unwrap())
                    .collect()
            };
            let (s, o) = (nums("shape"), nums("offset"));
            Fixture {
                voxels: std::fs::read(dir.join(format!("{name}.bin"))).unwrap(),
                name,
                shape: [s[0] as usize, s[1] as usize, s[2] as usize],
                elem: if v["dtype"] == "uint64" { 8 } else { 1 },
                offset: [o[0], o[1], o[2]],
            }
        })
        .collect()
}

impl Fixture {
    /// The voxels of the box at `lo` (world coordinates) of `size`, zero outside.
    fn cut(&self, lo: [i64; 3], size: [usize; 3]) -> Vec<u8> {
        let mut out = Vec::with_capacity(size.iter().product::<usize>() * self.elem);
        for z in 0..size[2] as i64 {
            for y in 0..size[1] as i64 {
                for x in 0..size[0] as i64 {
                    let p = [lo[0] + x, lo[1] + y, lo[2] + z];
                    let local: Vec<i64> = (0..3).map(|a| p[a] - self.offset[a]).collect();
                    if (0..3).all(|a| local[a] >= 0 && (local[a] as usize) < self.shape[a]) {
                        let i = (local[2] as usize * self.shape[1] + local[1] as usize)
                            * self.shape[0]
                            + local[0] as usize;
                        out.extend_from_slice(&self.voxels[i * self.elem..(i + 1) * self.elem]);
                    } else {
                        out.extend(std::iter::repeat_n(0, self.elem));
                    }
                }
            }
        }
        out
    }
}

fn raw(srv: &Server, root: &str, name: &str, lo: [i64; 3], size: [usize; 3]) -> Vec<u8> {
    let path = format!(
        "/api/node/{root}/{name}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
        size[0], size[1], size[2], lo[0], lo[1], lo[2]
    );
    srv.get(&path).expect(200).body
}

#[test]
fn proxies_serve_zarr_and_precomputed_volumes_from_http_voxel_for_voxel() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = fixtures(dir.path());
    assert_eq!(volumes.len(), 4);
    let http = Http::serve(dir.path());
    let srv = Server::start();
    let root = srv.create_repo("proxies");
    for f in &volumes {
        srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "volumeproxy", "dataname": f.name, "Source": http.url(&f.name),
                    "CacheMB": "16"}),
        )
        .expect(200);
        let info = srv
            .get(&format!("/api/node/{root}/{}/info", f.name))
            .expect(200)
            .json();
        let ext = &info["Extended"];
        assert_eq!(ext["MinPoint"], json!(f.offset), "{}: {ext}", f.name);
        let max: Vec<i64> = (0..3)
            .map(|a| f.offset[a] + f.shape[a] as i64 - 1)
            .collect();
        assert_eq!(ext["MaxPoint"], json!(max), "{}: {ext}", f.name);
        assert_eq!(ext["Source"], http.url(&f.name));

        // The whole volume, then boxes across chunk edges and past the volume's.
        let whole = raw(&srv, &root, &f.name, f.offset, f.shape);
        assert!(whole == f.voxels, "{}: the whole volume differs", f.name);
        for (d, size) in [([-5, 7, 3], [40, 9, 20]), ([13, -2, -4], [64, 30, 11])] {
            let lo: [i64; 3] = std::array::from_fn(|a| f.offset[a] + d[a]);
            assert!(
                raw(&srv, &root, &f.name, lo, size) == f.cut(lo, size),
                "{}: box {lo:?} {size:?} differs",
                f.name
            );
        }
    }
    let em = &volumes[2];
    assert_eq!(
        srv.get(&format!("/api/node/{root}/precomputed/info"))
            .expect(200)
            .json()["Extended"]["VoxelSize"],
        json!([4.0, 4.0, 40.0])
    );
    // A 2-D slice as PNG.
    let png = srv
        .get(&format!(
            "/api/node/{root}/precomputed/raw/0_1/60_50/{}_{}_{}",
            em.offset[0],
            em.offset[1],
            em.offset[2] + 5
        ))
        .expect(200);
    assert_eq!(png.header("content-type").as_deref(), Some("image/png"));

    // Read-only, and a source that can't be read is refused at creation, by name.
    srv.post(
        &format!("/api/node/{root}/zarr2/raw/0_1_2/1_1_1/0_0_0"),
        vec![1],
    )
    .expect_4xx();
    for bad in [http.url("nothing-here"), "ftp://x/y".to_string()] {
        let r = srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "volumeproxy", "dataname": "bad", "Source": bad}),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains("source"), "{bad}: {}", r.text());
    }

    // Cached chunks keep serving when the source goes away; a proxy with no cache answers
    // 503 naming the object store, and serves again when the source returns.
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "volumeproxy", "dataname": "nocache", "Source": http.url("zarr2"),
                "CacheMB": "0", "RetrySecs": "0.5"}),
    )
    .expect(200);
    let port = http.port;
    drop(http);
    let z2 = &volumes[0];
    assert!(raw(&srv, &root, "zarr2", [0; 3], [16, 16, 16]) == z2.cut([0; 3], [16, 16, 16]));
    let r = srv.get(&format!("/api/node/{root}/nocache/raw/0_1_2/8_8_8/0_0_0"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("object store"), "{}", r.text());
    let again = Http::serve_on(dir.path(), port);
    assert!(raw(&srv, &root, "nocache", [0; 3], [8, 8, 8]) == z2.cut([0; 3], [8, 8, 8]));
    drop(again);
}
