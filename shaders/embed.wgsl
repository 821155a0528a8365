// Embedding gather: out[t, :] = table[ids[t], :] for ids inside this chunk's rows.
// Grid (T). Table rows are read in pairs (W snippet), out is f32 [T, H].
struct Params {
    row0: u32,  // first vocab row of this chunk
    rows: u32,  // rows in this chunk
    pairs: u32, // H / 2
    _pad: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<W_T>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let id = ids[t];
    if id < p.row0 || id >= p.row0 + p.rows {
        return;
    }
    let base = (id - p.row0) * p.pairs;
    for (var i = lid; i < p.pairs; i += 64u) {
        out[t * p.pairs + i] = W_load(table[base + i]);
    }
}
