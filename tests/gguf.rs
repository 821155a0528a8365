//! GGUF files (tests/data/gguf/, written by tools/make_gguf_fixtures.py with gguf-py 0.19):
//! host dequantization bit-exact with gguf-py for every supported type, the GGUF `Source` in
//! the CPU reference against the checkpoints and gguf-py's dequantized weights, the tokenizer
//! against tokenizer.json, and a malformed header for every field that can lie.

mod common;

use common::*;
use lfm_wgpu::chat::Message;
use lfm_wgpu::dtype::DType;
use lfm_wgpu::gguf::model::{chat_template, config_from_gguf};
use lfm_wgpu::gguf::{GgmlType, GgufFile, GgufModel};
use lfm_wgpu::model::config::Config;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::session::{Activations, Session, SessionOptions};
use lfm_wgpu::model::weights::{Checkpoint, Source};
use lfm_wgpu::reference::Reference;
use lfm_wgpu::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn gguf_dir() -> PathBuf {
    fixture_dir("gguf")
}

fn open(name: &str) -> GgufModel {
    GgufModel::open(&gguf_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn oracle() -> Value {
    let text = std::fs::read_to_string(gguf_dir().join("oracle.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fnv1a64(values: &[f32]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for v in values {
        for b in v.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// Max |a − b| after checking the two are bit-identical (NaN-free fixtures).
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits()) {
        panic!("{what}: first difference at [{i}]: got {} want {}", got[i], want[i]);
    }
}

#[test]
fn dequantization_is_bit_exact_with_gguf_py_also_after_repacking() {
    let o = oracle();
    let mut seen = std::collections::BTreeSet::new();
    for (file, tensors) in o["files"].as_object().unwrap() {
        let f = GgufFile::open(&gguf_dir().join(file)).unwrap();
        assert_eq!(f.tensors().len(), tensors.as_object().unwrap().len(), "{file}");
        for (name, want) in tensors.as_object().unwrap() {
            let t = f.tensor(name).unwrap_or_else(|| panic!("{file}: {name} missing"));
            assert_eq!(t.ty.name(), want["type"].as_str().unwrap(), "{file} {name}");
            let ne: Vec<u64> = serde_json::from_value(want["ne"].clone()).unwrap();
            assert_eq!(t.dims, ne, "{file} {name}");
            let got = f.read_f32(name).unwrap();
            let head: Vec<f32> = want["head"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_bits(&format!("{file} {name} ({})", t.ty), &got[..head.len()], &head);
            assert_eq!(
                fnv1a64(&got),
                want["fnv1a64"].as_str().unwrap(),
                "{file} {name} ({}): hash",
                t.ty
            );
            // The engine's layout (what the GPU reads): repacked blocks decode to the same bits.
            let dtype = t.ty.dtype().unwrap();
            let (bv, qb, sb) = dtype.block();
            let blocks = got.len() / bv;
            let (mut q, mut s) = (vec![0u8; blocks * qb], vec![0u8; blocks * sb]);
            lfm_wgpu::blocks::repack_ggml(dtype, f.tensor_bytes(t).unwrap(), &mut q, &mut s).unwrap();
            let mut decoded = vec![0f32; got.len()];
            lfm_wgpu::blocks::decode(dtype, &q, &s, &mut decoded);
            assert_bits(&format!("{file} {name} ({}): repacked", t.ty), &decoded, &got);
            assert_eq!(lfm_wgpu::blocks::first_non_finite(dtype, &q, &s), None, "{file} {name}");
            seen.insert(t.ty.name());
        }
    }
    for ty in GgmlType::SUPPORTED {
        assert!(seen.contains(ty.name()), "no fixture tensor of type {ty}");
    }
}

#[test]
fn float_gguf_gives_the_checkpoint_logits_exactly() {
    // tiny_d as F32 and tiny_a as BF16 (its disk dtype) hold exactly the checkpoint's weights:
    // the same config, every tensor bit-identical, the same logits bit for bit.
    for (file, dir) in [("tiny_d.f32.gguf", "tiny_d"), ("tiny_a.bf16.gguf", "tiny_a")] {
        let g = open(file);
        let ckpt = Checkpoint::open(&fixture_dir(dir)).unwrap();
        assert_eq!(g.config, ckpt.config, "{file}: config");
        let r = reference(dir);
        let a = Reference::load(&g, DType::F32).unwrap();
        let b = Reference::load(&ckpt, DType::F32).unwrap();
        let (la, lb) = (
            a.forward(&mut a.new_state(), &r.prompt, None),
            b.forward(&mut b.new_state(), &r.prompt, None),
        );
        assert_bits(&format!("{file}: logits"), &la, &lb);
        let d = assert_close(
            &format!("{file} vs transformers"),
            &la,
            &r.prefill_logits,
            1e-3 * max_abs(&r.prefill_logits),
        );
        eprintln!("{file}: logits identical to the checkpoint's; max |Δ| to transformers {d:.2e}");
    }
}

#[test]
fn quantized_gguf_gives_the_logits_of_its_dequantized_weights() {
    // tiny_a.mixed.gguf: 23 matrices in Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16 in turn. The
    // oracle checkpoint holds gguf-py's dequantization of each in HF names and layout (experts
    // split, conv [H, 1, K]): every tensor and the logits must be bit-identical.
    let g = open("tiny_a.mixed.gguf");
    let oracle = Checkpoint::open(&gguf_dir().join("tiny_a_mixed_oracle")).unwrap();
    assert_eq!(g.config, oracle.config);
    let mut types = std::collections::BTreeSet::new();
    for t in g.file.tensors() {
        types.insert(t.ty.name());
    }
    assert_eq!(types.len(), 8, "{types:?}");
    let a = Reference::load(&g, DType::F32).unwrap();
    let b = Reference::load(&oracle, DType::F32).unwrap();
    let r = reference("tiny_a");
    let la = a.forward(&mut a.new_state(), &r.prompt, None);
    let lb = b.forward(&mut b.new_state(), &r.prompt, None);
    assert_bits("tiny_a.mixed: logits", &la, &lb);
    // Quantization moves the logits, but not far (a sanity bound, not a claim).
    let d = r
        .prefill_logits
        .iter()
        .zip(&la)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    eprintln!("tiny_a.mixed: logits identical to the oracle's; max |Δ| to the unquantized model {d:.3}");
    assert!(d < 0.5 * max_abs(&r.prefill_logits), "{d}");
}

#[test]
fn expert_reads_touch_only_their_slice() {
    // tiny_k (K-quants, 256-wide rows): each expert read equals its slice of the whole tensor.
    let g = open("tiny_k.q4_k_m.gguf");
    let cfg = &g.config;
    let (e, im, h) = (cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size);
    for (w, gname, shape) in [("w1", "ffn_gate_exps", [im, h]), ("w2", "ffn_down_exps", [h, im])] {
        let full = g.file.read_f32(&format!("blk.1.{gname}.weight")).unwrap();
        let n = shape[0] * shape[1];
        for x in 0..e {
            let mut out = vec![0f32; n];
            g.read_f32(
                &format!("model.layers.1.feed_forward.experts.{x}.{w}.weight"),
                &shape,
                &mut out,
            )
            .unwrap();
            assert_bits(&format!("expert {x} {w}"), &out, &full[x * n..(x + 1) * n]);
        }
    }
}

#[test]
fn k_quant_gguf_runs_in_the_cpu_reference() {
    let g = open("tiny_k.q4_k_m.gguf");
    let want = Config::from_file(&gguf_dir().join("tiny_k/config.json")).unwrap();
    assert_eq!(g.config, want);
    let m = Reference::load(&g, DType::F32).unwrap();
    let logits = m.forward(&mut m.new_state(), &[1, 5, 9, 33, 2, 60], None);
    assert_eq!(logits.len(), 6 * want.vocab_size);
    assert!(logits.iter().all(|x| x.is_finite()));
    assert!(max_abs(&logits) > 0.0);
}

fn data_cases() -> Value {
    let text = std::fs::read_to_string(fixture_dir("tokenizer_cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn gguf_tokenizer_matches_tokenizer_json() {
    let cases = data_cases();
    for (name, f) in cases["fixtures"].as_object().unwrap() {
        let g = GgufFile::open(&gguf_dir().join(format!("{name}.vocab.gguf"))).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let hf = Tokenizer::from_dir(&fixture_dir(name)).unwrap();
        assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap(), "{name}");
        assert_eq!(tok.bos_id(), Some(f["bos_id"].as_u64().unwrap() as u32));
        assert_eq!(tok.eos_id(), Some(f["eos_id"].as_u64().unwrap() as u32));
        // Stop ids: the same, less what only generation_config.json adds (tiny_b's id 2).
        assert!(
            hf.eos_ids().starts_with(tok.eos_ids()),
            "{name}: stop ids {:?}",
            tok.eos_ids()
        );
        assert_eq!(tok.eos_ids()[0], 7, "{name}");
        assert_eq!(tok.pad_id(), hf.pad_id(), "{name}: pad");
        common::cases::check_encoding(name, &tok, f);
    }
}

#[test]
fn gguf_tokenizer_equals_tokenizer_json_on_random_text() {
    // Differential: 2000 random strings over letters, digits, punctuation, whitespace runs,
    // accents, CJK, emoji and special-token text; ids (with and without BOS) and decodes equal.
    use rand::{Rng, SeedableRng};
    let pieces = [
        "a",
        "e",
        "the",
        "The",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "1",
        "23",
        "4567",
        ".",
        ",",
        "'s",
        "'LL",
        "!?",
        "é",
        "ß",
        "中文",
        "🙂",
        "<|im_start|>",
        "<|im_end|>",
        "<|startoftext|>",
        "<|pad",
        "|>",
        "-",
        "__",
        "x",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for name in ["tiny_b", "tiny_c"] {
        let g = GgufFile::open(&gguf_dir().join(format!("{name}.vocab.gguf"))).unwrap();
        let (tok, hf) = (
            Tokenizer::from_gguf(&g).unwrap(),
            Tokenizer::from_dir(&fixture_dir(name)).unwrap(),
        );
        for _ in 0..1000 {
            let n = rng.random_range(0..24);
            let text: String = (0..n).map(|_| pieces[rng.random_range(0..pieces.len())]).collect();
            for special in [true, false] {
                let ids = tok.encode(&text, special).unwrap();
                assert_eq!(ids, hf.encode(&text, special).unwrap(), "{name} {text:?}");
                assert_eq!(tok.decode(&ids, special), hf.decode(&ids, special), "{name} {text:?}");
            }
        }
    }
}

#[test]
fn gguf_chat_template_renders_like_transformers() {
    let cases = data_cases();
    for (name, f) in cases["fixtures"].as_object().unwrap() {
        let g = GgufFile::open(&gguf_dir().join(format!("{name}.vocab.gguf"))).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let template = chat_template(&g, &tok).unwrap().expect("the file has a template");
        assert!(template.origin().ends_with("(tokenizer.chat_template)"));
        for chat in f["chats"].as_array().unwrap() {
            let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
            let tools = chat.get("tools").and_then(Value::as_array).cloned();
            let gen = chat["add_generation_prompt"].as_bool().unwrap();
            let what = format!("{name} {}", chat["name"]);
            let text = template.render(&messages, tools.as_deref(), gen).unwrap();
            assert_eq!(text, chat["rendered"].as_str().unwrap(), "{what}");
            assert_eq!(
                template.apply(&tok, &messages, tools.as_deref(), gen).unwrap(),
                common::cases::ids(&chat["ids"]),
                "{what}"
            );
        }
    }
}

#[test]
fn vocab_gguf_config_matches_config_json() {
    // The metadata keys alone (a vocab-only file has no tensors): everything but what only
    // tensors tell (tied head, expert bias, conv bias) matches config.json. As a model the
    // file is refused: its tensors are missing.
    for name in ["tiny_b", "tiny_c"] {
        let path = gguf_dir().join(format!("{name}.vocab.gguf"));
        let g = GgufFile::open(&path).unwrap();
        let want = Config::from_file(&fixture_dir(name).join("config.json")).unwrap();
        let got = Config {
            tie_word_embeddings: want.tie_word_embeddings,
            use_expert_bias: want.use_expert_bias,
            conv_bias: want.conv_bias,
            ..config_from_gguf(&g).unwrap()
        };
        assert_eq!(got, want, "{name}");
        match GgufModel::open(&path) {
            Err(lfm_wgpu::Error::MissingTensor { name, .. }) => {
                assert!(name.starts_with("token_embd.weight"), "{name}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn gguf_blocks_run_on_the_gpu_as_they_are() {
    // Each matrix stays in its file's type, read by that format's WGSL snippet: tiny_a.mixed
    // (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16), tiny_k (Q4_K, Q5_K, Q6_K, with q|k|v fused
    // from Q4_K and Q6_K parts), bf16 and f32. The oracle is the CPU reference on gguf-py's
    // dequantization: with an f32 KV cache, the prefill logits and five decode steps agree to
    // f32 rounding (the kernels apply block scales once per 8 weights, in another order).
    //
    // Decode again on int8 activations against the CPU reference in int8 mode (prompt exact):
    // to f32 rounding too, but an int8 value whose input lands on a rounding boundary may be
    // one step apart (see tests/quantized.rs `check_int8`), so those steps get 3e-2 × max.
    for file in [
        "tiny_a.mixed.gguf",
        "tiny_k.q4_k_m.gguf",
        "tiny_a.bf16.gguf",
        "tiny_d.f32.gguf",
    ] {
        let g = open(file);
        let mut m = Reference::load(&g, DType::F32).unwrap();
        let model = Arc::new(GpuModel::load(default_gpu(), &g, g.main_dtype()).unwrap());
        for activations in [Activations::Exact, Activations::Int8] {
            let prompt = [1, 5, 9, 33, 2, 60, 17];
            let mut st = m.new_state();
            m.int8 = false;
            let want = m.forward(&mut st, &prompt, None);
            let opts = SessionOptions {
                ctx: 64,
                kv_dtype: Some(DType::F32),
                activations,
                ..Default::default()
            };
            let mut s = Session::new(model.clone(), &opts).unwrap();
            let got = s.prefill_all_logits(&prompt).unwrap();
            let tol = 1e-5 * max_abs(&want);
            let mut d = assert_close(&format!("{file}: prefill, GPU vs CPU"), &got, &want, tol);
            let formats: std::collections::BTreeSet<String> = s
                .model
                .w
                .matrices()
                .flat_map(|m| m.chunks.iter().map(|c| c.dtype.name().to_string()))
                .collect();
            m.int8 = s.int8;
            let mut boundary = 0;
            for (i, t) in [3u32, 40, 11, 7, 21].into_iter().enumerate() {
                let want = m.forward(&mut st, &[t], None);
                let (_, got) = s.decode(Some(t), true).unwrap();
                let got = got.unwrap();
                let what = format!("{file} {activations:?}: decode step {i}");
                let e = assert_close(&what, &got, &want, if s.int8 { 3e-2 * max_abs(&want) } else { tol });
                boundary += (e > tol) as usize;
                d = d.max(e);
            }
            assert!(boundary <= 1, "{file}: {boundary} int8 steps beyond f32 rounding");
            eprintln!(
                "{file} ({formats:?}, {activations:?} → int8 {}): GPU vs CPU reference max |Δ| {d:.2e} (tol {tol:.2e})",
                s.int8
            );
        }
    }
}

#[test]
fn gguf_converts_to_the_asked_dtype() {
    // With --dtype the tensors are dequantized and stored as asked: at f32, q8_0 and q4_0 the
    // engine gives the CPU reference's logits on the same stored weights (the bound of
    // tests/model.rs and tests/quantized.rs, 1e-3 × max |logit|).
    for file in ["tiny_a.mixed.gguf", "tiny_k.q4_k_m.gguf"] {
        let mut g = open(file);
        g.native = false;
        for dtype in [DType::F32, DType::Q8_0, DType::Q4_0] {
            let m = Reference::load(&g, dtype).unwrap();
            let prompt = [1, 5, 9, 33, 2, 60, 17];
            let want = m.forward(&mut m.new_state(), &prompt, None);
            let mut s = session(&g, dtype, 64);
            let got = s.prefill_all_logits(&prompt).unwrap();
            let tol = 1e-3 * max_abs(&want);
            let d = assert_close(&format!("{file} {dtype}: GPU vs CPU"), &got, &want, tol);
            eprintln!("{file} {dtype}: GPU vs CPU reference max |Δ| {d:.2e} (tol {tol:.2e})");
        }
    }
}

#[path = "gguf/bad_files.rs"]
mod bad_files;

/// `owner/name:TAG` picks the repo's `.gguf` for that quant, case-insensitively, downloads it
/// into the HF cache (from a mock hub on loopback), then finds it there offline; an unknown
/// tag lists what the repo offers.
#[test]
#[cfg(feature = "hub")]
fn repo_and_quant_tag_resolve_to_one_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::read(fixture_dir("gguf").join("tiny_d.f32.gguf")).unwrap();
    let files = vec![
        ("README.md".to_string(), b"hi".to_vec()),
        ("Tiny-F32.gguf".to_string(), data.clone()),
        ("Tiny-Q4_K_M.gguf".to_string(), b"not this one".to_vec()),
        ("mmproj-Tiny-F32.gguf".to_string(), b"nor this".to_vec()),
    ];
    let (endpoint, _) = common::mock_hub::serve("someone/Tiny-GGUF", files);
    let env = lfm_wgpu::hub::HubEnv {
        hf_hub_cache: Some(tmp.path().to_path_buf()),
        endpoint: Some(endpoint),
        ..Default::default()
    };
    let got = lfm_wgpu::hub::resolve_model_with("someone/Tiny-GGUF:f32", false, &env).unwrap();
    assert!(got.ends_with("Tiny-F32.gguf"), "{}", got.display());
    assert_eq!(std::fs::read(&got).unwrap(), data);
    let offline = lfm_wgpu::hub::HubEnv {
        offline: true,
        ..env.clone()
    };
    let again = lfm_wgpu::hub::resolve_model_with("someone/Tiny-GGUF:F32", true, &offline).unwrap();
    assert_eq!(again, got);
    let e = lfm_wgpu::hub::resolve_model_with("someone/Tiny-GGUF:Q8_0", false, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file for quant Q8_0") && e.contains("Q4_K_M"), "{e}");
    let e = lfm_wgpu::hub::resolve_model_with("someone/Tiny-GGUF:Q8_0", true, &offline)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hf download"), "{e}");
}

/// Loaded as they are, the estimate is still exactly what the loader allocates: per-part
/// formats, and a q|k|v of Q4_K and Q6_K parts cut into chunks of one format each.
#[test]
fn gguf_memory_estimate_equals_allocation() {
    for (file, max_binding) in [("tiny_k.q4_k_m.gguf", Some(64 << 10)), ("tiny_a.mixed.gguf", None)] {
        let g = gpu(lfm_wgpu::gpu::GpuOptions {
            max_binding_bytes: max_binding,
            ..Default::default()
        });
        let m = open(file);
        let opts = SessionOptions {
            ctx: 128,
            ..Default::default()
        };
        let (model, est) = GpuModel::load_checked(g, &m, m.main_dtype(), &opts).unwrap();
        assert_eq!(est.weights, model.weight_bytes, "{file}");
        if file.starts_with("tiny_k") {
            let lfm_wgpu::model::weights::Op::Attention { qkv, .. } = &model.w.layers[1].op else {
                panic!("layer 1 is attention")
            };
            let formats: Vec<DType> = qkv.chunks.iter().map(|c| c.dtype).collect();
            assert_eq!(formats, [DType::Q4_K, DType::Q6_K]);
        }
    }
}

/// The synthetic GGUF writer (`wgpu-bench --write-gguf`) writes what the reader reads back:
/// the same config, llama.cpp's Q4_K_M types, valid blocks that run on the GPU as the CPU
/// reference says.
#[test]
fn synthetic_gguf_round_trips() {
    use lfm_wgpu::gguf::mix::Mix;
    use lfm_wgpu::gguf::writer::{write_synthetic, Types};
    let cfg = Config::from_file(&gguf_dir().join("tiny_k/config.json")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("synthetic.gguf");
    let bytes = write_synthetic(&path, &cfg, Types::Mix(Mix::Q4KM), 7, false).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
    assert!(
        write_synthetic(&path, &cfg, Types::Mix(Mix::Q4KM), 7, false).is_err(),
        "replaced a file"
    );
    let g = GgufModel::open(&path).unwrap();
    let c = &g.config;
    assert_eq!(
        (
            c.hidden_size,
            c.num_layers(),
            c.num_experts,
            c.num_experts_per_tok,
            c.vocab_size
        ),
        (
            cfg.hidden_size,
            cfg.num_layers(),
            cfg.num_experts,
            cfg.num_experts_per_tok,
            cfg.vocab_size
        )
    );
    assert_eq!(c.layer_types, cfg.layer_types);
    assert_eq!(
        (c.moe_intermediate_size, c.num_dense_layers),
        (cfg.moe_intermediate_size, cfg.num_dense_layers)
    );
    for (name, ty) in [
        ("token_embd.weight", "Q6_K"),
        // llama.cpp's rule over 2 blocks: the last gets more bits.
        ("blk.0.ffn_down.weight", "Q4_K"),
        ("blk.1.ffn_down_exps.weight", "Q6_K"),
        ("blk.1.ffn_up_exps.weight", "Q4_K"),
        ("blk.1.ffn_gate_inp.weight", "F32"),
    ] {
        assert_eq!(g.file.tensor(name).unwrap().ty.name(), ty, "{name}");
    }
    let m = Reference::load(&g, DType::F32).unwrap();
    let prompt = [1, 5, 9, 33];
    let want = m.forward(&mut m.new_state(), &prompt, None);
    assert!(want.iter().all(|x| x.is_finite()) && max_abs(&want) > 0.0);
    let model = GpuModel::load(default_gpu(), &g, g.main_dtype()).unwrap();
    let opts = SessionOptions {
        ctx: 32,
        kv_dtype: Some(DType::F32),
        activations: Activations::Exact,
        ..Default::default()
    };
    let got = Session::new(Arc::new(model), &opts)
        .unwrap()
        .prefill_all_logits(&prompt)
        .unwrap();
    assert_close("synthetic GGUF", &got, &want, 1e-5 * max_abs(&want));
}
