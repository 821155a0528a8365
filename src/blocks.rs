//! The engine's layout of block formats on the GPU, structure-of-arrays: a chunk's buffer
//! holds every block's quant bytes (row-major, blocks along a row), then every block's scale
//! bytes from word `scale_word` on, so kernels read aligned words (`shaders/lib/w_*.wgsl`).
//!
//! GGUF stores blocks as unaligned structures; [`repack_ggml`] moves their bytes into this
//! layout at load. Only integers move (Q4_K/Q5_K's packed 6-bit scales are unpacked to bytes),
//! so [`decode`] of a repacked block equals gguf-py's dequantization of the original, bit for
//! bit: the same f32 products in the same order.
//!
//! | format | values | quant bytes per block | scale bytes per block |
//! |---|---|---|---|
//! | Q8_0 | 32 | 32 × i8 | f16 d |
//! | Q4_0 | 32 | 16 nibble bytes: byte j holds value j (low) and j + 16 (high) | f16 d |
//! | Q4_1 | 32 | as Q4_0 | f16 d, f16 m |
//! | Q5_0 | 32 | as Q4_0, then a u32 of fifth bits (bit j: value j) | f16 d |
//! | Q5_1 | 32 | as Q5_0 | f16 d, f16 m |
//! | Q4_K | 256 | 128 nibble bytes: byte 32c + l holds value 64c + l (low) and 64c + 32 + l (high) | f16 d, f16 dmin, then (scale, min) byte pairs of the 8 sub-blocks |
//! | Q5_K | 256 | as Q4_K, then 32 high-bit bytes (bit s of byte l: value 32s + l) | as Q4_K |
//! | Q6_K | 256 | 128 low-nibble and 64 high-bit bytes, as GGML orders them | 16 × i8 scales, f16 d, 2 zero bytes |
//!
//! Q6_K value `128h + 32g + l` (h < 2, g < 4, l < 32): low nibble of byte `64h + 32(g % 2) + l`
//! (the high nibble when g ≥ 2), high bits `2g` of byte `128 + 32h + l`, scale `(128h + 32g + l) / 16`.

use crate::dtype::DType;
use half::f16;

/// Bytes of one GGML (GGUF) block of `dtype`, which [`repack_ggml`] reads.
pub fn ggml_block_bytes(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 4,
        DType::F16 | DType::BF16 => 2,
        DType::Q8_0 => 34,
        DType::Q4_0 => 18,
        DType::Q4_1 => 20,
        DType::Q5_0 => 22,
        DType::Q5_1 => 24,
        DType::Q4_K => 144,
        DType::Q5_K => 176,
        DType::Q6_K => 210,
    }
}

/// The 8 (scale, min) pairs packed in 12 bytes as 6-bit values (Q4_K, Q5_K): (scales, mins).
pub(crate) fn unpack_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[j + 4] & 0x3F;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Moves GGML blocks (`src`, whole blocks) into the engine layout: `quants` and `scales` get
/// the blocks' quant and scale bytes ([`DType::block`] sizes each). Plain formats are copied
/// into `quants`. Errors (a message) when the lengths disagree.
pub fn repack_ggml(dtype: DType, src: &[u8], quants: &mut [u8], scales: &mut [u8]) -> Result<(), String> {
    let (_, qb, sb) = dtype.block();
    let gb = ggml_block_bytes(dtype);
    let blocks = src.len() / gb;
    if !src.len().is_multiple_of(gb) || quants.len() != blocks * qb || scales.len() != blocks * sb {
        return Err(format!(
            "{dtype}: {} source bytes for {} + {} engine bytes",
            src.len(),
            quants.len(),
            scales.len()
        ));
    }
    if !dtype.is_block() {
        quants.copy_from_slice(src);
        return Ok(());
    }
    let each = src
        .chunks_exact(gb)
        .zip(quants.chunks_exact_mut(qb))
        .zip(scales.chunks_exact_mut(sb));
    for ((b, q), s) in each {
        match dtype {
            DType::Q8_0 | DType::Q4_0 => {
                s.copy_from_slice(&b[..2]);
                q.copy_from_slice(&b[2..]);
            }
            DType::Q4_1 => {
                s.copy_from_slice(&b[..4]);
                q.copy_from_slice(&b[4..]);
            }
            DType::Q5_0 => {
                s.copy_from_slice(&b[..2]);
                q[..16].copy_from_slice(&b[6..22]);
                q[16..].copy_from_slice(&b[2..6]);
            }
            DType::Q5_1 => {
                s.copy_from_slice(&b[..4]);
                q[..16].copy_from_slice(&b[8..24]);
                q[16..].copy_from_slice(&b[4..8]);
            }
            DType::Q4_K | DType::Q5_K => {
                let (sc, mn) = unpack_scale_min(&b[4..16]);
                s[..4].copy_from_slice(&b[..4]);
                for j in 0..8 {
                    s[4 + 2 * j] = sc[j];
                    s[5 + 2 * j] = mn[j];
                }
                match dtype {
                    DType::Q4_K => q.copy_from_slice(&b[16..144]),
                    _ => {
                        q[..128].copy_from_slice(&b[48..176]);
                        q[128..].copy_from_slice(&b[16..48]);
                    }
                }
            }
            DType::Q6_K => {
                q.copy_from_slice(&b[..192]);
                s[..18].copy_from_slice(&b[192..210]);
                s[18..].fill(0);
            }
            _ => unreachable!("plain formats returned above"),
        }
    }
    Ok(())
}

