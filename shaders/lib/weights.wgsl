// The weight-format interface, included once before the format's snippet (w_<format>.wgsl).
// Every format snippet gives:
//   W_T                  element type of a weight binding
//   load8_BUF(e) -> W8   the 8 weights starting at element e (e % 8 == 0) of binding BUF
//   dot8_BUF(e, xa, xb, xsum) -> f32   those 8 weights dotted with 8 activations (xsum: their
//                        sum, which lets quantized formats apply the scale and offset once)
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}
