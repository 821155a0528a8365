// Mat-vec for decode (interface in lib/linear.wgsl; rows, slots and the reduction in
// lib/matvec_rows.wgsl). NORM folds the preceding RMSNorm in: the workgroup reads all of x
// anyway, so Σx² rides along. Threads stride over K in groups of 8 weights (block formats,
// W_WIDE: 32, one block or sub-block, so its scales are read once; W_PAIRED: 64, two
// sub-blocks sharing their words) dequantized in registers. Grid (ceil(n/R), T or T·topk).
// GATHER reads the pair's expert from route_a and skips experts outside this chunk: only the
// routed experts' weights are read. COMBINE (with GATHER) takes one token per row and sums its
// topk slots in the workgroup, each times its routing weight when SCALE: with ACC that is the
// experts' down projection and the residual combine in one dispatch.
// Activations 32g..32g+31 of x row `xrow`; with NORM times the gains g (in route_w), their
// squares added to ss.
fn x32(xrow: u32, g: u32, ss: ptr<function, f32>) -> X32 {
    var xw: X32;
    for (var j = 0u; j < 8u; j++) {
        var v = x[(xrow * p.ldx) / 4u + 8u * g + j];
        if NORM {
            *ss += dot(v, v);
            let k = 32u * g + 4u * j;
            v *= vec4<f32>(route_w[k], route_w[k + 1u], route_w[k + 2u], route_w[k + 3u]);
        }
        xw.v[j] = v;
    }
    for (var j = 0u; j < 4u; j++) {
        xw.s8[j] = dot(xw.v[2u * j] + xw.v[2u * j + 1u], vec4<f32>(1.0));
    }
    return xw;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let lid = lane.id;
    let row = wg.y;
    let n0 = wg.x * R;
    let groups = p.k / 8u;
    var acc: array<f32, R>;
    var acc_up: array<f32, R>;
    var ss = 0.0;
    for (var slot_i = 0u; slot_i < slots(); slot_i++) {
        let sl = slot_of(row, slot_i);
        if !sl.here {
            if COMBINE {
                continue;
            }
            return;
        }
        let xrow = sl.xrow;
        let wrow0 = sl.wrow0;
        var part = zero_rows();
        // Block formats: 32 weights (one block or sub-block) per thread and step; paired ones
        // 64 (two sub-blocks sharing their words).
        for (var g = lid; W_WIDE && !W_PAIRED && g < groups / 4u; g += WG) {
            let xw = x32(xrow, g, &ss);
            for (var r = 0u; r < R; r++) {
                let n = min(n0 + r, p.n - 1u);
                let e32 = (wrow0 + n) * p.k + 32u * g;
                part[r] += dot32_w(e32, xw);
                if GLU {
                    acc_up[r] += dot32_w_up(e32, xw);
                }
            }
        }
        for (var g = lid; W_PAIRED && g < groups / 8u; g += WG) {
            let xa = x32(xrow, 2u * g, &ss);
            let xb = x32(xrow, 2u * g + 1u, &ss);
            for (var r = 0u; r < R; r++) {
                let n = min(n0 + r, p.n - 1u);
                let e64 = (wrow0 + n) * p.k + 64u * g;
                part[r] += dot64_w(e64, xa, xb);
                if GLU {
                    acc_up[r] += dot64_w_up(e64, xa, xb);
                }
            }
        }
        for (var g = lid; !W_WIDE && g < groups; g += WG) {
            var xa = x[(xrow * p.ldx) / 4u + 2u * g];
            var xb = x[(xrow * p.ldx) / 4u + 2u * g + 1u];
            if NORM {
                ss += dot(xa, xa) + dot(xb, xb);
                let k = 8u * g;
                xa *= vec4<f32>(route_w[k], route_w[k + 1u], route_w[k + 2u], route_w[k + 3u]);
                xb *= vec4<f32>(route_w[k + 4u], route_w[k + 5u], route_w[k + 6u], route_w[k + 7u]);
            }
            let xs = dot(xa + xb, vec4<f32>(1.0));
            for (var r = 0u; r < R; r++) {
                let n = min(n0 + r, p.n - 1u);
                let e8 = (wrow0 + n) * p.k + 8u * g;
                part[r] += dot8_w(e8, xa, xb, xs);
                if GLU {
                    acc_up[r] += dot8_w_up(e8, xa, xb, xs);
                }
            }
        }
        for (var r = 0u; r < R; r++) {
            acc[r] += sl.weight * part[r];
        }
    }
    finish(lane, row, n0, acc, acc_up, ss);
}
