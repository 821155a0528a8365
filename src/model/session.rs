//! A sequence being generated: its state, the recorded programs, and stepping.
//!
//! Prefill runs the prompt in chunks of `ubatch` tokens, continuing from the caches; decode
//! runs one token per submission. Each step writes the 16-byte step uniform (and the input
//! ids), records the prebuilt program, submits once, and reads back only its result: the
//! sampled id, plus logits when asked for.

use super::forward::{self, Mode};
use super::gpu_weights::GpuModel;
use super::state::{State, KEYS_PER_SPLIT, MAX_ATTN_SPLITS};
use crate::error::{Error, Result};
use crate::gpu::DType;
use crate::kernels::{Kernels, Program, StepShape, Uniforms};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Context length (KV cache capacity), default 4096.
    pub ctx: usize,
    /// Prefill chunk, default 512.
    pub ubatch: usize,
    /// KV-cache storage (f32 or f16); default: f32 with f32 weights, else f16.
    pub kv_dtype: Option<DType>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ctx: 4096,
            ubatch: 512,
            kv_dtype: None,
        }
    }
}

/// One dispatch of a profiled step.
#[derive(Clone, Debug)]
pub struct DispatchTime {
    pub label: String,
    /// Kernel family (e.g. "matvec experts down").
    pub family: String,
    /// Weight format the kernel read.
    pub dtype: DType,
    /// Weight bytes read.
    pub bytes: u64,
    pub seconds: f64,
}

pub struct Session {
    pub model: Arc<GpuModel>,
    pub state: State,
    kernels: Kernels,
    uniforms: Uniforms,
    prefill: Program,
    decode: Program,
    prefill_all: Option<Program>,
    /// Tokens in the caches (the next token's position).
    pub pos: usize,
}

impl Session {
    pub fn new(model: Arc<GpuModel>, opts: &SessionOptions) -> Result<Self> {
        let gpu = model.gpu.clone();
        let kv_dtype = match opts.kv_dtype {
            Some(d @ (DType::F32 | DType::F16)) => d,
            Some(d) => {
                return Err(Error::Invalid(format!(
                    "KV cache dtype {d} is not supported (f32 or f16)"
                )))
            }
            None => super::memory::default_kv_dtype(model.dtype),
        };
        let state = gpu.scoped("allocating the sequence state", || {
            State::new(&gpu, &model.cfg, opts.ctx, opts.ubatch, kv_dtype)
        })?;
        let kernels = Kernels::new(gpu.clone());
        // One parameter slot per dispatch: ≤ 8 non-linear ops per layer plus one per weight
        // chunk, for each of the three programs.
        let slots = 3 * (model.w.layers.len() * 8 + 8 + count_chunks(&model)) as u64;
        let uniforms = Uniforms::new(&gpu, "params", slots);
        let prefill = forward::build(&model, &state, &kernels, &uniforms, Mode::Prefill)?;
        let decode = forward::build(&model, &state, &kernels, &uniforms, Mode::Decode)?;
        Ok(Session {
            model,
            state,
            kernels,
            uniforms,
            prefill,
            decode,
            prefill_all: None,
            pos: 0,
        })
    }

    /// Starts a new sequence (the caches are overwritten as it goes).
    pub fn reset(&mut self) {
        self.state.reset(&self.model.gpu);
        self.pos = 0;
    }

