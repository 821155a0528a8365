//! Storage formats of weights and caches (activations are always f32): the names the CLI
//! takes, which row lengths each can hold, and the byte layout of a matrix on the GPU.
//!
//! Every format is one WGSL snippet (`shaders/lib/w_<name>.wgsl`). Four can be produced on the
//! host from f32 (`--dtype`, `lfm quantize`); the others are read as they are from GGUF files
//! (their blocks repacked, see [`crate::blocks`]).

use crate::error::{Error, Result};
use crate::quant::QuantFormat;

/// Storage format of weights (activations are always f32). Names follow ggml's.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    /// GGML Q8_0: blocks of 32 int8 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// GGML Q4_0: blocks of 32 4-bit values (offset −8) with an f16 scale (4.5 bits per weight).
    Q4_0,
    /// bfloat16 (GGUF BF16 files).
    BF16,
    /// GGML Q4_1: 32 4-bit values, f16 scale and f16 offset (5 bits per weight).
    Q4_1,
    /// GGML Q5_0: 32 5-bit values (offset −16), f16 scale (5.5 bits per weight).
    Q5_0,
    /// GGML Q5_1: 32 5-bit values, f16 scale and offset (6 bits per weight).
    Q5_1,
    /// GGML Q4_K: 256 4-bit values in 8 sub-blocks with 6-bit scales and mins (4.5 bits).
    Q4_K,
    /// GGML Q5_K: as Q4_K with a fifth bit per value (5.5 bits).
    Q5_K,
    /// GGML Q6_K: 256 6-bit values (offset −32), 16 int8 scales, f16 d (6.5625 bits).
    Q6_K,
}

impl DType {
    /// Every format the GPU reads.
    pub const ALL: [DType; 11] = [
        DType::F32,
        DType::F16,
        DType::Q8_0,
        DType::Q4_0,
        DType::BF16,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];
    /// The formats the host can produce from f32 (`--dtype`, `lfm quantize`).
    pub const CONVERTIBLE: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0];

    /// One of [`Self::CONVERTIBLE`] by name (the `--dtype` values).
    pub fn parse(s: &str) -> Result<Self> {
        DType::CONVERTIBLE
            .into_iter()
            .find(|d| d.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                let read_only = DType::ALL.into_iter().any(|d| d.name() == s.to_ascii_lowercase());
                let why = match read_only {
                    true => " is read from GGUF files as it is, not converted to",
                    false => " is unknown",
                };
                Error::Invalid(format!("dtype {s:?}{why} (f32, f16, q8_0 or q4_0)"))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::BF16 => "bf16",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
        }
    }

    /// Whether the host can convert f32 to this format.
    pub fn convertible(self) -> bool {
        DType::CONVERTIBLE.contains(&self)
    }

    /// The format a matrix is converted to when `self` is wanted but cannot be produced from
    /// f32 (a GGUF tensor that must be converted): q8_0 for the read-only block formats, f32
    /// for bf16 (exact).
    pub fn conversion_target(self) -> DType {
        match self {
            DType::BF16 => DType::F32,
            d if d.convertible() => d,
            _ => DType::Q8_0,
        }
    }

    /// (values per block, quant bytes per block, scale bytes per block) of the engine's
    /// structure-of-arrays layout (see [`crate::blocks`]); plain formats are blocks of one
    /// value with no scale.
    pub fn block(self) -> (usize, usize, usize) {
        match self {
            DType::F32 => (1, 4, 0),
            DType::F16 | DType::BF16 => (1, 2, 0),
            DType::Q8_0 => (32, 32, 2),
            DType::Q4_0 => (32, 16, 2),
            DType::Q4_1 => (32, 16, 4),
            DType::Q5_0 => (32, 20, 2),
            DType::Q5_1 => (32, 20, 4),
            DType::Q4_K => (256, 128, 20),
            DType::Q5_K => (256, 160, 20),
            DType::Q6_K => (256, 192, 20),
        }
    }

    /// Whether values come in blocks with scales.
    pub fn is_block(self) -> bool {
        self.block().0 > 1
    }

    pub fn quant(self) -> Option<QuantFormat> {
        match self {
            DType::Q8_0 => Some(QuantFormat::Q8_0),
            DType::Q4_0 => Some(QuantFormat::Q4_0),
            _ => None,
        }
    }

    /// Whether a row of `cols` weights can be stored in this format (the kernels read 8
    /// values at a time).
    pub fn fits_cols(self, cols: usize) -> bool {
        cols.is_multiple_of(self.block().0.max(8))
    }

    /// The largest magnitude this format holds when converted to: f16's, or what a block's
    /// f16 scale reaches (amax / 127 for q8_0, amax / 8 for q4_0). Read-only formats: f32's.
    pub fn max_abs(self) -> f32 {
        const F16_MAX: f32 = 65504.0;
        match self {
            DType::F16 => F16_MAX,
            DType::Q8_0 => F16_MAX * 127.0,
            DType::Q4_0 => F16_MAX * 8.0,
            _ => f32::MAX,
        }
    }

    /// Checks that the values of tensor `name` are finite and fit this format: the error names
    /// the tensor, the first bad value's index, and a format that would hold it.
    pub fn check_values(self, name: &str, data: &[f32]) -> Result<()> {
        let max = self.max_abs();
        let Some(index) = data.iter().position(|v| v.is_nan() || v.abs() > max) else {
            return Ok(());
        };
        let value = data[index];
        if !value.is_finite() {
            return Err(Error::NonFinite {
                tensor: name.to_string(),
                index,
                value,
            });
        }
        let alt = match DType::Q8_0.max_abs() >= value.abs() {
            true => " or q8_0 (its per-block scales reach further)".to_string(),
            false => String::new(),
        };
        Err(Error::Overflow {
            tensor: name.to_string(),
            index,
            value,
            dtype: self.name().to_string(),
            max,
            alt,
        })
    }

    /// Bytes of one row of `cols` weights (quant bytes plus scales).
    pub fn row_bytes(self, cols: usize) -> u64 {
        let (values, quant, scale) = self.block();
        (cols / values * (quant + scale)) as u64
    }

    /// (buffer bytes, word offset of the scales) of `rows` rows: every block's quant bytes,
    /// then (block formats) every block's scale bytes from a word boundary on.
    pub fn layout(self, rows: usize, cols: usize) -> (u64, u32) {
        let (values, quant, scale) = self.block();
        let blocks = (rows * cols / values) as u64;
        let q = blocks * quant as u64;
        let scale_word = match self.is_block() {
            true => (q / 4) as u32,
            false => 0,
        };
        ((q + blocks * scale as u64).next_multiple_of(16), scale_word)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
