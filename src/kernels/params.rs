//! The parameter struct of every kernel (binding 1, a uniform), field for field the WGSL
//! `Params` of its shader: `Kernel::params_bytes` gives the size `tests/shaders.rs` checks
//! against the shader and `Recorder::push` against the struct pushed.

use super::Kernel;
use bytemuck::{Pod, Zeroable};

/// `quantize_x.wgsl`: rows of `k` values at stride `ldx` → int8 blocks (RMS-normalised
/// first with `eps` when NORM).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct QuantizeXParams {
    pub k: u32,
    pub ldx: u32,
    pub eps: f32,
    pub _a: u32,
}

/// `embed.wgsl`: rows [row0, row0 + rows) of the table are in this chunk.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct EmbedParams {
    pub row0: u32,
    pub rows: u32,
    pub h: u32,
    pub w_scales: u32,
}

/// `short_conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ConvParams {
    pub h: u32,
    pub k: u32,
    pub has_bias: u32,
    pub _a: u32,
}

/// `attn_merge.wgsl`, `moe_route.wgsl`, `moe_combine.wgsl`: two sizes (heads × head size,
/// experts × slots, hidden × slots).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct PairParams {
    pub a: u32,
    pub b: u32,
    pub _p: [u32; 2],
}

/// `argmax.wgsl` (`advance`, `masked` unused) and `sample.wgsl`: the row length, whether the
/// draw counts (decode) or is one of a batch of test draws, and whether the allowed-token
/// mask applies.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct PickParams {
    pub vocab: u32,
    pub advance: u32,
    pub masked: u32,
    pub _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct NormParams {
    pub n: u32,
    pub eps: f32,
    pub _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RopeParams {
    pub nh: u32,
    pub nkv: u32,
    pub d: u32,
    pub ld: u32,
    pub eps: f32,
    pub _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AttnParams {
    pub nh: u32,
    pub nkv: u32,
    pub d: u32,
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RouterParams {
    pub e: u32,
    pub k: u32,
    pub norm: u32,
    pub has_bias: u32,
    pub scale: f32,
    pub _p: [u32; 3],
}

/// `Params` of shaders/lib/linear.wgsl, for one weight chunk.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct LinearParams {
    pub k: u32,
    pub n: u32,
    pub col0: u32,
    pub ldy: u32,
    pub ldx: u32,
    pub e0: u32,
    pub ne: u32,
    pub xdiv: u32,
    pub n_per_e: u32,
    pub topk: u32,
    pub w_scales: u32,
    pub eps: f32,
}

impl Kernel {
    /// Bytes of the parameter struct the host writes for this kernel (binding 1): the WGSL
    /// `Params` must have this size (`tests/shaders.rs` checks it, and `Recorder::push` that
    /// the struct pushed is this one).
    pub fn params_bytes(&self) -> usize {
        use std::mem::size_of;
        match self {
            Kernel::RmsNorm { .. } => size_of::<NormParams>(),
            Kernel::Matmul(_) | Kernel::Matvec(_) | Kernel::MatvecQ8(_) => size_of::<LinearParams>(),
            Kernel::QuantizeX { .. } => size_of::<QuantizeXParams>(),
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
