//! THE forward pass (docs §4), recorded once per mode into a [`Program`] whose grids follow
//! the step's token count. Read it top to bottom: embedding, then per layer
//! operator_norm → conv or attention → residual, ffn_norm → dense SwiGLU or MoE → residual,
//! then the final norm, the head and greedy argmax on the GPU. In decode the norms are fused
//! into the mat-vecs that consume them.

use super::gpu_weights::GpuModel;
use super::state::{LayerState, State};
use super::weights::{Ffn, Op};
use crate::error::Result;
use crate::gpu::GpuMatrix;
use crate::kernels::ops::{LinearOp, Recorder, Routing, Shape};
use crate::kernels::{Kernels, Program, Uniforms};

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
/// `h` with the RMSNorm fused into the mat-vec (decode: it reads all of x anyway).
#[derive(Clone, Copy)]
struct Normed<'a> {
    x: &'a wgpu::Buffer,
    norm: Option<(&'a wgpu::Buffer, f32)>,
}

/// The recorder with what every step of the pass shares: state, shape, width, eps.
struct Fwd<'a> {
    r: Recorder<'a>,
    s: &'a State,
    mode: Mode,
    shape: Shape,
    h: u32,
    eps: f32,
}

impl<'a> Fwd<'a> {
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
        }
    }

    /// RMSNorm of the residual stream `h` with weights `g`, for the projections that follow.
    fn norm(&mut self, label: &str, g: &'a wgpu::Buffer) -> Result<Normed<'a>> {
        if self.mode == Mode::Decode {
            return Ok(Normed {
                x: &self.s.h,
                norm: Some((g, self.eps)),
            });
        }
        let last_only = false;
        self.r
            .rmsnorm(label, &self.s.h, g, &self.s.a, self.h as usize, self.eps, last_only)?;
        Ok(Normed {
            x: &self.s.a,
            norm: None,
        })
    }

    /// `y [n] = W·x + bias`.
    fn proj(&mut self, x: Normed, w: &GpuMatrix, bias: Option<&wgpu::Buffer>, y: &wgpu::Buffer, n: u32) -> Result<()> {
        let op = LinearOp {
            bias,
            norm: x.norm,
            ..self.op(x.x, self.h, w, y, n)
        };
        self.r.linear(self.shape, &op)
    }

    /// `y [n] = SiLU(W_gate·x) ⊙ (W_up·x)`; over the routed (token, slot) pairs with `routing`.
    fn glu(
        &mut self,
        x: Normed,
        gate: &GpuMatrix,
        up: &GpuMatrix,
        y: &wgpu::Buffer,
        n: u32,
        routing: Option<&Routing>,
    ) -> Result<()> {
        let op = LinearOp {
            w_up: Some(up),
            norm: x.norm,
            moe: routing.map(|r| (r, r.topk)),
            ..self.op(x.x, self.h, gate, y, n)
        };
        self.r.linear(self.shape, &op)
    }

    /// `h += W·x + bias`: the projection closing a residual branch (x has `k` values a row).
    fn residual(&mut self, x: &wgpu::Buffer, k: u32, w: &GpuMatrix, bias: Option<&wgpu::Buffer>) -> Result<()> {
        let op = LinearOp {
            bias,
            acc: true,
            ..self.op(x, k, w, &self.s.h, self.h)
        };
        self.r.linear(self.shape, &op)
    }

    /// `h += Σ_slot w_slot · W_down[e_slot]·act[slot]` over each token's routed pairs: in
    /// decode one mat-vec summing a token's pairs; in prefill per pair into `ypair`, then
    /// the combine.
    fn experts_down(&mut self, label: &str, routing: &Routing, down: &GpuMatrix, im: u32) -> Result<()> {
        let s = self.s;
        if self.mode == Mode::Decode {
            let op = LinearOp {
                moe: Some((routing, 1)),
                scale: true,
                acc: true,
                combine: true,
                ..self.op(&s.act, im, down, &s.h, self.h)
            };
            return self.r.linear(self.shape, &op);
        }
        let op = LinearOp {
            moe: Some((routing, 1)),
            scale: true,
            ..self.op(&s.act, im, down, &s.ypair, self.h)
        };
        self.r.linear(self.shape, &op)?;
        self.r.moe_combine(label, &s.ypair, &s.h, self.h as usize, routing.topk)
    }
}

