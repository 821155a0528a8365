// Weights in GGML Q8_0 blocks (32 int8 + one f16 scale), structure-of-arrays in one binding:
// quants of block b in words 8b..8b+8, scales as f16 pairs from word p.w_scales on.
// Interface: see weights.wgsl.
alias W_T = u32;
const W_WIDE: bool = true;
const W_PAIRED: bool = false;
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let b = e / 32u;
    let d = unpack2x16float(BUF[p.w_scales + b / 2u])[b & 1u];
    let i = b * 8u + (e % 32u) / 4u;
    return W8(i8x4(BUF[i]) * d, i8x4(BUF[i + 1u]) * d);
}
// The scale applied once to the integer dot.
fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let b = e / 32u;
    let d = unpack2x16float(BUF[p.w_scales + b / 2u])[b & 1u];
    let i = b * 8u + (e % 32u) / 4u;
    return d * (dot(i8x4(BUF[i]), xa) + dot(i8x4(BUF[i + 1u]), xb));
}
// A whole block, the scale applied once.
fn dot32_BUF(e: u32, x: X32) -> f32 {
    let b = e / 32u;
    let d = unpack2x16float(BUF[p.w_scales + b / 2u])[b & 1u];
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        s += dot(i8x4(BUF[b * 8u + j]), x.v[j]);
    }
    return d * s;
}
// @int vec4
// A block against quantized activations (x_q8.wgsl): the int8 dot, then d·s once.
fn qdot32_BUF(e: u32, x: XQ32) -> f32 {
    let b = e / 32u;
    let d = unpack2x16float(w1_BUF(p.w_scales + b / 2u))[b & 1u];
    let i = b * 8u;
    return d * x.s * f32(idot16(w4_BUF(i), x.a) + idot16(w4_BUF(i + 4u), x.b));
}
