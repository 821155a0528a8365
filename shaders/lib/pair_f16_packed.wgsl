// PAIR storage: two consecutive f16 values packed in a u32 (no SHADER_F16 needed).
alias PAIR_T = u32;
fn PAIR_load(v: PAIR_T) -> vec2<f32> { return unpack2x16float(v); }
fn PAIR_pack(v: vec2<f32>) -> PAIR_T { return pack2x16float(v); }
