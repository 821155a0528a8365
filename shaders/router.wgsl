// Expert selection (docs §9), one workgroup per token: s = sigmoid(logits); the top-k of
// s + expert_bias (ties: lower expert id) are chosen; weights are the unbiased s, divided
// by their sum + 1e-6 when NORM, times `scale`. Writes ids and weights [T, k]. Each lane
// ranks its experts against all the others at once (rank = how many come before it), so no
// lane walks the k selections one after another: a decode step's router is a few shared-
// memory passes, not k·E dependent loads. Grid (T).
const WG: u32 = 64u;
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

var<workgroup> score: array<f32, MAX_EXPERTS>; // s + bias: what is ranked
var<workgroup> sig: array<f32, MAX_EXPERTS>; // s: what is weighted
var<workgroup> chosen: array<u32, MAX_TOPK>; // in selection order

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(v, -80.0, 80.0)));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    // The loop bounds are p.e and p.k (the buffers hold at least that many values): the
    // arrayLength keeps them from depending on the uniform alone, which lavapipe (Mesa 22.x)
    // would inline by compiling, and keeping, a new shader at every dispatch (1.5 MB of host
    // memory and most of the time of a tiny model's decode step). For the same reason the
    // switches below are selects, not branches on a uniform (a branch cost 1 ms a dispatch).
    let n_e = min(min(p.e, arrayLength(&logits)), MAX_EXPERTS);
    let n_k = min(min(p.k, arrayLength(&wts)), MAX_TOPK);
    for (var e = lid; e < n_e; e += WG) {
        let s = sigmoid(logits[t * p.e + e]);
        // (Without a bias the binding is a 16-byte dummy: the index stays inside it.)
        let bias = expert_bias[min(e, arrayLength(&expert_bias) - 1u)];
        let v = s + select(0.0, bias, p.has_bias != 0u);
        sig[e] = s;
        // A NaN logit ranks last (and ties with other NaNs by id): the order stays total, so
        // the ranks stay a permutation and every chosen slot is written once.
        score[e] = select(-3.4e38, v, v == v);
    }
    workgroupBarrier();
    for (var e = lid; e < n_e; e += WG) {
        // Experts before e: a higher score, or an equal one and a lower id.
        let v = score[e];
        var rank = 0u;
        for (var f = 0u; f < n_e; f++) {
            let u = score[f];
            rank += u32(u > v || (u == v && f < e));
        }
        if rank < n_k {
            chosen[rank] = e;
        }
    }
    workgroupBarrier();
    if lid < n_k {
        // Summed in selection order, as the CPU reference does.
        var sum = 0.0;
        for (var j = 0u; j < n_k; j++) {
            sum += sig[chosen[j]];
        }
        let wv = select(sig[chosen[lid]], sig[chosen[lid]] / (sum + 1.0e-6), p.norm != 0u);
        ids[t * p.k + lid] = chosen[lid];
        wts[t * p.k + lid] = wv * p.scale;
    }
}
