//! THE forward pass (docs §4), recorded once per mode into a [`Program`] whose grids follow
//! the step's token count. Read it top to bottom: embedding, then per layer
//! operator_norm → conv or attention → residual, ffn_norm → dense SwiGLU or MoE → residual,
//! then the final norm, the head and greedy argmax on the GPU. In decode the norms are fused
//! into the mat-vecs that consume them.

use super::config::Config;
use super::gpu_weights::GpuModel;
use super::state::{KvCache, LayerState, State};
use super::weights::{Ffn, Op};
use crate::error::Result;
use crate::gpu::GpuMatrix;
use crate::kernels::linear::LinearOp;
use crate::kernels::ops::{Recorder, Routing};
use crate::kernels::{Dim, Kernels, Program, Shape, Uniforms};

/// Which program to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A prompt chunk of T tokens; logits of the last position only (row 0).
    Prefill,
    /// A prompt chunk of T tokens with the logits of every position (rows 0..T).
    PrefillAllLogits,
    /// One token.
    Decode,
}

/// The stream a projection reads: the normed activations `a` (prefill), or the raw residual
/// `h` with the RMSNorm fused into the mat-vec (decode: it reads all of x anyway), and in
/// decode with int8 activations also the normed stream quantized (for block formats).
#[derive(Clone, Copy)]
struct Normed<'a> {
    x: &'a wgpu::Buffer,
    norm: Option<(&'a wgpu::Buffer, f32)>,
    xq: Option<&'a wgpu::Buffer>,
}

/// The recorder with what every step of the pass shares: config, state, mode, the routing
/// buffers, and whether intermediates are tapped for `lfm logits --dump`.
struct Fwd<'a> {
    r: Recorder<'a>,
    cfg: &'a Config,
    s: &'a State,
    mode: Mode,
    shape: Shape,
    h: u32,
    routing: Routing<'a>,
    /// Intermediates named for `lfm logits --dump` (the all-logits program only).
    taps: bool,
    /// Decode with int8 activations: each mat-vec input over block-format weights is
    /// quantized once (`quantize_x`) into `s.xq`.
    q8: bool,
}

impl<'a> Fwd<'a> {
    fn new(cfg: &'a Config, s: &'a State, k: &'a Kernels, uniforms: &'a Uniforms, mode: Mode, int8: bool) -> Self {
        Fwd {
            r: Recorder::new(k, uniforms, &s.step, &s.dummy, s.kv_dtype),
            cfg,
            s,
            mode,
            shape: match mode {
                Mode::Decode => Shape::Decode,
                _ => Shape::Prefill,
            },
            h: cfg.hidden_size as u32,
            routing: Routing {
                ids: &s.route_ids,
                weights: &s.route_w,
                offsets: &s.route_off,
                rows: &s.route_rows,
                topk: cfg.num_experts_per_tok as u32,
            },
            taps: mode == Mode::PrefillAllLogits,
            q8: int8 && mode == Mode::Decode,
        }
    }

    /// Names `buffer` (`row_values` a token) for `--dump` after the steps so far.
    fn tap(&mut self, name: &str, buffer: &wgpu::Buffer, row_values: usize) {
        if self.taps {
            self.r.tap(name, buffer, row_values);
        }
    }

