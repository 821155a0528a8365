//! Per-sequence GPU state, allocated once: activations sized for one ubatch, the KV caches
//! and conv states, routing scratch, the RoPE table, the step uniform and readback buffers.

use super::config::{Config, LayerKind};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu};
use wgpu::util::DeviceExt;

/// What a sequence holds: the sizes its state is allocated with (and the memory plan the
/// loader checks before allocating anything).
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Context length (KV cache capacity), default 4096.
    pub ctx: usize,
    /// Prefill chunk, default 512.
    pub ubatch: usize,
    /// KV-cache storage (f32 or f16); default: f32 with f32 weights, else f16.
    pub kv_dtype: Option<DType>,
    /// What decode's mat-vecs over block-format weights multiply.
    pub activations: Activations,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ctx: 4096,
            ubatch: 512,
            kv_dtype: None,
            activations: Activations::Auto,
        }
    }
}

/// The activations decode's mat-vecs over block-format weights (Q8_0 … Q6_K) read. Prompts
/// (the GEMMs) and float-format weights always take exact f32 activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// Int8 where the shaders may use packed integer dot products, else exact.
    #[default]
    Auto,
    /// f32: the path equal to transformers on the dequantized weights to f32 rounding.
    Exact,
    /// Each projection's input quantized once to int8 per block of 32 with a power-of-two
    /// scale ([`crate::act_quant`]), the weights' blocks multiplied with `dot4I8Packed`.
    Int8,
}

impl Activations {
    /// Whether a session on `gpu` uses int8 activations.
    pub fn int8(self, gpu: &Gpu) -> Result<bool> {
        match self {
            Activations::Exact => Ok(false),
            Activations::Auto => Ok(gpu.int_dot),
            Activations::Int8 if gpu.int_dot => Ok(true),
            Activations::Int8 => Err(Error::Invalid(format!(
                "int8 activations need packed integer dot products in shaders, which {} does not offer",
                gpu.info.name
            ))),
        }
    }

    /// Parses an option value: auto, exact (or f32), int8 (or q8).
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Activations::Auto),
            "exact" | "f32" => Ok(Activations::Exact),
            "int8" | "q8" => Ok(Activations::Int8),
            _ => Err(Error::Invalid(format!(
                "activations {s:?}: expected auto, exact or int8"
            ))),
        }
    }
}

/// Most KV-length splits of decode attention.
pub const MAX_ATTN_SPLITS: u32 = 32;
/// Rows of logits kept (all-position logits are produced this many tokens at a time).
pub const MAX_LOGIT_ROWS: usize = 32;
/// Keys per split that decode attention aims for.
pub const KEYS_PER_SPLIT: u32 = 256;

/// Caches of one attention layer: [ctx, nkv, d] each, in the KV storage type.
pub struct KvCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

/// The state of one layer's operator.
pub enum LayerState {
    /// [(K−1), H] f32, the last K−1 values of B⊙x, oldest first.
    Conv(wgpu::Buffer),
    Attention(KvCache),
}

pub struct State {
    /// Tokens per submission (prefill chunk).
    pub ubatch: usize,
    /// Context length the caches hold.
    pub ctx: usize,
    pub kv_dtype: DType,
    /// [U] u32 input ids; decode reads ids[0], which argmax writes.
    pub ids: wgpu::Buffer,
    /// [U, H] residual stream
    pub h: wgpu::Buffer,
    /// [U, H] normed input of the operator / FFN
    pub a: wgpu::Buffer,
    /// [U, max(3H, qkv)] in_proj / qkv output
    pub z: wgpu::Buffer,
    /// [U, H] conv output or attention output before out_proj
    pub o: wgpu::Buffer,
    /// [U, nh·d] normed, rotated queries
    pub q: wgpu::Buffer,
    /// attention partials [max(U·nh, nh·MAX_ATTN_SPLITS), d + 2]
    pub part: wgpu::Buffer,
    /// [max(U·I, U·k·Im)] SwiGLU activations
    pub act: wgpu::Buffer,
    /// [U·k, H] weighted expert outputs per (token, slot)
    pub ypair: wgpu::Buffer,
    /// [U, E] router logits
    pub router_logits: wgpu::Buffer,
    /// Decode with int8 activations: the input of the next mat-vecs as int8 blocks
    /// (shaders/lib/x_q8.wgsl: 48 bytes per 32 values), [max(H, nh·d, I, k·Im) / 32] records.
    pub xq: wgpu::Buffer,
    /// [U·k] u32 expert per pair
    pub route_ids: wgpu::Buffer,
    /// [U·k] f32 weight per pair
    pub route_w: wgpu::Buffer,
    /// [E+1] u32
    pub route_off: wgpu::Buffer,
    /// [U·k] u32 pairs grouped by expert
    pub route_rows: wgpu::Buffer,
    /// [logit_rows, vocab] f32
    pub logits: wgpu::Buffer,
    /// Rows `logits` holds: all positions of a chunk of at most this many tokens.
    pub logit_rows: usize,
    /// [ctx, d/2] (cos, sin)
    pub rope: wgpu::Buffer,
    pub layers: Vec<LayerState>,
    /// The step uniform (n_tokens, pos0, attn_splits).
    pub step: wgpu::Buffer,
    pub dummy: wgpu::Buffer,
    /// MAP_READ staging for the sampled id (4 bytes) and one logits row.
    pub staging_id: wgpu::Buffer,
    /// A second id staging buffer, so step N+1 can be queued before step N's id is read.
    pub staging_id_next: wgpu::Buffer,
    pub staging_logits: wgpu::Buffer,
}

