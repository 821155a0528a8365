//! Per-sequence GPU state, allocated once: activations sized for one ubatch, the KV caches
//! and conv states, routing scratch, the RoPE table, the step uniform and readback buffers.

use super::config::{Config, LayerKind};
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu};
use wgpu::util::DeviceExt;

/// Most KV-length splits of decode attention.
pub const MAX_ATTN_SPLITS: u32 = 32;
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

impl State {
    pub fn new(gpu: &Gpu, cfg: &Config, ctx: usize, ubatch: usize, kv_dtype: DType) -> Result<Self> {
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
        // State buffers are never split: they get the granted binding size.
        let max_bytes = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let mk = |label: &str, elems: usize, elem_bytes: usize| -> Result<wgpu::Buffer> {
            let size = ((elems.max(1) * elem_bytes) as u64).next_multiple_of(16);
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
        let logit_rows = u.min((max_bytes / (v as u64 * 4)).max(1) as usize);
        let kv_es = kv_dtype.row_bytes(1) as usize;
        let layers = cfg
            .layer_types
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                Ok(match kind {
                    LayerKind::Conv => LayerState::Conv(mk(
                        &format!("model.layers.{i}.conv.state"),
                        (cfg.conv_l_cache - 1) * h,
                        4,
                    )?),
                    LayerKind::Attention => {
                        let n = ctx * cfg.num_key_value_heads * cfg.head_dim;
                        LayerState::Attention(KvCache {
                            k: mk(&format!("model.layers.{i}.self_attn.k_cache"), n, kv_es)?,
                            v: mk(&format!("model.layers.{i}.self_attn.v_cache"), n, kv_es)?,
                        })
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inv_freq = cfg.rope_inv_freq();
        let mut rope = Vec::with_capacity(ctx * d);
        for pos in 0..ctx {
            let (cos, sin) = cfg.rope_cos_sin(&inv_freq, pos);
            for (c, s) in cos.iter().zip(&sin) {
                rope.push(*c);
                rope.push(*s);
            }
        }
        let staging = |label: &str, size: u64| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        Ok(State {
            ubatch: u,
            ctx,
            kv_dtype,
            ids: mk("ids", u, 4)?,
            h: mk("hidden", u * h, 4)?,
            a: mk("normed", u * h, 4)?,
            z: mk("in_proj_out", u * (3 * h).max(cfg.qkv_dim()), 4)?,
            o: mk("op_out", u * h, 4)?,
            q: mk("q", u * nh.max(1) * d, 4)?,
            part: mk(
                "attn_partials",
                (u * nh).max(nh * MAX_ATTN_SPLITS as usize).max(1) * (d + 2),
                4,
            )?,
            act: mk(
                "swiglu_act",
                (u * cfg.intermediate_size).max(u * k * cfg.moe_intermediate_size),
                4,
            )?,
            ypair: mk("expert_out", u * k * h, 4)?,
            router_logits: mk("router_logits", u * e, 4)?,
            route_ids: mk("route_ids", u * k, 4)?,
            route_w: mk("route_weights", u * k, 4)?,
            route_off: mk("route_offsets", e + 1, 4)?,
            route_rows: mk("route_rows", u * k, 4)?,
            logits: mk("logits", logit_rows * v, 4)?,
            logit_rows,
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
            dummy: mk("unused", 4, 4)?,
            staging_id: staging("sampled_id", 16),
            staging_id_next: staging("sampled_id_next", 16),
            staging_logits: staging("logits_row", (v as u64 * 4).next_multiple_of(16)),
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

    /// Bytes of GPU memory this state holds.
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
            &self.route_ids,
            &self.route_w,
            &self.route_off,
            &self.route_rows,
            &self.logits,
            &self.rope,
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
