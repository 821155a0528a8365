//! The structure of the recorded programs, checked on wgpu's no-op device (no adapter, no
//! GPU: it validates and records, runs nothing): how many dispatches a token takes for the
//! LFM2-8B-A1B layer schedule, that decode has no separate MoE combine, and that a decode
//! step is one pass in one submission with no readback inside it.

use lfm_wgpu::gpu::{context::parse_backend, DType, Gpu, GpuOptions};
use lfm_wgpu::model::config::{Config, LayerKind};
use lfm_wgpu::model::forward::Mode;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Activations, Session};
use lfm_wgpu::model::state::SessionOptions;
use lfm_wgpu::model::synthetic::Synthetic;
use std::sync::Arc;

/// The 24-layer schedule of LFM2-8B-A1B (attention at 2, 6, 10, 14, 18, 21; two dense
/// layers) at a width small enough for a test.
fn narrow_lfm2_8b_a1b() -> Config {
    let mut c = Config::lfm2_8b_a1b(24).expect("built-in shape");
    c.vocab_size = 512;
    c.hidden_size = 128;
    c.intermediate_size = 256;
    c.moe_intermediate_size = 64;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 32;
    c
}

fn session(cfg: Config, activations: Activations) -> Session {
    let opts = GpuOptions {
        backend: Some(parse_backend("noop").expect("noop backend")),
        ..Default::default()
    };
    let gpu = Gpu::new(&opts).expect("wgpu's no-op device");
    let src = Synthetic::new(cfg, DType::Q4_0, 7);
    let sopts = SessionOptions {
        ctx: 256,
        activations,
        ..Default::default()
    };
    let (m, _) = GpuModel::load_checked(gpu, &src, DType::Q4_0, &sopts).expect("load");
    Session::new(Arc::new(m), &sopts).expect("session")
}

/// Dispatches per step from the schedule: embed; per layer the mixer and the FFN; the head
/// and argmax. Decode fuses every RMSNorm into the mat-vec after it and sums the routed
/// experts inside the down projection; on int8 activations it quantizes the input of each
/// block-format projection once (two norms, out_proj's and down's input per layer; the head's).
fn expected(cfg: &Config, mode: Mode, int8: bool) -> usize {
    let decode = mode == Mode::Decode;
    let norms = match (decode, int8) {
        (false, _) => 2,
        (true, false) => 0,
        (true, true) => 4,
    };
    let layers: usize = (0..cfg.num_layers())
        .map(|i| {
            let mixer = match cfg.layer_types[i] {
                LayerKind::Conv => 3,                // in_proj, conv, out_proj
                LayerKind::Attention if decode => 5, // qkv, qk_rope, attention, merge, out
                LayerKind::Attention => 4,           // qkv, qk_rope, attention, out
            };
            let ffn = match (cfg.is_moe(i), decode) {
                (false, _) => 2,    // gate+up, down
                (true, true) => 4,  // router, top-k, experts gate+up, experts down + combine
                (true, false) => 6, // router, top-k, pair lists, gate+up, down, combine
            };
            norms + mixer + ffn
        })
        .sum();
    let head = match (decode, int8) {
        (false, _) => 3,    // final norm, head, argmax
        (true, false) => 2, // head, argmax
        (true, true) => 3,  // quantize, head, argmax
    };
    1 + layers + head
}

#[test]
fn dispatches_per_token_follow_the_schedule() {
    let cfg = narrow_lfm2_8b_a1b();
    // LFM2-8B-A1B decode dispatches per token on exact and int8 activations (the head matrix
    // may be split into binding-sized chunks at full width, one dispatch each).
    for (activations, full) in [(Activations::Exact, 179), (Activations::Int8, 276)] {
        let s = session(cfg.clone(), activations);
        assert_eq!(s.int8, activations == Activations::Int8);
        let decode = s.program(Mode::Decode).expect("decode program");
        let prefill = s.program(Mode::Prefill).expect("prefill program");
        assert_eq!(decode.dispatches.len(), expected(&cfg, Mode::Decode, s.int8));
        assert_eq!(decode.dispatches.len(), full, "{activations:?}");
        assert_eq!(prefill.dispatches.len(), expected(&cfg, Mode::Prefill, s.int8));
        let combines = |p: &lfm_wgpu::kernels::Program| {
            p.dispatches
                .iter()
                .filter(|d| d.label.ends_with("feed_forward.combine"))
                .count()
        };
        let moe_layers = (0..cfg.num_layers()).filter(|&i| cfg.is_moe(i)).count();
        assert_eq!(combines(decode), 0, "decode sums the experts in the down projection");
        assert_eq!(combines(prefill), moe_layers);
        assert!(
            decode.taps.is_empty() && prefill.taps.is_empty(),
            "taps are for --dump only"
        );
    }
}

#[test]
fn a_decode_step_is_one_pass_in_one_submission() {
    let cfg = narrow_lfm2_8b_a1b();
    let mut s = session(cfg.clone(), Activations::Auto);
    s.prefill(&[1, 2, 3], false).expect("prefill");
    s.reset_host_cost(false);
    let mut ids = Vec::new();
    s.decode_chained(4, &mut ids).expect("decode");
    let c = s.host_cost();
    assert_eq!(c.steps, 4);
    assert_eq!((c.submissions, c.passes), (4, 4), "one submission, one pass per token");
    assert_eq!(c.dispatches, 4 * expected(&cfg, Mode::Decode, s.int8));
}
