//! wgpu only; knows nothing of models: the device context and buffer helpers.

pub mod context;
pub mod memory;
mod readback;
pub mod tensor;

pub use context::{Caps, Gpu, GpuOptions, MATVEC_ROWS};
pub use memory::{AdapterMemory, MemorySource};
pub use tensor::{DType, GpuMatrix, MatChunk};
