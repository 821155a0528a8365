// PAIR storage: two consecutive f32 values.
alias PAIR_T = vec2<f32>;
fn PAIR_load(v: PAIR_T) -> vec2<f32> { return v; }
fn PAIR_pack(v: vec2<f32>) -> PAIR_T { return v; }
