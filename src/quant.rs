//! Host-side GGML block quantization (Q8_0, Q4_0), bit-exact with the `gguf` Python package
//! (`gguf.quants.quantize` / `dequantize`, gguf 0.19.0) and, for finite input, with ggml's C
//! reference (`quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`) on x86-64, except for the sign
//! of a zero Q4_0 scale (see "Corner cases" below). No GPU code here.
//!
//! # Formats
//!
//! Both formats cut a row into blocks of [`BLOCK`] = 32 consecutive values; each block has one
//! f16 scale `d` and 32 small integers `q`, and dequantizes as `d as f32 * q as f32`.
//!
//! * **Q8_0**: `d = amax / 127` (f32, `amax` = largest `|x|`), `q = round(x * (1/d))` as `i8`,
//!   one byte per value (two's complement).
//! * **Q4_0**: `max` = the value of largest magnitude *with its sign* (the first one on ties),
//!   `d = max / -8`, `q = min(15, trunc(x * (1/d) + 8.5))` in `0..=15`, meaning `q - 8`. 16 bytes:
//!   byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble.
//!
//! In both, `1/d` is computed in f32 from the *f32* `d` (0 when `d == 0`); only the stored scale
//! is rounded to f16 (round to nearest, ties to even; overflow gives ±inf). All arithmetic is
//! plain f32 (no fused multiply-add).
//!
//! # Rounding
//!
//! * Q8_0 rounds half **away from zero** (C `roundf`; gguf's `np_roundf`, not numpy's
//!   half-to-even `np.round`): 2.5 → 3, −2.5 → −3.
//! * Q4_0 uses `trunc(v + 8.5)` with `v + 8.5 > 0`, i.e. round half **up** (toward +∞):
//!   2.5 → 3, −2.5 → −2 (stored 11 and 6).
//!
//! # Layouts
//!
//! The functions here work on SoA buffers: `quants` holds the quant bytes of every block back to
//! back ([`QuantFormat::quant_bytes_per_block`] each, same byte order as inside a GGML block) and
//! `scales` one f16 bit pattern per block. [`to_ggml_blocks`] / [`from_ggml_blocks`] convert to /
//! from GGML's AoS block layout (per block: the f16 scale, little-endian, then the quant bytes),
//! which is what GGUF files and `gguf.quants.quantize` hold.
//!
//! # Corner cases (all matched bit for bit with gguf, see `tests/quant.rs`)
//!
//! * Non-finite input (NaN, ±inf) is rejected with [`Error::Invalid`].
//! * A scale beyond the f16 range (Q8_0 `amax / 127` ≥ 65520, Q4_0 `|max| / 8` ≥ 65520) is stored
//!   as ±inf; its block then dequantizes to ±inf (NaN where `q` is 0), as in gguf and ggml.
//! * f32-subnormal blocks where `1/d` overflows to inf (Q8_0 `amax` below about 3.7e-37, Q4_0
//!   `|max|` below about 2.4e-38): every scaled value is then ±inf or NaN and is stored as the
//!   integer 0 (Q8_0 `q = 0`, Q4_0 nibble 0, i.e. −8), which is what numpy's float→int casts
//!   (and ggml's C casts) do on x86-64. We reproduce that explicitly on every platform.
//! * Q4_0 all-zero block: gguf (numpy `argmax`) takes `max = x[0]`, so the stored scale is
//!   −0.0 (`0x8000`) when `x[0]` is +0.0 and +0.0 (`0x0000`) when `x[0]` is −0.0. ggml's C keeps
//!   its initial `max = 0.0f` and always stores `0x8000`. We follow gguf (they differ only in
//!   the sign of a zero scale).

use crate::error::{Error, Result};
use half::f16;

/// Number of values in one GGML block (Q8_0 and Q4_0).
pub const BLOCK: usize = 32;

/// A GGML block-quantized format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// 8-bit: f16 scale + 32 × i8 (34 bytes per block).
    Q8_0,
    /// 4-bit: f16 scale + 32 × u4 with +8 offset (18 bytes per block).
    Q4_0,
}

impl QuantFormat {
    /// Number of values in one block.
    pub const BLOCK: usize = BLOCK;
    /// Every supported format.
    pub const ALL: [QuantFormat; 2] = [QuantFormat::Q8_0, QuantFormat::Q4_0];

    /// Bytes of one GGML (AoS) block: the f16 scale plus the quants (34 / 18).
    pub fn block_bytes(self) -> usize {
        2 + self.quant_bytes_per_block()
    }

