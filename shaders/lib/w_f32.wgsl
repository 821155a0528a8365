// Weights stored as f32. Every format snippet gives the same interface:
//   W_T                  element type of a weight binding
//   load8_BUF(e) -> W8   the 8 weights starting at element e (e % 8 == 0) of binding BUF
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}
alias W_T = vec4<f32>;
// @per-buffer
fn load8_BUF(e: u32) -> W8 {
    let i = e / 4u;
    return W8(BUF[i], BUF[i + 1u]);
}
