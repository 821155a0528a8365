// Weights in GGML Q6_K blocks: 256 6-bit values, value (d·sc)·(q − 32) with an int8 sc per 16
// values. Structure-of-arrays in one binding (src/blocks.rs): block b's 128 low-nibble bytes
// then 64 high-bit bytes in words 48b..48b+48, as GGML orders them (element 128h + 32g + l:
// nibble of byte 64h + 32(g % 2) + l, high when g ≥ 2; bits 2g of byte 128 + 32h + l); from
// word p.w_scales + 5b: 16 int8 scales, then d as an f16. Interface: see weights.wgsl.
alias W_T = u32;
const W_WIDE: bool = true;
const W_PAIRED: bool = true;
// @per-buffer
// d·sc of the 16 values that hold element e.
fn scale_BUF(e: u32) -> f32 {
    let b = e / 256u;
    let j = (e % 256u) / 16u;
    let sw = p.w_scales + b * 5u;
    let sc = extractBits(bitcast<i32>(BUF[sw + j / 4u]), (j % 4u) * 8u, 8u);
    return unpack2x16float(BUF[sw + 4u]).x * f32(sc);
}

// The 8 values q (0…63) from element e on.
fn q8_BUF(e: u32) -> W8 {
    let b = e / 256u;
    let o = e % 256u;
    let half = o / 128u;
    let g = (o % 128u) / 32u;
    let l = o % 32u;
    let i = b * 48u + half * 16u + (g % 2u) * 8u + l / 4u;
    let h = b * 48u + 32u + half * 8u + l / 4u;
    let shift = (g / 2u) * 4u;
    let lo = ((BUF[i] >> shift) & 0x0f0f0f0fu) | (((BUF[h] >> (2u * g)) & 0x03030303u) << 4u);
    let hi = ((BUF[i + 1u] >> shift) & 0x0f0f0f0fu) | (((BUF[h + 1u] >> (2u * g)) & 0x03030303u) << 4u);
    return W8(bytes4(lo), bytes4(hi));
}

fn load8_BUF(e: u32) -> W8 {
    let ds = scale_BUF(e);
    let q = q8_BUF(e);
    return W8((q.lo - 32.0) * ds, (q.hi - 32.0) * ds);
}

fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let ds = scale_BUF(e);
    let q = q8_BUF(e);
    return ds * (dot(q.lo, xa) + dot(q.hi, xb) - 32.0 * xsum);
}
// 32 values: two scales (elements 0..15 and 16..31), element 4j + k in byte k of words j.
fn dot32_BUF(e: u32, x: X32) -> f32 {
    let b = e / 256u;
    let o = e % 256u;
    let half = o / 128u;
    let g = (o % 128u) / 32u;
    let i = b * 48u + half * 16u + (g % 2u) * 8u;
    let h = b * 48u + 32u + half * 8u;
    let shift = (g / 2u) * 4u;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let q = ((BUF[i + j] >> shift) & 0x0f0f0f0fu) | (((BUF[h + j] >> (2u * g)) & 0x03030303u) << 4u);
        a[j / 4u] += dot(bytes4(q), x.v[j]);
    }
    // Scales j and j + 1 (j even) share a word; d follows the 16 scales.
    let sw = p.w_scales + b * 5u;
    let j = o / 16u;
    let scales = bitcast<i32>(BUF[sw + j / 4u]);
    let d = unpack2x16float(BUF[sw + 4u]).x;
    let ds = d * vec2<f32>(f32(extractBits(scales, (j % 4u) * 8u, 8u)), f32(extractBits(scales, (j % 4u) * 8u + 8u, 8u)));
    return ds.x * (a.x - 32.0 * (x.s8.x + x.s8.y)) + ds.y * (a.y - 32.0 * (x.s8.z + x.s8.w));
}

// Four values of group g (low-nibble word lw) and of g + 1 (word lw + 8), both from high-bit
// word hw (g + 1's bits two higher), as bytes 0…63.
fn q6x2_BUF(lw: u32, hw: u32, shift: u32, g: u32) -> vec2<u32> {
    let hb = BUF[hw] >> (2u * g);
    let qa = ((BUF[lw] >> shift) & 0x0f0f0f0fu) | ((hb & 0x03030303u) << 4u);
    let qb = ((BUF[lw + 8u] >> shift) & 0x0f0f0f0fu) | (((hb >> 2u) & 0x03030303u) << 4u);
    return vec2<u32>(qa, qb);
}

