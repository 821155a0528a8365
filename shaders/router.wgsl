// Expert selection (docs §9), one token per thread: s = sigmoid(logits); the top-k of
// s + expert_bias (ties: lower expert id) are chosen; weights are the unbiased s, divided
// by their sum + 1e-6 when NORM, times `scale`. Writes ids and weights [T, k].
struct Params {
    e: u32,
    k: u32,
    norm: u32,
    has_bias: u32,
    scale: f32,
    _a: u32,
    _b: u32,
    _c: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> expert_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> wts: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(v, -80.0, 80.0)));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if t >= step.n_tokens {
        return;
    }
    var taken: array<u32, MAX_EXPERTS / 32u>; // bitmask over the experts
    var chosen: array<u32, MAX_TOPK>;
    var sum = 0.0;
    // The loop bounds are p.e and p.k (the buffers hold at least that many values): the
    // arrayLength keeps them from depending on the uniform alone, which lavapipe (Mesa 22.x)
    // would inline by compiling, and keeping, a new shader at every dispatch (1.5 MB of host
    // memory and most of the time of a tiny model's decode step).
    let n_e = min(p.e, arrayLength(&logits));
    let n_k = min(p.k, arrayLength(&wts));
    for (var j = 0u; j < n_k; j++) {
        var best = 0xffffffffu;
        var best_v = -3.0e38;
        for (var e = 0u; e < n_e; e++) {
            if (taken[e / 32u] & (1u << (e % 32u))) != 0u {
                continue;
            }
            var v = sigmoid(logits[t * p.e + e]);
            if p.has_bias != 0u {
                v += expert_bias[e];
            }
            if best == 0xffffffffu || v > best_v {
                best = e;
                best_v = v;
            }
        }
        taken[best / 32u] |= 1u << (best % 32u);
        chosen[j] = best;
        sum += sigmoid(logits[t * p.e + best]);
    }
    for (var j = 0u; j < n_k; j++) {
        var wv = sigmoid(logits[t * p.e + chosen[j]]);
        if p.norm != 0u {
            wv = wv / (sum + 1.0e-6);
        }
        ids[t * p.k + j] = chosen[j];
        wts[t * p.k + j] = wv * p.scale;
    }
}
