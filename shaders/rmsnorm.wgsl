// RMSNorm of rows of n values: y = w ⊙ (x / sqrt(mean(x²) + eps)) (docs §5).
// Grid (rows). With LAST_ONLY, only row T−1 is normed, into y row 0.
const WG: u32 = 128u;
override LAST_ONLY: bool = false;
struct Params {
    n: u32,
    eps: f32,
    _a: u32,
    _b: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    var src = wg.x;
    if LAST_ONLY {
        src = step.n_tokens - 1u;
    }
    let xb = src * p.n;
    let yb = wg.x * p.n;
    var ss = 0.0;
    for (var i = lane.id; i < p.n; i += WG) {
        let v = x[xb + i];
        ss += v * v;
    }
    let r = 1.0 / sqrt(wg_sum(ss, lane) / f32(p.n) + p.eps);
    for (var i = lane.id; i < p.n; i += WG) {
        y[yb + i] = w[i] * (x[xb + i] * r);
    }
}
