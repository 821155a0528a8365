//! Host dequantization of GGUF tensor data, bit-exact with `gguf.quants.dequantize` (gguf-py
//! 0.19): every product below is the f32 operation numpy performs, in the same order, with no
//! fused multiply-add. Blocks are read from GGML's AoS layout (unaligned, little-endian).
//!
//! | type | values/block | bytes | layout → value |
//! |---|---|---|---|
//! | F32, F16, BF16 | 1 | 4, 2, 2 | the float (BF16: bits << 16) |
//! | Q8_0 | 32 | 34 | f16 d, 32 × i8 q → d·q |
//! | Q4_0 | 32 | 18 | f16 d, 16 B nibbles (low: 0..16, high: 16..32) → d·(q − 8) |
//! | Q4_1 | 32 | 20 | f16 d, f16 m, nibbles → d·q + m |
//! | Q5_0 | 32 | 22 | f16 d, u32 high bits (bit j: value j), nibbles → d·(q − 16) |
//! | Q5_1 | 32 | 24 | f16 d, f16 m, u32 high bits, nibbles → d·q + m |
//! | Q4_K | 256 | 144 | f16 d, f16 dmin, 12 B of 6-bit (scale, min) × 8, 128 B nibbles → (d·sc)·q − dmin·m |
//! | Q5_K | 256 | 176 | as Q4_K, with 32 B of high bits before the nibbles (bit s of byte l: sub-block s) |
//! | Q6_K | 256 | 210 | 128 B low nibbles, 64 B 2-bit highs, 16 × i8 scales, f16 d → (d·sc)·(q − 32) |
//!
//! In the K-quants, 32-value sub-block `2j` takes the low nibbles of nibble bytes `32j..32j+32`
//! and sub-block `2j+1` their high nibbles; Q6_K works in two halves of 128 values, each from 64
//! low-nibble bytes and 32 high-bit bytes, with one scale per 16 values.

use super::GgmlType;
use half::{bf16, f16};

fn h(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `bytes` (whole blocks of `ty`) into `out`, whose length must be the number of
/// values they hold. Errors (a message) on an unsupported type or a length mismatch.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    let (bs, ts) = (ty.block_size() as usize, ty.type_size() as usize);
    if !ty.is_supported() {
        return Err(format!(
            "type {ty} is not supported (supported: {})",
            GgmlType::supported_list()
        ));
    }
    if !out.len().is_multiple_of(bs) || bytes.len() != out.len() / bs * ts {
        return Err(format!(
            "{} {ty} values need {} bytes, got {}",
            out.len(),
            out.len() / bs * ts,
            bytes.len()
        ));
    }
    let blocks = bytes.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => blocks.for_each(|(b, o)| o[0] = h(b, 0)),
        GgmlType::BF16 => blocks.for_each(|(b, o)| o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        GgmlType::Q8_0 => blocks.for_each(|(b, o)| q8_0(b, o)),
        GgmlType::Q4_0 => blocks.for_each(|(b, o)| q4_0(b, o)),
        GgmlType::Q4_1 => blocks.for_each(|(b, o)| q4_1(b, o)),
        GgmlType::Q5_0 => blocks.for_each(|(b, o)| q5_0(b, o)),
        GgmlType::Q5_1 => blocks.for_each(|(b, o)| q5_1(b, o)),
        GgmlType::Q4_K => blocks.for_each(|(b, o)| q4_k(b, o)),
        GgmlType::Q5_K => blocks.for_each(|(b, o)| q5_k(b, o)),
        GgmlType::Q6_K => blocks.for_each(|(b, o)| q6_k(b, o)),
        _ => unreachable!("checked by is_supported"),
    }
    Ok(())
}

fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    for (o, &q) in o.iter_mut().zip(&b[2..34]) {
        *o = (q as i8) as f32 * d;
    }
}

/// The 32 4-bit values of `qs` (16 bytes): low nibbles first, then high nibbles.
fn nibble(qs: &[u8], j: usize) -> u8 {
    match j < 16 {
        true => qs[j] & 0x0F,
        false => qs[j - 16] >> 4,
    }
}

fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    for (j, o) in o.iter_mut().enumerate() {
        *o = d * (nibble(&b[2..18], j) as i32 - 8) as f32;
    }
}

fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    for (j, o) in o.iter_mut().enumerate() {
        *o = d * nibble(&b[4..20], j) as f32 + m;
    }
}

/// The 5-bit value j of a Q5 block: `qh` (u32, bit j) over the nibble.
fn five(qh: u32, qs: &[u8], j: usize) -> u8 {
    nibble(qs, j) | ((((qh >> j) & 1) as u8) << 4)
}

fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, o) in o.iter_mut().enumerate() {
        *o = d * (five(qh, &b[6..22], j) as i32 - 16) as f32;
    }
}

fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, o) in o.iter_mut().enumerate() {
        *o = d * five(qh, &b[8..24], j) as f32 + m;
    }
}

/// Q4_K and Q5_K: `qh` is None for Q4_K, else the 32 high-bit bytes.
fn k4(b: &[u8], qh: Option<&[u8]>, qs: &[u8], o: &mut [f32]) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let (sc, mn) = crate::blocks::unpack_scale_min(&b[4..16]);
    for (s, o) in o.chunks_exact_mut(32).enumerate() {
        let ds = d * sc[s] as f32;
        let dm = dmin * mn[s] as f32;
        let shift = 4 * (s % 2);
        let bytes = &qs[32 * (s / 2)..32 * (s / 2) + 32];
        match qh {
            None => {
                for (o, &q) in o.iter_mut().zip(bytes) {
                    *o = ds * ((q >> shift) & 0x0F) as f32 - dm;
                }
            }
            Some(qh) => {
                for ((o, &q), &hb) in o.iter_mut().zip(bytes).zip(qh) {
                    *o = ds * (((q >> shift) & 0x0F) | (((hb >> s) & 1) << 4)) as f32 - dm;
                }
            }
        }
    }
}

fn q4_k(b: &[u8], o: &mut [f32]) {
    k4(b, None, &b[16..144], o);
}

fn q5_k(b: &[u8], o: &mut [f32]) {
    k4(b, Some(&b[16..48]), &b[48..176], o);
}

fn q6_k(b: &[u8], o: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = h(b, 208);
    for half in 0..2 {
        let (ql, qh) = (&ql[64 * half..64 * half + 64], &qh[32 * half..32 * half + 32]);
        // Group g (32 values): low nibbles of ql[32(g%2)..], high for g ≥ 2; qh bits 2g.
        for g in 0..4 {
            for l in 0..32 {
                let lo = match g < 2 {
                    true => ql[32 * (g % 2) + l] & 0x0F,
                    false => ql[32 * (g % 2) + l] >> 4,
                };
                let q = (lo | (((qh[l] >> (2 * g)) & 3) << 4)) as i32 - 32;
                let i = 128 * half + 32 * g + l;
                let ds = d * (scales[i / 16] as i8) as f32;
                o[i] = ds * q as f32;
            }
        }
    }
}
