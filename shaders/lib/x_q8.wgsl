// Activations quantized for the integer-dot mat-vec (written by quantize_x.wgsl, one row of
// K values as K/32 records of three vec4<u32>): 32 int8 values q (a: elements 0..15, b: 16..31;
// word j holds elements 4j..4j+3, byte k element 4j + k), their power-of-two scale s (the
// value is s·q) and the sums of q over each half (exact integers, as f32).
struct XQ32 {
    a: vec4<u32>,
    b: vec4<u32>,
    s: f32,
    sq: vec2<f32>,
}

// Σ q_w·q_x over 16 int8 pairs (four packed words each).
fn idot16(w: vec4<u32>, x: vec4<u32>) -> i32 {
    return dot4I8Packed(w.x, x.x) + dot4I8Packed(w.y, x.y) + dot4I8Packed(w.z, x.z) + dot4I8Packed(w.w, x.w);
}


// Weight words for the integer-dot sections (`// @int` in w_<format>.wgsl), whatever view of
// the binding the format takes: `// @int vec4` formats (blocks of whole quad words) bind it
// as vec4<u32>, so four words are one load; the others as u32 (the assembler picks the part).
// @per-buffer vec4
// The four words from word i on (i % 4 == 0).
fn w4_BUF(i: u32) -> vec4<u32> {
    return BUF[i / 4u];
}
// Word i: its quad loaded, the component picked without dynamic indexing.
fn w1_BUF(i: u32) -> u32 {
    let v = BUF[i / 4u];
    let c = i % 4u;
    return select(select(v.x, v.y, c == 1u), select(v.z, v.w, c == 3u), c >= 2u);
}
// @per-buffer u32
fn w4_BUF(i: u32) -> vec4<u32> {
    return vec4<u32>(BUF[i], BUF[i + 1u], BUF[i + 2u], BUF[i + 3u]);
}
fn w1_BUF(i: u32) -> u32 {
    return BUF[i];
}
// @per-buffer composed
// Two blocks, for the formats whose snippet does not pair them (W_PAIRED false: the mat-vec
// never calls it, but it must compile).
fn qdot64_BUF(e: u32, xa: XQ32, xb: XQ32) -> f32 {
    return qdot32_BUF(e, xa) + qdot32_BUF(e + 32u, xb);
}
