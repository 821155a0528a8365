// Weights in GGML Q4_K blocks or, with FIFTH_BIT, Q5_K blocks: 256 values in 8 sub-blocks of
// 32, value (d·sc)·q − dmin·m with 6-bit sc, m per sub-block. Structure-of-arrays in one
// binding (src/blocks.rs): block b's 128 nibble bytes in words QW·b.. (byte 32c + l: element
// 64c + l low, 64c + 32 + l high), with FIFTH_BIT then 32 high-bit bytes (bit s of byte l:
// element 32s + l); from word p.w_scales + 5b: (d, dmin) f16, then (sc, m) byte pairs of the
// 8 sub-blocks (one word holds two sub-blocks').
// FIFTH_BIT is set by the assembler. Interface: see weights.wgsl.
alias W_T = u32;
const W_WIDE: bool = true;
const W_PAIRED: bool = true;
const QW: u32 = select(32u, 40u, FIFTH_BIT);
// @per-buffer
// (d·sc, dmin·m) of the sub-block of element e.
fn scale_BUF(e: u32) -> vec2<f32> {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let sw = p.w_scales + b * 5u;
    let dm = unpack2x16float(BUF[sw]);
    let pair = BUF[sw + 1u + s / 2u] >> ((s % 2u) * 16u);
    return vec2<f32>(dm.x * f32(pair & 0xffu), dm.y * f32((pair >> 8u) & 0xffu));
}

// The 8 values q from element e on.
fn q8_BUF(e: u32) -> W8 {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let l = e % 32u;
    let i = b * QW + (s / 2u) * 8u + l / 4u;
    let shift = (s % 2u) * 4u;
    var lo = (BUF[i] >> shift) & 0x0f0f0f0fu;
    var hi = (BUF[i + 1u] >> shift) & 0x0f0f0f0fu;
    if FIFTH_BIT {
        let h = b * QW + 32u + l / 4u;
        lo |= ((BUF[h] >> s) & 0x01010101u) << 4u;
        hi |= ((BUF[h + 1u] >> s) & 0x01010101u) << 4u;
    }
    return W8(bytes4(lo), bytes4(hi));
}

fn load8_BUF(e: u32) -> W8 {
    let sm = scale_BUF(e);
    let q = q8_BUF(e);
    return W8(q.lo * sm.x - sm.y, q.hi * sm.x - sm.y);
}