/// Byte offsets of the f16 fields in a block's scale bytes.
pub fn f16_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q6_K => &[16],
        DType::Q4_K | DType::Q5_K | DType::Q4_1 | DType::Q5_1 => &[0, 2],
        d if d.is_block() => &[0],
        _ => &[],
    }
}

/// The index of the first value of engine-layout data that decodes to a non-finite number, if
/// any, found without decoding: block values are finite exactly when their f16 scales are (the
/// largest product, 65504 · 63 · 63, is far inside f32). Blocks are reported by their first
/// value.
pub fn first_non_finite(dtype: DType, quants: &[u8], scales: &[u8]) -> Option<usize> {
    let f16_bad = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00;
    match dtype {
        DType::F32 => quants
            .chunks_exact(4)
            .position(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000),
        DType::F16 => quants.chunks_exact(2).position(f16_bad),
        DType::BF16 => quants
            .chunks_exact(2)
            .position(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7f80 == 0x7f80),
        _ => {
            let (bv, _, sb) = dtype.block();
            scales
                .chunks_exact(sb)
                .position(|s| f16_fields(dtype).iter().any(|&f| f16_bad(&s[f..f + 2])))
                .map(|b| b * bv)
        }
    }
}

fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Value j of 32 from Q4_0-style nibble bytes.
fn nibble32(q: &[u8], j: usize) -> u8 {
    match j < 16 {
        true => q[j] & 0x0F,
        false => q[j - 16] >> 4,
    }
}

/// Decodes engine-layout blocks to f32 exactly as gguf-py dequantizes the GGML blocks they came
/// from. `out` holds whole blocks; `quants` / `scales` their bytes ([`DType::block`]).
pub fn decode(dtype: DType, quants: &[u8], scales: &[u8], out: &mut [f32]) {
    let (bv, qb, sb) = dtype.block();
    if !dtype.is_block() {
        match dtype {
            DType::F32 => out.iter_mut().zip(quants.chunks_exact(4)).for_each(|(o, b)| {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }),
            DType::F16 => out
                .iter_mut()
                .zip(quants.chunks_exact(2))
                .for_each(|(o, b)| *o = h(b, 0)),
            _ => out.iter_mut().zip(quants.chunks_exact(2)).for_each(|(o, b)| {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }),
        }
        return;
    }
    let each = out
        .chunks_exact_mut(bv)
        .zip(quants.chunks_exact(qb))
        .zip(scales.chunks_exact(sb));
    for ((o, q), s) in each {
        match dtype {
            DType::Q8_0 => o.iter_mut().zip(q).for_each(|(o, &v)| *o = (v as i8) as f32 * h(s, 0)),
            DType::Q4_0 => {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = h(s, 0) * (nibble32(q, j) as i32 - 8) as f32;
                }
            }
            DType::Q4_1 => {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = h(s, 0) * nibble32(q, j) as f32 + h(s, 2);
                }
            }
            DType::Q5_0 | DType::Q5_1 => {
                let qh = u32::from_le_bytes([q[16], q[17], q[18], q[19]]);
                for (j, o) in o.iter_mut().enumerate() {
                    let v = nibble32(q, j) | ((((qh >> j) & 1) as u8) << 4);
                    *o = match dtype {
                        DType::Q5_0 => h(s, 0) * (v as i32 - 16) as f32,
                        _ => h(s, 0) * v as f32 + h(s, 2),
                    };
                }
            }
            DType::Q4_K | DType::Q5_K => {
                let (d, dmin) = (h(s, 0), h(s, 2));
                for (sub, o) in o.chunks_exact_mut(32).enumerate() {
                    let ds = d * s[4 + 2 * sub] as f32;
                    let dm = dmin * s[5 + 2 * sub] as f32;
                    let bytes = &q[32 * (sub / 2)..32 * (sub / 2) + 32];
                    for (l, o) in o.iter_mut().enumerate() {
                        let mut v = (bytes[l] >> (4 * (sub % 2))) & 0x0F;
                        if dtype == DType::Q5_K {
                            v |= ((q[128 + l] >> sub) & 1) << 4;
                        }
                        *o = ds * v as f32 - dm;
                    }
                }
            }
            DType::Q6_K => {
                let d = h(s, 16);
                for (i, o) in o.iter_mut().enumerate() {
                    let (half, g, l) = (i / 128, (i % 128) / 32, i % 32);
                    let lo = q[64 * half + 32 * (g % 2) + l] >> (4 * (g / 2)) & 0x0F;
                    let hi = (q[128 + 32 * half + l] >> (2 * g)) & 3;
                    let ds = d * (s[i / 16] as i8) as f32;
                    *o = ds * ((lo | (hi << 4)) as i32 - 32) as f32;
                }
            }
            _ => unreachable!("plain formats returned above"),
        }
    }
}

