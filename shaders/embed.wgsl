// Embedding gather: out[t, :] = w[ids[t], :] for ids inside this chunk's rows, dequantized
// through the format snippet. Grid (T). out is f32 [T, H], H a multiple of 8.
struct Params {
    row0: u32,     // first vocab row of this chunk
    rows: u32,     // rows in this chunk
    h: u32,        // H
    w_scales: u32, // quantized weights: word offset of the scales
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<W_T>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let id = ids[t];
    if id < p.row0 || id >= p.row0 + p.rows {
        return;
    }
    let base = (id - p.row0) * p.h;
    for (var g = lid; g < p.h / 8u; g += 64u) {
        let v = load8_w(base + 8u * g);
        out[(t * p.h) / 4u + 2u * g] = v.lo;
        out[(t * p.h) / 4u + 2u * g + 1u] = v.hi;
    }
}
