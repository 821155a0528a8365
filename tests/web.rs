//! The engine in a browser: headless Chromium's WebGPU (SwiftShader here: no shader-f16, no
//! subgroups, Tint compiling the WGSL), run by `.ci/web` through wasm-bindgen-test-runner.
//!
//! Every fixture's prefill and decode logits equal transformers' float32 logits within the
//! native tests' bound (tests/model.rs), a q4_0 load equals the CPU reference on the
//! dequantized weights (tests/quantized.rs's bound), and the tokenizer and chat-template cases
//! equal transformers' as natively (tests/tokenizer.rs). The files are compiled in: a page
//! test has no file system.
#![cfg(target_arch = "wasm32")]

mod common;

use common::cases::{check_chats, check_encoding};
use common::{assert_close, max_abs, reference_from};
use lfm_wgpu::chat::ChatTemplate;
use lfm_wgpu::gpu::{DType, Gpu, GpuOptions};
use lfm_wgpu::model::config::Config;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Activations, Session, SessionOptions};
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::tokenizer::{ModelFiles, Tokenizer};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// One fixture's files, compiled in.
struct Fixture {
    name: &'static str,
    config: &'static str,
    model: &'static [u8],
    reference: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            config: include_str!(concat!("data/", $name, "/config.json")),
            model: include_bytes!(concat!("data/", $name, "/model.safetensors")),
            reference: include_bytes!(concat!("data/", $name, "/reference.safetensors")),
        }
    };
}

const FIXTURES: [Fixture; 4] = [
    fixture!("tiny_a"),
    fixture!("tiny_b"),
    fixture!("tiny_c"),
    fixture!("tiny_d"),
];

impl Fixture {
    fn checkpoint(&self) -> Checkpoint {
        let dir = Path::new(self.name);
        let config = Config::from_json(self.config, &dir.join("config.json")).unwrap();
        Checkpoint::from_bytes(dir, config, vec![(dir.join("model.safetensors"), self.model.to_vec())]).unwrap()
    }
}

async fn browser_gpu() -> Arc<Gpu> {
    match Gpu::request(&GpuOptions::default()).await {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU adapter in this browser ({e}): run Chromium with --enable-unsafe-webgpu"),
    }
}

async fn session(gpu: &Arc<Gpu>, ckpt: &Checkpoint, dtype: DType, activations: Activations) -> Session {
    let model = Arc::new(GpuModel::load(gpu.clone(), ckpt, dtype).unwrap());
    let opts = SessionOptions {
        ctx: 256,
        kv_dtype: Some(DType::F32),
        activations,
        ..Default::default()
    };
    Session::new(model, &opts).unwrap()
}

#[wasm_bindgen_test]
async fn fixtures_equal_transformers_in_the_browser() {
    let gpu = browser_gpu().await;
    web_sys_log(&format!(
        "adapter {} ({:?}): f16 {}, subgroups {}, binding {} B",
        gpu.info.name, gpu.info.backend, gpu.caps.f16, gpu.caps.subgroups, gpu.max_binding
    ));
    for f in &FIXTURES {
        let r = reference_from(f.reference);
        let mut s = session(&gpu, &f.checkpoint(), DType::F32, Activations::Exact).await;
        let tol = 1e-3 * max_abs(&r.prefill_logits).max(max_abs(&r.step_logits));
        let got = s.prefill_all_logits_async(&r.prompt).await.unwrap();
        let dp = assert_close(&format!("{}: prefill logits", f.name), &got, &r.prefill_logits, tol);
        s.reset();
        let (ids, logits) = s.generate_greedy_async(&r.prompt, r.greedy.len(), true).await.unwrap();
        let ds = assert_close(&format!("{}: step logits", f.name), &logits, &r.step_logits, tol);
        assert_eq!(ids, r.greedy, "{}: greedy continuation", f.name);
        // The chained decode (the page's path: ids fed on the GPU, read one step behind).
        s.reset();
        let (chained, _) = s.generate_greedy_async(&r.prompt, r.greedy.len(), false).await.unwrap();
        assert_eq!(chained, r.greedy, "{}: chained greedy continuation", f.name);
        web_sys_log(&format!(
            "{}: max |Δ| prefill {dp:.2e}, decode {ds:.2e} (tol {tol:.2e})",
            f.name
        ));
    }
}

