//! GPU = CPU through the whole labelmap write path: the same volume ingested by a server on
//! the GPU backend (lavapipe in CI) and one on the CPU backend gives byte-identical stored
//! blocks at every scale (the block encoding is canonical) and identical label indices.

use tessera_tests::labels::*;
use tessera_tests::*;

const LEVELS: u32 = 3;

fn server(compute: &str) -> (Server, String) {
    let srv = Server::builder()
        .compute(compute)
        .env("TESSERA_GPU_ALLOW_SOFTWARE", "1")
        .start();
    let root = srv.create_repo("gpu-vs-cpu");
    srv.create_instance_with(&root, "labelmap", "seg", &standard_settings(LEVELS));
    (srv, root)
}

#[test]
fn gpu_and_cpu_servers_store_the_same_bytes() {
    let vol = mixed_fixture();
    let (cpu, cpu_root) = server("cpu");
    let (gpu, gpu_root) = server("gpu");
    let info = gpu.get("/api/server/info").expect(200).json();
    assert!(
        info.to_string().contains("gpu ("),
        "the GPU server is not on the GPU backend: {info}"
    );
    let handle = |srv, root: &str| Seg::open(srv, root, "seg");
    let (cpu_seg, gpu_seg) = (handle(&cpu, &cpu_root), handle(&gpu, &gpu_root));
    // Two writes, the second overwriting part of the first, so index updates and the
    // unchanged-octant path of the pyramid run on both.
    let part = vol.region([0, 0, 0], [64, 64, 64]);
    let mut shifted = part.clone();
    for v in shifted.data.iter_mut() {
        *v = if *v == 0 { 0 } else { *v + 1000 };
    }
    for seg in [&cpu_seg, &gpu_seg] {
        seg.write(&vol);
        seg.write(&shifted);
    }
    let size = [vol.size[0], vol.size[1], vol.size[2]];
    for scale in 0..=LEVELS {
        let q = format!("compression=blocks&scale={scale}");
        let mut a = cpu_seg.blocks([0, 0, 0], size, &q);
        let mut b = gpu_seg.blocks([0, 0, 0], size, &q);
        assert!(!a.is_empty(), "scale {scale}: no blocks stored");
        a.sort_by_key(|r| r.0);
        b.sort_by_key(|r| r.0);
        assert_eq!(a.len(), b.len(), "scale {scale}: block counts differ");
        for ((ca, pa), (cb, pb)) in a.iter().zip(&b) {
            assert_eq!(ca, cb);
            let (ra, rb) = (gunzip(pa).unwrap(), gunzip(pb).unwrap());
            assert!(ra == rb, "scale {scale}, block {ca:?}: stored bytes differ");
        }
    }
    let labels: Vec<u64> = vol.labels().into_iter().filter(|l| *l != 0).collect();
    for l in labels.iter().chain(&[1001, 1002]) {
        let path = format!("index/{l}");
        let (x, y) = (cpu_seg.get(&path), gpu_seg.get(&path));
        assert_eq!(x.status, y.status, "label {l}");
        if x.status == 200 {
            let x: proto::LabelIndex = decode(&x.body);
            let y: proto::LabelIndex = decode(&y.body);
            assert_eq!(x.blocks, y.blocks, "label {l}: index blocks differ");
        }
    }
}
