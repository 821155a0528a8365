//! The model's weights on the GPU: matrices in the requested storage type (split across
//! bindings when needed), vectors (norms, biases, conv taps, expert bias) in f32.

use super::config::Config;
#[cfg(not(target_arch = "wasm32"))]
use super::memory::{default_kv_dtype, MemoryEstimate};
#[cfg(not(target_arch = "wasm32"))]
use super::state::SessionOptions;
use super::weights::{storage_format, MatSpec, Source, StreamedLoad, WeightSink, Weights};
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
    /// Told `bytes` after every tensor (a progress bar).
    pub progress: &'a mut dyn FnMut(u64),
    /// `bytes` at the last flush.
    pub flushed: u64,
    /// The last flush's submission, still running while the next uploads are prepared.
    pub in_flight: Option<wgpu::SubmissionIndex>,
}

/// Uploads are flushed (submitted) every this many bytes, and each flush waits for the one
/// before it, so the staging copies wgpu makes of mapped-at-creation buffers never add up to
/// more than two flushes' worth in host memory, while the copies of one overlap the reading
/// of the next.
const FLUSH_BYTES: u64 = 256 << 20;

impl GpuSink<'_> {
    fn uploaded(&mut self, bytes: u64) -> Result<()> {
        self.bytes += bytes;
        (self.progress)(self.bytes);
        if self.bytes - self.flushed >= FLUSH_BYTES {
            let index = self.gpu.queue.submit([]);
            if let Some(before) = self.in_flight.replace(index) {
                // A browser copies what `writeBuffer` is given at the call: nothing to bound.
                #[cfg(not(target_arch = "wasm32"))]
                self.gpu.wait_for(before)?;
                #[cfg(target_arch = "wasm32")]
                let _ = before;
            }
            self.flushed = self.bytes;
        }
        Ok(())
    }
}

impl WeightSink for GpuSink<'_> {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;

    fn matrix(&mut self, src: &dyn Source, spec: &MatSpec) -> Result<GpuMatrix> {
        let shape = (spec.rows, spec.cols, spec.group_rows);
        if let Some(formats) = src.native(spec)? {
            let m = upload_native(self.gpu, src, spec, &formats)?;
            self.uploaded(m.bytes())?;
            return Ok(m);
        }
        let m = match src.stored(spec)? {
            // Already in the GPU layout (`lfm quantize` output): copy, no conversion.
            Some(stored) => {
                let m = GpuMatrix::from_stored(self.gpu, &spec.label, shape, &stored)?;
                src.release(spec);
                m
            }
            None => {
                let format = storage_format(spec, self.dtype);
                GpuMatrix::create(self.gpu, &spec.label, shape, format, |w| {
                    let mut buf = Vec::new();
                    for part in &spec.parts {
                        buf.resize(part.shape.iter().product(), 0.0);
                        src.read_f32(&part.name, &part.shape, &mut buf)?;
                        format.check_values(&part.name, &buf)?;
                        w.push(&buf)?;
                    }
                    Ok(())
                })?
            }
        };
        self.uploaded(m.bytes())?;
        Ok(m)
    }

    fn vector(&mut self, src: &dyn Source, name: &str, shape: &[usize]) -> Result<wgpu::Buffer> {
        let mut data = vec![0f32; shape.iter().product()];
        src.read_f32(name, shape, &mut data)?;
        self.uploaded(data.len() as u64 * 4)?;
        Ok(self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(name),
            contents: bytemuck::cast_slice(&data),
            usage: wgpu::BufferUsages::STORAGE,
        }))
    }
}