    /// One projection `y [n] = W·x (+ bias)`, with its switches.
    fn op<'b>(&self, x: &'b wgpu::Buffer, ldx: u32, w: &'b GpuMatrix, y: &'b wgpu::Buffer, ldy: u32) -> LinearOp<'b> {
        LinearOp {
            x,
            ldx,
            w,
            w_up: None,
            y,
            ldy,
            bias: None,
            acc: false,
            moe: None,
            scale: false,
            norm: None,
            combine: false,
            x_q8: None,
        }
    }

    /// With int8 activations, `rows` rows of x (`k` values each) quantized into `s.xq` for
    /// the block-format chunks of the matrices that read it next, `readers` (RMS-normalised
    /// first with `norm`); nothing when none has such chunks.
    fn quantized(
        &mut self,
        label: &str,
        x: &wgpu::Buffer,
        k: u32,
        rows: Dim,
        norm: Option<(&wgpu::Buffer, f32)>,
        readers: &[&GpuMatrix],
    ) -> Result<Option<&'a wgpu::Buffer>> {
        let blocks = readers.iter().any(|m| m.chunks.iter().any(|c| c.dtype.is_block()));
        if !self.q8 || !blocks {
            return Ok(None);
        }
        let xq = &self.s.xq;
        self.r.quantize_x(&format!("{label}.q8"), x, k, k, norm, xq, rows)?;
        Ok(Some(xq))
    }

    /// RMSNorm of the residual stream `h` with weights `g`, for the projections that follow
    /// (`readers`).
    fn norm(&mut self, label: &str, g: &'a wgpu::Buffer, readers: &[&GpuMatrix]) -> Result<Normed<'a>> {
        let eps = self.cfg.norm_eps;
        if self.mode == Mode::Decode {
            let norm = Some((g, eps));
            let xq = self.quantized(label, &self.s.h, self.h, Dim::Tokens, norm, readers)?;
            return Ok(Normed { x: &self.s.h, norm, xq });
        }
        let last_only = false;
        self.r
            .rmsnorm(label, &self.s.h, g, &self.s.a, self.h as usize, eps, last_only)?;
        Ok(Normed {
            x: &self.s.a,
            norm: None,
            xq: None,
        })
    }

    /// `y [n] = W·x + bias`.
    fn proj(&mut self, x: Normed, w: &GpuMatrix, bias: Option<&wgpu::Buffer>, y: &wgpu::Buffer, n: u32) -> Result<()> {
        let op = LinearOp {
            bias,
            norm: x.norm,
            x_q8: x.xq,
            ..self.op(x.x, self.h, w, y, n)
        };
        self.r.linear(self.shape, &op)
    }

    /// `y [n] = SiLU(W_gate·x) ⊙ (W_up·x)`; over the routed (token, slot) pairs when `routed`.
    fn glu(&mut self, x: Normed, gate: &GpuMatrix, up: &GpuMatrix, n: u32, routed: bool) -> Result<()> {
        let routing = &self.routing;
        let op = LinearOp {
            w_up: Some(up),
            norm: x.norm,
            x_q8: x.xq,
            moe: routed.then_some((routing, routing.topk)),
            ..self.op(x.x, self.h, gate, &self.s.act, n)
        };
        self.r.linear(self.shape, &op)
    }

    /// `h += W·x + bias`: the projection closing a residual branch (x has `k` values a row).
    fn residual(&mut self, x: &wgpu::Buffer, k: u32, w: &GpuMatrix, bias: Option<&wgpu::Buffer>) -> Result<()> {
        let x_q8 = self.quantized(&w.label, x, k, Dim::Tokens, None, &[w])?;
        let op = LinearOp {
            bias,
            acc: true,
            x_q8,
            ..self.op(x, k, w, &self.s.h, self.h)
        };
        self.r.linear(self.shape, &op)
    }

    /// `o = C ⊙ causal_conv(B ⊙ x)` from `z = B | C | x`, continuing and updating the state.
    fn conv(
        &mut self,
        label: &str,
        taps: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        state: &wgpu::Buffer,
    ) -> Result<()> {
        let (s, cfg) = (self.s, self.cfg);
        self.r
            .short_conv(label, &s.z, taps, bias, state, &s.o, cfg.hidden_size, cfg.conv_l_cache)
    }

    /// Per-head q/k RMSNorm + RoPE + cache write from `z = q | k | v`, then causal GQA into `o`.
    fn attention(&mut self, label: &str, q_norm: &wgpu::Buffer, k_norm: &wgpu::Buffer, cache: &KvCache) -> Result<()> {
        let (s, cfg) = (self.s, self.cfg);
        let heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let kv = (&cache.k, &cache.v);
        let rope = format!("{label}.qk_norm_rope");
        self.r
            .qk_rope(&rope, &s.z, q_norm, k_norm, &s.rope, &s.q, kv, heads, cfg.norm_eps)?;
        let label = format!("{label}.attention");
        self.r.attention(self.shape, &label, &s.q, kv, &s.part, &s.o, heads)
    }

    /// Top-k experts and their weights from the router logits (and, in prefill, the pair
    /// list of each expert).
    fn route(&mut self, label: &str, expert_bias: Option<&wgpu::Buffer>) -> Result<()> {
        let cfg = self.cfg;
        let (e, norm_topk, scale) = (cfg.num_experts, cfg.norm_topk_prob, cfg.routed_scaling_factor);
        let logits = &self.s.router_logits;
        let routing = &self.routing;
        self.r
            .route(self.shape, label, logits, expert_bias, routing, e, norm_topk, scale)
    }

    /// `h += Σ_slot w_slot · W_down[e_slot]·act[slot]` over each token's routed pairs: in
    /// decode one mat-vec summing a token's pairs; in prefill per pair into `ypair`, then
    /// the combine.
    fn experts_down(&mut self, label: &str, down: &GpuMatrix, im: u32) -> Result<()> {
        let rows = Dim::TokensMul(self.routing.topk);
        let x_q8 = self.quantized(&down.label, &self.s.act, im, rows, None, &[down])?;
        let (s, routing) = (self.s, &self.routing);
        let decode = self.mode == Mode::Decode;
        let op = LinearOp {
            x_q8,
            moe: Some((routing, 1)),
            scale: true,
            acc: decode,
            combine: decode,
            ..self.op(&s.act, im, down, if decode { &s.h } else { &s.ypair }, self.h)
        };
        self.r.linear(self.shape, &op)?;
        if !decode {
            self.r
                .moe_combine(label, &s.ypair, &s.h, self.h as usize, routing.topk)?;
        }
        Ok(())
    }

    /// The final norm and the head into `logits`: in prefill only the last position's row
    /// (normed into row 0), else every row.
    fn head(&mut self, final_norm: &'a wgpu::Buffer, head: &GpuMatrix) -> Result<()> {
        let (s, cfg, v) = (self.s, self.cfg, self.cfg.vocab_size as u32);
        if self.mode == Mode::Prefill {
            let (label, last_only) = ("model.embedding_norm", true);
            let (hs, eps) = (cfg.hidden_size, cfg.norm_eps);
            self.r.rmsnorm(label, &s.h, final_norm, &s.a, hs, eps, last_only)?;
            return self.r.matvec_rows(&self.op(&s.a, self.h, head, &s.logits, v), 1);
        }
        let x = self.norm("model.embedding_norm", final_norm, &[head])?;
        self.tap("model.embedding_norm", &s.a, cfg.hidden_size);
        self.proj(x, head, None, &s.logits, v)?;
        self.tap("lm_head", &s.logits, cfg.vocab_size);
        Ok(())
    }
}

