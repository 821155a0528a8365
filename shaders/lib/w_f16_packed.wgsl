// Weights stored as f16, two per u32 (no SHADER_F16 needed). Interface: see weights.wgsl.
alias W_T = vec4<u32>;
const W_WIDE: bool = false;
const W_PAIRED: bool = false;
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let v = BUF[e / 8u];
    return W8(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
              vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}

// 8 weights from element e dotted with x[e..e+8] = (xa, xb); xsum = Σ of those 8 x.
fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let w = load8_BUF(e);
    return dot(w.lo, xa) + dot(w.hi, xb);
}