    fn check(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.model.cfg.vocab_size;
        if let Some((pos, &id)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id, pos, vocab });
        }
        if self.pos + tokens.len() > self.state.ctx {
            return Err(Error::ContextExceeded {
                needed: self.pos + tokens.len(),
                ctx: self.state.ctx,
                max: 32768.max(self.model.cfg.max_position_embeddings),
            });
        }
        Ok(())
    }

    /// Writes the step uniform and submits `program` for `n` tokens; optionally copies the
    /// sampled id and the first logits row out.
    fn run(&self, which: Mode, n: usize, read_id: bool, read_logit_row: bool) -> Result<()> {
        self.run_into(which, n, read_id.then_some(&self.state.staging_id), read_logit_row)?;
        Ok(())
    }

    fn run_into(
        &self,
        which: Mode,
        n: usize,
        id_to: Option<&wgpu::Buffer>,
        read_logit_row: bool,
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.model.gpu;
        let splits = match which {
            Mode::Decode => (self.pos as u32 + 1).div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_ATTN_SPLITS),
            _ => 1,
        };
        let step = [n as u32, self.pos as u32, splits, 0];
        gpu.queue.write_buffer(&self.state.step, 0, bytemuck::cast_slice(&step));
        let program = match which {
            Mode::Prefill => &self.prefill,
            Mode::Decode => &self.decode,
            Mode::PrefillAllLogits => self.prefill_all.as_ref().expect("built before use"),
        };
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            program.record(
                &mut pass,
                StepShape {
                    n_tokens: n as u32,
                    splits,
                },
            );
        }
        if let Some(staging) = id_to {
            enc.copy_buffer_to_buffer(&self.state.ids, 0, staging, 0, 4);
        }
        if read_logit_row {
            let bytes = self.model.cfg.vocab_size as u64 * 4;
            enc.copy_buffer_to_buffer(&self.state.logits, 0, &self.state.staging_logits, 0, bytes);
        }
        Ok(gpu.queue.submit([enc.finish()]))
    }

    fn read_id(&self) -> Result<u32> {
        self.read_id_from(&self.state.staging_id, None)
    }

    fn read_id_from(&self, staging: &wgpu::Buffer, after: Option<wgpu::SubmissionIndex>) -> Result<u32> {
        let b = self.model.gpu.read_staging_after(staging, 4, after)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn read_logit_row(&self) -> Result<Vec<f32>> {
        let n = self.model.cfg.vocab_size as u64 * 4;
        Ok(bytemuck::cast_slice(&self.model.gpu.read_staging(&self.state.staging_logits, n)?).to_vec())
    }

    fn write_ids(&self, tokens: &[u32]) {
        self.model
            .gpu
            .queue
            .write_buffer(&self.state.ids, 0, bytemuck::cast_slice(tokens));
    }

    /// Prefills `tokens` (continuing the sequence) and returns the greedy next token, plus
    /// the last position's logits when `want_logits`.
    pub fn prefill(&mut self, tokens: &[u32], want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        if tokens.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        self.check(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.state.ubatch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            self.write_ids(chunk);
            self.run(Mode::Prefill, chunk.len(), last, last && want_logits)?;
            self.pos += chunk.len();
        }
        let id = self.read_id()?;
        let logits = if want_logits {
            Some(self.read_logit_row()?)
        } else {
            None
        };
        Ok((id, logits))
    }

    /// Prefills `tokens` and returns the logits of every position, [T, vocab].
    pub fn prefill_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        self.check(tokens)?;
        if self.prefill_all.is_none() {
            let p = forward::build(
                &self.model,
                &self.state,
                &self.kernels,
                &self.uniforms,
                Mode::PrefillAllLogits,
            )?;
            self.prefill_all = Some(p);
        }
        let v = self.model.cfg.vocab_size;
        let mut out = Vec::with_capacity(tokens.len() * v);
        for chunk in tokens.chunks(self.state.logit_rows.min(self.state.ubatch)) {
            self.write_ids(chunk);
            self.run(Mode::PrefillAllLogits, chunk.len(), false, false)?;
            self.pos += chunk.len();
            out.extend(self.model.gpu.read_f32(&self.state.logits, 0, chunk.len() * v)?);
        }
        Ok(out)
    }

    /// Decodes one token. `token`: the input, or None to feed the id the previous step
    /// sampled on the GPU (no host round trip). Returns the greedy next id, and the logits
    /// when `want_logits`.
    pub fn decode(&mut self, token: Option<u32>, want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        if let Some(t) = token {
            self.check(&[t])?;
            self.write_ids(&[t]);
        } else if self.pos == 0 {
            return Err(Error::Invalid(
                "decode without an input token needs a prefilled sequence".into(),
            ));
        } else if self.pos + 1 > self.state.ctx {
            return Err(Error::ContextExceeded {
                needed: self.pos + 1,
                ctx: self.state.ctx,
                max: 32768.max(self.model.cfg.max_position_embeddings),
            });
        }
        self.run(Mode::Decode, 1, true, want_logits)?;
        self.pos += 1;
        let id = self.read_id()?;
        let logits = if want_logits {
            Some(self.read_logit_row()?)
        } else {
            None
        };
        Ok((id, logits))
    }

    /// Runs one decode step (input `token`) with every dispatch timed by GPU timestamps;
    /// returns each dispatch's time. Needs TIMESTAMP_QUERY; creates its query buffers
    /// (profiling is not the token loop).
    pub fn decode_profiled(&mut self, token: u32) -> Result<Vec<DispatchTime>> {
        self.profiled(Mode::Decode, &[token])
    }

    /// One prefill submission of `tokens` (at most one ubatch) with a timestamp pair around
    /// every dispatch, as [`Self::decode_profiled`].
    pub fn prefill_profiled(&mut self, tokens: &[u32]) -> Result<Vec<DispatchTime>> {
        if tokens.is_empty() || tokens.len() > self.state.ubatch {
            return Err(Error::Invalid(format!(
                "a profiled prefill takes 1..={} tokens (one ubatch), not {}",
                self.state.ubatch,
                tokens.len()
            )));
        }
        self.profiled(Mode::Prefill, tokens)
    }

    fn profiled(&mut self, which: Mode, tokens: &[u32]) -> Result<Vec<DispatchTime>> {
        let gpu = self.model.gpu.clone();
        if !gpu.caps.timestamps {
            return Err(Error::Invalid(format!(
                "{} has no timestamp queries: no per-kernel profile",
                gpu.info.name
            )));
        }
        self.check(tokens)?;
        let n = crate::kernels::MAX_PROFILE_QUERIES;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: n as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.write_ids(tokens);
        let t = tokens.len() as u32;
        let (program, splits) = match which {
            Mode::Decode => (
                &self.decode,
                (self.pos as u32 + 1).div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_ATTN_SPLITS),
            ),
            _ => (&self.prefill, 1),
        };
        gpu.queue.write_buffer(
            &self.state.step,
            0,
            bytemuck::cast_slice(&[t, self.pos as u32, splits, 0]),
        );
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let timed = program.record_profiled(&mut enc, &queries, StepShape { n_tokens: t, splits });
        let used = 2 * timed.len() as u32;
        enc.resolve_query_set(&queries, 0..used, &resolve, 0);
        gpu.queue.submit([enc.finish()]);
        self.pos += tokens.len();
        let raw = gpu.read(&resolve, 0, used as u64 * 8)?;
        let ticks: &[u64] = bytemuck::cast_slice(&raw);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(timed
            .into_iter()
            .enumerate()
            .map(|(i, (label, family, dtype, bytes))| {
                let seconds = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
                DispatchTime {
                    label,
                    family,
                    dtype,
                    bytes,
                    seconds,
                }
            })
            .collect())
    }

    /// `count` greedy decode steps fed by the GPU's own argmax, each queued before the previous
    /// step's id is read back (ping-pong staging), so the GPU never waits for the host.
    /// The caller knows `count` up front: no step runs past it.
    pub fn decode_chained(&mut self, count: usize, ids: &mut Vec<u32>) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        if self.pos + count > self.state.ctx {
            return Err(Error::ContextExceeded {
                needed: self.pos + count,
                ctx: self.state.ctx,
                max: 32768.max(self.model.cfg.max_position_embeddings),
            });
        }
        let staging = [&self.state.staging_id, &self.state.staging_id_next];
        let mut prev: Option<wgpu::SubmissionIndex> = None;
        for j in 0..count {
            let index = self.run_into(Mode::Decode, 1, Some(staging[j % 2]), false)?;
            self.pos += 1;
            if let Some(p) = prev.replace(index) {
                ids.push(self.read_id_from(staging[(j - 1) % 2], Some(p))?);
            }
        }
        ids.push(self.read_id_from(staging[(count - 1) % 2], prev)?);
        Ok(())
    }

    /// Weight bytes one decode step reads (all non-expert matrices, the head, the expected
    /// top-k share of the experts, one embedding row), excluding the KV cache.
    pub fn decode_weight_bytes(&self) -> u64 {
        self.decode.weight_bytes()
    }

    /// KV-cache bytes one decode step reads at the current position.
    pub fn decode_kv_bytes(&self) -> u64 {
        let c = &self.model.cfg;
        let attn = c
            .layer_types
            .iter()
            .filter(|k| **k == super::config::LayerKind::Attention)
            .count();
        (attn * 2 * (self.pos + 1) * c.num_key_value_heads * c.head_dim) as u64 * self.state.kv_dtype.row_bytes(1)
    }

    /// Greedy generation: prefill `prompt`, then `n - 1` decode steps fed by the GPU's own
    /// argmax. Returns the n ids and, when asked, the logits of each of the n steps [n, vocab].
    pub fn generate_greedy(&mut self, prompt: &[u32], n: usize, want_logits: bool) -> Result<(Vec<u32>, Vec<f32>)> {
        let mut ids = Vec::with_capacity(n);
        let mut logits = Vec::new();
        if n == 0 {
            return Ok((ids, logits));
        }
        let (mut next, l) = self.prefill(prompt, want_logits)?;
        ids.push(next);
        logits.extend(l.unwrap_or_default());
        if !want_logits {
            self.decode_chained(n - 1, &mut ids)?;
            return Ok((ids, logits));
        }
        while ids.len() < n {
            let (id, l) = self.decode(Some(next), want_logits)?;
            next = id;
            ids.push(id);
            logits.extend(l.unwrap_or_default());
        }
        Ok((ids, logits))
    }
}

fn count_chunks(m: &GpuModel) -> usize {
    use super::weights::{Ffn, Op};
    let mut n = m.w.embed.chunks.len() + m.w.head().chunks.len();
    for l in &m.w.layers {
        n += match &l.op {
            Op::Conv { in_proj, out_proj, .. } => in_proj.chunks.len() + out_proj.chunks.len(),
            Op::Attention { qkv, out_proj, .. } => qkv.chunks.len() + out_proj.chunks.len(),
        };
        n += match &l.ffn {
            Ffn::Dense { gate, down, .. } => gate.chunks.len() + down.chunks.len(),
            Ffn::Moe { router, gate, down, .. } => router.chunks.len() + gate.chunks.len() + down.chunks.len(),
        };
    }
    n
}
