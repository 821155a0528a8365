//! A sequence being generated: its state, the recorded programs, and stepping.
//!
//! Prefill runs the prompt in chunks of `ubatch` tokens, continuing from the caches; decode
//! runs one token per submission. Each step writes the 16-byte step uniform (and the input
//! ids), records the prebuilt program, submits once, and reads back only its result: the
//! sampled id, plus logits when asked for.

use super::forward::{self, Mode};
use super::gpu_weights::GpuModel;
use super::sampling::Sampler;
pub use super::state::{Activations, SessionOptions};
use super::state::{LayerState, State, KEYS_PER_SPLIT, MAX_ATTN_SPLITS};
use crate::error::{Error, Result};
use crate::gpu::DType;
use crate::kernels::{Kernels, Program, Uniforms};
use crate::sampling::SamplingParams;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
mod blocking;
mod constrained;
mod dump;
#[cfg(not(target_arch = "wasm32"))]
mod profile;
mod step;

#[cfg(not(target_arch = "wasm32"))]
pub use profile::DispatchTime;

pub use step::{split_ranges, HostCost, HostCostPerStep, MAX_TIMED_STEPS};

/// The id the argmax and sample kernels write when the logits row holds NaN or ±inf.
pub const NON_FINITE_ID: u32 = u32::MAX;

pub struct Session {
    pub model: Arc<GpuModel>,
    pub state: State,
    kernels: Kernels,
    uniforms: Uniforms,
    prefill: Program,
    decode: Program,
    prefill_all: Option<Program>,
    sampler: Sampler,
    /// Tokens in the caches (the next token's position).
    pub pos: usize,
    /// The tokens in the caches, in order (`pos` of them).
    pub history: Vec<u32>,
    /// The id the last step sampled (in `ids[0]` on the GPU), not yet fed.
    last: Option<u32>,
    /// Copies of the conv states taken by [`Session::checkpoint`] (attention needs none: its
    /// cache entries below a position are never rewritten), and the position they hold.
    snapshot: Vec<wgpu::Buffer>,
    snapshot_pos: Option<usize>,
    /// Raised from elsewhere (Ctrl-C, a closed connection) to stop a prefill between chunks
    /// and a generation between tokens.
    cancel: Arc<AtomicBool>,
    /// Submissions a decode step is cut into ([`Session::set_decode_submissions`]).
    decode_parts: usize,
    /// Decode's mat-vecs over block-format weights read int8 activations.
    pub int8: bool,
    /// Host cost of the decode steps so far, and their GPU timer when armed (step.rs).
    cost: Cell<HostCost>,
    gpu_timer: RefCell<Option<step::GpuStepTimer>>,
}

/// What one [`Session::generate`] did.
#[derive(Clone, Debug, Default)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub prefill_s: f64,
    /// Tokens produced (the first comes from the prefill).
    pub new_tokens: usize,
    /// Time from the end of the prefill to the last token.
    pub decode_s: f64,
    /// Generation ended because the context is full.
    pub context_full: bool,
    /// Structured output: host time spent computing token masks (overlapping the GPU's
    /// forward passes where the order allows).
    pub mask_s: f64,
    /// Structured output: tokens the constraint forced (produced without a draw).
    pub forced_tokens: usize,
    /// Structured output: generation ended because the constraint allowed no token.
    pub dead_end: bool,
    /// Structured output: generation ended because the constraint was complete (nothing
    /// may follow, not even an end token).
    pub complete: bool,
}

