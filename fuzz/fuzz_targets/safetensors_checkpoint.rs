//! A safetensors file (header + tensor data) opened as the micro checkpoint and loaded; the
//! first byte picks the load format.
#![no_main]
use lfm_wgpu_fuzz::{load, DTYPES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, file)) = data.split_first() else { return };
    load(
        vec![("model.safetensors".into(), file.to_vec())],
        DTYPES[sel as usize % 4],
    );
});