/// Q4_0 (the head Q8_0) against the CPU reference on the dequantized weights: the prompt,
/// then decode steps on exact and on int8 activations (Tint's `dot4I8Packed`), the latter
/// against the reference in int8 mode (one int8 step at a rounding boundary allowed, as in
/// tests/quantized.rs).
#[wasm_bindgen_test]
async fn q4_0_equals_the_cpu_reference_in_the_browser() {
    let gpu = browser_gpu().await;
    assert!(gpu.int_dot, "this browser's WGSL has no packed_4x8_integer_dot_product");
    let f = &FIXTURES[1];
    let r = reference_from(f.reference);
    let ckpt = f.checkpoint();
    let mut cpu = lfm_wgpu::reference::Reference::load(&ckpt, DType::Q4_0).unwrap();
    for activations in [Activations::Exact, Activations::Int8] {
        let mut st = cpu.new_state();
        cpu.int8 = false;
        let want = cpu.forward(&mut st, &r.prompt, None);
        let mut s = session(&gpu, &ckpt, DType::Q4_0, activations).await;
        let got = s.prefill_all_logits_async(&r.prompt).await.unwrap();
        let tol = 1e-3 * max_abs(&want);
        let mut d = assert_close("tiny_b q4_0: prefill vs CPU", &got, &want, tol);
        cpu.int8 = s.int8;
        let mut boundary = 0;
        for t in [3u32, 40, 11, 7] {
            let want = cpu.forward(&mut st, &[t], None);
            let got = s.decode_async(Some(t), true).await.unwrap().1.unwrap();
            let bound = if s.int8 { 3e-2 * max_abs(&want) } else { tol };
            let e = assert_close(&format!("tiny_b q4_0 {activations:?}: decode"), &got, &want, bound);
            boundary += (e > tol) as usize;
            d = d.max(e);
        }
        assert!(boundary <= 1, "{boundary} int8 steps beyond f32 rounding");
        web_sys_log(&format!(
            "tiny_b q4_0 {activations:?} (int8 {}): max |Δ| {d:.2e}",
            s.int8
        ));
    }
}

/// One fixture's tokenizer files, compiled in.
macro_rules! tokenizer {
    ($name:literal, $generation:expr) => {
        (
            $name,
            include_bytes!(concat!("data/", $name, "/tokenizer.json")).as_slice(),
            include_str!(concat!("data/", $name, "/tokenizer_config.json")),
            $generation,
            include_str!(concat!("data/", $name, "/config.json")),
        )
    };
}

#[wasm_bindgen_test]
fn tokenizers_and_chat_templates_equal_transformers_in_the_browser() {
    let cases: Value = serde_json::from_str(include_str!("data/tokenizer_cases.json")).unwrap();
    let fixtures = [
        tokenizer!("tiny_b", Some(include_str!("data/tiny_b/generation_config.json"))),
        tokenizer!("tiny_c", None::<&str>),
    ];
    assert_eq!(cases["fixtures"].as_object().unwrap().len(), fixtures.len());
    for (name, json, tok_config, generation, config) in fixtures {
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let files = ModelFiles {
            tokenizer_config: Some(parse(tok_config)),
            generation_config: generation.map(parse),
            config: Some(parse(config)),
        };
        let tok = Tokenizer::from_json(Path::new("tokenizer.json"), json, &files).unwrap();
        let template =
            ChatTemplate::from_files(None, files.tokenizer_config.as_ref(), "tokenizer_config.json").unwrap();
        let f = &cases["fixtures"][name];
        assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap());
        check_encoding(name, &tok, f);
        check_chats(name, &tok, &template, f);
    }
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}
