// Groups the (token, slot) pairs by expert: counts per expert, exclusive prefix offsets
// off [E+1], and the pair ids of each expert contiguous in rows [T·k]. One workgroup.
const WG: u32 = 256u;
struct Params {
    e: u32,
    k: u32,
    _a: u32,
    _b: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> off: array<u32>;
@group(0) @binding(4) var<storage, read_write> rows: array<u32>;

var<workgroup> cnt: array<atomic<u32>, MAX_EXPERTS>;
var<workgroup> base: array<u32, MAX_EXPERTS>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    // T·k and E, bounded by the buffers so that no loop depends on uniforms alone (see
    // router.wgsl: lavapipe would compile a new shader at every dispatch).
    let n = min(step.n_tokens * p.k, arrayLength(&ids));
    let n_e = min(p.e, arrayLength(&off));
    for (var e = lid; e < n_e; e += WG) {
        atomicStore(&cnt[e], 0u);
    }
    workgroupBarrier();
    for (var i = lid; i < n; i += WG) {
        atomicAdd(&cnt[ids[i]], 1u);
    }
    workgroupBarrier();
    if lid == 0u {
        var run = 0u;
        for (var e = 0u; e < n_e; e++) {
            base[e] = run;
            off[e] = run;
            run += atomicLoad(&cnt[e]);
        }
        off[p.e] = run;
    }
    workgroupBarrier();
    for (var e = lid; e < n_e; e += WG) {
        atomicStore(&cnt[e], 0u);
    }
    workgroupBarrier();
    for (var i = lid; i < n; i += WG) {
        let e = ids[i];
        rows[base[e] + atomicAdd(&cnt[e], 1u)] = i;
    }
}