/// Uploads a matrix whose parts the source hands over in the engine's block layout, one chunk
/// per run of parts in one format.
fn upload_native(gpu: &Gpu, src: &dyn Source, spec: &MatSpec, formats: &[DType]) -> Result<GpuMatrix> {
    let shape = (spec.rows, spec.cols, spec.group_rows);
    let segments: Vec<(usize, DType)> = spec.parts.iter().zip(formats).map(|(p, &d)| (p.shape[0], d)).collect();
    let m = GpuMatrix::create_mixed(gpu, &spec.label, shape, &segments, |w| {
        for part in &spec.parts {
            let mut row0 = 0;
            w.push_blocks(part.shape[0], |dtype, n, quants, scales| {
                src.read_native(part, dtype, row0, quants, scales)?;
                row0 += n;
                Ok(())
            })?;
        }
        Ok(())
    })?;
    src.release(spec);
    Ok(m)
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
    /// Whether any matrix a mat-vec multiplies has a chunk in a block format (the embedding
    /// table is only gathered, but a tied head multiplies it).
    pub fn has_block_weights(&self) -> bool {
        let w = &self.w;
        let block = |m: &GpuMatrix| m.chunks.iter().any(|c| c.dtype.is_block());
        w.matrices().filter(|m| !std::ptr::eq(*m, &w.embed)).any(block) || block(w.head())
    }

    /// Loads the weights of `src` onto `gpu`, with matrices stored as `dtype`.
    pub fn load(gpu: Arc<Gpu>, src: &dyn Source, dtype: DType) -> Result<Self> {
        Self::load_with_progress(gpu, src, dtype, &mut |_| {})
    }

    /// Estimates the GPU memory of `dtype` weights plus one session of `opts`, refuses
    /// before allocating when the adapter cannot hold it, then loads with a progress bar
    /// on a terminal.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_checked(
        gpu: Arc<Gpu>,
        src: &dyn Source,
        dtype: DType,
        opts: &SessionOptions,
    ) -> Result<(Self, MemoryEstimate)> {
        let cfg = src.config();
        let kv = opts.kv_dtype.unwrap_or(default_kv_dtype(dtype));
        let est = MemoryEstimate::for_gpu_source(&gpu, src, dtype, kv, opts.ctx, opts.ubatch)?;
        est.check(&gpu, cfg, opts.ubatch)?;
        let bar = crate::progress::bytes_bar("loading", est.weights);
        let m = Self::load_with_progress(gpu, src, dtype, &mut |b| bar.set_position(b))?;
        bar.finish_and_clear();
        Ok((m, est))
    }

    /// As [`Self::load`], telling `progress` the bytes uploaded so far after each tensor.
    pub fn load_with_progress(
        gpu: Arc<Gpu>,
        src: &dyn Source,
        dtype: DType,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let cfg = src.config().clone();
        let mut sink = GpuSink {
            gpu: &gpu,
            dtype,
            bytes: 0,
            progress,
            flushed: 0,
            in_flight: None,
        };
        let w = gpu.scoped(&format!("uploading {}", src.describe()), || {
            Weights::load(src, &mut sink)
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

/// A model whose file arrives piece by piece (a page's downloads), uploaded one matrix or
/// vector at a time as its bytes arrive (see [`StreamedLoad`]).
pub struct GpuStream {
    gpu: Arc<Gpu>,
    dtype: DType,
    load: StreamedLoad<GpuMatrix, wgpu::Buffer>,
    bytes: u64,
}

impl GpuStream {
    /// Streams `load` onto `gpu` with matrices stored as `dtype`.
    pub fn new(gpu: Arc<Gpu>, load: StreamedLoad<GpuMatrix, wgpu::Buffer>, dtype: DType) -> Self {
        GpuStream {
            gpu,
            dtype,
            load,
            bytes: 0,
        }
    }

    /// The file byte ranges the next tensor(s) need; None when all are loaded.
    pub fn wanted(&self) -> Result<Option<Vec<std::ops::Range<u64>>>> {
        self.load.wanted()
    }

    /// Takes `bytes` at file offset `at`; uploads the next item once its bytes are all here.
    pub fn feed(&mut self, at: u64, bytes: Vec<u8>) -> Result<bool> {
        let mut sink = GpuSink {
            gpu: &self.gpu,
            dtype: self.dtype,
            bytes: self.bytes,
            progress: &mut |_| {},
            flushed: self.bytes,
            in_flight: None,
        };
        let load = &mut self.load;
        let done = self
            .gpu
            .scoped("uploading a streamed tensor", || load.feed(at, bytes, &mut sink))?;
        self.bytes = sink.bytes;
        Ok(done)
    }

    /// The storage format asked for the matrices.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Weight bytes uploaded so far.
    pub fn uploaded(&self) -> u64 {
        self.bytes
    }

    /// Tensors loaded so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        self.load.progress()
    }

    /// The loaded model, once [`Self::wanted`] is None.
    pub fn finish(self) -> Result<GpuModel> {
        let cfg = self.load.config().clone();
        Ok(GpuModel {
            w: self.load.finish()?,
            gpu: self.gpu,
            cfg,
            dtype: self.dtype,
            weight_bytes: self.bytes,
        })
    }
}
