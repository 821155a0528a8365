// Merges the S split partials of attention (log-sum-exp) into o [T, nh·d].
// Grid (nh, T); thread c owns output dims c, c + 64, ...
struct Params {
    nh: u32,
    d: u32,
    _a: u32,
    _b: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let t = wg.y;
    let n = step.attn_splits;
    let d = p.d;
    let base = (t * p.nh + h) * n * (d + 2u);
    var mx = -3.0e38;
    for (var s = 0u; s < n; s++) {
        mx = max(mx, part[base + s * (d + 2u)]);
    }
    var l = 0.0;
    for (var s = 0u; s < n; s++) {
        l += part[base + s * (d + 2u) + 1u] * exp(part[base + s * (d + 2u)] - mx);
    }
    for (var c = lid; c < d; c += 64u) {
        var a = 0.0;
        for (var s = 0u; s < n; s++) {
            let b = base + s * (d + 2u);
            a += part[b + 2u + c] * exp(part[b] - mx);
        }
        o[(t * p.nh + h) * d + c] = a / l;
    }
}
