// Residual add of the routed experts' weighted outputs: h[t, c] += Σ_s y[t·k + s, c].
// Grid (ceil(H/64), T).
struct Params {
    h: u32,
    k: u32,
    _a: u32,
    _b: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> hidden: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let c = gid.x;
    let t = wg.y;
    if c >= p.h {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
        s += y[(t * p.k + j) * p.h + c];
    }
    hidden[t * p.h + c] += s;
}