impl GenStats {
    /// Nothing generated yet for a prompt of `prompt_tokens`.
    fn for_prompt(prompt_tokens: usize) -> Self {
        GenStats {
            prompt_tokens,
            ..Default::default()
        }
    }
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
        let uniforms = Uniforms::new(&gpu, "params");
        // Int8 activations only where there are block-format weights to multiply.
        let int8 = opts.activations.int8(&gpu)? && model.has_block_weights();
        let prefill = forward::build(&model, &state, &kernels, &uniforms, Mode::Prefill, int8)?;
        let decode = forward::build(&model, &state, &kernels, &uniforms, Mode::Decode, int8)?;
        let sampler = Sampler::new(
            &kernels,
            &uniforms,
            &state.step,
            &state.dummy,
            &state.logits,
            &state.ids,
            model.cfg.vocab_size,
        )?;
        let snapshot = state
            .layers
            .iter()
            .filter_map(|l| match l {
                LayerState::Conv(b) => Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("conv_state_snapshot"),
                    size: b.size(),
                    usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })),
                LayerState::Attention(_) => None,
            })
            .collect();
        Ok(Session {
            snapshot,
            snapshot_pos: None,
            model,
            state,
            kernels,
            uniforms,
            prefill,
            decode,
            prefill_all: None,
            sampler,
            pos: 0,
            history: Vec::new(),
            last: None,
            cancel: Arc::new(AtomicBool::new(false)),
            decode_parts: 1,
            int8,
            cost: Cell::new(HostCost::default()),
            gpu_timer: RefCell::new(None),
        })
    }

    /// The recorded program of `mode` (the all-logits prefill once it has been built).
    pub fn program(&self, mode: Mode) -> Option<&crate::kernels::Program> {
        match mode {
            Mode::Prefill => Some(&self.prefill),
            Mode::Decode => Some(&self.decode),
            Mode::PrefillAllLogits => self.prefill_all.as_ref(),
        }
    }

    /// The flag that, once raised, stops the current prefill between chunks and the current
    /// generation before its next token ([`Error::Cancelled`] / a stop). The caller lowers it.
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Starts a new sequence (the caches are overwritten as it goes); the random stream
    /// restarts from the seed.
    pub fn reset(&mut self) {
        self.state.reset(&self.model.gpu);
        self.sampler.reset(&self.model.gpu);
        self.pos = 0;
        self.history.clear();
        self.last = None;
        self.snapshot_pos = None;
    }

    /// Remembers the current position so that [`Self::rewind`] can come back to it after
    /// more tokens were fed (a GPU-side copy of the conv states; no readback).
    pub fn checkpoint(&mut self) {
        self.copy_conv_states(true);
        self.snapshot_pos = Some(self.pos);
    }

    /// Test hook: swaps the bind groups of the first two decode dispatches whose pipelines
    /// differ, so the next decode step fails GPU validation (tests of the error path).
    #[doc(hidden)]
    pub fn inject_bind_group_fault(&mut self) {
        let d = &mut self.decode.dispatches;
        if let Some(j) = (1..d.len()).find(|&j| d[j].pipeline.key != d[0].pipeline.key) {
            let (a, b) = d.split_at_mut(j);
            std::mem::swap(&mut a[0].bind_group, &mut b[0].bind_group);
        }
    }

    /// Goes back to the last checkpoint if it lies within the first `keep` tokens of the
    /// history; returns the position now held (0 after a reset when it cannot).
    pub fn rewind(&mut self, keep: usize) -> usize {
        match self.snapshot_pos {
            Some(p) if p <= keep && p <= self.pos => {
                self.copy_conv_states(false);
                self.pos = p;
                self.history.truncate(p);
                self.last = None;
                p
            }
            _ => {
                self.reset();
                0
            }
        }
    }

    /// Keeps what the KV cache holds of `prompt` and returns how many tokens that is: all of
    /// the history when the prompt extends it, else back to the last checkpoint (the end of
    /// the previous prompt) when that lies within the common prefix, else nothing. At least
    /// one token is always left to prefill.
    pub fn reuse_prefix(&mut self, prompt: &[u32]) -> usize {
        let common = self.history.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        match common == self.history.len() && common < prompt.len() {
            true => common,
            false => self.rewind(common.min(prompt.len().saturating_sub(1))),
        }
    }

    fn copy_conv_states(&self, save: bool) {
        let gpu = &self.model.gpu;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let convs = self.state.layers.iter().filter_map(|l| match l {
            LayerState::Conv(b) => Some(b),
            LayerState::Attention(_) => None,
        });
        for (live, copy) in convs.zip(&self.snapshot) {
            match save {
                true => enc.copy_buffer_to_buffer(live, 0, copy, 0, live.size()),
                false => enc.copy_buffer_to_buffer(copy, 0, live, 0, live.size()),
            }
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// How the following tokens are chosen (greedy by default); restarts the random stream.
    pub fn set_sampling(&mut self, params: SamplingParams) -> Result<()> {
        self.sampler.set(&self.model.gpu, params)
    }

    pub fn sampling(&self) -> &SamplingParams {
        &self.sampler.params
    }

    /// Records `tokens` as fed into the caches.
    fn fed(&mut self, tokens: &[u32]) {
        self.pos += tokens.len();
        self.history.extend_from_slice(tokens);
    }

    fn context_exceeded(&self, needed: usize) -> Error {
        Error::ContextExceeded {
            needed,
            ctx: self.state.ctx,
            max: 32768.max(self.model.cfg.max_position_embeddings),
        }
    }

    fn check(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.model.cfg.vocab_size;
        if let Some((pos, &id)) = tokens.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id, pos, vocab });
        }
        if self.pos + tokens.len() > self.state.ctx {
            return Err(self.context_exceeded(self.pos + tokens.len()));
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
        let draw = !self.sampler.params.is_greedy() && which != Mode::PrefillAllLogits;
        self.run_step(which, n, id_to, read_logit_row, draw)
    }

    /// As [`Self::run_into`]; `draw`: the sampler's dispatch follows the forward pass.
    fn run_step(
        &self,
        which: Mode,
        n: usize,
        id_to: Option<&wgpu::Buffer>,
        read_logit_row: bool,
        draw: bool,
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = &self.model.gpu;
        let splits = match which {
            Mode::Decode => (self.pos as u32 + 1).div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_ATTN_SPLITS),
            _ => 1,
        };
        let (start, submitted_before) = (web_time::Instant::now(), self.cost.get().submit_s);
        let during = format!("{which:?} step at position {} ({n} tokens)", self.pos);
        let index = gpu.scoped(&during, || self.submit(which, n, splits, id_to, read_logit_row, draw));
        if which == Mode::Decode {
            // The host side of the step (uniform, recording, error scopes) less the submits.
            let mut c = self.cost.get();
            c.encode_s += start.elapsed().as_secs_f64() - (c.submit_s - submitted_before);
            self.cost.set(c);
        }
        index
    }

    async fn read_id(&self) -> Result<u32> {
        self.read_id_from(&self.state.staging_id, None).await
    }

    /// The id a step wrote; an error when its logits were not finite (`pos`: the position
    /// whose logits they were).
    async fn read_id_from(&self, staging: &wgpu::Buffer, after: Option<wgpu::SubmissionIndex>) -> Result<u32> {
        let b = self.model.gpu.read_staging_async(staging, 4, after).await?;
        match u32::from_le_bytes([b[0], b[1], b[2], b[3]]) {
            NON_FINITE_ID => Err(Error::NonFiniteLogits {
                pos: self.history.len().saturating_sub(1),
            }),
            id if id as usize >= self.model.cfg.vocab_size => Err(Error::Gpu {
                during: "sampling".into(),
                msg: format!("the sampler returned id {id} outside the vocabulary"),
            }),
            id => Ok(id),
        }
    }

    async fn read_logit_row(&self) -> Result<Vec<f32>> {
        let n = self.model.cfg.vocab_size as u64 * 4;
        let bytes = self
            .model
            .gpu
            .read_staging_async(&self.state.staging_logits, n, None)
            .await?;
        let row: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        check_logits(&row, self.pos.saturating_sub(1), self.model.cfg.vocab_size)?;
        Ok(row)
    }

    fn write_ids(&self, tokens: &[u32]) {
        self.model
            .gpu
            .queue
            .write_buffer(&self.state.ids, 0, bytemuck::cast_slice(tokens));
    }

    /// Prefills `tokens` (continuing the sequence) and returns the greedy next token, plus
    /// the last position's logits when `want_logits`.
    pub async fn prefill_async(&mut self, tokens: &[u32], want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        if tokens.is_empty() {
            return Err(Error::Invalid("empty prompt".into()));
        }
        self.check(tokens)?;
        self.sampler.upload_seen(&self.model.gpu, &self.history, tokens);
        let chunks: Vec<&[u32]> = tokens.chunks(self.state.ubatch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if self.cancelled() {
                self.last = None;
                return Err(Error::Cancelled);
            }
            let last = i + 1 == chunks.len();
            self.write_ids(chunk);
            self.run(Mode::Prefill, chunk.len(), last, last && want_logits)?;
            self.fed(chunk);
        }
        let id = self.read_id().await?;
        self.last = Some(id);
        let logits = if want_logits {
            Some(self.read_logit_row().await?)
        } else {
            None
        };
        Ok((id, logits))
    }

    /// Decodes one token. `token`: the input, or None to feed the id the previous step
    /// sampled on the GPU (no host round trip). Returns the greedy next id, and the logits
    /// when `want_logits`.
    pub async fn decode_async(&mut self, token: Option<u32>, want_logits: bool) -> Result<(u32, Option<Vec<f32>>)> {
        let input = match (token, self.last) {
            (Some(t), _) => {
                self.check(&[t])?;
                self.write_ids(&[t]);
                t
            }
            (None, Some(t)) => t,
            (None, None) => {
                return Err(Error::Invalid(
                    "decode without an input token needs a prefilled sequence".into(),
                ))
            }
        };
        if self.pos + 1 > self.state.ctx {
            return Err(self.context_exceeded(self.pos + 1));
        }
        self.run(Mode::Decode, 1, true, want_logits)?;
        self.fed(&[input]);
        let id = self.read_id().await?;
        self.last = Some(id);
        let logits = if want_logits {
            Some(self.read_logit_row().await?)
        } else {
            None
        };
        Ok((id, logits))
    }

    /// `count` greedy decode steps fed by the GPU's own argmax, each queued before the previous
    /// step's id is read back (ping-pong staging), so the GPU never waits for the host.
    /// The caller knows `count` up front: no step runs past it.
    pub async fn decode_chained_async(&mut self, count: usize, ids: &mut Vec<u32>) -> Result<()> {
        if self.pos + count > self.state.ctx {
            return Err(self.context_exceeded(self.pos + count));
        }
        self.decode_stream(count, &mut |id| {
            ids.push(id);
            true
        })
        .await?;
        Ok(())
    }

    /// Up to `count` decode steps, each fed the id the previous one sampled on the GPU and
    /// queued before that id is read back (ping-pong staging), so the GPU never waits for
    /// the host. `on_token` sees each id as it arrives; returning false (or the cancel flag)
    /// stops (the step already queued behind it is the one that fed it). Stops early at a
    /// full context. Returns the number of ids produced.
    async fn decode_stream(&mut self, count: usize, on_token: &mut dyn FnMut(u32) -> bool) -> Result<usize> {
        let Some(first) = self.last else {
            return Err(Error::Invalid(
                "decode without an input token needs a prefilled sequence".into(),
            ));
        };
        let count = count.min(self.state.ctx - self.pos);
        if count == 0 {
            return Ok(0);
        }
        // Each step is counted in `pos` when queued; its input joins `history` once known.
        let mut input = first;
        let mut index = self.run_into(Mode::Decode, 1, Some(self.id_staging(0)), false)?;
        self.pos += 1;
        for j in 0..count {
            // Queue step j + 1 (it reads step j's id on the GPU) before reading step j.
            let next = match j + 1 < count {
                true => {
                    let n = self.run_into(Mode::Decode, 1, Some(self.id_staging(j + 1)), false)?;
                    self.pos += 1;
                    Some(n)
                }
                false => None,
            };
            self.history.push(input); // step j's input, counted in `pos` when queued
            let waited = web_time::Instant::now();
            let read = self.read_id_from(self.id_staging(j), Some(index)).await;
            let mut c = self.cost.get();
            c.wait_s += waited.elapsed().as_secs_f64();
            self.cost.set(c);
            let id = match read {
                Ok(id) => id,
                Err(e) => {
                    self.last = None;
                    return Err(e);
                }
            };
            self.last = Some(id);
            input = id;
            let go = on_token(id) && !self.cancelled();
            match next {
                Some(n) if go => index = n,
                Some(n) => {
                    // Step j + 1 already consumed `id`; its own sample is dropped.
                    self.history.push(id);
                    let _ = self.read_id_from(self.id_staging(j + 1), Some(n)).await?;
                    self.last = None;
                    return Ok(j + 1);
                }
                None => return Ok(j + 1),
            }
        }
        Ok(count)
    }

    /// The two id stagings decode steps alternate between.
    fn id_staging(&self, step: usize) -> &wgpu::Buffer {
        match step % 2 {
            0 => &self.state.staging_id,
            _ => &self.state.staging_id_next,
        }
    }

    /// Prefills `prompt` (continuing the sequence), then produces up to `max_new` tokens
    /// with the session's sampling, handing each to `on_token` as soon as it is read back
    /// (return false to stop: an end-of-sequence token, a stop string, Ctrl-C). Decode
    /// steps are chained on the GPU. Generation also ends when the context is full
    /// (`context_full` in the stats) rather than failing.
    /// With `checkpoint`, the state after the prompt is remembered ([`Self::checkpoint`]).
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        checkpoint: bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats> {
        let mut st = GenStats::for_prompt(prompt.len());
        if max_new == 0 {
            return Ok(st);
        }
        let t = web_time::Instant::now();
        let (first, _) = self.prefill_async(prompt, false).await?;
        st.prefill_s = t.elapsed().as_secs_f64();
        if checkpoint {
            self.checkpoint();
        }
        st.new_tokens = 1;
        let t = web_time::Instant::now();
        let mut go = on_token(first) && !self.cancelled();
        if go && max_new > 1 {
            let want = max_new - 1;
            let room = self.state.ctx - self.pos;
            let mut track = |id| {
                go = on_token(id);
                go
            };
            let produced = self.decode_stream(want, &mut track).await?;
            st.new_tokens += produced;
            // Full only when the context, not the caller or max_new, ended it.
            st.context_full = go && want > room && produced == room;
        }
        st.decode_s = t.elapsed().as_secs_f64();
        Ok(st)
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
    pub async fn generate_greedy_async(
        &mut self,
        prompt: &[u32],
        n: usize,
        want_logits: bool,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        // The last token produced is never fed, so n new tokens need n − 1 more positions.
        let needed = (self.pos + prompt.len()).saturating_add(n.saturating_sub(1));
        if needed > self.state.ctx {
            return Err(self.context_exceeded(needed));
        }
        let mut ids = Vec::with_capacity(n);
        let mut logits = Vec::new();
        if n == 0 {
            return Ok((ids, logits));
        }
        let (mut next, l) = self.prefill_async(prompt, want_logits).await?;
        ids.push(next);
        logits.extend(l.unwrap_or_default());
        if !want_logits {
            self.decode_chained_async(n - 1, &mut ids).await?;
            return Ok((ids, logits));
        }
        while ids.len() < n {
            let (id, l) = self.decode_async(Some(next), want_logits).await?;
            next = id;
            ids.push(id);
            logits.extend(l.unwrap_or_default());
        }
        Ok((ids, logits))
    }
}

/// An error when a logits row (of position `pos0` + its index) holds NaN or ±inf.
pub(super) fn check_logits(logits: &[f32], pos0: usize, vocab: usize) -> Result<()> {
    match logits.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFiniteLogits { pos: pos0 + i / vocab }),
    }
}
