// Weights in GGML Q5_0 blocks (32 × 5 bits, value d·(q − 16)) or, with WITH_MIN, Q5_1 blocks
// (value d·q + m), structure-of-arrays in one binding: block b's nibbles in words 5b..5b+4 as
// in Q4_0, its fifth bits in word 5b+4 (bit j: element j); from word p.w_scales on the f16
// scales d in pairs (Q5_0), or one (d, m) f16 pair per block (Q5_1). WITH_MIN is set by the
// assembler. Interface: see weights.wgsl.
alias W_T = u32;
const W_WIDE: bool = true;
const W_PAIRED: bool = false;

// The 5-bit values of 4 elements: nibbles at `shift` of w, fifth bits from bits 0..4 of h.
fn q5x4(w: u32, shift: u32, h: u32) -> vec4<f32> {
    return bytes4(((w >> shift) & 0x0f0f0f0fu) | (spread4(h) << 4u));
}
// @per-buffer
fn dm_BUF(b: u32) -> vec2<f32> {
    return block_dm(BUF[p.w_scales + select(b / 2u, b, WITH_MIN)], b, WITH_MIN, -16.0);
}

// The 8 values q from element e on.
fn q8_BUF(e: u32) -> W8 {
    let b = e / 32u;
    let o = e % 32u;
    let i = b * 5u + (o % 16u) / 4u;
    let shift = (o / 16u) * 4u;
    let h = BUF[b * 5u + 4u] >> o;
    return W8(q5x4(BUF[i], shift, h), q5x4(BUF[i + 1u], shift, h >> 4u));
}

fn load8_BUF(e: u32) -> W8 {
    let dm = dm_BUF(e / 32u);
    let q = q8_BUF(e);
    return W8(q.lo * dm.x + dm.y, q.hi * dm.x + dm.y);
}

fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let dm = dm_BUF(e / 32u);
    let q = q8_BUF(e);
    return dm.x * (dot(q.lo, xa) + dot(q.hi, xb)) + dm.y * xsum;
}
// A whole block: nibbles as in Q4, the fifth bits of element j at bit j of word 4.
fn dot32_BUF(e: u32, x: X32) -> f32 {
    let b = e / 32u;
    let dm = dm_BUF(b);
    let h = BUF[b * 5u + 4u];
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let w = BUF[b * 5u + j];
        s += dot(q5x4(w, 0u, h >> (4u * j)), x.v[j]) + dot(q5x4(w, 4u, h >> (16u + 4u * j)), x.v[4u + j]);
    }
    return dm.x * s + dm.y * dot(x.s8, vec4<f32>(1.0));
}
// @int
// A block against quantized activations (x_q8.wgsl): the 5-bit q (0…31) through the int8
// dot, then s·(d·Σ q·qx + m·Σ qx) once. Blocks of 5 words: the u32 view.
fn qdot32_BUF(e: u32, x: XQ32) -> f32 {
    let b = e / 32u;
    let dm = block_dm(w1_BUF(p.w_scales + select(b / 2u, b, WITH_MIN)), b, WITH_MIN, -16.0);
    let i = b * 5u;
    let h = w1_BUF(i + 4u);
    let w = w4_BUF(i);
    let m = vec4<u32>(0x0f0f0f0fu);
    let four = vec4<u32>(4u);
    let hl = vec4<u32>(spread4(h), spread4(h >> 4u), spread4(h >> 8u), spread4(h >> 12u)) << four;
    let hh = vec4<u32>(spread4(h >> 16u), spread4(h >> 20u), spread4(h >> 24u), spread4(h >> 28u)) << four;
    let q = idot16((w & m) | hl, x.a) + idot16(((w >> four) & m) | hh, x.b);
    return x.s * (dm.x * f32(q) + dm.y * (x.sq.x + x.sq.y));
}