/// Bytes of every state buffer, computed before anything is allocated: [`State::new`]
/// allocates exactly these, and the memory estimate adds them up.
#[derive(Clone, Debug)]
pub struct StateSizes {
    /// Tokens per submission (ubatch, at most ctx).
    pub u: usize,
    pub logit_rows: usize,
    pub ids: u64,
    pub h: u64,
    pub z: u64,
    pub q: u64,
    pub part: u64,
    pub act: u64,
    pub ypair: u64,
    pub router_logits: u64,
    pub xq: u64,
    pub route_pairs: u64,
    pub route_off: u64,
    pub logits: u64,
    pub rope: u64,
    /// Per layer: the conv state, or one of the two KV caches.
    pub layer: Vec<u64>,
    pub staging_logits: u64,
}

fn buffer_bytes(elems: usize, elem_bytes: usize) -> u64 {
    ((elems.max(1) * elem_bytes) as u64).next_multiple_of(16)
}

impl StateSizes {
    pub fn new(cfg: &Config, ctx: usize, ubatch: usize, kv_dtype: DType, max_bytes: u64) -> Result<Self> {
        let max_ctx = 32768.max(cfg.max_position_embeddings);
        if ctx == 0 || ctx > max_ctx {
            return Err(Error::Invalid(format!("context {ctx} must be in 1..={max_ctx}")));
        }
        if ubatch == 0 || ubatch > 4096 {
            return Err(Error::Invalid(format!("ubatch {ubatch} must be in 1..=4096")));
        }
        let u = ubatch.min(ctx);
        let h = cfg.hidden_size;
        let k = cfg.num_experts_per_tok.max(1);
        let e = cfg.num_experts.max(1);
        let (nh, d) = (cfg.num_attention_heads, cfg.head_dim.max(2));
        let v = cfg.vocab_size;
        // Only `prefill_all_logits` needs more than one row; it goes in chunks of this many.
        let logit_rows = u.min(MAX_LOGIT_ROWS).min((max_bytes / (v as u64 * 4)).max(1) as usize);
        let kv_es = kv_dtype.row_bytes(1) as usize;
        let f = |elems: usize| buffer_bytes(elems, 4);
        Ok(StateSizes {
            u,
            logit_rows,
            ids: f(u),
            h: f(u * h),
            z: f(u * (3 * h).max(cfg.qkv_dim())),
            q: f(u * nh.max(1) * d),
            part: f((u * nh).max(nh * MAX_ATTN_SPLITS as usize).max(1) * (d + 2)),
            act: f((u * cfg.intermediate_size).max(u * k * cfg.moe_intermediate_size)),
            ypair: f(u * k * h),
            router_logits: f(u * e),
            xq: {
                let values = h
                    .max(nh * d)
                    .max(cfg.intermediate_size)
                    .max(k * cfg.moe_intermediate_size);
                buffer_bytes(values.div_ceil(32), 48)
            },
            route_pairs: f(u * k),
            route_off: f(e + 1),
            logits: f(logit_rows * v),
            rope: f(ctx * d),
            layer: cfg
                .layer_types
                .iter()
                .map(|kind| match kind {
                    LayerKind::Conv => f((cfg.conv_l_cache - 1) * h),
                    LayerKind::Attention => buffer_bytes(ctx * cfg.num_key_value_heads * cfg.head_dim, kv_es),
                })
                .collect(),
            staging_logits: (v as u64 * 4).next_multiple_of(16),
        })
    }

    /// Bytes of the KV caches.
    pub fn kv_bytes(&self, cfg: &Config) -> u64 {
        let kv = cfg.layer_types.iter().zip(&self.layer);
        kv.filter(|(k, _)| **k == LayerKind::Attention)
            .map(|(_, b)| 2 * b)
            .sum()
    }

