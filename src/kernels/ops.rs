//! Host side of every kernel but the linear ones (`linear.rs`): one method per operation that appends its dispatches — one per weight chunk where a
//! weight is split — to the [`Program`] being built.

use super::bindings::*;
use super::params::*;
use super::{Dim, Dispatch, Kernel, Kernels, Program, Shape, Uniforms};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuMatrix};
use bytemuck::Pod;

/// Queries per workgroup of prefill attention (shaders/attention_prefill.wgsl, BQ).
const ATTN_QUERY_TILE: u32 = 8;

/// Routing buffers of one MoE layer.
pub struct Routing<'a> {
    /// [T·k] expert of each (token, slot) pair
    pub ids: &'a wgpu::Buffer,
    /// [T·k] weight of each pair
    pub weights: &'a wgpu::Buffer,
    /// [E+1] start of each expert's pairs in `rows`
    pub offsets: &'a wgpu::Buffer,
    /// [T·k] pair ids grouped by expert
    pub rows: &'a wgpu::Buffer,
    pub topk: u32,
}

/// Builds a [`Program`]: every op creates its bind groups and parameters once, here.
pub struct Recorder<'a> {
    pub k: &'a Kernels,
    pub uniforms: &'a Uniforms,
    pub step: &'a wgpu::Buffer,
    /// 16 bytes bound where a variant does not read a slot.
    pub dummy: &'a wgpu::Buffer,
    pub kv: DType,
    pub prog: Program,
}

impl<'a> Recorder<'a> {
    /// An empty program recorded against these kernels, parameter arena, step uniform and
    /// dummy binding, for a KV cache stored as `kv`.
    pub fn new(
        k: &'a Kernels,
        uniforms: &'a Uniforms,
        step: &'a wgpu::Buffer,
        dummy: &'a wgpu::Buffer,
        kv: DType,
    ) -> Self {
        Recorder {
            k,
            uniforms,
            step,
            dummy,
            kv,
            prog: Program::default(),
        }
    }

