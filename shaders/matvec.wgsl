// Mat-vec for decode (interface in lib/linear.wgsl; NORM folds the preceding RMSNorm in:
// the workgroup reads all of x anyway, so Σx² rides along): each workgroup computes R output
// columns for one row (token, or (token, slot) pair when GATHER); threads stride over K in
// groups of 8 weights (block formats, W_WIDE: 32, one block or sub-block, so its scales are
// read once; W_PAIRED: 64, two sub-blocks sharing their words) dequantized in registers; the R (2R with GLU) partial sums of each
// thread are reduced per subgroup (subgroupAdd; without subgroups each thread is its own slot),
// the subgroup sums meet in workgroup memory behind a single barrier. Grid (ceil(n/R), T or
// T·topk). GATHER reads the pair's expert from route_a and skips experts outside this chunk:
// only the routed experts' weights are read. COMBINE (with GATHER) takes one token per row and
// sums its topk slots in the workgroup, each times its routing weight when SCALE: with ACC
// that is the experts' down projection and the residual combine in one dispatch.
const WG: u32 = 64u;
const R: u32 = 8u;

var<workgroup> partial: array<array<f32, WG>, 17>; // [2R + 1][WG]: row sums, then Σx² (NORM)

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
    var slots = 1u;
    if COMBINE {
        slots = p.topk;
    }
    for (var slot_i = 0u; slot_i < slots; slot_i++) {
        var pair = row;
        if COMBINE {
            pair = row * p.topk + slot_i;
        }
        var xrow = pair;
        var wrow0 = 0u;
        var weight = 1.0;
        if GATHER {
            let e = route_a[pair];
            if e < p.e0 || e >= p.e0 + p.ne {
                if COMBINE {
                    continue;
                }
                return;
            }
            xrow = pair / p.xdiv;
            wrow0 = (e - p.e0) * p.n_per_e;
            if COMBINE && SCALE {
                weight = route_w[pair];
            }
        }
        // Zeroed per slot explicitly: not every compiler re-initialises a loop-body `var`.
        var part: array<f32, R>;
        for (var r = 0u; r < R; r++) {
            part[r] = 0.0;
        }
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
            acc[r] += weight * part[r];
        }
    }
    let leader = sg_leader(lane);
    let slot = sg_slot(lane);
    for (var r = 0u; r < R; r++) {
        let s = sg_sum(acc[r]);
        if leader {
            partial[r][slot] = s;
        }
        if GLU {
            let su = sg_sum(acc_up[r]);
            if leader {
                partial[R + r][slot] = su;
            }
        }
    }
    if NORM {
        let t = sg_sum(ss);
        if leader {
            partial[2u * R][slot] = t;
        }
    }
    workgroupBarrier();
    if lid < R && n0 + lid < p.n {
        var s = 0.0;
        var su = 0.0;
        var sq = 0.0;
        for (var i = 0u; i < sg_slots(lane); i++) {
            if NORM {
                sq += partial[2u * R][i];
            }
            s += partial[lid][i];
            if GLU {
                su += partial[R + lid][i];
            }
        }
        if NORM {
            // W·(x ⊙ g) is linear in x: the 1/rms factor applies to the sums.
            let r = 1.0 / sqrt(sq / f32(p.k) + p.eps);
            s *= r;
            su *= r;
        }
        store(row, row, p.col0 + n0 + lid, s, su);
    }
}