    /// Bytes of quants per block, without the scale (32 / 16).
    pub fn quant_bytes_per_block(self) -> usize {
        match self {
            QuantFormat::Q8_0 => BLOCK,
            QuantFormat::Q4_0 => BLOCK / 2,
        }
    }

    /// Lower-case name as ggml / llama.cpp spell it: "q8_0", "q4_0".
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4_0 => "q4_0",
        }
    }

    /// Inverse of [`name`](Self::name) (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The `ggml_type` id used in GGUF files (Q4_0 = 2, Q8_0 = 8).
    pub fn ggml_type(self) -> u32 {
        match self {
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q4_0 => 2,
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One quantized block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantBlock {
    format: QuantFormat,
    /// f16 bit pattern of the scale `d`.
    scale: u16,
    /// Quant bytes; only the first `format.quant_bytes_per_block()` are used (the rest are 0).
    qs: [u8; BLOCK],
}

impl QuantBlock {
    /// The block's format.
    pub fn format(&self) -> QuantFormat {
        self.format
    }

    /// The f16 bit pattern of the scale `d`.
    pub fn scale_bits(&self) -> u16 {
        self.scale
    }

    /// The scale `d` as f32 (exact).
    pub fn scale(&self) -> f32 {
        f16::from_bits(self.scale).to_f32()
    }

    /// The quant bytes (32 for Q8_0, 16 for Q4_0), in GGML order.
    pub fn quants(&self) -> &[u8] {
        &self.qs[..self.format.quant_bytes_per_block()]
    }

    /// The block's 32 dequantized values.
    pub fn dequantize(&self) -> [f32; BLOCK] {
        let mut out = [0.0; BLOCK];
        dequantize_block(self.format, self.quants(), self.scale, &mut out);
        out
    }
}

/// float → i32 the way x86-64's `cvttss2si` converts (numpy's `astype` and ggml's C casts
/// compile to it): truncation toward zero, and i32::MIN for NaN, ±inf and out-of-range values.
fn trunc_to_i32_x86(v: f32) -> i32 {
    // -2^31 is representable; 2^31 is the first value past i32::MAX. NaN fails both tests.
    if (-2147483648.0..2147483648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// `1/d` as ggml computes it (0 for a zero scale).
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Quantizes one block. Errors on non-finite input.
pub fn quantize_block(fmt: QuantFormat, x: &[f32; BLOCK]) -> Result<QuantBlock> {
    check_finite(x, 0)?;
    let mut qs = [0u8; BLOCK];
    let scale = quantize_block_into(fmt, x, &mut qs);
    Ok(QuantBlock { format: fmt, scale, qs })
}

/// Quantizes 32 finite values, writing `fmt.quant_bytes_per_block()` bytes; returns the f16 scale.
fn quantize_block_into(fmt: QuantFormat, x: &[f32], qs: &mut [u8]) -> u16 {
    debug_assert_eq!(x.len(), BLOCK);
    match fmt {
        QuantFormat::Q8_0 => {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = inverse(d);
            for (q, &v) in qs[..BLOCK].iter_mut().zip(x) {
                // f32::round is half away from zero (C roundf); inf/NaN (only when `id`
                // overflowed) become 0 through the x86 conversion.
                *q = trunc_to_i32_x86((v * id).round()) as i8 as u8;
            }
            f16::from_f32(d).to_bits()
        }
        QuantFormat::Q4_0 => {
            // First element of largest magnitude, with its sign (numpy argmax of |x|: x[0]
            // when every |x| is equal, e.g. all zeros).
            let mut max = x[0];
            for &v in &x[1..] {
                if v.abs() > max.abs() {
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = inverse(d);
            let nib = |v: f32| -> u8 {
                // numpy: trunc in f32, astype(uint8) (wraps the low byte), clip(0, 15).
                (trunc_to_i32_x86((v * id + 8.5).trunc()) as u8).min(15)
            };
            for j in 0..BLOCK / 2 {
                qs[j] = nib(x[j]) | (nib(x[j + BLOCK / 2]) << 4);
            }
            f16::from_f32(d).to_bits()
        }
    }
}

/// Dequantizes one block's quant bytes with the f16 scale `scale` into `out` (32 values).
fn dequantize_block(fmt: QuantFormat, qs: &[u8], scale: u16, out: &mut [f32]) {
    let d = f16::from_bits(scale).to_f32();
    match fmt {
        QuantFormat::Q8_0 => {
            for (o, &q) in out.iter_mut().zip(&qs[..BLOCK]) {
                *o = (q as i8) as f32 * d;
            }
        }
        QuantFormat::Q4_0 => {
            let (lo, hi) = out.split_at_mut(BLOCK / 2);
            for j in 0..BLOCK / 2 {
                lo[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
                hi[j] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
    }
}

fn check_finite(x: &[f32], offset: usize) -> Result<()> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::Invalid(format!(
            "cannot quantize non-finite value {} at index {}",
            x[i],
            offset + i
        ))),
    }
}

fn check_row_len(what: &str, len: usize) -> Result<usize> {
    if !len.is_multiple_of(BLOCK) {
        return Err(Error::Invalid(format!(
            "{what} has {len} values, not a multiple of the block size {BLOCK}"
        )));
    }
    Ok(len / BLOCK)
}

/// Quantizes `x` (length a multiple of 32, all finite), appending the quant bytes of each block
/// to `quants` and one f16 scale per block to `scales` (SoA). On error nothing is appended.
pub fn quantize_row(fmt: QuantFormat, x: &[f32], quants: &mut Vec<u8>, scales: &mut Vec<u16>) -> Result<()> {
    let n_blocks = check_row_len("quantize_row input", x.len())?;
    check_finite(x, 0)?;
    let qb = fmt.quant_bytes_per_block();
    let q0 = quants.len();
    quants.resize(q0 + n_blocks * qb, 0);
    scales.reserve(n_blocks);
    for (xb, qs) in x.chunks_exact(BLOCK).zip(quants[q0..].chunks_exact_mut(qb)) {
        scales.push(quantize_block_into(fmt, xb, qs));
    }
    Ok(())
}

/// Dequantizes SoA blocks (`quants`: `quant_bytes_per_block` bytes per block, `scales`: one f16
/// bit pattern per block) into `out`, whose length must be 32 × the number of blocks.
pub fn dequantize_row(fmt: QuantFormat, quants: &[u8], scales: &[u16], out: &mut [f32]) -> Result<()> {
    let n_blocks = check_row_len("dequantize_row output", out.len())?;
    let qb = fmt.quant_bytes_per_block();
    if scales.len() != n_blocks || quants.len() != n_blocks * qb {
        return Err(Error::Invalid(format!(
            "dequantize_row {fmt}: {} output values need {n_blocks} scales and {} quant bytes, got {} and {}",
            out.len(),
            n_blocks * qb,
            scales.len(),
            quants.len()
        )));
    }
    for ((o, qs), &s) in out.chunks_exact_mut(BLOCK).zip(quants.chunks_exact(qb)).zip(scales) {
        dequantize_block(fmt, qs, s, o);
    }
    Ok(())
}

/// SoA (`quants`, `scales`) → GGML AoS blocks: per block the f16 scale (little-endian) followed
/// by its quant bytes.
pub fn to_ggml_blocks(fmt: QuantFormat, quants: &[u8], scales: &[u16]) -> Result<Vec<u8>> {
    let qb = fmt.quant_bytes_per_block();
    if quants.len() != scales.len() * qb {
        return Err(Error::Invalid(format!(
            "to_ggml_blocks {fmt}: {} scales need {} quant bytes, got {}",
            scales.len(),
            scales.len() * qb,
            quants.len()
        )));
    }
    let mut out = Vec::with_capacity(scales.len() * fmt.block_bytes());
    for (qs, s) in quants.chunks_exact(qb).zip(scales) {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(qs);
    }
    Ok(out)
}

/// GGML AoS blocks → SoA `(quants, scales)`; the inverse of [`to_ggml_blocks`].
pub fn from_ggml_blocks(fmt: QuantFormat, blocks: &[u8]) -> Result<(Vec<u8>, Vec<u16>)> {
    let bb = fmt.block_bytes();
    if !blocks.len().is_multiple_of(bb) {
        return Err(Error::Invalid(format!(
            "from_ggml_blocks {fmt}: {} bytes is not a multiple of the block size {bb}",
            blocks.len()
        )));
    }
    let n_blocks = blocks.len() / bb;
    let mut quants = Vec::with_capacity(n_blocks * fmt.quant_bytes_per_block());
    let mut scales = Vec::with_capacity(n_blocks);
    for b in blocks.chunks_exact(bb) {
        scales.push(u16::from_le_bytes([b[0], b[1]]));
        quants.extend_from_slice(&b[2..]);
    }
    Ok((quants, scales))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl Fn(usize) -> f32) -> [f32; BLOCK] {
        std::array::from_fn(f)
    }

    /// Deterministic pseudo-random values in [-1, 1) (xorshift), scaled per block.
    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                let scale = [1.0f32, 1e-3, 30.0, 0.07][(i / BLOCK) % 4];
                u * scale
            })
            .collect()
    }

    fn q4_nibbles(b: &QuantBlock) -> [u8; BLOCK] {
        let q = b.quants();
        std::array::from_fn(|i| if i < 16 { q[i] & 15 } else { q[i - 16] >> 4 })
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(QuantFormat::Q8_0.block_bytes(), 34);
        assert_eq!(QuantFormat::Q4_0.block_bytes(), 18);
        assert_eq!(QuantFormat::Q8_0.quant_bytes_per_block(), 32);
        assert_eq!(QuantFormat::Q4_0.quant_bytes_per_block(), 16);
        assert_eq!(QuantFormat::BLOCK, 32);
        for f in QuantFormat::ALL {
            assert_eq!(QuantFormat::from_name(f.name()), Some(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(QuantFormat::from_name("Q4_0"), Some(QuantFormat::Q4_0));
        assert_eq!(QuantFormat::from_name("q5_0"), None);
    }

    #[test]
    fn zeros() {
        let b8 = quantize_block(QuantFormat::Q8_0, &[0.0; BLOCK]).unwrap();
        assert_eq!(b8.scale_bits(), 0);
        assert!(b8.quants().iter().all(|&q| q == 0));
        assert_eq!(b8.dequantize(), [0.0; BLOCK]);

        // Q4_0: d = x[0] / -8 → -0.0 for +0.0 (gguf), every nibble 8 (value 0).
        let b4 = quantize_block(QuantFormat::Q4_0, &[0.0; BLOCK]).unwrap();
        assert_eq!(b4.scale_bits(), 0x8000);
        assert!(b4.quants().iter().all(|&q| q == 0x88));
        assert!(b4.dequantize().iter().all(|&v| v == 0.0));
        let mut x = [0.0; BLOCK];
        x[0] = -0.0;
        assert_eq!(quantize_block(QuantFormat::Q4_0, &x).unwrap().scale_bits(), 0x0000);
    }

    #[test]
    fn single_big_value() {
        let mut x = [0.0f32; BLOCK];
        x[5] = 1000.0;
        x[20] = 1.0; // 1000/127 ≈ 7.87 → q = round(0.127) = 0
        let b8 = quantize_block(QuantFormat::Q8_0, &x).unwrap();
        assert_eq!(b8.quants()[5] as i8, 127);
        assert_eq!(b8.quants()[20], 0);
        assert_eq!(b8.scale_bits(), f16::from_f32(1000.0 / 127.0).to_bits());
        let d = b8.dequantize();
        assert_eq!(d[5], 127.0 * b8.scale());

        // Q4_0: the max maps to nibble 0 (-8 × d, d = -125), the rest to 8.
        let b4 = quantize_block(QuantFormat::Q4_0, &x).unwrap();
        assert_eq!(b4.scale(), -125.0);
        let n = q4_nibbles(&b4);
        assert_eq!(n[5], 0);
        assert!(n.iter().enumerate().all(|(i, &v)| i == 5 || v == 8));
        assert_eq!(b4.dequantize()[5], 1000.0);
    }

    #[test]
    fn signs() {
        // Q8_0: symmetric, sign carried by the quant.
        let x = block(|i| if i % 2 == 0 { i as f32 } else { -(i as f32) });
        let b8 = quantize_block(QuantFormat::Q8_0, &x).unwrap();
        for (i, &q) in b8.quants().iter().enumerate() {
            assert_eq!((q as i8).signum(), (x[i] as i32).signum() as i8, "element {i}");
        }
        let neg = x.map(|v| -v);
        let n8 = quantize_block(QuantFormat::Q8_0, &neg).unwrap();
        assert_eq!(n8.scale_bits(), b8.scale_bits());
        for (a, b) in b8.quants().iter().zip(n8.quants()) {
            assert_eq!(*a as i8, -(*b as i8));
        }

        // Q4_0: the sign of d follows -max; the max always lands on nibble 0.
        let mut y = [0.5f32; BLOCK];
        y[3] = -4.0; // largest magnitude, negative → d = 0.5 > 0
        let b4 = quantize_block(QuantFormat::Q4_0, &y).unwrap();
        assert_eq!(b4.scale(), 0.5);
        assert_eq!(q4_nibbles(&b4)[3], 0);
        assert_eq!(q4_nibbles(&b4)[0], 9);
        y[3] = 4.0; // positive → d = -0.5
        let b4 = quantize_block(QuantFormat::Q4_0, &y).unwrap();
        assert_eq!(b4.scale(), -0.5);
        assert_eq!(q4_nibbles(&b4)[3], 0);
        assert_eq!(q4_nibbles(&b4)[0], 7);
        // Tie in magnitude: the first one wins; the opposite one clamps from 16 to 15.
        let mut z = [0.0f32; BLOCK];
        z[1] = 2.0;
        z[7] = -2.0;
        let b4 = quantize_block(QuantFormat::Q4_0, &z).unwrap();
        assert_eq!(b4.scale(), -0.25);
        assert_eq!(q4_nibbles(&b4)[1], 0);
        assert_eq!(q4_nibbles(&b4)[7], 15);
    }

    #[test]
    fn ties() {
        // Q8_0 with amax = 127 → d = 1, id = 1: half away from zero.
        let mut x = [0.0f32; BLOCK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        x[4] = -0.5;
        x[5] = 3.5;
        let q: Vec<i8> = quantize_block(QuantFormat::Q8_0, &x)
            .unwrap()
            .quants()
            .iter()
            .map(|&q| q as i8)
            .collect();
        assert_eq!(&q[..6], &[127, 3, -3, 1, -1, 4]);
        // Q4_0 with max = -8 → d = 1, id = 1: half up.
        let mut y = [0.0f32; BLOCK];
        y[0] = -8.0;
        y[1] = 2.5;
        y[2] = -2.5;
        y[3] = 0.5;
        y[4] = -0.5;
        let n = q4_nibbles(&quantize_block(QuantFormat::Q4_0, &y).unwrap());
        assert_eq!(&n[..5], &[0, 11, 6, 9, 8]);
    }

    #[test]
    fn nibble_layout() {
        let y = block(|i| if i == 0 { -8.0 } else { (i % 8) as f32 - 4.0 });
        let b4 = quantize_block(QuantFormat::Q4_0, &y).unwrap();
        for j in 0..16 {
            let lo = (y[j] + 8.0) as u8;
            let hi = (y[j + 16] + 8.0) as u8;
            assert_eq!(b4.quants()[j], lo | (hi << 4), "byte {j}");
        }
        assert_eq!(b4.dequantize(), y);
    }

    #[test]
    fn round_trip_exact_scale() {
        // d exactly representable in f16 → the per-element error is at most d/2 (Q8_0) / d (Q4_0,
        // where +8·d clamps to +7·d).
        let base = pseudo_random(BLOCK, 7);
        let mut x8: [f32; BLOCK] = base.clone().try_into().unwrap();
        x8[9] = 127.0 / 64.0; // amax → d = 1/64
        let b8 = quantize_block(QuantFormat::Q8_0, &x8).unwrap();
        assert_eq!(b8.scale(), 1.0 / 64.0);
        for (a, b) in x8.iter().zip(b8.dequantize()) {
            assert!((a - b).abs() <= b8.scale() / 2.0, "{a} vs {b}");
        }
        let mut x4: [f32; BLOCK] = base.try_into().unwrap();
        x4[9] = 2.0; // d = -0.25
        let b4 = quantize_block(QuantFormat::Q4_0, &x4).unwrap();
        assert_eq!(b4.scale(), -0.25);
        for (a, b) in x4.iter().zip(b4.dequantize()) {
            assert!((a - b).abs() <= b4.scale().abs(), "{a} vs {b}");
        }
    }

    #[test]
    fn round_trip_error_bound() {
        // General scales: d is rounded to f16 after quantizing with the f32 d, so the bound grows
        // by |q|max · |d_f32 − d_f16| (plus f32 slop).
        let x = pseudo_random(BLOCK * 64, 99);
        for fmt in QuantFormat::ALL {
            let (mut q, mut s) = (Vec::new(), Vec::new());
            quantize_row(fmt, &x, &mut q, &mut s).unwrap();
            let mut y = vec![0.0; x.len()];
            dequantize_row(fmt, &q, &s, &mut y).unwrap();
            for (b, (xb, yb)) in x.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
                let (d32, qmax, base) = match fmt {
                    QuantFormat::Q8_0 => (xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0, 127.0, 0.5),
                    QuantFormat::Q4_0 => {
                        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        (amax / 8.0, 8.0, 1.0)
                    }
                };
                let d16 = f16::from_bits(s[b]).to_f32().abs();
                let bound = base * d32 + qmax * (d32 - d16).abs() + 1e-6 * d32;
                for (a, c) in xb.iter().zip(yb) {
                    assert!((a - c).abs() <= bound, "{fmt} block {b}: {a} vs {c}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn ggml_blocks_round_trip() {
        let x = pseudo_random(BLOCK * 5, 3);
        for fmt in QuantFormat::ALL {
            let (mut q, mut s) = (vec![0xAA], vec![0x1234]); // appends after existing content
            quantize_row(fmt, &x, &mut q, &mut s).unwrap();
            assert_eq!(q.len(), 1 + 5 * fmt.quant_bytes_per_block());
            assert_eq!(s.len(), 6);
            let (q, s) = (&q[1..], &s[1..]);
            let aos = to_ggml_blocks(fmt, q, s).unwrap();
            assert_eq!(aos.len(), 5 * fmt.block_bytes());
            for b in 0..5 {
                let blk = quantize_block(fmt, x[b * BLOCK..][..BLOCK].try_into().unwrap()).unwrap();
                let off = b * fmt.block_bytes();
                assert_eq!(&aos[off..off + 2], &blk.scale_bits().to_le_bytes());
                assert_eq!(&aos[off + 2..off + fmt.block_bytes()], blk.quants());
            }
            let (q2, s2) = from_ggml_blocks(fmt, &aos).unwrap();
            assert_eq!((q2.as_slice(), s2.as_slice()), (q, s));
        }
    }

    #[test]
    fn scale_overflow_and_tiny_blocks() {
        // f16 overflow of the scale: stored as inf, quants still computed from the f32 scale.
        let mut x = [0.0f32; BLOCK];
        x[0] = 127.0 * 65520.0;
        x[1] = 127.0 * 65520.0 / 4.0; // 31.75 → 32
        let b8 = quantize_block(QuantFormat::Q8_0, &x).unwrap();
        assert_eq!(b8.scale_bits(), 0x7C00);
        assert_eq!(&b8.quants()[..3], &[127, 32, 0]);
        let d = b8.dequantize();
        assert_eq!(d[0], f32::INFINITY);
        assert!(d[2].is_nan());

        // f32-subnormal block: 1/d overflows → every quant 0 (x86 numpy / ggml behaviour).
        let t = block(|i| (i as f32 - 16.0) * 1e-40);
        let b8 = quantize_block(QuantFormat::Q8_0, &t).unwrap();
        assert_eq!(b8.scale_bits(), 0);
        assert!(b8.quants().iter().all(|&q| q == 0));
        let b4 = quantize_block(QuantFormat::Q4_0, &t).unwrap();
        assert_eq!(b4.scale_bits(), 0);
        assert!(b4.quants().iter().all(|&q| q == 0));
    }

    #[test]
    fn errors() {
        let (mut q, mut s) = (Vec::new(), Vec::new());
        let e = quantize_row(QuantFormat::Q8_0, &[0.0; 33], &mut q, &mut s).unwrap_err();
        assert!(e.to_string().contains("multiple of the block size 32"), "{e}");
        let mut x = vec![1.0; 64];
        x[40] = f32::NAN;
        let e = quantize_row(QuantFormat::Q4_0, &x, &mut q, &mut s).unwrap_err();
        assert!(e.to_string().contains("index 40"), "{e}");
        assert!(q.is_empty() && s.is_empty());
        let mut inf = [0.0; BLOCK];
        inf[2] = f32::NEG_INFINITY;
        assert!(quantize_block(QuantFormat::Q8_0, &inf).is_err());

        let mut out = [0.0; 64];
        assert!(dequantize_row(QuantFormat::Q8_0, &[0; 64], &[0; 1], &mut out).is_err());
        assert!(dequantize_row(QuantFormat::Q4_0, &[0; 31], &[0; 2], &mut out).is_err());
        assert!(dequantize_row(QuantFormat::Q4_0, &[0; 32], &[0; 2], &mut out[..40]).is_err());
        assert!(to_ggml_blocks(QuantFormat::Q4_0, &[0; 17], &[0; 1]).is_err());
        assert!(from_ggml_blocks(QuantFormat::Q8_0, &[0; 35]).is_err());
    }
}
