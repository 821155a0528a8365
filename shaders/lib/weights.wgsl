// The weight-format interface, included once before the format's snippet (w_<format>.wgsl).
// Every format snippet gives:
//   W_T                  element type of a weight binding
//   load8_BUF(e) -> W8   the 8 weights starting at element e (e % 8 == 0) of binding BUF
//   dot8_BUF(e, xa, xb, xsum) -> f32   those 8 weights dotted with 8 activations (xsum: their
//                        sum, which lets quantized formats apply the scale and offset once)
//   W_WIDE               whether the mat-vec reads this format 32 weights at a time (block
//                        formats: one block or sub-block, so its scales are read once)
//   dot32_BUF(e, x) -> f32   the 32 weights from element e (e % 32 == 0) dotted with x
//   W_PAIRED             whether the mat-vec reads it 64 weights at a time (K-quants: two
//                        sub-blocks share quant words and a scale word)
//   dot64_BUF(e, xa, xb) -> f32   the 64 weights from element e (e % 64 == 0) dotted with xa | xb
// A snippet without dot32_BUF or dot64_BUF gets them composed from its narrower dots
// (w_composed.wgsl).
// Block formats keep their quant words first and their scale words from p.w_scales on, in the
// layout of src/blocks.rs.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// 32 activations (v[j]: elements 4j..4j+3) and the sums of each 8 (s8[j]: elements 8j..8j+7).
struct X32 {
    v: array<vec4<f32>, 8>,
    s8: vec4<f32>,
}

// The four bytes of v as 0…255.
fn bytes4(v: u32) -> vec4<f32> {
    return vec4<f32>(f32(v & 0xffu), f32((v >> 8u) & 0xffu), f32((v >> 16u) & 0xffu), f32(v >> 24u));
}

// The four nibbles at `shift` (0: low, 4: high) of the bytes of w, as 0…15.
fn q4x4(w: u32, shift: u32) -> vec4<f32> {
    return bytes4((w >> shift) & 0x0f0f0f0fu);
}

// The four bytes of w as int8.
fn i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<i32>(w);
    return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)),
                     f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}

// Bits 0..4 of h moved to bit 0 of bytes 0..4 (the fifth bits of 4 values, one per byte).
fn spread4(h: u32) -> u32 {
    return (h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u);
}

// (d, m) of block b, value d·q + m, for formats with one f16 d per block (m = offset·d, exact:
// d is an f16) or, with_min, an f16 (d, m) pair: `w` is the scale word holding block b's
// (word b / 2 of the d pairs, or word b of the (d, m) pairs).
fn block_dm(w: u32, b: u32, with_min: bool, offset: f32) -> vec2<f32> {
    if with_min {
        return unpack2x16float(w);
    }
    let d = unpack2x16float(w)[b & 1u];
    return vec2<f32>(d, offset * d);
}
