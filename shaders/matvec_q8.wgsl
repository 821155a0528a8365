// Integer-dot mat-vec for decode (interface in lib/linear.wgsl; rows, slots and the
// reduction in lib/matvec_rows.wgsl): x comes quantized by quantize_x.wgsl (lib/x_q8.wgsl:
// int8 blocks of 32 with a power-of-two scale and their sums; any RMSNorm already applied),
// and each format's `qdot32` takes one block or sub-block of weights through dot4I8Packed,
// applying its scales once (K-quants: `qdot64`, two sub-blocks sharing their words); f32
// across blocks. GLU, GATHER, COMBINE, SCALE, BIAS, ACC as in matvec.wgsl (never NORM).
// Grid (ceil(n/R), T or T·topk).

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
            acc[r] += sl.weight * part[r];
        }
    }
    finish(lane, row, n0, acc, acc_up, 0.0);
}
