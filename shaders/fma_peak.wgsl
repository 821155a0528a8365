// Device probe: FMA throughput. Each thread runs 8 independent multiply-add chains for
// `iters` rounds (16 FLOP per round per chain pair) and stores one value so nothing is
// optimised away. Grid (n_groups) of 256 threads.
struct Params {
    iters: u32,
    _a: u32,
    _b: u32,
    _c: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = f32(gid.x & 7u) * 1.0e-3;
    var a = vec4<f32>(1.0 + s, 1.1, 1.2, 1.3);
    var b = vec4<f32>(0.9, 0.8 - s, 0.7, 0.6);
    let m = vec4<f32>(0.9999, 0.9998, 0.9997, 0.9996);
    let c = vec4<f32>(1.0e-4, 2.0e-4, 3.0e-4, 4.0e-4);
    for (var i = 0u; i < p.iters; i++) {
        a = fma(a, m, c);
        b = fma(b, m, c);
        a = fma(a, m, c);
        b = fma(b, m, c);
    }
    out[gid.x] = dot(a, b);
}
