// PAIR storage: two consecutive f16 values, native f16 (SHADER_F16).
alias PAIR_T = vec2<f16>;
fn PAIR_load(v: PAIR_T) -> vec2<f32> { return vec2<f32>(v); }
fn PAIR_pack(v: vec2<f32>) -> PAIR_T { return vec2<f16>(v); }
