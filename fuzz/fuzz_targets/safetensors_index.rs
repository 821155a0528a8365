//! `model.safetensors.index.json`: the shard list, then a checkpoint of up to three shards so
//! named (each an empty safetensors file) opened and loaded.
#![no_main]
use lfm_wgpu::dtype::DType;
use lfm_wgpu::model::weights::shard_names;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// A safetensors file without tensors.
const SHARD: &[u8] = b"\x08\0\0\0\0\0\0\0{}      ";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = Path::new("/nonexistent/model");
    let Ok(names) = shard_names(text, &dir.join("model.safetensors.index.json")) else {
        return;
    };
    let shards = names.iter().take(3).map(|n| (dir.join(n), SHARD.to_vec())).collect();
    lfm_wgpu_fuzz::load(shards, DType::F16);
});
