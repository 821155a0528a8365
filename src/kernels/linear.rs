//! The linear ops (shaders/lib/linear.wgsl: `matmul.wgsl` for prompts, `matvec.wgsl` for one
//! token): y [T, n] (+)= x [T, K] · Wᵀ, with the variants of [`LinearOp`] (gated pair, routed
//! experts, bias, routing-weight scale, accumulate, fused RMSNorm, per-token combine). One
//! dispatch per weight chunk; a chunk of expert rows holds whole experts.

use super::bindings::LinearBindings;
use super::ops::{Recorder, Routing};
use super::params::LinearParams;
use super::{Dim, Kernel, Linear, Shape, MATVEC_ROWS, NARROW_MAX_ROWS};
use crate::error::{Error, Result};
use crate::gpu::{GpuMatrix, MatChunk};

/// Output columns of a prefill GEMM tile (shaders/matmul.wgsl; rows: `Linear::matmul_rows`).
const MATMUL_BN: u32 = 64;

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
    /// Decode: x quantized to int8 blocks (`Recorder::quantize_x`, with the norm applied):
    /// the chunks in block formats read it through the integer-dot mat-vec; the others read
    /// `x` (with `norm`).
    pub x_q8: Option<&'a wgpu::Buffer>,
}

impl LinearOp<'_> {
    /// The pipeline variant, after checking that `shape` has it and the operands fit it.
    fn variant(&self, shape: Shape, matvec_rows: u8) -> Result<Linear> {
        let w = self.w;
        let refuse = |what: &str| Err(Error::Invalid(format!("{}: {what}", w.label)));
        if !self.ldx.is_multiple_of(4) || !w.cols.is_multiple_of(8) {
            return refuse(&format!(
                "x stride {} must be a multiple of 4 and K {} of 8",
                self.ldx, w.cols
            ));
        }
        if self.norm.is_some() && (shape != Shape::Decode || self.scale) {
            return refuse("the fused RMSNorm is a decode mat-vec variant without routing-weight scaling");
        }
        let plain_experts = self.moe.is_some() && self.w_up.is_none() && self.norm.is_none();
        if self.combine && (shape != Shape::Decode || !plain_experts) {
            return refuse(
                "summing a token's routed pairs is a decode mat-vec variant over experts, without GLU or a fused norm",
            );
        }
        if let Some(up) = self.w_up {
            let same = |(a, b): (&MatChunk, &MatChunk)| (a.row0, a.rows, a.dtype) == (b.row0, b.rows, b.dtype);
            if (up.rows, up.cols, up.chunks.len()) != (w.rows, w.cols, w.chunks.len())
                || !w.chunks.iter().zip(&up.chunks).all(same)
            {
                return Err(Error::Invalid(format!(
                    "{} and {}: a gated pair needs the same shape, chunks and formats",
                    w.label, up.label
                )));
            }
        }
        Ok(Linear {
            glu: self.w_up.is_some(),
            gather: self.moe.is_some(),
            bias: self.bias.is_some(),
            scale: self.scale,
            norm: self.norm.is_some(),
            acc: self.acc,
            combine: self.combine,
            rows: match shape {
                Shape::Prefill => MATVEC_ROWS,
                Shape::Decode if self.moe.is_none() && w.rows <= NARROW_MAX_ROWS => 1,
                Shape::Decode => matvec_rows,
            },
        })
    }

    /// The parameters of chunk `c`: output columns n from col0 (dense), or ne whole experts
    /// of n rows each from expert e0 (routed).
    fn params(&self, c: &MatChunk) -> LinearParams {
        let routing = self.moe.map(|(r, _)| r);
        let (n, col0, e0, ne, n_per_e) = match routing {
            Some(_) => {
                let g = self.w.group_rows as u32;
                (g, 0, c.row0 / g, c.rows / g, g)
            }
            None => (c.rows, c.row0, 0, 1, 0),
        };
        LinearParams {
            k: self.w.cols as u32,
            n,
            col0,
            ldy: self.ldy,
            ldx: self.ldx,
            e0,
            ne,
            xdiv: self.moe.map_or(1, |(_, d)| d),
            n_per_e,
            topk: routing.map_or(1, |r| r.topk),
            w_scales: c.scale_word,
            eps: self.norm.map_or(0.0, |(_, eps)| eps),
        }
    }

    /// The workgroup grid of a chunk with these parameters: GEMM tiles over (columns, rows,
    /// experts); mat-vec rows of `matvec_rows` columns over tokens, (token, slot) pairs, or
    /// `rows` fixed rows.
    fn grid(&self, shape: Shape, v: Linear, p: &LinearParams, rows: Option<u32>) -> [Dim; 3] {
        let columns = match shape {
            Shape::Prefill => p.n.div_ceil(MATMUL_BN),
            Shape::Decode => p.n.div_ceil(v.matvec_rows()),
        };
        let y = match (shape, self.moe) {
            (Shape::Prefill, _) => Dim::TokensDiv(v.matmul_rows()),
            (Shape::Decode, Some(_)) if self.combine => Dim::Tokens,
            (Shape::Decode, Some((r, _))) => Dim::TokensMul(r.topk),
            (Shape::Decode, None) => rows.map_or(Dim::Tokens, Dim::Fixed),
        };
        let z = match shape {
            Shape::Prefill => p.ne,
            Shape::Decode => 1,
        };
        [Dim::Fixed(columns), y, Dim::Fixed(z)]
    }

    /// Weight bytes a dispatch over chunk `c` reads per token: all of it, or in decode over
    /// routed experts its share of the top-k of all E experts (k / E of it).
    fn bytes_read(&self, shape: Shape, c: &MatChunk) -> u64 {
        let bytes = c.buffer.size() * if self.w_up.is_some() { 2 } else { 1 };
        match (self.moe, shape) {
            (Some((r, _)), Shape::Decode) => {
                let experts = (self.w.rows / self.w.group_rows) as u64;
                bytes * r.topk as u64 / experts
            }
            _ => bytes,
        }
    }
}

