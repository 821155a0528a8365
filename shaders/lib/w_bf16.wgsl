// Weights stored as bfloat16, two per u32 (element 2k in the low half). Interface: see
// weights.wgsl.
alias W_T = vec4<u32>;
const W_WIDE: bool = false;
const W_PAIRED: bool = false;

fn bf16x2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let v = BUF[e / 8u];
    return W8(vec4<f32>(bf16x2(v.x), bf16x2(v.y)), vec4<f32>(bf16x2(v.z), bf16x2(v.w)));
}

fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let w = load8_BUF(e);
    return dot(w.lo, xa) + dot(w.hi, xb);
}
