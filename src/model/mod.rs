//! The model: config, checkpoint weights, GPU weights and state, the forward pass and the
//! session that steps it.

pub mod config;
// Model paths (a directory, a .gguf file) on a file system: native programs.
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod forward;
pub mod gpu_weights;
pub mod memory;
pub mod quantize;
pub mod sampling;
pub mod session;
pub mod state;
pub mod synthetic;
pub mod weights;