impl Recorder<'_> {
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
        let variant = op.variant(shape, self.k.gpu.matvec_rows)?;
        let kernel = match shape {
            Shape::Prefill => Kernel::Matmul(variant),
            Shape::Decode => Kernel::Matvec(variant),
        };
        let routing = op.moe.map(|(r, _)| r);
        // Prefill reads each expert's pair list; decode each pair's expert. The variants
        // that normalise never read routing weights, so the norm's gain takes that slot
        // (WebGPU's default limit is 8 storage buffers per stage, all taken here).
        let (route_a, route_b, weights) = match (routing, shape) {
            (Some(r), Shape::Prefill) => (r.offsets, r.rows, r.weights),
            (Some(r), Shape::Decode) => (r.ids, self.dummy, r.weights),
            (None, _) => (self.dummy, self.dummy, self.dummy),
        };
        for (i, c) in op.w.chunks.iter().enumerate() {
            let p = op.params(c);
            // Block formats on int8 activations when the op has them (the norm is in them).
            let (kernel, x, route_w) = match op.x_q8 {
                Some(xq) if shape == Shape::Decode && c.dtype.is_block() => {
                    (Kernel::MatvecQ8(Linear { norm: false, ..variant }), xq, weights)
                }
                _ => (kernel, op.x, op.norm.map_or(weights, |(gain, _)| gain)),
            };
            let bindings = LinearBindings {
                x,
                w: &c.buffer,
                w_up: op.w_up.map_or(&c.buffer, |u| &u.chunks[i].buffer),
                y: op.y,
                bias: op.bias.unwrap_or(self.dummy),
                route_a,
                route_b,
                route_w,
            };
            let grid = op.grid(shape, variant, &p, rows);
            self.push(format!("{}[{i}]", op.w.label), kernel, c.dtype, &p, &bindings, grid)?;
            self.set_weight_bytes(op.bytes_read(shape, c));
        }
        Ok(())
    }
}
