//! GGUF files (llama.cpp's single-file format): the container, its tensor types, and an
//! `lfm2moe` file as a [`Source`](crate::model::weights::Source) with its config, tokenizer and
//! chat template.
//!
//! * [`reader`]: the container (v2 and v3, little-endian), memory-mapped; every count, length
//!   and offset is checked against the file size before use.
//! * [`dequant`]: host dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
//!   Q5_K and Q6_K, bit-exact with the `gguf` Python package (0.19).
//! * [`config`]: `lfm2moe.*` metadata → [`Config`](crate::model::config::Config).
//! * [`model`]: HF tensor names → GGUF ones (`model.layers.3.conv.in_proj.weight` →
//!   `blk.3.shortconv.in_proj.weight`), shape-checked, as a weight source.
//! * [`vocab`]: the `tokenizer.ggml.*` arrays → a `tokenizers::Tokenizer`.
//!
//! ```no_run
//! use lfm_wgpu::gguf::GgufModel;
//! use lfm_wgpu::model::weights::Source;
//! # fn main() -> lfm_wgpu::Result<()> {
//! let model = GgufModel::open("LFM2-8B-A1B-Q4_K_M.gguf".as_ref())?;
//! println!("{} layers", model.config().num_layers());
//! let tok = model.tokenizer()?;
//! let template = model.chat_template(&tok)?; // None when the file has none
//! # let _ = (tok, template);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod dequant;
pub mod mix;
pub mod model;
pub mod reader;
pub mod vocab;
pub mod writer;

pub use model::GgufModel;
pub use reader::{GgufFile, TensorInfo, Value};

/// A `ggml_type`: the element type of a tensor, known by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

/// (id, name, values per block, bytes per block) of every type this reader can size.
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q5_0: GgmlType = GgmlType(6);
    pub const Q5_1: GgmlType = GgmlType(7);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const BF16: GgmlType = GgmlType(30);
    /// The types [`dequant::dequantize`] reads.
    pub const SUPPORTED: [GgmlType; 11] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    /// The type with id `id`, if this reader knows its block size.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPES.iter().any(|t| t.0 == id).then_some(GgmlType(id))
    }

    pub fn id(self) -> u32 {
        self.0
    }

    fn entry(self) -> &'static (u32, &'static str, u64, u64) {
        // Only `from_id` and the constants build a GgmlType, all from the table.
        TYPES.iter().find(|t| t.0 == self.0).unwrap_or(&TYPES[0])
    }

    /// ggml's name: "Q4_K", "BF16", …
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Values per block (1 for plain floats).
    pub fn block_size(self) -> u64 {
        self.entry().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.entry().3
    }

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// The engine format that reads this type's blocks as they are (every supported type).
    pub fn dtype(self) -> Option<crate::dtype::DType> {
        use crate::dtype::DType;
        Some(match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::Q8_0 => DType::Q8_0,
            Self::Q4_0 => DType::Q4_0,
            Self::Q4_1 => DType::Q4_1,
            Self::Q5_0 => DType::Q5_0,
            Self::Q5_1 => DType::Q5_1,
            Self::Q4_K => DType::Q4_K,
            Self::Q5_K => DType::Q5_K,
            Self::Q6_K => DType::Q6_K,
            _ => return None,
        })
    }

    /// "F32, F16, …": the supported types, for messages.
    pub fn supported_list() -> String {
        Self::SUPPORTED.map(|t| t.name()).join(", ")
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
