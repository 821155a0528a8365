//! The model's weights on the GPU: matrices in the requested storage type (split across
//! bindings when needed), vectors (norms, biases, conv taps, expert bias) in f32.

use super::config::Config;
use super::weights::{storage_format, Checkpoint, MatSpec, WeightSink, Weights};
use crate::error::Result;
use crate::gpu::{DType, Gpu, GpuMatrix};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Uploads tensors as they are read: one on-disk tensor in host memory at a time.
pub struct GpuSink<'a> {
    pub gpu: &'a Gpu,
    pub dtype: DType,
    /// Bytes uploaded so far.
    pub bytes: u64,
}

impl WeightSink for GpuSink<'_> {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;

    fn matrix(&mut self, ckpt: &Checkpoint, spec: &MatSpec) -> Result<GpuMatrix> {
        let m = GpuMatrix::create(
            self.gpu,
            &spec.label,
            (spec.rows, spec.cols, spec.group_rows),
            storage_format(spec, self.dtype),
            |w| {
                let mut buf = Vec::new();
                for part in &spec.parts {
                    let t = ckpt.tensor(&part.name, &part.shape)?;
                    buf.resize(part.shape.iter().product(), 0.0);
                    t.read_f32(&mut buf);
                    w.push(&buf)?;
                }
                Ok(())
            },
        )?;
        self.bytes += m.bytes();
        Ok(m)
    }

    fn vector(&mut self, ckpt: &Checkpoint, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let mut data = vec![0f32; shape.iter().product()];
        ckpt.read_f32(name, shape, &mut data)?;
        self.bytes += data.len() as u64 * 4;
        Ok(self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }
}

/// A loaded model: config and GPU weights.
pub struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub cfg: Config,
    pub dtype: DType,
    pub w: Weights<GpuMatrix, wgpu::Buffer>,
    /// Bytes of weights resident on the GPU.
    pub weight_bytes: u64,
}

impl GpuModel {
    /// Loads the checkpoint in `dir` onto `gpu`, with matrices stored as `dtype`.
    pub fn load(gpu: Arc<Gpu>, ckpt: &Checkpoint, dtype: DType) -> Result<Self> {
        let cfg = ckpt.config.clone();
        let mut sink = GpuSink {
            gpu: &gpu,
            dtype,
            bytes: 0,
        };
        let w = gpu.scoped(&format!("uploading {}", ckpt.dir.display()), || {
            Weights::load(ckpt, &cfg, &mut sink)
        })?;
        let weight_bytes = sink.bytes;
        Ok(GpuModel {
            gpu,
            cfg,
            dtype,
            w,
            weight_bytes,
        })
    }
}
