//! Activation quantization for the integer-dot mat-vec (`shaders/quantize_x.wgsl`), on the
//! CPU: the same integers bit for bit, for the reference's int8 mode and the kernel tests.
//!
//! A row of K values (K a multiple of 32) is cut into blocks of 32. A block's scale is
//! s = 2^e, the smallest power of two with max|x| ≤ 127·s, and q = round(x / s), ties to
//! even: both exact in f32 (a power-of-two scale only moves the exponent), so every device
//! and this code give the same q. A block with max|x| < 2^-96 is all zeros with s = 0.
//! The GPU layout of a block is 12 words: the 32 q as packed int8 (word j: values
//! 4j..4j+3), then s, Σ q over values 0..15 and over 16..31 as f32 bits, and a zero word.

/// Values per quantized block.
pub const BLOCK: usize = 32;
/// u32 words of one block in the GPU layout.
pub const BLOCK_WORDS: usize = 12;

/// One block: its integers and scale (value = s·q).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QBlock {
    pub q: [i8; BLOCK],
    pub s: f32,
}

/// The exponent e of the scale 2^e of a block whose largest magnitude is `m` (≥ 2^-96,
/// finite): m = f·2^E with f in [0.5, 1), e = E − 7, or E − 6 when f > 127/128.
fn scale_exp(m: f32) -> i32 {
    let bits = m.to_bits();
    let e = (bits >> 23) as i32 - 126 - 7;
    if bits & 0x7f_ffff > 0x7e_0000 {
        e + 1
    } else {
        e
    }
}

/// Quantizes one block of 32 values.
pub fn quantize_block(x: &[f32]) -> QBlock {
    assert_eq!(x.len(), BLOCK, "a block holds {BLOCK} values");
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut q = [0i8; BLOCK];
    if m < pow2(-96) || !m.is_finite() {
        return QBlock { q, s: 0.0 };
    }
    let e = scale_exp(m);
    let inv = pow2(-e);
    for (qi, v) in q.iter_mut().zip(x) {
        *qi = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    QBlock { q, s: pow2(e) }
}

/// 2^e for a normal exponent (−126 ≤ e ≤ 127), exactly.
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// Every block of `x` (a multiple of 32 values).
pub fn quantize_row(x: &[f32]) -> Vec<QBlock> {
    x.chunks_exact(BLOCK).map(quantize_block).collect()
}

/// `x` replaced by its quantized values s·q (what the integer-dot mat-vec multiplies).
pub fn quant_dequant_row(x: &mut [f32]) {
    for chunk in x.chunks_exact_mut(BLOCK) {
        let b = quantize_block(chunk);
        for (v, q) in chunk.iter_mut().zip(b.q) {
            *v = b.s * q as f32;
        }
    }
}

/// The GPU layout of quantized blocks (`shaders/lib/x_q8.wgsl`), [`BLOCK_WORDS`] words each.
pub fn to_words(blocks: &[QBlock]) -> Vec<u32> {
    let mut out = Vec::with_capacity(blocks.len() * BLOCK_WORDS);
    for b in blocks {
        for w in b.q.chunks_exact(4) {
            out.push(u32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8]));
        }
        let half = |r: std::ops::Range<usize>| b.q[r].iter().map(|&q| q as i32).sum::<i32>() as f32;
        out.extend([b.s.to_bits(), half(0..16).to_bits(), half(16..32).to_bits(), 0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_smallest_power_of_two_that_holds_the_block() {
        for m in [1.0f32, 127.0, 127.5, 0.3, 1e-20, 3.0e30, 126.99, 0.9921875, 0.9922] {
            let mut x = [0f32; BLOCK];
            x[5] = -m;
            let b = quantize_block(&x);
            assert!(m <= 127.0 * b.s, "{m}: {}", b.s);
            assert!(m > 127.0 * b.s / 2.0, "{m}: {} is not the smallest", b.s);
            assert_eq!(b.s, 2f32.powi(b.s.log2() as i32), "a power of two");
            assert!(b.q[5] <= -64, "{m}: {}", b.q[5]);
        }
    }

    #[test]
    fn values_round_to_even_and_tiny_blocks_are_zero() {
        let mut x = [0f32; BLOCK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[3] = 0.5;
        let b = quantize_block(&x);
        assert_eq!(b.s, 1.0);
        assert_eq!(&b.q[..4], &[127, 2, -4, 0]);
        assert_eq!(quantize_block(&[1e-30; BLOCK]).s, 0.0);
        let words = to_words(&[b]);
        assert_eq!(words.len(), BLOCK_WORDS);
        assert_eq!(words[0], u32::from_le_bytes([127, 2, (-4i8) as u8, 0]));
        assert_eq!(f32::from_bits(words[9]), 125.0);
    }
}
