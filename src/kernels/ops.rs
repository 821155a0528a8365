//! Host side of every kernel: parameter structs (mirroring each WGSL `Params`) and one
//! method per operation that appends its dispatches — one per weight chunk where a
//! weight is split — to the [`Program`] being built.

use super::bindings::*;
use super::{Dim, Dispatch, Kernel, Kernels, Linear, Program, Uniforms};
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuMatrix};
use bytemuck::{Pod, Zeroable};

/// Output columns of a prefill GEMM tile (shaders/matmul.wgsl; rows: `Linear::matmul_rows`).
const MATMUL_BN: u32 = 64;
/// Queries per workgroup of prefill attention (shaders/attention_prefill.wgsl, BQ).
const ATTN_QUERY_TILE: u32 = 8;
/// Output columns per mat-vec workgroup (shaders/matvec.wgsl).
const MATVEC_ROWS: u32 = 8;

/// `embed.wgsl`: rows [row0, row0 + rows) of the table are in this chunk.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EmbedParams {
    row0: u32,
    rows: u32,
    h: u32,
    w_scales: u32,
}

/// `short_conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    h: u32,
    k: u32,
    has_bias: u32,
    _a: u32,
}

/// `attn_merge.wgsl`, `moe_route.wgsl`, `moe_combine.wgsl`: two sizes (heads × head size,
/// experts × slots, hidden × slots).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PairParams {
    a: u32,
    b: u32,
    _p: [u32; 2],
}