    /// Bytes of everything else: activations, conv states, routing, logits, tables, staging.
    pub fn scratch_bytes(&self, cfg: &Config) -> u64 {
        let conv: u64 = cfg
            .layer_types
            .iter()
            .zip(&self.layer)
            .filter(|(k, _)| **k == LayerKind::Conv)
            .map(|(_, b)| b)
            .sum();
        self.ids
            + 3 * self.h // h, a, o
            + self.z
            + self.q
            + self.part
            + self.act
            + self.ypair
            + self.router_logits
            + self.xq
            + 3 * self.route_pairs
            + self.route_off
            + self.logits
            + self.rope
            + conv
            + self.staging_logits
            + 16 * 4 // step, dummy, two id stagings
    }
}

impl State {
    pub fn new(gpu: &Gpu, cfg: &Config, ctx: usize, ubatch: usize, kv_dtype: DType) -> Result<Self> {
        // State buffers are never split: they get the granted binding size.
        let max_bytes = gpu.max_state_binding();
        let sz = StateSizes::new(cfg, ctx, ubatch, kv_dtype, max_bytes)?;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let mk = |label: &str, size: u64| -> Result<wgpu::Buffer> {
            if size > max_bytes {
                return Err(Error::Limit {
                    what: format!("state buffer {label} (bytes; lower --ubatch or --ctx)"),
                    needed: size,
                    limit: max_bytes,
                });
            }
            Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            }))
        };
        let layers = cfg
            .layer_types
            .iter()
            .zip(&sz.layer)
            .enumerate()
            .map(|(i, (kind, &bytes))| {
                Ok(match kind {
                    LayerKind::Conv => LayerState::Conv(mk(&format!("model.layers.{i}.conv.state"), bytes)?),
                    LayerKind::Attention => LayerState::Attention(KvCache {
                        k: mk(&format!("model.layers.{i}.self_attn.k_cache"), bytes)?,
                        v: mk(&format!("model.layers.{i}.self_attn.v_cache"), bytes)?,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inv_freq = cfg.rope_inv_freq();
        let mut rope = Vec::with_capacity(sz.rope as usize / 4);
        for pos in 0..ctx {
            let (cos, sin) = cfg.rope_cos_sin(&inv_freq, pos);
            for (c, s) in cos.iter().zip(&sin) {
                rope.push(*c);
                rope.push(*s);
            }
        }
        rope.resize(sz.rope as usize / 4, 0.0);
        let staging = |label: &str, size: u64| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        Ok(State {
            ubatch: sz.u,
            ctx,
            kv_dtype,
            ids: mk("ids", sz.ids)?,
            h: mk("hidden", sz.h)?,
            a: mk("normed", sz.h)?,
            z: mk("in_proj_out", sz.z)?,
            o: mk("op_out", sz.h)?,
            q: mk("q", sz.q)?,
            part: mk("attn_partials", sz.part)?,
            act: mk("swiglu_act", sz.act)?,
            ypair: mk("expert_out", sz.ypair)?,
            router_logits: mk("router_logits", sz.router_logits)?,
            xq: mk("activations_q8", sz.xq)?,
            route_ids: mk("route_ids", sz.route_pairs)?,
            route_w: mk("route_weights", sz.route_pairs)?,
            route_off: mk("route_offsets", sz.route_off)?,
            route_rows: mk("route_rows", sz.route_pairs)?,
            logits: mk("logits", sz.logits)?,
            logit_rows: sz.logit_rows,
            rope: gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("rope_cos_sin"),
                contents: bytemuck::cast_slice(&rope),
                usage: wgpu::BufferUsages::STORAGE,
            }),
            layers,
            step: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("step"),
                size: 16,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            dummy: mk("unused", 16)?,
            staging_id: staging("sampled_id", 16),
            staging_id_next: staging("sampled_id_next", 16),
            staging_logits: staging("logits_row", sz.staging_logits),
        })
    }

    /// Zeroes the conv states (KV entries past the position are never read).
    pub fn reset(&self, gpu: &Gpu) {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for l in &self.layers {
            if let LayerState::Conv(b) = l {
                enc.clear_buffer(b, 0, None);
            }
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// Bytes of GPU memory this state holds (staging included).
    pub fn bytes(&self) -> u64 {
        let mut n = 0;
        for b in [
            &self.ids,
            &self.h,
            &self.a,
            &self.z,
            &self.o,
            &self.q,
            &self.part,
            &self.act,
            &self.ypair,
            &self.router_logits,
            &self.xq,
            &self.route_ids,
            &self.route_w,
            &self.route_off,
            &self.route_rows,
            &self.logits,
            &self.rope,
            &self.step,
            &self.dummy,
            &self.staging_id,
            &self.staging_id_next,
            &self.staging_logits,
        ] {
            n += b.size();
        }
        for l in &self.layers {
            n += match l {
                LayerState::Conv(b) => b.size(),
                LayerState::Attention(c) => c.k.size() + c.v.size(),
            };
        }
        n
    }
}
