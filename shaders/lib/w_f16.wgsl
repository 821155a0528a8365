// Weights stored as f16, native (SHADER_F16). Interface: see weights.wgsl.
alias W_T = vec4<f16>;
const W_WIDE: bool = false;
const W_PAIRED: bool = false;
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let i = e / 4u;
    return W8(vec4<f32>(BUF[i]), vec4<f32>(BUF[i + 1u]));
}

// 8 weights from element e dotted with x[e..e+8] = (xa, xb); xsum = Σ of those 8 x.
fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let w = load8_BUF(e);
    return dot(w.lo, xa) + dot(w.hi, xb);
}
