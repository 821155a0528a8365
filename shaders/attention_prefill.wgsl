// Causal GQA attention for prefill, tiled over queries (docs §7 steps 5–7): a workgroup takes
// BQ = 8 consecutive query positions of one head and walks the keys up to the last of them in
// blocks of WG = 64, loading each key and value row once for all 8 queries (a kernel with one
// query per workgroup loads them 8 times). Online softmax per query; writes o [T, nh·d]
// directly. q is [T, nh·d]; caches are [ctx, nkv, d]. Grid (⌈T / BQ⌉, nh).
const WG: u32 = 64u;
const BQ: u32 = 8u;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;

var<workgroup> qs: array<f32, BQ * MAX_HEAD_DIM>; // [BQ, d], pre-scaled
var<workgroup> probs: array<f32, BQ * WG>; // of the current key block

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let t0 = wg.x * BQ;
    let h = wg.y;
    let d = p.d;
    let dp = d / 2u;
    let g = h / (p.nh / p.nkv);
    let nq = min(BQ, step.n_tokens - t0);
    let last = step.pos0 + t0 + nq - 1u; // the last query's position: keys 0..=last
    for (var e = lane.id; e < BQ * d; e += WG) {
        let i = e / d;
        var v = 0.0;
        if i < nq {
            v = q[((t0 + i) * p.nh + h) * d + e % d] * p.scale;
        }
        qs[e] = v;
    }
    workgroupBarrier();

    var m: array<f32, BQ>;
    var l: array<f32, BQ>;
    var acc: array<f32, BQ * DPT>;
    for (var i = 0u; i < BQ; i++) {
        m[i] = NEG;
    }
    for (var kb = 0u; kb <= last; kb += WG) {
        let j = kb + lane.id;
        var sc: array<f32, BQ>;
        for (var i = 0u; i < BQ; i++) {
            sc[i] = 0.0;
        }
        if j <= last {
            let kbase = (j * p.nkv + g) * dp;
            for (var c = 0u; c < dp; c++) {
                let kv = KV_load(k_cache[kbase + c]);
                for (var i = 0u; i < BQ; i++) {
                    sc[i] += kv.x * qs[i * d + 2u * c] + kv.y * qs[i * d + 2u * c + 1u];
                }
            }
        }
        var corr: array<f32, BQ>;
        for (var i = 0u; i < BQ; i++) {
            // Causal mask: query i sits at pos0 + t0 + i.
            var s = sc[i];
            if j > step.pos0 + t0 + i || i >= nq {
                s = NEG;
            }
            let m_new = max(m[i], wg_max(s, lane));
            var pj = 0.0;
            if s > NEG {
                pj = exp(s - m_new);
            }
            corr[i] = exp(m[i] - m_new);
            l[i] = l[i] * corr[i] + wg_sum(pj, lane);
            m[i] = m_new;
            probs[i * WG + lane.id] = pj;
        }
        workgroupBarrier();
        let nk = min(WG, last + 1u - kb);
        for (var dd = 0u; dd < DPT; dd++) {
            let c = lane.id + dd * WG;
            if c < d {
                var a: array<f32, BQ>;
                for (var i = 0u; i < BQ; i++) {
                    a[i] = acc[i * DPT + dd] * corr[i];
                }
                for (var jj = 0u; jj < nk; jj++) {
                    let vv = KV_load(v_cache[((kb + jj) * p.nkv + g) * dp + c / 2u]);
                    let v = select(vv.x, vv.y, (c & 1u) == 1u);
                    for (var i = 0u; i < BQ; i++) {
                        a[i] += probs[i * WG + jj] * v;
                    }
                }
                for (var i = 0u; i < BQ; i++) {
                    acc[i * DPT + dd] = a[i];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < nq; i++) {
        for (var dd = 0u; dd < DPT; dd++) {
            let c = lane.id + dd * WG;
            if c < d {
                o[((t0 + i) * p.nh + h) * d + c] = acc[i * DPT + dd] / l[i];
            }
        }
    }
}
