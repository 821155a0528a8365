// Weights in GGML Q4_0 blocks (32 × 4 bits, value q − 8, one f16 scale), structure-of-arrays
// in one binding: block b's 16 quant bytes in words 4b..4b+4 (byte j: element j in the low
// nibble, element j + 16 in the high one), scales as f16 pairs from word p.w_scales on.
// Interface: see weights.wgsl.
alias W_T = u32;

// The four nibbles at `shift` (0: low, 4: high) of the bytes of w, as 0…15.
fn q4x4(w: u32, shift: u32) -> vec4<f32> {
    let v = (w >> shift) & 0x0f0f0f0fu;
    return vec4<f32>(f32(v & 0xffu), f32((v >> 8u) & 0xffu), f32((v >> 16u) & 0xffu), f32(v >> 24u));
}
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let b = e / 32u;
    let o = e % 32u;
    let d = unpack2x16float(BUF[p.w_scales + b / 2u])[b & 1u];
    let i = b * 4u + (o % 16u) / 4u;
    let shift = (o / 16u) * 4u;
    return W8((q4x4(BUF[i], shift) - 8.0) * d, (q4x4(BUF[i + 1u], shift) - 8.0) * d);
}
// Σ d·(q − 8)·x = d·(Σ q·x − 8·Σ x): the scale and the offset applied once per 8 weights.
fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let b = e / 32u;
    let o = e % 32u;
    let d = unpack2x16float(BUF[p.w_scales + b / 2u])[b & 1u];
    let i = b * 4u + (o % 16u) / 4u;
    let shift = (o / 16u) * 4u;
    return d * (dot(q4x4(BUF[i], shift), xa) + dot(q4x4(BUF[i + 1u], shift), xb) - 8.0 * xsum);
}