    pub(super) fn push<'b, P: Pod, B: Bindings<'b>>(
        &mut self,
        label: String,
        kernel: Kernel,
        weights: DType,
        params: &P,
        bindings: &B,
        grid: [Dim; 3],
    ) -> Result<()> {
        let gpu = &self.k.gpu;
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        for d in grid {
            if let Dim::Fixed(n) = d {
                if n > max {
                    return Err(Error::Limit {
                        what: format!("{label}: workgroups in one grid dimension"),
                        needed: n as u64,
                        limit: max as u64,
                    });
                }
            }
        }
        if std::mem::size_of::<P>() != kernel.params_bytes() {
            return Err(Error::Invalid(format!(
                "{label}: {} parameter bytes pushed for {kernel:?}, which takes {}",
                std::mem::size_of::<P>(),
                kernel.params_bytes()
            )));
        }
        if B::NAMES != kernel.storage_bindings().1 {
            return Err(Error::Invalid(format!(
                "{label}: bindings {:?} recorded for {kernel:?}, which binds {:?}",
                B::NAMES,
                kernel.storage_bindings().1
            )));
        }
        if kernel.storage_dependent().0 && !kernel.weight_formats().contains(&weights) {
            return Err(Error::Invalid(format!(
                "{label}: {kernel:?} has no pipeline for {weights} weights"
            )));
        }
        let pipeline = self.k.get(self.k.key(kernel, weights, self.kv))?;
        let pb = self.uniforms.push(gpu, params)?;
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: self.step.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: pb.binding(),
            },
        ];
        for (i, b) in bindings.buffers().into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 2 + i as u32,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = gpu.scoped(&format!("binding {label}"), || {
            Ok(gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&label),
                layout: &pipeline.layout,
                entries: &entries,
            }))
        })?;
        self.prog.dispatches.push(Dispatch {
            label,
            pipeline,
            bind_group,
            grid,
            weight_bytes: 0,
        });
        Ok(())
    }

    /// Names what `buffer` holds at this point of the program (`row_values` per token).
    pub fn tap(&mut self, name: &str, buffer: &wgpu::Buffer, row_values: usize) {
        self.prog.taps.push(crate::kernels::Tap {
            name: name.to_string(),
            after: self.prog.dispatches.len(),
            buffer: buffer.clone(),
            row_values,
        });
    }

    pub(super) fn set_weight_bytes(&mut self, bytes: u64) {
        if let Some(d) = self.prog.dispatches.last_mut() {
            d.weight_bytes = bytes;
        }
    }

    /// out [T, H] = table[ids[t]] (per vocab chunk).
    pub fn embed(&mut self, ids: &wgpu::Buffer, table: &GpuMatrix, out: &wgpu::Buffer) -> Result<()> {
        for (i, c) in table.chunks.iter().enumerate() {
            let p = EmbedParams {
                row0: c.row0,
                rows: c.rows,
                h: table.cols as u32,
                w_scales: c.scale_word,
            };
            self.push(
                format!("{}.gather[{i}]", table.label),
                Kernel::Embed,
                c.dtype,
                &p,
                &EmbedBindings { ids, w: &c.buffer, out },
                [Dim::Tokens, Dim::Fixed(1), Dim::Fixed(1)],
            )?;
            // One row per token, spread over the chunks.
            self.set_weight_bytes(c.dtype.row_bytes(table.cols) * c.rows as u64 / table.rows as u64);
        }
        Ok(())
    }

    /// y = RMSNorm(x) over rows of `n` (rows: T, or 1 with `last_only`).
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(
        &mut self,
        label: &str,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        y: &wgpu::Buffer,
        n: usize,
        eps: f32,
        last_only: bool,
    ) -> Result<()> {
        let p = NormParams {
            n: n as u32,
            eps,
            _p: [0; 2],
        };
        let rows = if last_only { Dim::Fixed(1) } else { Dim::Tokens };
        self.push(
            label.to_string(),
            Kernel::RmsNorm { last_only },
            DType::F32,
            &p,
            &RmsNormBindings { x, w, y },
            [rows, Dim::Fixed(1), Dim::Fixed(1)],
        )
    }

    /// xq = int8 blocks of `rows` rows of x (`k` values at stride `ldx`) for the integer-dot
    /// mat-vec, RMS-normalised first with gains `g` when given (shaders/quantize_x.wgsl).
    #[allow(clippy::too_many_arguments)]
    pub fn quantize_x(
        &mut self,
        label: &str,
        x: &wgpu::Buffer,
        k: u32,
        ldx: u32,
        norm: Option<(&wgpu::Buffer, f32)>,
        xq: &wgpu::Buffer,
        rows: Dim,
    ) -> Result<()> {
        if !k.is_multiple_of(32) || !ldx.is_multiple_of(4) {
            return Err(Error::Invalid(format!(
                "{label}: quantized activations need K {k} a multiple of 32 and a stride {ldx} of 4"
            )));
        }
        let p = QuantizeXParams {
            k,
            ldx,
            eps: norm.map_or(0.0, |(_, eps)| eps),
            _a: 0,
        };
        let g = norm.map_or(self.dummy, |(g, _)| g);
        self.push(
            label.to_string(),
            Kernel::QuantizeX { norm: norm.is_some() },
            DType::F32,
            &p,
            &QuantizeXBindings { x, g, xq },
            [Dim::Fixed(1), rows, Dim::Fixed(1)],
        )
    }

    /// y [T, H] = C ⊙ conv(B ⊙ x) from z [T, 3H], continuing and updating `state`.
    #[allow(clippy::too_many_arguments)]
    pub fn short_conv(
        &mut self,
        label: &str,
        z: &wgpu::Buffer,
        taps: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        state: &wgpu::Buffer,
        y: &wgpu::Buffer,
        h: usize,
        k: usize,
    ) -> Result<()> {
        let p = ConvParams {
            h: h as u32,
            k: k as u32,
            has_bias: bias.is_some() as u32,
            _a: 0,
        };
        self.push(
            label.to_string(),
            Kernel::ShortConv,
            DType::F32,
            &p,
            &ShortConvBindings {
                z,
                taps,
                bias: bias.unwrap_or(self.dummy),
                state,
                y,
            },
            [Dim::Fixed((h as u32).div_ceil(64)), Dim::Fixed(1), Dim::Fixed(1)],
        )
    }

    /// q/k per-head norm + RoPE, q to `q`, k and v into the caches at pos0 + t.
    #[allow(clippy::too_many_arguments)]
    pub fn qk_rope(
        &mut self,
        label: &str,
        qkv: &wgpu::Buffer,
        q_norm: &wgpu::Buffer,
        k_norm: &wgpu::Buffer,
        rope: &wgpu::Buffer,
        q: &wgpu::Buffer,
        (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
        (nh, nkv, d): (usize, usize, usize),
        eps: f32,
    ) -> Result<()> {
        let p = RopeParams {
            nh: nh as u32,
            nkv: nkv as u32,
            d: d as u32,
            ld: ((nh + 2 * nkv) * d) as u32,
            eps,
            _p: [0; 3],
        };
        self.push(
            label.to_string(),
            Kernel::QkRope,
            DType::F32,
            &p,
            &QkRopeBindings {
                qkv,
                q_norm,
                k_norm,
                rope,
                q_out: q,
                k_cache,
                v_cache,
            },
            [Dim::Fixed((nh + nkv) as u32), Dim::Tokens, Dim::Fixed(1)],
        )
    }

    /// o [T, nh·d] = causal softmax(q·kᵀ/√d)·v over the caches: prefill in query tiles, decode
    /// split along the KV length (then merged).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        shape: Shape,
        label: &str,
        q: &wgpu::Buffer,
        (k_cache, v_cache): (&wgpu::Buffer, &wgpu::Buffer),
        part: &wgpu::Buffer,
        o: &wgpu::Buffer,
        (nh, nkv, d): (usize, usize, usize),
    ) -> Result<()> {
        let p = AttnParams {
            nh: nh as u32,
            nkv: nkv as u32,
            d: d as u32,
            scale: 1.0 / (d as f32).sqrt(),
        };
        if shape == Shape::Prefill {
            // Query tiles of 8 (shaders/attention_prefill.wgsl): K/V read once per tile.
            return self.push(
                format!("{label}.prefill"),
                Kernel::AttentionPrefill,
                DType::F32,
                &p,
                &AttentionPrefillBindings { q, k_cache, v_cache, o },
                [Dim::TokensDiv(ATTN_QUERY_TILE), Dim::Fixed(nh as u32), Dim::Fixed(1)],
            );
        }
        self.push(
            format!("{label}.scores"),
            Kernel::Attention,
            DType::F32,
            &p,
            &AttentionBindings {
                q,
                k_cache,
                v_cache,
                part,
            },
            [Dim::Splits, Dim::Fixed(nh as u32), Dim::Tokens],
        )?;
        let p = PairParams {
            a: nh as u32,
            b: d as u32,
            _p: [0; 2],
        };
        self.push(
            format!("{label}.merge"),
            Kernel::AttnMerge,
            DType::F32,
            &p,
            &AttnMergeBindings { part, o },
            [Dim::Fixed(nh as u32), Dim::Tokens, Dim::Fixed(1)],
        )
    }

    /// Expert choice per token from router logits [T, E] into `r.ids` / `r.weights`;
    /// for prefill also the per-expert pair lists.
    #[allow(clippy::too_many_arguments)]
    pub fn route(
        &mut self,
        shape: Shape,
        label: &str,
        logits: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        r: &Routing<'_>,
        experts: usize,
        norm: bool,
        scale: f32,
    ) -> Result<()> {
        let p = RouterParams {
            e: experts as u32,
            k: r.topk,
            norm: norm as u32,
            has_bias: bias.is_some() as u32,
            scale,
            _p: [0; 3],
        };
        self.push(
            format!("{label}.topk"),
            Kernel::Router,
            DType::F32,
            &p,
            &RouterBindings {
                logits,
                expert_bias: bias.unwrap_or(self.dummy),
                ids: r.ids,
                wts: r.weights,
            },
            [Dim::Tokens, Dim::Fixed(1), Dim::Fixed(1)],
        )?;
        if shape == Shape::Prefill {
            let p = PairParams {
                a: experts as u32,
                b: r.topk,
                _p: [0; 2],
            };
            self.push(
                format!("{label}.group"),
                Kernel::MoeRoute,
                DType::F32,
                &p,
                &MoeRouteBindings {
                    ids: r.ids,
                    off: r.offsets,
                    rows: r.rows,
                },
                [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(1)],
            )?;
        }
        Ok(())
    }

    /// h [T, H] += Σ_slot y [T·k, H].
    pub fn moe_combine(
        &mut self,
        label: &str,
        y: &wgpu::Buffer,
        h: &wgpu::Buffer,
        hidden: usize,
        topk: u32,
    ) -> Result<()> {
        let p = PairParams {
            a: hidden as u32,
            b: topk,
            _p: [0; 2],
        };
        self.push(
            label.to_string(),
            Kernel::MoeCombine,
            DType::F32,
            &p,
            &MoeCombineBindings { y, hidden: h },
            [Dim::Fixed((hidden as u32).div_ceil(64)), Dim::Tokens, Dim::Fixed(1)],
        )
    }

    /// out[0] = argmax of one logits row (row T−1 with `last_row`, else row 0).
    pub fn argmax(&mut self, logits: &wgpu::Buffer, out: &wgpu::Buffer, vocab: usize, last_row: bool) -> Result<()> {
        let p = PickParams {
            vocab: vocab as u32,
            advance: 0,
            masked: 0,
            _p: 0,
        };
        self.push(
            "argmax".into(),
            Kernel::Argmax { last_row },
            DType::F32,
            &p,
            &ArgmaxBindings { logits, out },
            [Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(1)],
        )
    }

    /// out[d] = a token drawn from logits row 0 with the sampling settings in `cfg` (see
    /// shaders/sample.wgsl), for `draws` independent draws. `advance`: count the draw in
    /// `state[0]` and mark the token seen (decode); off for test batches. `allowed`: the
    /// bit mask of the tokens that may be drawn (⌈vocab / 32⌉ words), or None.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &mut self,
        cfg: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        out: &wgpu::Buffer,
        state: &wgpu::Buffer,
        allowed: Option<&wgpu::Buffer>,
        vocab: usize,
        draws: u32,
        advance: bool,
    ) -> Result<()> {
        let p = PickParams {
            vocab: vocab as u32,
            advance: advance as u32,
            masked: allowed.is_some() as u32,
            _p: 0,
        };
        // Unmasked, the binding is any read-only buffer (never read).
        let allowed = allowed.unwrap_or(cfg);
        self.push(
            "sample".into(),
            Kernel::Sample,
            DType::F32,
            &p,
            &SampleBindings {
                cfg,
                logits,
                out,
                state,
                allowed,
            },
            [Dim::Fixed(draws), Dim::Fixed(1), Dim::Fixed(1)],
        )
    }
}
