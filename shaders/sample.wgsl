// Sampling on the GPU from logits row 0: repetition penalty on the tokens seen so far,
// temperature, then top-k, top-p and min-p in the order transformers applies them, and one
// seeded draw. Only the token id leaves the GPU. One workgroup per draw (grid x = draws:
// tests draw many at once from fixed logits; decode draws one).
//
// Structured output: with `masked`, only the tokens set in `allowed` exist (a masked token
// is −∞ before every filter, so the allowed ones are renormalised and the penalty touches
// only them), and `greedy` takes the largest allowed logit (ties: lowest id), as argmax.
//
// No sort: each filter is a threshold on the tempered logit, found by bisection over
// workgroup-wide counts / sums and snapped to the nearest logit, so ties stay together as
// in transformers (`scores < kth_value` is removed). Thread t owns the contiguous slice
// [t·C, t·C + C) of the vocab, which makes the final prefix walk deterministic.
const WG: u32 = 256u;
const BISECT: u32 = 32u;

struct Params {
    vocab: u32,
    // 1: count the draw and mark the token seen (decode); 0: a batch of test draws.
    advance: u32,
    // 1: only tokens whose bit is set in `allowed` may be drawn.
    masked: u32,
    _b: u32,
}
struct Sampling {
    temperature: f32,
    top_k: u32,   // 0: off
    top_p: f32,   // 1: off
    min_p: f32,   // 0: off
    penalty: f32, // 1: off
    seed_lo: u32,
    seed_hi: u32,
    greedy: u32,  // 1: the largest (allowed) raw logit, no filters
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> cfg: Sampling;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
// [0]: draws so far; [1 + i / 32] bit i % 32: token i was seen.
@group(0) @binding(5) var<storage, read_write> state: array<atomic<u32>>;
// Bit i % 32 of word i / 32: token i is allowed (read only when p.masked == 1).
@group(0) @binding(6) var<storage, read> allowed: array<u32>;

var<workgroup> ends: array<f32, WG>;
var<workgroup> picked: atomic<u32>;
var<workgroup> non_finite: atomic<u32>;

fn is_allowed(i: u32) -> bool {
    return p.masked == 0u || ((allowed[i / 32u] >> (i % 32u)) & 1u) == 1u;
}

fn value(i: u32) -> f32 {
    var l = logits[i];
    if cfg.penalty != 1.0 && ((atomicLoad(&state[1u + i / 32u]) >> (i % 32u)) & 1u) == 1u {
        l = select(l / cfg.penalty, l * cfg.penalty, l < 0.0);
    }
    return l / cfg.temperature;
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let lid = lane.id;
    let n = p.vocab;
    let chunk = (n + WG - 1u) / WG;
    let b0 = min(lid * chunk, n);
    let b1 = min(b0 + chunk, n);
    let draw = atomicLoad(&state[0]) + wg.x;
    if lid == 0u {
        atomicStore(&picked, 0xffffffffu);
    }

    // Range of the tempered logits.
    var mx = -3.4e38;
    var mn = 3.4e38;
    for (var i = b0; i < b1; i++) {
        if (bitcast<u32>(logits[i]) & 0x7f800000u) == 0x7f800000u {
            atomicOr(&non_finite, 1u);
        }
        if is_allowed(i) {
            let v = value(i);
            mx = max(mx, v);
            mn = min(mn, v);
        }
    }
    let m = wg_max(mx, lane);
    let lowest = -wg_max(-mn, lane);
    if cfg.greedy == 1u {
        // The lowest allowed id holding the largest value (the host sets temperature and
        // penalty to 1 for greedy, so values are the raw logits).
        for (var i = b0; i < b1; i++) {
            if is_allowed(i) && value(i) == m {
                atomicMin(&picked, i);
                break;
            }
        }
        workgroupBarrier();
        if lid == 0u {
            finish(wg.x, atomicLoad(&picked), n);
        }
        return;
    }
    let above = m + max(abs(m) * 1e-6, 1e-6); // no logit reaches it

    // top-k: the largest t with at least k logits ≥ t, snapped to a logit.
    var k = cfg.top_k;
    if k == 0u || k > n {
        k = n;
    }
    var lo = lowest;
    var hi = above;
    for (var it = 0u; it < BISECT; it++) {
        let mid = lo + (hi - lo) * 0.5;
        var c = 0.0;
        for (var i = b0; i < b1; i++) {
            c += f32(is_allowed(i) && value(i) >= mid);
        }
        // Counts are exact in f32 (vocab < 2²⁴).
        if wg_sum(c, lane) >= f32(k) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    var sn = 3.4e38;
    for (var i = b0; i < b1; i++) {
        let v = value(i);
        if v >= lo && is_allowed(i) {
            sn = min(sn, v);
        }
    }
    let tk = -wg_max(-sn, lane);

    // top-p over the top-k set: the largest t whose tokens ≥ t hold top_p of its mass.
    var z = 0.0;
    for (var i = b0; i < b1; i++) {
        let v = value(i);
        if v >= tk && is_allowed(i) {
            z += exp(v - m);
        }
    }
    let goal = cfg.top_p * wg_sum(z, lane);
    lo = tk;
    hi = above;
    for (var it = 0u; it < BISECT; it++) {
        let mid = lo + (hi - lo) * 0.5;
        var s = 0.0;
        for (var i = b0; i < b1; i++) {
            let v = value(i);
            if v >= mid && is_allowed(i) {
                s += exp(v - m);
            }
        }
        if wg_sum(s, lane) >= goal {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    sn = 3.4e38;
    for (var i = b0; i < b1; i++) {
        let v = value(i);
        if v >= lo && is_allowed(i) {
            sn = min(sn, v);
        }
    }
    let tp = select(-wg_max(-sn, lane), tk, cfg.top_p >= 1.0);

    // min-p: p ≥ min_p · p_max  ⇔  v ≥ m + ln(min_p).
    let tm = select(-3.4e38, m + log(cfg.min_p), cfg.min_p > 0.0);
    let t = max(tk, max(tp, tm));

    // Draw: u uniform in [0, total); the slice whose prefix interval holds u walks it.
    var own = 0.0;
    for (var i = b0; i < b1; i++) {
        let v = value(i);
        if v >= t && is_allowed(i) {
            own += exp(v - m);
        }
    }
    ends[lid] = own;
    workgroupBarrier();
    if lid == 0u {
        for (var j = 1u; j < WG; j++) {
            ends[j] += ends[j - 1u];
        }
    }
    workgroupBarrier();
    let total = ends[WG - 1u];
    let bits = pcg(pcg(pcg(cfg.seed_lo) ^ cfg.seed_hi) ^ pcg(draw));
    let u = f32(bits >> 8u) / 16777216.0 * total;
    var start = 0.0;
    if lid > 0u {
        start = ends[lid - 1u];
    }
    if u >= start && u < ends[lid] {
        var acc = start;
        var found = 0xffffffffu;
        var last = 0xffffffffu;
        for (var i = b0; i < b1; i++) {
            let v = value(i);
            if v >= t && is_allowed(i) {
                acc += exp(v - m);
                last = i;
                if u < acc && found == 0xffffffffu {
                    found = i;
                }
            }
        }
        if found == 0xffffffffu {
            found = last; // rounding: u fell past the re-summed slice
        }
        atomicMin(&picked, found);
    }
    workgroupBarrier();
    if lid == 0u {
        finish(wg.x, atomicLoad(&picked), n);
    }
}

// Writes draw d's token; counts the draw and marks the token seen when the step advances.
fn finish(d: u32, tok: u32, n: u32) {
    if tok >= n || atomicLoad(&non_finite) != 0u {
        // NaN or ±inf logits (or no allowed token): reported by the host as an error.
        out[d] = 0xffffffffu;
        return;
    }
    out[d] = tok;
    if p.advance == 1u {
        atomicAdd(&state[0], 1u);
        atomicOr(&state[1u + tok / 32u], 1u << (tok % 32u));
    }
}
