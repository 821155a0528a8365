// Activation quantization for the integer-dot mat-vec (matvec_q8.wgsl): each row of x (K
// values at stride ldx) in blocks of 32 → one xq row of K/32 records of three vec4<u32>
// (lib/x_q8.wgsl): the 32 values as int8 q, then (s, Σ q of values 0..15, Σ q of 16..31, 0)
// as f32 bits. s = 2^e is the smallest power of two with max|x| ≤ 127·s and q = round(x / s)
// (ties to even): both exact in f32, so the CPU's `act_quant` gives the same integers bit
// for bit. A block with max|x| < 2^-96 (or not finite) is all zeros (s = 0). NORM: x is the raw residual
// stream, RMS-normalised with the gains g first (as the mat-vec's NORM does). Grid (1, rows).
const WG: u32 = 64u;
override NORM: bool = false;

struct Params {
    k: u32,   // values per row (a multiple of 32)
    ldx: u32, // row stride of x (values)
    eps: f32, // NORM
    _a: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> xq: array<vec4<u32>>;

fn amax4(v: vec4<f32>) -> f32 {
    let a = abs(v);
    return max(max(a.x, a.y), max(a.z, a.w));
}

// The exponent e of the block scale 2^e for max|x| = m (normal, ≥ 2^-96): m = f·2^E with
// f in [0.5, 1); e = E − 7, or E − 6 when f > 127/128 (mantissa bits above 0x7e0000).
fn scale_exp(m: f32) -> i32 {
    let bits = bitcast<u32>(m);
    let e = i32(bits >> 23u) - 126 - 7;
    return select(e, e + 1, (bits & 0x7fffffu) > 0x7e0000u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, lane: Lane) {
    let row = wg.y;
    let nb = p.k / 32u;
    let x0 = (row * p.ldx) / 4u;
    var r = 1.0;
    if NORM {
        var ss = 0.0;
        for (var i = lane.id; i < p.k / 4u; i += WG) {
            let v = x[x0 + i];
            ss += dot(v, v);
        }
        r = 1.0 / sqrt(wg_sum(ss, lane) / f32(p.k) + p.eps);
    }
    for (var b = lane.id; b < nb; b += WG) {
        var v: array<vec4<f32>, 8>;
        var m = 0.0;
        for (var j = 0u; j < 8u; j++) {
            var t = x[x0 + 8u * b + j];
            if NORM {
                t = (t * g[8u * b + j]) * r;
            }
            v[j] = t;
            m = max(m, amax4(t));
        }
        var e = 0;
        var s = 0.0;
        if m >= 0x1p-96 && m <= 0x1.fffffep127 {
            e = scale_exp(m);
            s = ldexp(1.0, e);
        }
        var q: array<u32, 8>;
        var sq = vec2<i32>(0);
        for (var j = 0u; j < 8u; j++) {
            var qi = vec4<i32>(0);
            if s > 0.0 {
                qi = vec4<i32>(round(ldexp(v[j], vec4<i32>(-e))));
            }
            q[j] = pack4xI8(qi);
            let t = qi.x + qi.y + qi.z + qi.w;
            sq += select(vec2<i32>(0, t), vec2<i32>(t, 0), j < 4u);
        }
        let o = (row * nb + b) * 3u;
        xq[o] = vec4<u32>(q[0], q[1], q[2], q[3]);
        xq[o + 1u] = vec4<u32>(q[4], q[5], q[6], q[7]);
        xq[o + 2u] = vec4<u32>(bitcast<u32>(s), bitcast<u32>(f32(sq.x)), bitcast<u32>(f32(sq.y)), 0u);
    }
}