/// Records the forward pass of `m` over state `s` for `mode`.
pub fn build(m: &GpuModel, s: &State, k: &Kernels, uniforms: &Uniforms, mode: Mode) -> Result<Program> {
    let (cfg, w) = (&m.cfg, &m.w);
    let h = cfg.hidden_size as u32;
    let shape = match mode {
        Mode::Decode => Shape::Decode,
        _ => Shape::Prefill,
    };
    let mut f = Fwd {
        r: Recorder::new(k, uniforms, &s.step, &s.dummy, s.kv_dtype),
        s,
        mode,
        shape,
        h,
        eps: cfg.norm_eps,
    };
    let heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
    let routing = Routing {
        ids: &s.route_ids,
        weights: &s.route_w,
        offsets: &s.route_off,
        rows: &s.route_rows,
        topk: cfg.num_experts_per_tok as u32,
    };

    // Intermediates named for `lfm logits --dump` (the all-logits program only).
    let taps = mode == Mode::PrefillAllLogits;
    let hs = cfg.hidden_size;

    // model.embed_tokens
    f.r.embed(&s.ids, &w.embed, &s.h)?;
    if taps {
        f.r.tap("model.embed_tokens", &s.h, hs);
    }
    for (i, (layer, ls)) in w.layers.iter().zip(&s.layers).enumerate() {
        let name = |x: &str| format!("model.layers.{i}.{x}");
        // operator_norm, then conv or self_attn, closing with h += out_proj(…)
        let a = f.norm(&name("operator_norm"), &layer.operator_norm)?;
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
                let (hs, kc) = (cfg.hidden_size, cfg.conv_l_cache);
                f.r.short_conv(&name("conv.conv"), &s.z, conv, conv_bias.as_ref(), state, &s.o, hs, kc)?;
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
                let kv = (&cache.k, &cache.v);
                let label = name("self_attn.qk_norm_rope");
                f.r.qk_rope(&label, &s.z, q_norm, k_norm, &s.rope, &s.q, kv, heads, cfg.norm_eps)?;
                f.r.attention(shape, &name("self_attn.attention"), &s.q, kv, &s.part, &s.o, heads)?;
                f.residual(&s.o, (heads.0 * heads.2) as u32, out_proj, None)?;
            }
            _ => unreachable!("layer state is built from the same layer_types"),
        }
        // ffn_norm, then feed_forward, closing with h += down(…)
        let b = f.norm(&name("ffn_norm"), &layer.ffn_norm)?;
        match &layer.ffn {
            Ffn::Dense { gate, up, down } => {
                let iw = cfg.intermediate_size as u32;
                f.glu(b, gate, up, &s.act, iw, None)?;
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
                let (e, norm_topk, scale) = (cfg.num_experts, cfg.norm_topk_prob, cfg.routed_scaling_factor);
                let label = name("feed_forward.router");
                f.r.route(
                    shape,
                    &label,
                    &s.router_logits,
                    expert_bias.as_ref(),
                    &routing,
                    e,
                    norm_topk,
                    scale,
                )?;
                // experts: each sees only the pairs routed to it; h += Σ_slot weighted outputs
                let im = cfg.moe_intermediate_size as u32;
                f.glu(b, gate, up, &s.act, im, Some(&routing))?;
                f.experts_down(&name("feed_forward.combine"), &routing, down, im)?;
            }
        }
        if taps {
            f.r.tap(&format!("model.layers.{i}"), &s.h, hs);
        }
    }
    // model.embedding_norm (the final norm), lm_head (tied: the embedding), argmax → next id
    let v = cfg.vocab_size as u32;
    match mode {
        Mode::Prefill => {
            // Only the last position's logits: its row is normed into row 0.
            f.r.rmsnorm(
                "model.embedding_norm",
                &s.h,
                &w.final_norm,
                &s.a,
                cfg.hidden_size,
                cfg.norm_eps,
                true,
            )?;
            let head = f.op(&s.a, h, w.head(), &s.logits, v);
            f.r.matvec_rows(&head, 1)?;
        }
        _ => {
            let x = f.norm("model.embedding_norm", &w.final_norm)?;
            if taps {
                f.r.tap("model.embedding_norm", &s.a, hs);
            }
            f.proj(x, w.head(), None, &s.logits, v)?;
            if taps {
                f.r.tap("lm_head", &s.logits, cfg.vocab_size);
            }
        }
    }
    f.r.argmax(&s.logits, &s.ids, cfg.vocab_size, mode == Mode::PrefillAllLogits)?;
    Ok(f.r.prog)
}
