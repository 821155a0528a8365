//! Each kernel's storage bindings, declared once. Binding 0 is the step uniform and binding 1
//! the kernel's parameters; the fields of a bindings struct follow, in binding order from 2,
//! named as in the WGSL. The same declaration gives the pipeline layout (`SLOTS`), the bind
//! group (`buffers`) and the names `tests/shaders.rs` checks against the shader (`NAMES`).

use super::Slot;

/// A kernel's storage bindings after its two uniforms.
pub trait Bindings<'a> {
    /// What each binding holds, from binding 2 on.
    const SLOTS: &'static [Slot];
    /// The WGSL variable of each binding, from binding 2 on.
    const NAMES: &'static [&'static str];
    /// The buffers, in binding order.
    fn buffers(&self) -> Vec<&'a wgpu::Buffer>;
}

macro_rules! bindings {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $slot:ident),* $(,)? }) => {
        $(#[$doc])*
        pub struct $name<'a> {
            $(pub $field: &'a wgpu::Buffer,)*
        }

        impl<'a> Bindings<'a> for $name<'a> {
            const SLOTS: &'static [Slot] = &[$(Slot::$slot),*];
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];
            fn buffers(&self) -> Vec<&'a wgpu::Buffer> {
                vec![$(self.$field),*]
            }
        }
    };
}

bindings!(
    /// `embed.wgsl`: ids [T] → out [T, H] from the table chunk `w`.
    EmbedBindings { ids: Read, w: Read, out: ReadWrite }
);
bindings!(
    /// `rmsnorm.wgsl`: y = x / rms(x) ⊙ w.
    RmsNormBindings { x: Read, w: Read, y: ReadWrite }
);
bindings!(
    /// `lib/linear.wgsl` (matmul, matvec, matvec_q8 with x quantized): y (+)= W·x with the variant's extra inputs
    /// (the dummy where a variant reads nothing).
    LinearBindings {
        x: Read,
        w: Read,
        w_up: Read,
        y: ReadWrite,
        bias: Read,
        route_a: Read,
        route_b: Read,
        route_w: Read,
    }
);
bindings!(
    /// `quantize_x.wgsl`: rows of x (with NORM the raw residual, normed with gains g) →
    /// int8 blocks for `matvec_q8.wgsl`.
    QuantizeXBindings { x: Read, g: Read, xq: ReadWrite }
);
bindings!(
    /// `short_conv.wgsl`: z = B | C | x → y, through the conv taps and the state.
    ShortConvBindings { z: Read, taps: Read, bias: Read, state: ReadWrite, y: ReadWrite }
);
bindings!(
    /// `qk_rope.wgsl`: q|k|v → normed, rotated q, and the k / v cache rows.
    QkRopeBindings {
        qkv: Read,
        q_norm: Read,
        k_norm: Read,
        rope: Read,
        q_out: ReadWrite,
        k_cache: ReadWrite,
        v_cache: ReadWrite,
    }
);
bindings!(
    /// `attention.wgsl` (decode): each split's partial output and its softmax statistics.
    AttentionBindings { q: Read, k_cache: Read, v_cache: Read, part: ReadWrite }
);
bindings!(
    /// `attention_prefill.wgsl`: the output written directly.
    AttentionPrefillBindings { q: Read, k_cache: Read, v_cache: Read, o: ReadWrite }
);
bindings!(
    /// `attn_merge.wgsl`: the splits' partials merged into o.
    AttnMergeBindings { part: Read, o: ReadWrite }
);
bindings!(
    /// `router.wgsl`: router logits → expert ids and weights per token.
    RouterBindings { logits: Read, expert_bias: Read, ids: ReadWrite, wts: ReadWrite }
);
bindings!(
    /// `moe_route.wgsl`: per-expert pair counts, offsets and lists.
    MoeRouteBindings { ids: Read, off: ReadWrite, rows: ReadWrite }
);
bindings!(
    /// `moe_combine.wgsl`: hidden += Σ_slot y.
    MoeCombineBindings { y: Read, hidden: ReadWrite }
);
bindings!(
    /// `argmax.wgsl`: the greedy id of a logits row.
    ArgmaxBindings { logits: Read, out: ReadWrite }
);
bindings!(
    /// `sample.wgsl`: the sampler's settings, the logits, the drawn id, the seen-token state
    /// and the allowed-token mask.
    SampleBindings { cfg: Read, logits: Read, out: ReadWrite, state: ReadWrite, allowed: Read }
);
bindings!(
    /// `fma_peak.wgsl`: the probe's sink.
    FmaPeakBindings { out: ReadWrite }
);
