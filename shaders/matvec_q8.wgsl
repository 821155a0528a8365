// Integer-dot mat-vec for decode (interface in lib/linear.wgsl): x comes quantized by
// quantize_x.wgsl (lib/x_q8.wgsl: int8 blocks of 32 with a power-of-two scale and their
// sums; any RMSNorm already applied), and each format's `qdot32` takes one block or
// sub-block of weights through dot4I8Packed, applying its scales once (K-quants: `qdot64`,
// two sub-blocks sharing their words); f32 across blocks.
// Otherwise as matvec.wgsl: R output columns per workgroup, threads strided over the blocks,
// subgroup sums meeting behind one barrier; GLU, GATHER (only the routed experts' weights
// are read), COMBINE (a token's topk slots summed, with SCALE their routing weights), BIAS,
// ACC. Grid (ceil(n/R), T or T·topk).
const WG: u32 = 64u;
const R: u32 = 8u;

var<workgroup> partial: array<array<f32, WG>, 16>; // [2R][WG]: row sums (gate, then up)

// Block g of quantized row `xrow` (rows of K/32 records of three vec4).
fn xq32(xrow: u32, g: u32) -> XQ32 {
    let i = (xrow * (p.k / 32u) + g) * 3u;
    let s = bitcast<vec4<f32>>(x[i + 2u]);
    return XQ32(x[i], x[i + 1u], s.x, s.yz);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let lid = lane.id;
    let row = wg.y;
    let n0 = wg.x * R;
    let blocks = p.k / 32u;
    var acc: array<f32, R>;
    var acc_up: array<f32, R>;
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
        // K-quants (W_PAIRED) take two sub-blocks a step: they share quant and scale words
        // (a row holds whole super-blocks, so the pairs align).
        for (var g = lid; W_PAIRED && g < blocks / 2u; g += WG) {
            let xa = xq32(xrow, 2u * g);
            let xb = xq32(xrow, 2u * g + 1u);
            for (var r = 0u; r < R; r++) {
                let n = min(n0 + r, p.n - 1u);
                let e64 = (wrow0 + n) * p.k + 64u * g;
                part[r] += qdot64_w(e64, xa, xb);
                if GLU {
                    acc_up[r] += qdot64_w_up(e64, xa, xb);
                }
            }
        }
        for (var g = lid; !W_PAIRED && g < blocks; g += WG) {
            let xq = xq32(xrow, g);
            for (var r = 0u; r < R; r++) {
                let n = min(n0 + r, p.n - 1u);
                let e32 = (wrow0 + n) * p.k + 32u * g;
                part[r] += qdot32_w(e32, xq);
                if GLU {
                    acc_up[r] += qdot32_w_up(e32, xq);
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
    workgroupBarrier();
    if lid < R && n0 + lid < p.n {
        var s = 0.0;
        var su = 0.0;
        for (var i = 0u; i < sg_slots(lane); i++) {
            s += partial[lid][i];
            if GLU {
                su += partial[R + lid][i];
            }
        }
        store(row, row, p.col0 + n0 + lid, s, su);
    }
}
