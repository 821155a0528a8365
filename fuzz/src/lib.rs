//! Shared harness of the fuzz targets: the micro checkpoint's config and the in-memory load
//! path of `lfm logits` up to the weights (Checkpoint → Weights::load into the CPU
//! reference's host sink), which decodes every tensor the GPU upload would read.

use lfm_wgpu::dtype::DType;
use lfm_wgpu::model::config::Config;
use lfm_wgpu::model::weights::{Checkpoint, Weights};
use lfm_wgpu::reference::{HostMatrix, HostSink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// fuzz/micro/config.json (written by make_seeds.py): the shape every checkpoint input is read as.
pub fn micro_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        Config::from_json(include_str!("../micro/config.json"), Path::new("micro/config.json"))
            .expect("the micro config is valid")
    })
}

/// Load formats selected by an input byte.
pub const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0];

/// Opens `shards` as a checkpoint of the micro config and loads every weight as `dtype`.
/// Errors are fine; panics, hangs and runaway allocations are what the fuzzer looks for.
pub fn load(shards: Vec<(PathBuf, Vec<u8>)>, dtype: DType) {
    let Ok(ckpt) = Checkpoint::from_bytes(Path::new("fuzz"), micro_config().clone(), shards) else {
        return;
    };
    let dtype = ckpt.prequantized.unwrap_or(dtype);
    let _: lfm_wgpu::Result<Weights<HostMatrix, Vec<f32>>> = Weights::load(&ckpt, &mut HostSink { dtype });
}