fn dot8_BUF(e: u32, xa: vec4<f32>, xb: vec4<f32>, xsum: f32) -> f32 {
    let sm = scale_BUF(e);
    let q = q8_BUF(e);
    return sm.x * (dot(q.lo, xa) + dot(q.hi, xb)) - sm.y * xsum;
}
// A whole sub-block (one scale and min): element 4j + k in byte k of word j.
fn dot32_BUF(e: u32, x: X32) -> f32 {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let sm = scale_BUF(e);
    let i = b * QW + (s / 2u) * 8u;
    let shift = (s % 2u) * 4u;
    var acc = 0.0;
    for (var j = 0u; j < 8u; j++) {
        var q = (BUF[i + j] >> shift) & 0x0f0f0f0fu;
        if FIFTH_BIT {
            q |= ((BUF[b * QW + 32u + j] >> s) & 0x01010101u) << 4u;
        }
        acc += dot(bytes4(q), x.v[j]);
    }
    return sm.x * acc - sm.y * dot(x.s8, vec4<f32>(1.0));
}
// Two sub-blocks sharing their quant words (s even: s's values in the low nibbles, s + 1's in
// the high ones, and one word holds both's (sc, m)): each word is read once for 8 values.
fn dot64_BUF(e: u32, xa: X32, xb: X32) -> f32 {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let sw = p.w_scales + b * 5u;
    let dm = unpack2x16float(BUF[sw]);
    let pair = BUF[sw + 1u + s / 2u];
    let i = b * QW + (s / 2u) * 8u;
    var a = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let word = BUF[i + j];
        var lo = word & 0x0f0f0f0fu;
        var hi = (word >> 4u) & 0x0f0f0f0fu;
        if FIFTH_BIT {
            let h = BUF[b * QW + 32u + j] >> s;
            lo |= (h & 0x01010101u) << 4u;
            hi |= ((h >> 1u) & 0x01010101u) << 4u;
        }
        a += vec2<f32>(dot(bytes4(lo), xa.v[j]), dot(bytes4(hi), xb.v[j]));
    }
    let sc = dm.x * vec2<f32>(f32(pair & 0xffu), f32((pair >> 16u) & 0xffu));
    let m = dm.y * vec2<f32>(f32((pair >> 8u) & 0xffu), f32(pair >> 24u));
    let xs = vec2<f32>(dot(xa.s8, vec4<f32>(1.0)), dot(xb.s8, vec4<f32>(1.0)));
    return dot(sc, a) - dot(m, xs);
}
// @int vec4
// A sub-block against quantized activations (x_q8.wgsl): q (0…15, or 0…31 with the fifth
// bit) through the int8 dot, then s·(d·sc·Σ q·qx − dmin·m·Σ qx) once.
fn qdot32_BUF(e: u32, x: XQ32) -> f32 {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let sw = p.w_scales + b * 5u;
    let dm = unpack2x16float(w1_BUF(sw));
    let pair = w1_BUF(sw + 1u + s / 2u) >> ((s % 2u) * 16u);
    let sc = dm.x * f32(pair & 0xffu);
    let mn = dm.y * f32((pair >> 8u) & 0xffu);
    let i = b * QW + (s / 2u) * 8u;
    let sh = vec4<u32>((s % 2u) * 4u);
    let m = vec4<u32>(0x0f0f0f0fu);
    var wa = (w4_BUF(i) >> sh) & m;
    var wb = (w4_BUF(i + 4u) >> sh) & m;
    if FIFTH_BIT {
        let h = b * QW + 32u;
        let hs = vec4<u32>(s);
        let one = vec4<u32>(0x01010101u);
        let four = vec4<u32>(4u);
        wa |= ((w4_BUF(h) >> hs) & one) << four;
        wb |= ((w4_BUF(h + 4u) >> hs) & one) << four;
    }
    return x.s * (sc * f32(idot16(wa, x.a) + idot16(wb, x.b)) - mn * (x.sq.x + x.sq.y));
}
// Two sub-blocks sharing their quant words (s even: s's values in the low nibbles, s + 1's in
// the high ones) and their (sc, m) word: each word is read once.
fn qdot64_BUF(e: u32, xa: XQ32, xb: XQ32) -> f32 {
    let b = e / 256u;
    let s = (e % 256u) / 32u;
    let sw = p.w_scales + b * 5u;
    let dm = unpack2x16float(w1_BUF(sw));
    let pair = w1_BUF(sw + 1u + s / 2u);
    let sc = dm.x * vec2<f32>(f32(pair & 0xffu), f32((pair >> 16u) & 0xffu));
    let mn = dm.y * vec2<f32>(f32((pair >> 8u) & 0xffu), f32(pair >> 24u));
    let i = b * QW + (s / 2u) * 8u;
    let m = vec4<u32>(0x0f0f0f0fu);
    let four = vec4<u32>(4u);
    let w0 = w4_BUF(i);
    let w1 = w4_BUF(i + 4u);
    var la = w0 & m;
    var lb = w1 & m;
    var ha = (w0 >> four) & m;
    var hb = (w1 >> four) & m;
    if FIFTH_BIT {
        let h = b * QW + 32u;
        let hs = vec4<u32>(s);
        let one = vec4<u32>(0x01010101u);
        let h0 = w4_BUF(h) >> hs;
        let h1 = w4_BUF(h + 4u) >> hs;
        la |= (h0 & one) << four;
        lb |= (h1 & one) << four;
        ha |= ((h0 >> vec4<u32>(1u)) & one) << four;
        hb |= ((h1 >> vec4<u32>(1u)) & one) << four;
    }
    let q = vec2<f32>(f32(idot16(la, xa.a) + idot16(lb, xa.b)), f32(idot16(ha, xb.a) + idot16(hb, xb.b)));
    let xs = vec2<f32>(xa.s, xb.s);
    let sums = vec2<f32>(xa.sq.x + xa.sq.y, xb.sq.x + xb.sq.y);
    return dot(xs * sc, q) - dot(xs * mn, sums);
}
