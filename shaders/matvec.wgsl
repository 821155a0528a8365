// Mat-vec for decode (interface in lib/linear.wgsl): each workgroup computes R output
// columns for one row (token, or (token, slot) pair when GATHER); threads stride over K in
// groups of 8 weights (dequantized in registers) and the partial sums are reduced across
// the workgroup. Grid (ceil(n/R), T or T·topk). GATHER reads the pair's expert from
// route_a and skips experts outside this chunk: only the routed experts' weights are read.
const WG: u32 = 64u;
const R: u32 = 4u;

fn dot8(w: W8, a: vec4<f32>, b: vec4<f32>) -> f32 {
    return dot(w.lo, a) + dot(w.hi, b);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let row = wg.y;
    var xrow = row;
    var wrow0 = 0u;
    if GATHER {
        let e = route_a[row];
        if e < p.e0 || e >= p.e0 + p.ne {
            return;
        }
        xrow = row / p.xdiv;
        wrow0 = (e - p.e0) * p.n_per_e;
    }
    let n0 = wg.x * R;
    let groups = p.k / 8u;
    var acc: array<f32, R>;
    var acc_up: array<f32, R>;
    for (var g = lane.id; g < groups; g += WG) {
        let xa = x[(xrow * p.ldx) / 4u + 2u * g];
        let xb = x[(xrow * p.ldx) / 4u + 2u * g + 1u];
        for (var r = 0u; r < R; r++) {
            let n = min(n0 + r, p.n - 1u);
            let e8 = (wrow0 + n) * p.k + 8u * g;
            acc[r] += dot8(load8_w(e8), xa, xb);
            if GLU {
                acc_up[r] += dot8(load8_w_up(e8), xa, xb);
            }
        }
    }
    for (var r = 0u; r < R; r++) {
        let s = wg_sum(acc[r], lane);
        var su = 0.0;
        if GLU {
            su = wg_sum(acc_up[r], lane);
        }
        if lane.id == 0u && n0 + r < p.n {
            store(row, row, p.col0 + n0 + r, s, su);
        }
    }
}
