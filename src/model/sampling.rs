//! Sampling settings and the GPU sampler of a session (shaders/sample.wgsl).
//!
//! Greedy decoding uses the argmax every forward program ends with; any other setting adds
//! one sample dispatch to the same submission, which overwrites the id the next step reads.
//! Only the sampled id is read back. The sampler keeps on the GPU a draw counter (the RNG
//! stream position, so the same seed gives the same tokens) and a bit mask of the tokens
//! seen (for the repetition penalty), which it extends as it samples; when a prompt is
//! prefilled the host rebuilds the mask from the session's history and the prompt.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::ops::Recorder;
use crate::kernels::{Kernels, Program, Uniforms};
use bytemuck::{Pod, Zeroable};

/// How the next token is chosen. Filters apply in transformers' order: repetition penalty,
/// temperature, top-k, top-p, min-p.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0: greedy (argmax); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep the k most likely tokens (ties kept); 0: off.
    pub top_k: usize,
    /// Keep the smallest set holding this much probability; 1: off.
    pub top_p: f32,
    /// Keep tokens at least this fraction as likely as the most likely; 0: off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens already in the sequence; 1: off.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    /// LFM2-8B-A1B's model card: temperature 0.3, min_p 0.15, repetition penalty 1.05.
    pub fn model_card(seed: u64) -> Self {
        SamplingParams {
            temperature: 0.3,
            min_p: 0.15,
            repetition_penalty: 1.05,
            seed,
            ..Self::greedy()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("sampling: {what}")));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1)");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition penalty must be > 0");
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SamplingGpu {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    seed_lo: u32,
    seed_hi: u32,
    _p: u32,
}

/// The sample dispatch of a session and its buffers.
pub struct Sampler {
    pub params: SamplingParams,
    /// [`SamplingGpu`]
    cfg: wgpu::Buffer,
    /// [0]: draws so far; then the seen-token bit mask.
    pub state: wgpu::Buffer,
    pub program: Program,
    /// Host copy of the seen mask, rebuilt for each upload (kept to reuse the allocation).
    seen: Vec<u32>,
}

impl Sampler {
    /// Builds the dispatch drawing from `logits` row 0 into `ids[0]`.
    pub fn new(
        kernels: &Kernels,
        uniforms: &Uniforms,
        step: &wgpu::Buffer,
        dummy: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        ids: &wgpu::Buffer,
        vocab: usize,
    ) -> Result<Self> {
        let gpu = &kernels.gpu;
        let words = 1 + vocab.div_ceil(32);
        let cfg = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sampling"),
            size: std::mem::size_of::<SamplingGpu>() as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let state = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sampler_state"),
            size: (words as u64 * 4).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut r = Recorder {
            k: kernels,
            uniforms,
            step,
            dummy,
            kv: crate::gpu::DType::F32,
            prog: Program::default(),
        };
        r.sample(&cfg, logits, ids, &state, vocab, 1, true)?;
        let mut s = Sampler {
            params: SamplingParams::greedy(),
            cfg,
            state,
            program: r.prog,
            seen: vec![0; words - 1],
        };
        s.set(gpu, SamplingParams::greedy())?;
        Ok(s)
    }

    /// New settings; restarts the random stream.
    pub fn set(&mut self, gpu: &Gpu, params: SamplingParams) -> Result<()> {
        params.validate()?;
        let g = SamplingGpu {
            temperature: params.temperature.max(1e-6),
            top_k: params.top_k.min(u32::MAX as usize) as u32,
            top_p: params.top_p,
            min_p: params.min_p,
            penalty: params.repetition_penalty,
            seed_lo: params.seed as u32,
            seed_hi: (params.seed >> 32) as u32,
            _p: 0,
        };
        gpu.queue.write_buffer(&self.cfg, 0, bytemuck::bytes_of(&g));
        gpu.queue.write_buffer(&self.state, 0, &0u32.to_le_bytes());
        self.params = params;
        Ok(())
    }

    /// Writes the seen mask of `history` followed by `prompt` to the GPU (which then adds
    /// the tokens it samples). Only the repetition penalty reads it.
    pub fn upload_seen(&mut self, gpu: &Gpu, history: &[u32], prompt: &[u32]) {
        if self.params.repetition_penalty == 1.0 {
            return;
        }
        self.seen.fill(0);
        for &t in history.iter().chain(prompt) {
            if let Some(w) = self.seen.get_mut(t as usize / 32) {
                *w |= 1 << (t % 32);
            }
        }
        gpu.queue.write_buffer(&self.state, 4, bytemuck::cast_slice(&self.seen));
    }

    /// Forgets the sequence: no token seen, the random stream from its start.
    pub fn reset(&mut self, gpu: &Gpu) {
        self.seen.fill(0);
        gpu.queue.write_buffer(&self.state, 4, bytemuck::cast_slice(&self.seen));
        gpu.queue.write_buffer(&self.state, 0, &0u32.to_le_bytes());
    }
}
