// Causal GQA attention, split along the KV length (docs §7 steps 5–7).
// Grid (S, nh, T): workgroup (s, h, t) covers keys [s·L, min(s·L + L, p + 1)) of query
// head h at position p = pos0 + t, L = ceil((pos0 + T) / S), with an online softmax over
// blocks of WG keys; it writes its partial (max m, sum l, unnormalised o[d]) to `part`
// [T, nh, S, d + 2], which attn_merge combines. q is [T, nh·d]; caches are [ctx, nkv, d].
const WG: u32 = 64u;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

var<workgroup> qs: array<f32, MAX_HEAD_DIM>;
var<workgroup> probs: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let s = wg.x;
    let h = wg.y;
    let t = wg.z;
    let n_splits = step.attn_splits;
    let d = p.d;
    let pos = step.pos0 + t;
    let kv_total = step.pos0 + step.n_tokens;
    let span = (kv_total + n_splits - 1u) / n_splits;
    let start = s * span;
    let end = min(start + span, pos + 1u);
    let g = h / (p.nh / p.nkv);
    for (var c = lane.id; c < d; c += WG) {
        qs[c] = q[(t * p.nh + h) * d + c] * p.scale;
    }
    workgroupBarrier();
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DPT>;
    let dp = d / 2u;
    for (var kb = start; kb < end; kb += WG) {
        let j = kb + lane.id;
        var sc = NEG;
        if j < end {
            let kbase = (j * p.nkv + g) * dp;
            var dotv = 0.0;
            for (var c = 0u; c < dp; c++) {
                let kv = KV_load(k_cache[kbase + c]);
                dotv += kv.x * qs[2u * c] + kv.y * qs[2u * c + 1u];
            }
            sc = dotv;
        }
        let m_new = max(m, wg_max(sc, lane));
        var pj = 0.0;
        if j < end {
            pj = exp(sc - m_new);
        }
        let corr = exp(m - m_new);
        l = l * corr + wg_sum(pj, lane);
        probs[lane.id] = pj;
        workgroupBarrier();
        let nk = min(WG, end - kb);
        for (var dd = 0u; dd < DPT; dd++) {
            let c = lane.id + dd * WG;
            if c < d {
                var a = acc[dd] * corr;
                for (var jj = 0u; jj < nk; jj++) {
                    let vv = KV_load(v_cache[((kb + jj) * p.nkv + g) * dp + c / 2u]);
                    a += probs[jj] * select(vv.x, vv.y, (c & 1u) == 1u);
                }
                acc[dd] = a;
            }
        }
        workgroupBarrier();
        m = m_new;
    }
    let base = ((t * p.nh + h) * n_splits + s) * (d + 2u);
    if lane.id == 0u {
        part[base] = m;
        part[base + 1u] = l;
    }
    for (var dd = 0u; dd < DPT; dd++) {
        let c = lane.id + dd * WG;
        if c < d {
            part[base + 2u + c] = acc[dd];
        }
    }
}