/// `argmax.wgsl` (`advance`, `masked` unused) and `sample.wgsl`: the row length, whether the
/// draw counts (decode) or is one of a batch of test draws, and whether the allowed-token
/// mask applies.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PickParams {
    vocab: u32,
    advance: u32,
    masked: u32,
    _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    n: u32,
    eps: f32,
    _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LinearParams {
    k: u32,
    n: u32,
    col0: u32,
    ldy: u32,
    ldx: u32,
    e0: u32,
    ne: u32,
    xdiv: u32,
    n_per_e: u32,
    topk: u32,
    w_scales: u32,
    eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    nh: u32,
    nkv: u32,
    d: u32,
    ld: u32,
    eps: f32,
    _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttnParams {
    nh: u32,
    nkv: u32,
    d: u32,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RouterParams {
    e: u32,
    k: u32,
    norm: u32,
    has_bias: u32,
    scale: f32,
    _p: [u32; 3],
}

/// Whether a linear op runs for a prompt (tiled GEMM) or one token (mat-vec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Prefill,
    Decode,
}

impl Kernel {
    /// Bytes of the parameter struct the host writes for this kernel (binding 1): the WGSL
    /// `Params` must have this size (`tests/shaders.rs` checks it, and `Recorder::push` that
    /// the struct pushed is this one).
    pub fn params_bytes(&self) -> usize {
        use std::mem::size_of;
        match self {
            Kernel::RmsNorm { .. } => size_of::<NormParams>(),
            Kernel::Matmul(_) | Kernel::Matvec(_) => size_of::<LinearParams>(),
            Kernel::QkRope => size_of::<RopeParams>(),
            Kernel::Attention | Kernel::AttentionPrefill => size_of::<AttnParams>(),
            Kernel::Router => size_of::<RouterParams>(),
            Kernel::Embed => size_of::<EmbedParams>(),
            Kernel::ShortConv => size_of::<ConvParams>(),
            Kernel::AttnMerge | Kernel::MoeRoute | Kernel::MoeCombine => size_of::<PairParams>(),
            Kernel::Argmax { .. } | Kernel::Sample => size_of::<PickParams>(),
            // probe::fma_peak: [iterations, 0, 0, 0].
            Kernel::FmaPeak => size_of::<[u32; 4]>(),
        }
    }
}

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

/// Arguments of one linear op beyond its input/weights/output.
pub struct LinearOp<'a> {
    pub x: &'a wgpu::Buffer,
    /// Row stride of x (values).
    pub ldx: u32,
    pub w: &'a GpuMatrix,
    /// Up projection for GLU (gate is `w`).
    pub w_up: Option<&'a GpuMatrix>,
    pub y: &'a wgpu::Buffer,
    /// Row stride of y (values).
    pub ldy: u32,
    pub bias: Option<&'a wgpu::Buffer>,
    /// Add into y instead of overwriting it (fused residual).
    pub acc: bool,
    /// Routed experts: rows are (token, slot) pairs; `xdiv` maps a pair to its x row.
    pub moe: Option<(&'a Routing<'a>, u32)>,
    /// Multiply by the pair's routing weight.
    pub scale: bool,
    /// Decode only: RMS-normalise x on the fly with these weights and eps (the RMSNorm
    /// before the projection fused into it; x is then the raw residual stream).
    pub norm: Option<(&'a wgpu::Buffer, f32)>,
    /// Decode with `moe`: y row t += Σ_slot of the token's pairs (down projection + combine).
    pub combine: bool,
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

    fn push<'b, P: Pod, B: Bindings<'b>>(
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

    fn set_weight_bytes(&mut self, bytes: u64) {
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

    /// y (+)= W·x with the variants of [`LinearOp`], as tiled GEMM or mat-vec.
    pub fn linear(&mut self, shape: Shape, op: &LinearOp<'_>) -> Result<()> {
        self.linear_grid(shape, op, None)
    }

    /// Mat-vec over the first `rows` rows of x whatever the step's T (the prefill head, which
    /// only needs the last position, normed into row 0).
    pub fn matvec_rows(&mut self, op: &LinearOp<'_>, rows: u32) -> Result<()> {
        self.linear_grid(Shape::Decode, op, Some(rows))
    }

    fn linear_grid(&mut self, shape: Shape, op: &LinearOp<'_>, rows: Option<u32>) -> Result<()> {
        let w = op.w;
        if !op.ldx.is_multiple_of(4) || !w.cols.is_multiple_of(8) {
            return Err(Error::Invalid(format!(
                "{}: x stride {} must be a multiple of 4 and K {} of 8",
                w.label, op.ldx, w.cols
            )));
        }
        if op.norm.is_some() && (shape != Shape::Decode || op.scale) {
            return Err(Error::Invalid(format!(
                "{}: the fused RMSNorm is a decode mat-vec variant without routing-weight scaling",
                w.label
            )));
        }
        if op.combine && (shape != Shape::Decode || op.moe.is_none() || op.w_up.is_some() || op.norm.is_some()) {
            return Err(Error::Invalid(format!(
                "{}: summing a token's routed pairs is a decode mat-vec variant over experts, without GLU or a fused norm",
                w.label
            )));
        }
        if let Some(up) = op.w_up {
            let same = |(a, b): (&crate::gpu::MatChunk, &crate::gpu::MatChunk)| {
                (a.row0, a.rows, a.dtype) == (b.row0, b.rows, b.dtype)
            };
            if up.rows != w.rows
                || up.cols != w.cols
                || up.chunks.len() != w.chunks.len()
                || !w.chunks.iter().zip(&up.chunks).all(same)
            {
                return Err(Error::Invalid(format!(
                    "{} and {}: a gated pair needs the same shape, chunks and formats",
                    w.label, up.label
                )));
            }
        }
        let variant = Linear {
            glu: op.w_up.is_some(),
            gather: op.moe.is_some(),
            bias: op.bias.is_some(),
            scale: op.scale,
            norm: op.norm.is_some(),
            acc: op.acc,
            combine: op.combine,
        };
        let kernel = match shape {
            Shape::Prefill => Kernel::Matmul(variant),
            Shape::Decode => Kernel::Matvec(variant),
        };
        for (i, c) in w.chunks.iter().enumerate() {
            let up = op.w_up.map_or(&c.buffer, |u| &u.chunks[i].buffer);
            let (n, col0, e0, ne, n_per_e) = match op.moe {
                Some(_) => {
                    let g = w.group_rows as u32;
                    (g, 0, c.row0 / g, c.rows / g, g)
                }
                None => (c.rows, c.row0, 0, 1, 0),
            };
            let (routing, xdiv) = op.moe.map_or((None, 1), |(r, d)| (Some(r), d));
            let p = LinearParams {
                k: w.cols as u32,
                n,
                col0,
                ldy: op.ldy,
                ldx: op.ldx,
                e0,
                ne,
                xdiv,
                n_per_e,
                topk: routing.map_or(1, |r| r.topk),
                w_scales: c.scale_word,
                eps: op.norm.map_or(0.0, |(_, eps)| eps),
            };
            let (ra, rb, mut rw) = match (routing, shape) {
                (Some(r), Shape::Prefill) => (r.offsets, r.rows, r.weights),
                (Some(r), Shape::Decode) => (r.ids, self.dummy, r.weights),
                (None, _) => (self.dummy, self.dummy, self.dummy),
            };
            if let Some((g, _)) = op.norm {
                // The variants that normalise never read routing weights: the slot is free.
                rw = g;
            }
            let grid = match (shape, routing) {
                (Shape::Prefill, _) => [
                    Dim::Fixed(n.div_ceil(MATMUL_BN)),
                    Dim::TokensDiv(variant.matmul_rows()),
                    Dim::Fixed(ne),
                ],
                (Shape::Decode, Some(r)) => [
                    Dim::Fixed(n.div_ceil(MATVEC_ROWS)),
                    if op.combine {
                        Dim::Tokens
                    } else {
                        Dim::TokensMul(r.topk)
                    },
                    Dim::Fixed(1),
                ],
                (Shape::Decode, None) => [
                    Dim::Fixed(n.div_ceil(MATVEC_ROWS)),
                    rows.map_or(Dim::Tokens, Dim::Fixed),
                    Dim::Fixed(1),
                ],
            };
            self.push(
                format!("{}[{i}]", w.label),
                kernel,
                c.dtype,
                &p,
                &LinearBindings {
                    x: op.x,
                    w: &c.buffer,
                    w_up: up,
                    y: op.y,
                    bias: op.bias.unwrap_or(self.dummy),
                    route_a: ra,
                    route_b: rb,
                    route_w: rw,
                },
                grid,
            )?;
            let mut bytes = c.buffer.size() * if op.w_up.is_some() { 2 } else { 1 };
            if let (Some(r), Shape::Decode) = (routing, shape) {
                // A token reads its top-k experts; this chunk holds ne of the E.
                let experts = (w.rows / w.group_rows) as u64;
                bytes = bytes / ne as u64 * r.topk as u64 * ne as u64 / experts;
            }
            self.set_weight_bytes(bytes);
        }
        Ok(())
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
            [Dim::TokensDiv(64), Dim::Fixed(1), Dim::Fixed(1)],
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
