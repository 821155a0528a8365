// Shared interface of the linear kernels (matmul: tiled GEMM; matvec: one row per reduction).
// Weights are read through the format snippet's load8_w / load8_w_up; K and ldx are
// multiples of 8.
//   y[row, col0 + n] (+)= Σ_k x[xrow, k] · W[wrow0 + n, k]   for n < ncols
// GLU:    out = silu(W·x) ⊙ (W_up·x)   (gate rows in `w`, up rows in `w_up`)
// GATHER: routed experts; rows are (token, slot) pairs, x row = pair / xdiv, y row = pair,
//         W rows of expert e start at (e − e0)·n_per_e (this chunk holds experts e0..e0+ne).
// BIAS adds bias[col]; SCALE multiplies by the pair's routing weight; ACC adds into y.
// COMBINE (mat-vec only, with GATHER): one row per token summing its topk pairs (each scaled
//         by its routing weight when SCALE) into y row = token.
// NORM (mat-vec only): x is the raw residual stream, RMS-normalised on the fly:
//   y = rsqrt(mean(x²) + eps) · W·(x ⊙ g), with g read from binding 9 (no NORM variant scales).
override GLU: bool = false;
override GATHER: bool = false;
override BIAS: bool = false;
override SCALE: bool = false;
override ACC: bool = false;
override NORM: bool = false;
override COMBINE: bool = false;

struct Params {
    k: u32,       // inner dimension (W cols)
    n: u32,       // output columns produced by this dispatch (rows of the chunk, or n_per_e)
    col0: u32,    // first output column in y
    ldy: u32,     // y row stride
    ldx: u32,     // x row stride
    e0: u32,      // GATHER: first expert of the chunk
    ne: u32,      // GATHER: experts in the chunk
    xdiv: u32,    // GATHER: x row = pair / xdiv
    n_per_e: u32, // GATHER: W rows per expert
    topk: u32,    // GATHER: slots per token
    w_scales: u32, // quantized weights: word offset of the scales in w / w_up
    eps: f32,      // NORM
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<X_T>; // [rows, ldx / 4] (X_T: set by the assembler)
@group(0) @binding(3) var<storage, read> w: array<W_T>;
@group(0) @binding(4) var<storage, read> w_up: array<W_T>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
// matmul: expert offsets [E+1] and pair lists; matvec: expert id per pair
@group(0) @binding(7) var<storage, read> route_a: array<u32>;
@group(0) @binding(8) var<storage, read> route_b: array<u32>;
@group(0) @binding(9) var<storage, read> route_w: array<f32>; // NORM: the norm weights g

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// Epilogue for one output value (acc = gate/plain sum, acc_up = up sum when GLU).
fn store(yrow: u32, pair: u32, col: u32, acc: f32, acc_up: f32) {
    var v = acc;
    if GLU {
        v = silu(acc) * acc_up;
    }
    if BIAS {
        v += bias[col];
    }
    if SCALE && !COMBINE {
        v *= route_w[pair];
    }
    let i = yrow * p.ldy + col;
    if ACC {
        y[i] += v;
    } else {
        y[i] = v;
    }
}