/// Records the forward pass of `m` over state `s` for `mode`; with `int8`, decode's mat-vecs
/// over block-format weights read their inputs quantized to int8 blocks.
pub fn build(m: &GpuModel, s: &State, k: &Kernels, uniforms: &Uniforms, mode: Mode, int8: bool) -> Result<Program> {
    let (cfg, w) = (&m.cfg, &m.w);
    let mut f = Fwd::new(cfg, s, k, uniforms, mode, int8);
    let (h, hs) = (f.h, cfg.hidden_size);

    // model.embed_tokens
    f.r.embed(&s.ids, &w.embed, &s.h)?;
    f.tap("model.embed_tokens", &s.h, hs);
    for (i, (layer, ls)) in w.layers.iter().zip(&s.layers).enumerate() {
        let name = |x: &str| format!("model.layers.{i}.{x}");
        // operator_norm, then conv or self_attn, closing with h += out_proj(…)
        let first = match &layer.op {
            Op::Conv { in_proj, .. } => in_proj,
            Op::Attention { qkv, .. } => qkv,
        };
        let a = f.norm(&name("operator_norm"), &layer.operator_norm, &[first])?;
        match (&layer.op, ls) {
            (
                Op::Conv {
                    in_proj,
                    in_bias,
                    conv,
                    conv_bias,
                    out_proj,
                    out_bias,
                },
                LayerState::Conv(state),
            ) => {
                // conv.in_proj → B | C | x; conv.conv: C ⊙ causal_conv(B ⊙ x) with the state
                f.proj(a, in_proj, in_bias.as_ref(), &s.z, 3 * h)?;
                f.conv(&name("conv.conv"), conv, conv_bias.as_ref(), state)?;
                f.residual(&s.o, h, out_proj, out_bias.as_ref())?;
            }
            (
                Op::Attention {
                    qkv,
                    q_norm,
                    k_norm,
                    out_proj,
                },
                LayerState::Attention(cache),
            ) => {
                // self_attn: q|k|v, per-head q/k norm + RoPE + cache write, causal GQA
                f.proj(a, qkv, None, &s.z, cfg.qkv_dim() as u32)?;
                f.attention(&name("self_attn"), q_norm, k_norm, cache)?;
                let o = (cfg.num_attention_heads * cfg.head_dim) as u32;
                f.residual(&s.o, o, out_proj, None)?;
            }
            _ => unreachable!("layer state is built from the same layer_types"),
        }
        // ffn_norm, then feed_forward, closing with h += down(…)
        let readers = match &layer.ffn {
            Ffn::Dense { gate, .. } => vec![gate],
            Ffn::Moe { router, gate, .. } => vec![router, gate],
        };
        let b = f.norm(&name("ffn_norm"), &layer.ffn_norm, &readers)?;
        match &layer.ffn {
            Ffn::Dense { gate, up, down } => {
                let iw = cfg.intermediate_size as u32;
                f.glu(b, gate, up, iw, false)?;
                f.residual(&s.act, iw, down, None)?;
            }
            Ffn::Moe {
                router,
                expert_bias,
                gate,
                up,
                down,
            } => {
                // feed_forward.gate: router logits → top-k experts and weights → pair lists
                f.proj(b, router, None, &s.router_logits, cfg.num_experts as u32)?;
                f.route(&name("feed_forward.router"), expert_bias.as_ref())?;
                // experts: each sees only the pairs routed to it; h += Σ_slot weighted outputs
                let im = cfg.moe_intermediate_size as u32;
                f.glu(b, gate, up, im, true)?;
                f.experts_down(&name("feed_forward.combine"), down, im)?;
            }
        }
        f.tap(&format!("model.layers.{i}"), &s.h, hs);
    }
    // model.embedding_norm (the final norm), lm_head (tied: the embedding), argmax → next id
    f.head(&w.final_norm, w.head())?;
    f.r.argmax(&s.logits, &s.ids, cfg.vocab_size, mode == Mode::PrefillAllLogits)?;
    Ok(f.r.prog)
}
