//! wgpu only; knows nothing of models: the device context and buffer helpers.

pub mod context;
pub mod tensor;

pub use context::{Caps, Gpu, GpuOptions};
pub use tensor::{DType, GpuMatrix, MatChunk};
