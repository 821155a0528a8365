//! lfm-wgpu: LFM2-MoE (Liquid AI's LFM2-8B-A1B) inference through wgpu compute shaders.

pub mod act_quant;
pub mod blocks;
pub mod chat;
pub mod constrain;
pub mod dtype;
pub mod error;
pub mod files;
pub mod gpu;
#[cfg(feature = "hub")]
pub mod hub;
pub mod interrupt;
pub mod kernels;
pub mod layout;
pub mod model;
pub mod npy;
#[cfg(not(target_arch = "wasm32"))]
pub mod progress;
pub mod quant;
pub mod reference;
pub mod sampling;
#[cfg(feature = "server")]
pub mod serve;
pub mod tokenizer;
pub mod units;
/// The page's API (`web/`): WebGPU in a browser tab.
#[cfg(target_arch = "wasm32")]
pub mod web;

/// llama.cpp's GGUF files: container, dequantization, lfm2moe config and tokenizer.
pub mod gguf;

pub use error::{Error, Result};
