// Gated short convolution (docs §6) over T tokens for one channel per thread:
//   u_t = B_t ⊙ x_t,  v_t = Σ_j w[c, j] · u_{t−(K−1)+j} (+ bias),  y_t = C_t ⊙ v_t
// z [T, 3H] holds B | C | x; state [(K−1), H] holds the last K−1 values of u, oldest first,
// and is continued from and written back. Grid (ceil(H/64)).
struct Params {
    h: u32,
    k: u32,       // taps (conv_L_cache)
    has_bias: u32,
    _a: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read> taps: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if c >= p.h {
        return;
    }
    let h = p.h;
    let km1 = p.k - 1u;
    var hist: array<f32, MAX_CONV_L_CACHE>;
    for (var j = 0u; j < km1; j++) {
        hist[j] = state[j * h + c];
    }
    var b = 0.0;
    if p.has_bias != 0u {
        b = bias[c];
    }
    for (var t = 0u; t < step.n_tokens; t++) {
        let zb = t * 3u * h;
        let u = z[zb + c] * z[zb + 2u * h + c];
        var v = b;
        for (var j = 0u; j < km1; j++) {
            v += taps[c * p.k + j] * hist[j];
        }
        v += taps[c * p.k + km1] * u;
        y[t * h + c] = z[zb + h + c] * v;
        for (var j = 0u; j + 1u < km1; j++) {
            hist[j] = hist[j + 1u];
        }
        hist[km1 - 1u] = u;
    }
    for (var j = 0u; j < km1; j++) {
        state[j * h + c] = hist[j];
    }
}
