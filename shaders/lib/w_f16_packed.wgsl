// Weights stored as f16, two per u32 (no SHADER_F16 needed). Interface: see w_f32.wgsl.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}
alias W_T = vec4<u32>;
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let v = BUF[e / 8u];
    return W8(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
              vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
}
