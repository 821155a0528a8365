//! A checkpoint in the engine layout (`lfm quantize` output: `lfm_wgpu.*` metadata, U8
//! quant/scale tensors) opened as the micro checkpoint and loaded as the format it declares.
#![no_main]
use lfm_wgpu::dtype::DType;
use lfm_wgpu_fuzz::load;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    load(vec![("model.safetensors".into(), data.to_vec())], DType::F16);
});
