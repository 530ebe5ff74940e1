// The bandwidth probe of `tessera bench gpu` (it computes nothing, so it has no CPU twin):
// each invocation copies one 16-byte word, so its pass time is what a streaming kernel can
// reach on this device, the roofline the kernels are measured against.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    dst[i] = src[i];
}
