// Greedy sampling on the GPU: the index of the largest logit of one row (ties: lowest
// index), written to out[0] — the next step's input token. A row holding NaN or ±inf writes
// 0xffffffff instead, which the host reports as an error (and the embedding ignores).
// Row: T − 1 when LAST_ROW (all positions' logits kept), else 0. One workgroup.
const WG: u32 = 256u;
override LAST_ROW: bool = false;
struct Params {
    n: u32,
    _a: u32,
    _b: u32,
    _c: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;
var<workgroup> non_finite: atomic<u32>;

fn is_non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var row = 0u;
    if LAST_ROW {
        row = step.n_tokens - 1u;
    }
    let base = row * p.n;
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < p.n; i += WG) {
        let v = logits[base + i];
        if is_non_finite(v) {
            atomicOr(&non_finite, 1u);
        }
        if v > bv || (bi == 0xffffffffu && v == v) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if oi != 0xffffffffu && (best_i[lid] == 0xffffffffu || ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[0] = select(best_i[0], 0xffffffffu, best_i[0] == 0xffffffffu || atomicLoad(&non_finite) != 0u);
    }
}
