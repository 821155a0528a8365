//! The engine against transformers: prefill logits, every decode step's logits and the greedy
//! continuation, for every fixture, in f32 and f16 storage, with and without the optional
//! features, and through the forced split-binding path.
//!
//! Bound: max |Δlogit| ≤ 1e-3 × the largest |logit| of the reference (issue #2). f16 storage is
//! compared with transformers run on the same weights rounded to f16.

mod common;

use common::*;
use lfm_wgpu::gpu::{DType, GpuOptions};
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use std::sync::Arc;

struct Case {
    dtype: DType,
    kv: Option<DType>,
    opts: GpuOptions,
    ubatch: usize,
}

fn run(name: &str, case: &Case) -> (f32, f32) {
    let r = reference(name);
    let ckpt = Checkpoint::open(&fixture_dir(name)).unwrap();
    let gpu = gpu(case.opts.clone());
    let model = Arc::new(GpuModel::load(gpu, &ckpt, case.dtype).unwrap());
    if case.opts.max_binding_bytes.is_some() {
        assert!(
            model.w.embed.chunks.len() > 1,
            "{name}: the split path was not exercised"
        );
    }
    let sopts = SessionOptions {
        ctx: 256,
        ubatch: case.ubatch,
        kv_dtype: case.kv,
        activations: lfm_wgpu::model::session::Activations::Exact,
    };
    let mut s = Session::new(model, &sopts).unwrap();
    let (want_prefill, want_steps, want_greedy) = match case.dtype {
        DType::F32 => (&r.prefill_logits, &r.step_logits, &r.greedy),
        DType::F16 => (&r.prefill_logits_f16w, &r.step_logits_f16w, &r.greedy_f16w),
        q => panic!("{q}: quantized models are compared with the CPU reference (tests/quantized.rs)"),
    };
    let tol = 1e-3 * max_abs(want_prefill).max(max_abs(want_steps));
    let label = format!(
        "{name} {:?} kv {:?} ubatch {} {:?}",
        case.dtype, case.kv, case.ubatch, case.opts
    );
    let got = s.prefill_all_logits(&r.prompt).unwrap();
    let d_prefill = assert_close(&format!("{label}: prefill logits"), &got, want_prefill, tol);
    s.reset();
    let (ids, logits) = s.generate_greedy(&r.prompt, want_greedy.len(), true).unwrap();
    let d_steps = assert_close(&format!("{label}: step logits"), &logits, want_steps, tol);
    assert_eq!(&ids, want_greedy, "{label}: greedy continuation");
    eprintln!("{label}: max |Δ| prefill {d_prefill:.2e}, decode {d_steps:.2e} (tol {tol:.2e})");
    (d_prefill, d_steps)
}

fn base(dtype: DType) -> Case {
    Case {
        dtype,
        kv: None,
        opts: GpuOptions::default(),
        ubatch: 512,
    }
}

#[test]
fn f32_matches_transformers() {
    for name in FIXTURES {
        run(name, &base(DType::F32));
    }
}

#[test]
fn f16_matches_transformers_on_f16_weights() {
    for name in FIXTURES {
        run(
            name,
            &Case {
                kv: Some(DType::F32),
                ..base(DType::F16)
            },
        );
    }
}

#[test]
fn fallback_kernels_match() {
    // No subgroups, f16 unpacked from u32: the paths of adapters without those features.
    let opts = GpuOptions {
        no_f16: true,
        no_subgroups: true,
        ..Default::default()
    };
    for name in FIXTURES {
        run(
            name,
            &Case {
                opts: opts.clone(),
                kv: Some(DType::F32),
                ..base(DType::F16)
            },
        );
    }
    run(
        "tiny_b",
        &Case {
            opts,
            ..base(DType::F32)
        },
    );
}

#[test]
fn split_bindings_and_chunked_prefill_match() {
    // A 20 KiB binding limit splits the embedding/head by vocab rows, the projections by rows
    // and the expert stacks by experts (tiny_c: one expert per chunk); ubatch 7 makes prefill
    // continue from the caches and conv state across chunks.
    let opts = GpuOptions {
        max_binding_bytes: Some(20 * 1024),
        ..Default::default()
    };
    for name in ["tiny_a", "tiny_c"] {
        run(
            name,
            &Case {
                opts: opts.clone(),
                ubatch: 7,
                ..base(DType::F32)
            },
        );
    }
    run(
        "tiny_b",
        &Case {
            opts,
            ubatch: 16,
            kv: Some(DType::F32),
            ..base(DType::F16)
        },
    );
}

#[test]
fn f16_kv_cache_error_is_measured() {
    // An f16 KV cache (the default with f16 weights) rounds k and v to 11 significant bits,
    // which transformers' f32 cache does not: the error is measured here and bounded at
    // 1e-2 × max |logit| (an order above the exact-storage bound); greedy tokens must agree.
    for name in FIXTURES {
        let (p, d) = run_loose(name, 1e-2);
        eprintln!("{name}: f16 weights + f16 KV: max |Δ| prefill {p:.2e}, decode {d:.2e}");
    }
}

fn run_loose(name: &str, rel: f32) -> (f32, f32) {
    let r = reference(name);
    let ckpt = Checkpoint::open(&fixture_dir(name)).unwrap();
    let mut s = session(&ckpt, DType::F16, 256);
    let tol = rel * max_abs(&r.prefill_logits_f16w).max(max_abs(&r.step_logits_f16w));
    let got = s.prefill_all_logits(&r.prompt).unwrap();
    let p = assert_close(&format!("{name} f16 KV prefill"), &got, &r.prefill_logits_f16w, tol);
    s.reset();
    let (ids, logits) = s.generate_greedy(&r.prompt, r.greedy_f16w.len(), true).unwrap();
    let d = assert_close(&format!("{name} f16 KV steps"), &logits, &r.step_logits_f16w, tol);
    assert_eq!(ids, r.greedy_f16w, "{name}: greedy with f16 KV");
    (p, d)
}

#[test]
fn chained_greedy_decode_matches() {
    // Without logits, decode steps are queued ahead and fed by the GPU's argmax.
    for name in FIXTURES {
        let r = reference(name);
        let ckpt = Checkpoint::open(&fixture_dir(name)).unwrap();
        let model = Arc::new(GpuModel::load(default_gpu(), &ckpt, DType::F32).unwrap());
        let mut s = Session::new(
            model,
            &SessionOptions {
                ctx: 256,
                ..Default::default()
            },
        )
        .unwrap();
        let (ids, logits) = s.generate_greedy(&r.prompt, r.greedy.len(), false).unwrap();
        assert!(logits.is_empty());
        assert_eq!(ids, r.greedy, "{name}: chained greedy decode");
        assert_eq!(s.pos, r.prompt.len() + r.greedy.len() - 1);
    }
}
