//! GPU memory estimate, refusal before allocation, and synthetic weights.

mod common;

use common::{assert_close, default_gpu, fixture_dir, gpu, max_abs, session};
use lfm_wgpu::gpu::{DType, GpuOptions};
use lfm_wgpu::model::config::Config;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::memory::{default_kv_dtype, MemoryEstimate};
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::synthetic::Synthetic;
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::reference::Reference;
use lfm_wgpu::Error;
use std::sync::Arc;

/// The estimate is exactly what loading and a session allocate, split path included.
#[test]
fn estimate_equals_allocation() {
    for (name, dtype, max_binding) in [
        ("tiny_a", DType::F16, None),
        ("tiny_b", DType::Q8_0, Some(20 << 10)),
        ("tiny_c", DType::Q4_0, None),
        ("tiny_d", DType::F32, Some(8 << 10)),
    ] {
        let g = gpu(GpuOptions {
            max_binding_bytes: max_binding,
            ..Default::default()
        });
        let ckpt = Checkpoint::open(&fixture_dir(name)).unwrap();
        let opts = SessionOptions {
            ctx: 320,
            ubatch: 24,
            kv_dtype: None,
            activations: lfm_wgpu::model::session::Activations::Exact,
        };
        let (model, est) = GpuModel::load_checked(g.clone(), &ckpt, dtype, &opts).unwrap();
        assert_eq!(est.weights, model.weight_bytes, "{name} {dtype}: weights");
        let s = Session::new(Arc::new(model), &opts).unwrap();
        assert_eq!(est.kv + est.scratch, s.state.bytes(), "{name} {dtype}: state");
        assert_eq!(est.kv_dtype, default_kv_dtype(dtype));
    }
}

/// Full LFM2-8B-A1B shape: the numbers README quotes, computed without allocating.
#[test]
fn full_size_estimate() {
    let cfg = Config::lfm2_8b_a1b(24).unwrap();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    for dtype in [DType::Q4_0, DType::Q8_0, DType::F16] {
        let e = MemoryEstimate::new(&cfg, dtype, DType::F16, 4096, 512, 128 << 20, 128 << 20).unwrap();
        eprintln!(
            "8B {dtype} ctx 4096: total {:.0} MiB = weights {:.0} + KV {:.0} + scratch {:.0}",
            mib(e.total()),
            mib(e.weights),
            mib(e.kv),
            mib(e.scratch)
        );
        // 6 attention layers × 2 × 4096 × 8 heads × 64 × 2 bytes
        assert_eq!(e.kv, 6 * 2 * 4096 * 8 * 64 * 2);
        if dtype == DType::Q4_0 {
            assert!(e.total() < (47 << 30) / 10, "q4_0 must fit 4.7 GiB: {}", e.total());
        }
    }
    // llama.cpp's Q4_K_M type mix, read as it is: at most 5.0 GiB with a 4096-token context.
    let src = Synthetic::with_mix(cfg.clone(), lfm_wgpu::gguf::mix::Mix::Q4KM, 0);
    let e = MemoryEstimate::of_source(&src, DType::Q4_K, DType::F16, 4096, 512, 128 << 20, 128 << 20).unwrap();
    eprintln!(
        "8B q4_k_m ctx 4096: total {:.0} MiB = weights {:.0} + KV {:.0} + scratch {:.0}",
        mib(e.total()),
        mib(e.weights),
        mib(e.kv),
        mib(e.scratch)
    );
    assert!(e.total() <= 5 << 30, "q4_k_m must fit 5.0 GiB: {}", e.total());
}

