// Weights in GGML Q4_0 blocks (32 × 4 bits, value d·(q − 8)) or, with WITH_MIN, Q4_1 blocks
// (value d·q + m), structure-of-arrays in one binding: block b's 16 quant bytes in words
// 4b..4b+4 (byte j: element j in the low nibble, element j + 16 in the high one), then from
// word p.w_scales on the f16 scales d in pairs (Q4_0), or one (d, m) f16 pair per block (Q4_1).
// WITH_MIN is set by the assembler. Interface: see weights.wgsl.
alias W_T = u32;
const W_WIDE: bool = true;
const W_PAIRED: bool = false;
// @per-buffer
// (d, m) of block b with value = d·q + m (Q4_0: m = −8d, exact since d is an f16).
fn dm_BUF(b: u32) -> vec2<f32> {
    return block_dm(BUF[p.w_scales + select(b / 2u, b, WITH_MIN)], b, WITH_MIN, -8.0);
}

fn load8_BUF(e: u32) -> W8 {
    let b = e / 32u;
    let o = e % 32u;
    let dm = dm_BUF(b);
    let i = b * 4u + (o % 16u) / 4u;
    let shift = (o / 16u) * 4u;
    return W8(q4x4(BUF[i], shift) * dm.x + dm.y, q4x4(BUF[i + 1u], shift) * dm.x + dm.y);
}
// Σ (d·q + m)·x = d·Σ q·x + m·Σ x: the scale and the offset applied once per 8 weights.
fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let b = e / 32u;
    let o = e % 32u;
    let dm = dm_BUF(b);
    let i = b * 4u + (o % 16u) / 4u;
    let shift = (o / 16u) * 4u;
    return dm.x * (dot(q4x4(BUF[i], shift), xa) + dot(q4x4(BUF[i + 1u], shift), xb)) + dm.y * xsum;
}
// A whole block: word j holds elements 4j..4j+3 (low nibbles) and 16+4j..19+4j (high).
fn dot32_BUF(e: u32, x: X32) -> f32 {
    let b = e / 32u;
    let dm = dm_BUF(b);
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let w = BUF[b * 4u + j];
        s += dot(q4x4(w, 0u), x.v[j]) + dot(q4x4(w, 4u), x.v[4u + j]);
    }
    return dm.x * s + dm.y * dot(x.s8, vec4<f32>(1.0));
}
// @int vec4
// A block against quantized activations (x_q8.wgsl): the nibbles q (0…15) through the int8
// dot, then s·(d·Σ q·qx + m·Σ qx) once.
fn qdot32_BUF(e: u32, x: XQ32) -> f32 {
    let b = e / 32u;
    let dm = block_dm(w1_BUF(p.w_scales + select(b / 2u, b, WITH_MIN)), b, WITH_MIN, -8.0);
    let w = w4_BUF(4u * b);
    let m = vec4<u32>(0x0f0f0f0fu);
    let q = idot16(w & m, x.a) + idot16((w >> vec4<u32>(4u)) & m, x.b);
    return x.s * (dm.x * f32(q) + dm.y * (x.sq.x + x.sq.y));
}
