//! Storage formats of weights and caches (activations are always f32): the names the CLI
//! takes, which row lengths each can hold, and the byte layout of a matrix on the GPU.

use crate::error::{Error, Result};
use crate::quant::QuantFormat;

/// Storage format of weights (activations are always f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    /// GGML Q8_0: blocks of 32 int8 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// GGML Q4_0: blocks of 32 4-bit values (offset −8) with an f16 scale (4.5 bits per weight).
    Q4_0,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0];

    pub fn parse(s: &str) -> Result<Self> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s.to_ascii_lowercase())
            .ok_or_else(|| Error::Invalid(format!("unknown dtype {s:?} (f32, f16, q8_0 or q4_0)")))
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
        }
    }

    pub fn quant(self) -> Option<QuantFormat> {
        match self {
            DType::Q8_0 => Some(QuantFormat::Q8_0),
            DType::Q4_0 => Some(QuantFormat::Q4_0),
            _ => None,
        }
    }

    /// Whether a row of `cols` weights can be stored in this format.
    pub fn fits_cols(self, cols: usize) -> bool {
        match self.quant() {
            Some(_) => cols.is_multiple_of(32),
            None => cols.is_multiple_of(8),
        }
    }

    /// The largest magnitude this format holds: f16's, or what a block's f16 scale reaches
    /// (amax / 127 for q8_0, amax / 8 for q4_0).
    pub fn max_abs(self) -> f32 {
        const F16_MAX: f32 = 65504.0;
        match self {
            DType::F32 => f32::MAX,
            DType::F16 => F16_MAX,
            DType::Q8_0 => F16_MAX * 127.0,
            DType::Q4_0 => F16_MAX * 8.0,
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
        match self {
            DType::F32 => cols as u64 * 4,
            DType::F16 => cols as u64 * 2,
            DType::Q8_0 => cols as u64 / 32 * 34,
            DType::Q4_0 => cols as u64 / 32 * 18,
        }
    }

    /// (buffer bytes, word offset of the scales) of `rows` rows.
    pub fn layout(self, rows: usize, cols: usize) -> (u64, u32) {
        match self.quant() {
            None => ((rows as u64 * self.row_bytes(cols)).next_multiple_of(16), 0),
            Some(q) => {
                let blocks = (rows * cols / 32) as u64;
                let quant = blocks * q.quant_bytes_per_block() as u64;
                ((quant + blocks * 2).next_multiple_of(16), (quant / 4) as u32)
            }
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
