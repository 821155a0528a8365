//! A GGUF file: the container (header, metadata of every value type, tensor infos, offsets),
//! then, when it parses, the lfm2moe config, every tensor the config calls for dequantized
//! into the CPU reference's host sink, every matrix repacked as the GPU loader reads it (its
//! blocks as they are, into host buffers), and the tokenizer built from its metadata.
#![no_main]
use lfm_wgpu::dtype::DType;
use lfm_wgpu::gguf::{GgufFile, GgufModel};
use lfm_wgpu::layout::stored_row_bytes;
use lfm_wgpu::model::weights::{MatSpec, Source, WeightSink, Weights};
use lfm_wgpu::reference::{HostMatrix, HostSink};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Reads every matrix the way the GPU loader does, into host buffers.
struct NativeSink;

impl WeightSink for NativeSink {
    type Matrix = ();
    type Vector = ();

    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> lfm_wgpu::Result<()> {
        let Some(formats) = src.native(spec)? else { return Ok(()) };
        for (part, dtype) in spec.parts.iter().zip(formats) {
            let (rq, rs) = stored_row_bytes(dtype, spec.cols);
            let rows = part.shape[0];
            let (mut q, mut s) = (vec![0u8; rows * rq], vec![0u8; rows * rs]);
            src.read_native(part, dtype, 0, &mut q, &mut s)?;
        }
        Ok(())
    }

    fn vector(&mut self, _: &dyn Source, _: &str, _: &[usize]) -> lfm_wgpu::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data) else {
        return;
    };
    let Ok(model) = GgufModel::from_file(file) else { return };
    let _ = model.tokenizer();
    let _: lfm_wgpu::Result<Weights<HostMatrix, Vec<f32>>> = Weights::load(&model, &mut HostSink { dtype: DType::F32 });
    let _ = Weights::load(&model, &mut NativeSink);
});
