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

// Four 8-weight dots (float formats stay 8 wide in the mat-vec; this completes the interface).
fn dot32_BUF(e: u32, x: X32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot8_BUF(e + 8u * j, x.v[2u * j], x.v[2u * j + 1u], x.s8[j]);
    }
    return s;
}

// Two 32-weight dots (only paired formats read 64 weights at a time; this completes the
// interface).
fn dot64_BUF(e: u32, xa: X32, xb: X32) -> f32 {
    return dot32_BUF(e, xa) + dot32_BUF(e + 32u, xb);
}
