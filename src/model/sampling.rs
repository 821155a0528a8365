//! The GPU sampler of a session (shaders/sample.wgsl), for the settings of
//! [`crate::sampling::SamplingParams`].
//!
//! Greedy decoding uses the argmax every forward program ends with; any other setting adds
//! one sample dispatch to the same submission, which overwrites the id the next step reads.
//! Only the sampled id is read back. The sampler keeps on the GPU a draw counter (the RNG
//! stream position, so the same seed gives the same tokens) and a bit mask of the tokens
//! seen (for the repetition penalty), which it extends as it samples; when a prompt is
//! prefilled the host rebuilds the mask from the session's history and the prompt.
//!
//! Structured output adds a second program, the same dispatch reading an allowed-token bit
//! mask (⌈vocab / 32⌉ words) that the host uploads before each draw; greedy settings then
//! draw too (the largest allowed logit) instead of leaving the forward pass's argmax.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::ops::Recorder;
use crate::kernels::{Kernels, Program, Uniforms};
use crate::sampling::SamplingParams;
use bytemuck::{Pod, Zeroable};

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
    greedy: u32,
}

/// The sample dispatch of a session and its buffers.
pub struct Sampler {
    pub params: SamplingParams,
    /// [`SamplingGpu`]
    cfg: wgpu::Buffer,
    /// [0]: draws so far; then the seen-token bit mask.
    pub state: wgpu::Buffer,
    pub program: Program,
    /// [`Self::program`] drawing only tokens set in [`Self::allowed`].
    pub masked_program: Program,
    /// The allowed-token bit mask of the next masked draw.
    allowed: wgpu::Buffer,
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
        let allowed = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("allowed_tokens"),
            size: (vocab.div_ceil(32) as u64 * 4).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let record = |mask: Option<&wgpu::Buffer>| -> Result<Program> {
            let mut r = Recorder::new(kernels, uniforms, step, dummy, crate::gpu::DType::F32);
            r.sample(&cfg, logits, ids, &state, mask, vocab, 1, true)?;
            Ok(r.prog)
        };
        let (program, masked_program) = (record(None)?, record(Some(&allowed))?);
        let mut s = Sampler {
            params: SamplingParams::greedy(),
            cfg,
            state,
            program,
            masked_program,
            allowed,
            seen: vec![0; words - 1],
        };
        s.set(gpu, SamplingParams::greedy())?;
        Ok(s)
    }

    /// New settings; restarts the random stream.
    pub fn set(&mut self, gpu: &Gpu, params: SamplingParams) -> Result<()> {
        params.validate()?;
        let greedy = params.is_greedy();
        let g = SamplingGpu {
            // Greedy (masked draws only) compares raw logits: no temperature, no penalty.
            temperature: if greedy { 1.0 } else { params.temperature },
            top_k: params.top_k.min(u32::MAX as usize) as u32,
            top_p: params.top_p,
            min_p: params.min_p,
            penalty: if greedy { 1.0 } else { params.repetition_penalty },
            seed_lo: params.seed as u32,
            seed_hi: (params.seed >> 32) as u32,
            greedy: greedy as u32,
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

    /// The tokens the next masked draw may choose (bit i % 32 of word i / 32: token i).
    pub fn upload_allowed(&self, gpu: &Gpu, mask: &[u32]) {
        gpu.queue.write_buffer(&self.allowed, 0, bytemuck::cast_slice(mask));
    }

    /// Forgets the sequence: no token seen, the random stream from its start.
    pub fn reset(&mut self, gpu: &Gpu) {
        self.seen.fill(0);
        gpu.queue.write_buffer(&self.state, 4, bytemuck::cast_slice(&self.seen));
        gpu.queue.write_buffer(&self.state, 0, &0u32.to_le_bytes());
    }
}
