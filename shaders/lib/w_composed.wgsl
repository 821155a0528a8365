// The wider dots of the weight interface (weights.wgsl) composed from narrower ones, for the
// formats whose snippet does not give them: the assembler appends each function a snippet's
// per-buffer part lacks (float formats stay 8 wide in the mat-vec; only the K-quants read 64
// weights at a time).
// @per-buffer
// Four 8-weight dots.
fn dot32_BUF(e: u32, x: X32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) {
        s += dot8_BUF(e + 8u * j, x.v[2u * j], x.v[2u * j + 1u], x.s8[j]);
    }
    return s;
}
// @per-buffer
// Two 32-weight dots.
fn dot64_BUF(e: u32, xa: X32, xb: X32) -> f32 {
    return dot32_BUF(e, xa) + dot32_BUF(e + 32u, xb);
}
