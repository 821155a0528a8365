//! A GGUF file: the container (header, metadata of every value type, tensor infos, offsets),
//! then, when it parses, the lfm2moe config, every tensor the config calls for dequantized
//! into the CPU reference's host sink, and the tokenizer built from its metadata.
#![no_main]
use lfm_wgpu::dtype::DType;
use lfm_wgpu::gguf::{GgufFile, GgufModel};
use lfm_wgpu::model::weights::Weights;
use lfm_wgpu::reference::{HostMatrix, HostSink};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data) else {
        return;
    };
    let Ok(model) = GgufModel::from_file(file) else { return };
    let _ = model.tokenizer();
    let _: lfm_wgpu::Result<Weights<HostMatrix, Vec<f32>>> = Weights::load(&model, &mut HostSink { dtype: DType::F32 });
});
