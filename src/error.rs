//! Library errors: typed values that carry the file, tensor, shape or limit at fault.

use std::path::PathBuf;

/// Everything the library can fail with. Binaries add advice on top (anyhow).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config.json: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("unsupported model_type {found:?} in {path} (expected \"lfm2_moe\")")]
    ModelType { path: PathBuf, found: String },
    #[error("{path}: not a valid safetensors file: {msg}")]
    Safetensors { path: PathBuf, msg: String },
    /// A GGUF file is malformed, or holds something the engine cannot use.
    #[error("{path}: GGUF: {msg}")]
    Gguf { path: PathBuf, msg: String },
    #[error("tensor {name} is missing from the checkpoint ({dir})")]
    MissingTensor { name: String, dir: PathBuf },
    #[error("tensor {name}: shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor {name}: unsupported dtype {dtype} (expected BF16, F16 or F32)")]
    Dtype { name: String, dtype: String },
    #[error("no GPU adapter found{detail}; install a Vulkan driver (e.g. Debian/Ubuntu: apt-get install mesa-vulkan-drivers) or pick another with --adapter / --backend")]
    NoAdapter { detail: String },
    #[error("requesting the GPU device failed: {0}")]
    RequestDevice(String),
    #[error("GPU error during {during}: {msg}")]
    Gpu { during: String, msg: String },
    /// The device is gone (driver reset, GPU removed, out of memory at the driver): nothing
    /// more can run on it.
    #[error("the GPU device was lost ({msg}) during {during}; restart to use it again")]
    DeviceLost { during: String, msg: String },
    #[error("{what} needs {needed} but the device allows {limit}")]
    Limit { what: String, needed: u64, limit: u64 },
    #[error("token id {id} at position {pos} is out of range (vocab size {vocab})")]
    TokenOutOfRange { id: u32, pos: usize, vocab: usize },
    #[error("context exceeded: {needed} tokens needed, the context holds {ctx} (raise --ctx, at most {max})")]
    ContextExceeded { needed: usize, ctx: usize, max: usize },
    #[error(
        "not enough GPU memory: the model needs {} but the adapter has {} ({detail}); \
         LFM_GPU_MEMORY overrides what the driver reports",
        crate::units::gib(*needed),
        crate::units::gib(*available)
    )]
    OutOfMemory {
        needed: u64,
        available: u64,
        detail: String,
    },
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A tokenizer file (`tokenizer.json`, `tokenizer_config.json`, …) is missing or unusable,
    /// or the tokenizer failed on an input.
    #[error("{path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    /// A chat template failed to parse or render; `origin` names where the template came from.
    #[error("chat template from {origin}: {msg}")]
    Template { origin: String, msg: String },
    /// A model given by path or Hugging Face repo id could not be found locally.
    #[error("model {spec:?} not found: {detail}")]
    ModelNotFound { spec: String, detail: String },
    /// Downloading a file of a Hugging Face repo failed.
    #[error("downloading {file} of {repo} failed: {msg}")]
    Download { repo: String, file: String, msg: String },
    /// A weight is NaN or infinite in the file.
    #[error("tensor {tensor}: value {value} at index {index} is not finite (the checkpoint is corrupt)")]
    NonFinite { tensor: String, index: usize, value: f32 },
    /// A weight is too large for the storage format it is being converted to.
    #[error(
        "tensor {tensor}: value {value:e} at index {index} overflows {dtype} (|x| ≤ {max:e}); \
         load this checkpoint with --dtype f32{alt}"
    )]
    Overflow {
        tensor: String,
        index: usize,
        value: f32,
        dtype: String,
        max: f32,
        /// Other advice (another format that holds it).
        alt: String,
    },
    /// The model produced NaN or infinite logits while running.
    #[error(
        "the model produced non-finite logits (NaN or infinity) at position {pos}: the weights or \
         activations overflow on this path; try --dtype f32 and --kv-dtype f32"
    )]
    NonFiniteLogits { pos: usize },
    /// The work was stopped on request (Ctrl-C, a closed connection).
    #[error("cancelled")]
    Cancelled,
    /// A structured-output constraint (JSON Schema, grammar, regex) could not be compiled,
    /// or failed while generating; `origin` names where it came from (a file, `--regex`,
    /// `response_format`).
    #[error("{origin}: {msg}")]
    Constraint { origin: String, msg: String },
    /// A file name taken from a model's metadata is not a plain relative name inside its
    /// directory.
    #[error("{source_file}: unsafe file name {name:?}: {why}")]
    UnsafeName {
        source_file: PathBuf,
        name: String,
        why: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
