// Attention input stage (docs §7 steps 2–4): per-head RMSNorm of q and k, NeoX RoPE at
// position pos0 + t, then q to q_out [T, nh·d] and k (normed, rotated) and v (raw) into
// the KV caches [ctx, nkv, d] (KV snippet: f32 or f16 pairs).
// Grid (nh + nkv, T): workgroups < nh handle a query head, the rest a KV head.
// Thread i < d/4 owns elements 2i, 2i+1 and their rotation partners 2i+d/2, 2i+1+d/2.
const WG: u32 = 64u;
struct Params {
    nh: u32,
    nkv: u32,
    d: u32,
    ld: u32, // row stride of qkv: (nh + 2·nkv)·d
    eps: f32,
    _a: u32,
    _b: u32,
    _c: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> q_norm: array<f32>;
@group(0) @binding(4) var<storage, read> k_norm: array<f32>;
@group(0) @binding(5) var<storage, read> rope: array<vec2<f32>>; // [ctx, d/2] (cos, sin)
@group(0) @binding(6) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<KV_T>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<KV_T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let head = wg.x;
    let t = wg.y;
    let pos = step.pos0 + t;
    let d = p.d;
    let half = d / 2u;
    let is_q = head < p.nh;
    let g = head - p.nh; // KV head when !is_q
    var src = t * p.ld + head * d; // q heads, then k heads, are contiguous in qkv
    let i = lane.id;
    let live = i < d / 4u;
    var a = vec2<f32>(0.0); // elements 2i, 2i+1
    var b = vec2<f32>(0.0); // elements 2i+d/2, 2i+1+d/2
    if live {
        a = vec2<f32>(qkv[src + 2u * i], qkv[src + 2u * i + 1u]);
        b = vec2<f32>(qkv[src + half + 2u * i], qkv[src + half + 2u * i + 1u]);
    }
    let ss = wg_sum(dot(a, a) + dot(b, b), lane);
    let r = 1.0 / sqrt(ss / f32(d) + p.eps);
    if !live {
        return;
    }
    var wa: vec2<f32>;
    var wb: vec2<f32>;
    if is_q {
        wa = vec2<f32>(q_norm[2u * i], q_norm[2u * i + 1u]);
        wb = vec2<f32>(q_norm[half + 2u * i], q_norm[half + 2u * i + 1u]);
    } else {
        wa = vec2<f32>(k_norm[2u * i], k_norm[2u * i + 1u]);
        wb = vec2<f32>(k_norm[half + 2u * i], k_norm[half + 2u * i + 1u]);
    }
    let na = wa * (a * r);
    let nb = wb * (b * r);
    let cs0 = rope[pos * half + 2u * i];
    let cs1 = rope[pos * half + 2u * i + 1u];
    let cosv = vec2<f32>(cs0.x, cs1.x);
    let sinv = vec2<f32>(cs0.y, cs1.y);
    let ra = na * cosv - nb * sinv;
    let rb = nb * cosv + na * sinv;
    if is_q {
        let o = t * p.nh * d + head * d;
        q_out[o + 2u * i] = ra.x;
        q_out[o + 2u * i + 1u] = ra.y;
        q_out[o + half + 2u * i] = rb.x;
        q_out[o + half + 2u * i + 1u] = rb.y;
    } else {
        let o = ((pos * p.nkv + g) * d) / 2u;
        k_cache[o + i] = KV_pack(ra);
        k_cache[o + half / 2u + i] = KV_pack(rb);
        // v: raw copy of this KV head, pairs 2i and 2i + d/2 … as above.
        let vs = t * p.ld + (p.nh + p.nkv) * d + g * d;
        v_cache[o + i] = KV_pack(vec2<f32>(qkv[vs + 2u * i], qkv[vs + 2u * i + 1u]));
        v_cache[o + half / 2u + i] =
            KV_pack(vec2<f32>(qkv[vs + half + 2u * i], qkv[vs + half + 2u * i + 1u]));
    }
}
