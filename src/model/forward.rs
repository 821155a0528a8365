//! THE forward pass (spec §4), recorded once per mode into a [`Program`] whose grids follow
//! the step's token count. Read it top to bottom: embedding, then per layer
//! operator_norm → conv or attention → residual, ffn_norm → dense SwiGLU or MoE → residual,
//! then the final norm, the head and greedy argmax on the GPU. In decode the norms are fused
//! into the mat-vecs that consume them.

use super::gpu_weights::GpuModel;
use super::state::{LayerState, State};
use super::weights::{Ffn, Op};
use crate::error::Result;
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

/// Records the forward pass of `m` over state `s` for `mode`.
pub fn build(m: &GpuModel, s: &State, k: &Kernels, uniforms: &Uniforms, mode: Mode) -> Result<Program> {
    let cfg = &m.cfg;
    let w = &m.w;
    let shape = match mode {
        Mode::Decode => Shape::Decode,
        _ => Shape::Prefill,
    };
    let h = cfg.hidden_size as u32;
    let eps = cfg.norm_eps;
    let topk = cfg.num_experts_per_tok as u32;
    let mut r = Recorder {
        k,
        uniforms,
        step: &s.step,
        dummy: &s.dummy,
        kv: s.kv_dtype,
        prog: Program::default(),
    };
    let linear = |x, ldx, w, y, ldy| LinearOp {
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
    };

    // RMSNorm before projections: in decode it is fused into the mat-vecs that read it (they
    // take the raw residual `h` and the norm weights); in prefill it is a dispatch into `a`.
    let fuse = mode == Mode::Decode;
    let norm_into = |r: &mut Recorder, label: &str, g: &wgpu::Buffer, last_only: bool| -> Result<()> {
        match fuse {
            true => Ok(()),
            false => r.rmsnorm(label, &s.h, g, &s.a, cfg.hidden_size, eps, last_only),
        }
    };
    // (x, norm) for a projection of the normed stream with weights g.
    let normed = |g| match fuse {
        true => (&s.h, Some((g, eps))),
        false => (&s.a, None),
    };

    r.embed(&s.ids, &w.embed, &s.h)?;
    for (i, (layer, ls)) in w.layers.iter().zip(&s.layers).enumerate() {
        let name = |x: &str| format!("model.layers.{i}.{x}");
        norm_into(&mut r, &name("operator_norm"), &layer.operator_norm, false)?;
        let (xa, norm) = normed(&layer.operator_norm);
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
                let zw = 3 * h;
                r.linear(
                    shape,
                    &LinearOp {
                        bias: in_bias.as_ref(),
                        norm,
                        ..linear(xa, h, in_proj, &s.z, zw)
                    },
                )?;
                r.short_conv(
                    &name("conv.conv"),
                    &s.z,
                    conv,
                    conv_bias.as_ref(),
                    state,
                    &s.o,
                    cfg.hidden_size,
                    cfg.conv_l_cache,
                )?;
                r.linear(
                    shape,
                    &LinearOp {
                        bias: out_bias.as_ref(),
                        acc: true,
                        ..linear(&s.o, h, out_proj, &s.h, h)
                    },
                )?;
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
                let heads = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
                let hd = (heads.0 * heads.2) as u32;
                r.linear(
                    shape,
                    &LinearOp {
                        norm,
                        ..linear(xa, h, qkv, &s.z, cfg.qkv_dim() as u32)
                    },
                )?;
                r.qk_rope(
                    &name("self_attn.qk_norm_rope"),
                    &s.z,
                    q_norm,
                    k_norm,
                    &s.rope,
                    &s.q,
                    (&cache.k, &cache.v),
                    heads,
                    eps,
                )?;
                r.attention(
                    shape,
                    &name("self_attn.attention"),
                    &s.q,
                    (&cache.k, &cache.v),
                    &s.part,
                    &s.o,
                    heads,
                )?;
                r.linear(
                    shape,
                    &LinearOp {
                        acc: true,
                        ..linear(&s.o, hd, out_proj, &s.h, h)
                    },
                )?;
            }
            _ => unreachable!("layer state is built from the same layer_types"),
        }
        norm_into(&mut r, &name("ffn_norm"), &layer.ffn_norm, false)?;
        let (xa, norm) = normed(&layer.ffn_norm);
        match &layer.ffn {
            Ffn::Dense { gate, up, down } => {
                let iw = cfg.intermediate_size as u32;
                r.linear(
                    shape,
                    &LinearOp {
                        w_up: Some(up),
                        norm,
                        ..linear(xa, h, gate, &s.act, iw)
                    },
                )?;
                r.linear(
                    shape,
                    &LinearOp {
                        acc: true,
                        ..linear(&s.act, iw, down, &s.h, h)
                    },
                )?;
            }
            Ffn::Moe {
                router,
                expert_bias,
                gate,
                up,
                down,
            } => {
                let e = cfg.num_experts as u32;
                let im = cfg.moe_intermediate_size as u32;
                let routing = Routing {
                    ids: &s.route_ids,
                    weights: &s.route_w,
                    offsets: &s.route_off,
                    rows: &s.route_rows,
                    topk,
                };
                r.linear(
                    shape,
                    &LinearOp {
                        norm,
                        ..linear(xa, h, router, &s.router_logits, e)
                    },
                )?;
                r.route(
                    shape,
                    &name("feed_forward.router"),
                    &s.router_logits,
                    expert_bias.as_ref(),
                    &routing,
                    cfg.num_experts,
                    cfg.norm_topk_prob,
                    cfg.routed_scaling_factor,
                )?;
                // Experts see only the (token, slot) pairs routed to them.
                r.linear(
                    shape,
                    &LinearOp {
                        w_up: Some(up),
                        moe: Some((&routing, topk)),
                        norm,
                        ..linear(xa, h, gate, &s.act, im)
                    },
                )?;
                r.linear(
                    shape,
                    &LinearOp {
                        moe: Some((&routing, 1)),
                        scale: true,
                        ..linear(&s.act, im, down, &s.ypair, h)
                    },
                )?;
                r.moe_combine(&name("feed_forward.combine"), &s.ypair, &s.h, cfg.hidden_size, topk)?;
            }
        }
    }
    norm_into(&mut r, "model.embedding_norm", &w.final_norm, mode == Mode::Prefill)?;
    let (xa, norm) = normed(&w.final_norm);
    let v = cfg.vocab_size as u32;
    let head = LinearOp {
        norm,
        ..linear(xa, h, w.head(), &s.logits, v)
    };
    if mode == Mode::Prefill {
        // Only the last position's logits: it was normed into row 0.
        r.matvec_rows(&head, 1)?;
    } else {
        r.linear(shape, &head)?;
    }
    r.argmax(&s.logits, &s.ids, cfg.vocab_size, mode == Mode::PrefillAllLogits)?;
    Ok(r.prog)
}