/// One step of SplitMix64 (fast, good enough for random weights): advances `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random valid data in the engine layout (synthetic weights, kernel tests) for `blocks`
/// blocks (values, for plain formats): uniform quant bits, and scales such that the values
/// have a standard deviation of about `sigma`. `next` gives uniform random u32s.
pub fn random(dtype: DType, blocks: usize, sigma: f32, next: &mut dyn FnMut() -> u32) -> (Vec<u8>, Vec<u8>) {
    let (_, qb, sb) = dtype.block();
    if !dtype.is_block() {
        let a = 3f32.sqrt() * sigma;
        let mut v = || (next() as f32 / u32::MAX as f32 * 2.0 - 1.0) * a;
        let quants: Vec<u8> = match dtype {
            DType::F32 => (0..blocks).flat_map(|_| v().to_le_bytes()).collect(),
            DType::F16 => (0..blocks).flat_map(|_| f16::from_f32(v()).to_le_bytes()).collect(),
            _ => (0..blocks)
                .flat_map(|_| half::bf16::from_f32(v()).to_le_bytes())
                .collect(),
        };
        return (quants, Vec::new());
    }
    let mut quants = vec![0u8; blocks * qb];
    for w in quants.chunks_mut(4) {
        let r = next().to_le_bytes();
        w.copy_from_slice(&r[..w.len()]);
    }
    let mut unit = || next() as f32 / u32::MAX as f32;
    let f16b = |x: f32| f16::from_f32(x).to_le_bytes();
    let mut scales = vec![0u8; blocks * sb];
    for s in scales.chunks_exact_mut(sb) {
        let jitter = 1.0 + 0.25 * unit();
        match dtype {
            // Uniform quants have std 73.6 (8-bit), 4.6 (4-bit), 9.2 (5-bit) steps.
            DType::Q8_0 => s.copy_from_slice(&f16b(sigma / 73.6 * jitter)),
            DType::Q4_0 => s.copy_from_slice(&f16b(sigma / 4.6 * jitter)),
            DType::Q5_0 => s.copy_from_slice(&f16b(sigma / 9.2 * jitter)),
            // Offset formats: q·d + m centred by m = −7.5·d (4-bit) or −15.5·d (5-bit).
            DType::Q4_1 | DType::Q5_1 => {
                let (steps, centre) = if dtype == DType::Q4_1 { (4.6, 7.5) } else { (9.2, 15.5) };
                let d = sigma / steps * jitter;
                s[..2].copy_from_slice(&f16b(d));
                s[2..].copy_from_slice(&f16b(-centre * d));
            }
            // Scale bytes 32..63 and min bytes near 7.5·scale·d/dmin.
            DType::Q4_K | DType::Q5_K => {
                let steps = if dtype == DType::Q4_K { 4.6 } else { 9.2 };
                let centre = if dtype == DType::Q4_K { 7.5 } else { 15.5 };
                let d = sigma / steps / 48.0 * jitter;
                let dmin = d * centre;
                s[..2].copy_from_slice(&f16b(d));
                s[2..4].copy_from_slice(&f16b(dmin));
                for pair in s[4..].chunks_exact_mut(2) {
                    let sc = 32 + (unit() * 31.0) as u8;
                    pair.copy_from_slice(&[sc, sc]);
                }
            }
            // i8 scales of either sign, 16..63 in magnitude.
            DType::Q6_K => {
                let d = sigma / 18.5 / 40.0 * jitter;
                for b in &mut s[..16] {
                    let m = 16 + (unit() * 47.0) as i8;
                    *b = if unit() < 0.5 { m } else { -m } as u8;
                }
                s[16..18].copy_from_slice(&f16b(d));
                s[18..].fill(0);
            }
            _ => unreachable!("plain formats returned above"),
        }
    }
    (quants, scales)
}