/// Too little GPU memory is refused before anything is allocated, with what would fit.
#[test]
fn refuses_when_it_cannot_fit() {
    let ckpt = Checkpoint::open(&fixture_dir("tiny_c")).unwrap();
    let opts = SessionOptions {
        ctx: 4096,
        ubatch: 64,
        kv_dtype: None,
        activations: lfm_wgpu::model::session::Activations::Exact,
    };
    let probe = default_gpu();
    let need = |d: DType, ctx: usize| {
        MemoryEstimate::for_gpu(&probe, &ckpt.config, d, default_kv_dtype(d), ctx, 64)
            .unwrap()
            .total()
    };
    // Room for q4_0 at this context but not f16.
    let room = need(DType::Q4_0, 4096) + 1024;
    assert!(need(DType::F16, 4096) > room);
    let g = gpu(GpuOptions {
        memory_bytes: Some(room),
        ..Default::default()
    });
    let err = match GpuModel::load_checked(g, &ckpt, DType::F16, &opts) {
        Err(e) => e,
        Ok(_) => panic!("loading f16 into {room} bytes must be refused"),
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{msg}");
    assert!(msg.contains("--dtype q4_0") || msg.contains("--dtype q8_0"), "{msg}");
    assert!(msg.contains("KV cache"), "{msg}");
}

/// Synthetic weights load through the same path as a checkpoint and the GPU agrees with
/// the CPU reference on them (the benchmark's model is a real computation).
#[test]
fn synthetic_weights_match_cpu() {
    let ckpt = Checkpoint::open(&fixture_dir("tiny_c")).unwrap();
    for dtype in [DType::Q4_0, DType::F16] {
        let src = Synthetic::new(ckpt.config.clone(), dtype, 7);
        let cpu = Reference::load(&src, dtype).unwrap();
        let model = Arc::new(GpuModel::load(default_gpu(), &src, dtype).unwrap());
        let opts = SessionOptions {
            ctx: 128,
            kv_dtype: Some(DType::F32),
            ..Default::default()
        };
        let mut s = Session::new(model, &opts).unwrap();
        let prompt: Vec<u32> = (0..40).map(|i| (i * 37 + 5) % 320).collect();
        let mut st = cpu.new_state();
        let want = cpu.forward(&mut st, &prompt, None);
        let got = s.prefill_all_logits(&prompt).unwrap();
        let tol = 1e-3 * max_abs(&want);
        assert!(max_abs(&want) > 0.1, "synthetic logits are not degenerate");
        assert_close(&format!("synthetic {dtype}"), &got, &want, tol);
    }
}

#[test]
fn eight_b_shape_config() {
    let c = Config::lfm2_8b_a1b(24).unwrap();
    assert_eq!(c.num_dense_layers, 2);
    let attn: Vec<usize> = (0..24)
        .filter(|&i| c.layer_types[i] == lfm_wgpu::model::config::LayerKind::Attention)
        .collect();
    assert_eq!(attn, [2, 6, 10, 14, 18, 21]);
    assert_eq!(Config::lfm2_8b_a1b(6).unwrap().num_dense_layers, 1);
    // Spec §1: 8,339,930,560 parameters, 1,557,740,992 active per token.
    assert_eq!(c.parameter_counts(), (8_339_930_560, 1_557_740_992));
    assert!(Config::lfm2_8b_a1b(25).is_err());
}

/// A synthetic model written as a Hugging Face checkpoint opens, loads and matches the CPU.
#[test]
fn synthetic_checkpoint_round_trip() {
    let cfg = Checkpoint::open(&fixture_dir("tiny_b")).unwrap().config;
    let dir = tempfile::tempdir().unwrap();
    Synthetic::new(cfg.clone(), DType::F32, 11)
        .write_hf_checkpoint(dir.path(), false)
        .unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.config, cfg);
    let cpu = Reference::load(&ckpt, DType::F32).unwrap();
    let mut s = session(&ckpt, DType::F32, 64);
    let prompt: Vec<u32> = (0..9).map(|i| i * 41 % 384).collect();
    let want = cpu.forward(&mut cpu.new_state(), &prompt, None);
    let got = s.prefill_all_logits(&prompt).unwrap();
    assert_close("synthetic checkpoint", &got, &want, 1e-3 * max_abs(&want));
}