// Groups g and g + 1 (g even: 64 values, four scales in one word) share their high-bit
// words (g + 1's bits two higher): each is read once for 8 values.
fn dot64_BUF(e: u32, xa: X32, xb: X32) -> f32 {
    let b = e / 256u;
    let o = e % 256u;
    let half = o / 128u;
    let g = (o % 128u) / 32u;
    let i = b * 48u + half * 16u;
    let h = b * 48u + 32u + half * 8u;
    let shift = (g / 2u) * 4u;
    // Sums per 16 values (x, y: g's first and second 16; z, w: g + 1's), in two loops so
    // that no component is indexed dynamically.
    var a = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let q = q6x2_BUF(i + j, h + j, shift, g);
        a.x += dot(bytes4(q.x), xa.v[j]);
        a.z += dot(bytes4(q.y), xb.v[j]);
    }
    for (var j = 4u; j < 8u; j++) {
        let q = q6x2_BUF(i + j, h + j, shift, g);
        a.y += dot(bytes4(q.x), xa.v[j]);
        a.w += dot(bytes4(q.y), xb.v[j]);
    }
    let sw = p.w_scales + b * 5u;
    let scales = bitcast<i32>(BUF[sw + o / 64u]);
    let d = unpack2x16float(BUF[sw + 4u]).x;
    let ds = d * vec4<f32>(f32(extractBits(scales, 0u, 8u)), f32(extractBits(scales, 8u, 8u)),
                           f32(extractBits(scales, 16u, 8u)), f32(extractBits(scales, 24u, 8u)));
    let xs = vec4<f32>(xa.s8.x + xa.s8.y, xa.s8.z + xa.s8.w, xb.s8.x + xb.s8.y, xb.s8.z + xb.s8.w);
    return dot(ds, a - 32.0 * xs);
}
// @int vec4
// 32 values against quantized activations (x_q8.wgsl): q (0…63) through the int8 dot per
// half (one scale each), then d·s·Σ_half sc·(Σ q·qx − 32·Σ qx).
fn qdot32_BUF(e: u32, x: XQ32) -> f32 {
    let b = e / 256u;
    let o = e % 256u;
    let half = o / 128u;
    let g = (o % 128u) / 32u;
    let i = b * 48u + half * 16u + (g % 2u) * 8u;
    let h = b * 48u + 32u + half * 8u;
    let sh = vec4<u32>((g / 2u) * 4u);
    let hs = vec4<u32>(2u * g);
    let m = vec4<u32>(0x0f0f0f0fu);
    let m2 = vec4<u32>(0x03030303u);
    let four = vec4<u32>(4u);
    let wa = ((w4_BUF(i) >> sh) & m) | (((w4_BUF(h) >> hs) & m2) << four);
    let wb = ((w4_BUF(i + 4u) >> sh) & m) | (((w4_BUF(h + 4u) >> hs) & m2) << four);
    // Scales j and j + 1 (j even) share a word; d follows the 16 scales.
    let j = o / 16u;
    let sw = p.w_scales + b * 5u;
    let scw = bitcast<i32>(w1_BUF(sw + j / 4u));
    let sc = vec2<f32>(f32(extractBits(scw, (j % 4u) * 8u, 8u)), f32(extractBits(scw, (j % 4u) * 8u + 8u, 8u)));
    let q = vec2<f32>(f32(idot16(wa, x.a)), f32(idot16(wb, x.b))) - 32.0 * x.sq;
    return unpack2x16float(w1_BUF(sw + 4u)).x * x.s * dot(sc, q);
}
// Groups g and g + 1 (g even: 64 values, their four scales in one word) share their high-bit
// words (g + 1's bits two higher): each word is read once.
fn qdot64_BUF(e: u32, xa: XQ32, xb: XQ32) -> f32 {
    let b = e / 256u;
    let o = e % 256u;
    let half = o / 128u;
    let g = (o % 128u) / 32u;
    let i = b * 48u + half * 16u;
    let h = b * 48u + 32u + half * 8u;
    let sh = vec4<u32>((g / 2u) * 4u);
    let m = vec4<u32>(0x0f0f0f0fu);
    let m2 = vec4<u32>(0x03030303u);
    let four = vec4<u32>(4u);
    let two = vec4<u32>(2u);
    let h0 = w4_BUF(h) >> vec4<u32>(2u * g);
    let h1 = w4_BUF(h + 4u) >> vec4<u32>(2u * g);
    let aa = ((w4_BUF(i) >> sh) & m) | ((h0 & m2) << four);
    let ab = ((w4_BUF(i + 4u) >> sh) & m) | ((h1 & m2) << four);
    let ba = ((w4_BUF(i + 8u) >> sh) & m) | (((h0 >> two) & m2) << four);
    let bb = ((w4_BUF(i + 12u) >> sh) & m) | (((h1 >> two) & m2) << four);
    // Scales j..j + 3 (j = o / 16, a multiple of 4) are one word; d follows the 16 scales.
    let sw = p.w_scales + b * 5u;
    let scw = bitcast<i32>(w1_BUF(sw + o / 64u));
    let sc = vec4<f32>(f32(extractBits(scw, 0u, 8u)), f32(extractBits(scw, 8u, 8u)),
                       f32(extractBits(scw, 16u, 8u)), f32(extractBits(scw, 24u, 8u)));
    let qa = vec2<f32>(f32(idot16(aa, xa.a)), f32(idot16(ab, xa.b))) - 32.0 * xa.sq;
    let qb = vec2<f32>(f32(idot16(ba, xb.a)), f32(idot16(bb, xb.b))) - 32.0 * xb.sq;
    return unpack2x16float(w1_BUF(sw + 4u)).x * (xa.s * dot(sc.xy, qa) + xb.s * dot(sc.zw, qb));
}
