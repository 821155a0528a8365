//! The CLI contract used by outside checks: `lfm logits` writes [T, vocab] float32 .npy equal
//! to transformers' prefill logits; `lfm generate --greedy --print-ids --logits-out` prints
//! the greedy ids and writes the [N, vocab] logits of every step.

mod common;

use common::*;
use std::process::Command;

fn lfm(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lfm")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lfm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lfm-wgpu-cli-{}-{name}", std::process::id()))
}

#[test]
fn logits_and_generate_follow_the_contract() {
    let name = "tiny_d";
    let r = reference(name);
    let dir = fixture_dir(name);
    let model = dir.to_str().unwrap();
    let tokens: Vec<String> = r.prompt.iter().map(|t| t.to_string()).collect();
    let tokens = tokens.join(",");
    let tol = 1e-3 * max_abs(&r.prefill_logits);

    let out = tmp("logits.npy");
    lfm(&[
        "logits",
        "--model",
        model,
        "--tokens",
        &tokens,
        "--dtype",
        "f32",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (shape, data) = lfm_wgpu::npy::read_f32(&out).unwrap();
    assert_eq!(shape, vec![r.prompt.len(), 200]);
    assert_close("lfm logits", &data, &r.prefill_logits, tol);

    let out = tmp("steps.npy");
    let n = r.greedy.len().to_string();
    let printed = lfm(&[
        "generate",
        "--model",
        model,
        "--tokens",
        &tokens,
        "--max-new-tokens",
        &n,
        "--greedy",
        "--print-ids",
        "--dtype",
        "f32",
        "--logits-out",
        out.to_str().unwrap(),
    ]);
    let ids: Vec<u32> = printed.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(ids, r.greedy);
    let (shape, data) = lfm_wgpu::npy::read_f32(&out).unwrap();
    assert_eq!(shape, vec![r.greedy.len(), 200]);
    assert_close("lfm generate --logits-out", &data, &r.step_logits, tol);
}

#[test]
fn info_reports_adapters_shape_and_memory() {
    let out = lfm(&["info", "--model", fixture_dir("tiny_c").to_str().unwrap()]);
    assert!(out.contains("[0] "), "{out}");
    assert!(out.contains("lfm2_moe, 5 layers (3 conv, 2 attention)"), "{out}");
    for d in ["q4_0", "q8_0", "f16", "f32"] {
        assert!(out.contains(&format!("| {d:<16} |")), "{out}");
    }
    assert!(out.contains("ctx 32768"), "{out}");
}

#[test]
fn info_on_a_gguf_shows_its_types_and_its_own_memory() {
    let path = fixture_dir("gguf").join("tiny_k.q4_k_m.gguf");
    let out = lfm(&["info", "--model", path.to_str().unwrap()]);
    assert!(out.contains("lfm2_moe, 2 layers (1 conv, 1 attention)"), "{out}");
    assert!(out.contains("GGUF v3") && out.contains("23 tensors"), "{out}");
    for (ty, n) in [("Q4_K", 9), ("Q5_K", 1), ("Q6_K", 3), ("F32", 10)] {
        assert!(out.contains(&format!("| {ty:<6} | {n:>7} |")), "{ty}: {out}");
    }
    assert!(out.contains("| as stored (q4_k) |"), "{out}");
}

#[test]
fn run_on_a_k_quant_gguf_loads_it_as_it_is() {
    let path = fixture_dir("gguf").join("tiny_k.q4_k_m.gguf");
    let ids = lfm(&[
        "generate",
        "--model",
        path.to_str().unwrap(),
        "--tokens",
        "1,5,9",
        "--max-new-tokens",
        "4",
        "--greedy",
        "--print-ids",
    ]);
    assert_eq!(
        ids.split_whitespace().filter(|t| t.parse::<u32>().is_ok()).count(),
        4,
        "{ids}"
    );
}

#[test]
fn wgpu_bench_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpu-bench"))
        .args([
            "--model",
            fixture_dir("tiny_c").to_str().unwrap(),
            "-p",
            "8",
            "-n",
            "4",
            "-r",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["tests"][0]["test"], "pp8");
    assert_eq!(j["tests"][1]["test"], "tg4");
    assert!(j["tests"][1]["tok_s_mean"].as_f64().unwrap() > 0.0);
    assert!(j["copy_bandwidth_bytes_s"].as_f64().unwrap() > 0.0);
    assert_eq!(j["estimate"]["weights"], j["weight_bytes"]);
}

/// `lfm logits --dump` writes the residual stream after every layer; it equals transformers'
/// `hidden_states` (entry 0: embeddings, j: after layer j − 1, L: after the final norm), so a
/// wrong layer shows up as the first bad name. The .npz is read back as numpy writes it
/// (a zip of .npy files, checked by its central directory).
#[test]
fn dump_matches_transformers_hidden_states() {
    for name in ["tiny_b", "tiny_c"] {
        let r = reference(name);
        let dir = fixture_dir(name);
        let cfg = lfm_wgpu::model::config::Config::from_file(&dir.join("config.json")).unwrap();
        let (t, h, layers) = (r.prompt.len(), cfg.hidden_size, cfg.num_layers());
        let tokens: Vec<String> = r.prompt.iter().map(|t| t.to_string()).collect();
        let out = tmp(&format!("{name}-dump.npy"));
        let npz = tmp(&format!("{name}-dump.npz"));
        lfm(&[
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            &tokens.join(","),
            "--dtype",
            "f32",
            "--kv-dtype",
            "f32",
            "--out",
            out.to_str().unwrap(),
            "--dump",
            "^model\\.",
            "--dump-out",
            npz.to_str().unwrap(),
        ]);
        let arrays = read_npz(&npz);
        let hs = |j: usize| &r.hidden_states[j * t * h..(j + 1) * t * h];
        let mut names = vec!["model.embed_tokens".to_string()];
        names.extend((0..layers).map(|i| format!("model.layers.{i}")));
        names.push("model.embedding_norm".into());
        assert_eq!(arrays.iter().map(|a| a.0.clone()).collect::<Vec<_>>(), names, "{name}");
        for (j, (what, shape, data)) in arrays.iter().enumerate() {
            assert_eq!(shape, &vec![t, h], "{name} {what}");
            // hidden_states has no entry for the last layer's raw output.
            let want = match j {
                _ if j == layers => continue,
                _ if j == layers + 1 => hs(layers),
                _ => hs(j),
            };
            let tol = 1e-4 * max_abs(want).max(1.0);
            assert_close(&format!("{name} {what}"), data, want, tol);
        }
    }
}

/// The arrays of an .npz written by `lfm logits --dump`, in order.
fn read_npz(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let zip = std::fs::read(path).unwrap();
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]) as usize;
    let end = zip.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "end of central directory");
    let (n, mut at) = (u16_at(end + 10), u32_at(end + 16));
    let mut out = Vec::new();
    for _ in 0..n {
        assert_eq!(u32_at(at), 0x0201_4b50);
        let (size, name_len, local) = (u32_at(at + 20), u16_at(at + 28), u32_at(at + 42));
        let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
        let body_at = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let body = &zip[body_at..body_at + size];
        assert_eq!(u32_at(at + 16), crc32(body), "{name} crc");
        let npy = std::env::temp_dir().join(format!("lfm-npz-{}-{name}", std::process::id()));
        std::fs::write(&npy, body).unwrap();
        let (shape, data) = lfm_wgpu::npy::read_f32(&npy).unwrap();
        out.push((name.trim_end_matches(".npy").to_string(), shape, data));
        at += 46 + name_len;
    }
    out
}

/// CRC-32 (IEEE), bit by bit: an independent check of the writer's.
fn crc32(data: &[u8]) -> usize {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    (!c) as usize
}

/// GGUF through the CLI: a `.gguf` path gives the logits of the safetensors checkpoint it was
/// converted from (F32: exactly), a directory with one `.gguf` works, several are listed,
/// and `lfm info` reads the GGUF's metadata.
#[test]
fn gguf_files_on_the_command_line() {
    let r = reference("tiny_d");
    let tokens: Vec<String> = r.prompt.iter().map(|t| t.to_string()).collect();
    let tokens = tokens.join(",");
    let gguf = fixture_dir("gguf").join("tiny_d.f32.gguf");
    let from = |model: &str, tag: &str| {
        let out = tmp(&format!("gguf-{tag}.npy"));
        lfm(&[
            "logits",
            "--model",
            model,
            "--tokens",
            &tokens,
            "--dtype",
            "f32",
            "--out",
            out.to_str().unwrap(),
        ]);
        lfm_wgpu::npy::read_f32(&out).unwrap().1
    };
    let st = from(fixture_dir("tiny_d").to_str().unwrap(), "st");
    assert_eq!(from(gguf.to_str().unwrap(), "file"), st, "GGUF F32 = safetensors");
    let dir = tmp("gguf-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&gguf, dir.join("model.gguf")).unwrap();
    assert_eq!(from(dir.to_str().unwrap(), "dir"), st);
    std::fs::copy(&gguf, dir.join("other.gguf")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args([
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            "1",
            "--out",
            "/dev/null",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("model.gguf, other.gguf"), "{err}");
    let info = lfm(&["info", "--model", gguf.to_str().unwrap()]);
    assert!(info.contains("lfm2_moe, 3 layers") && info.contains("| q4_0"), "{info}");
}

/// `lfm run --json-schema` prints JSON valid against the schema (greedy and sampled), and a
/// schema the engine cannot honour fails before the model loads, naming the file and keyword.
#[test]
fn run_with_a_json_schema() {
    let model = fixture_dir("tiny_b");
    let schema = serde_json::json!({"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 8},
        "days": {"type": "integer", "minimum": 1, "maximum": 14}},
        "required": ["city", "days"], "additionalProperties": false});
    let path = tmp("schema.json");
    std::fs::write(&path, schema.to_string()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for extra in [&["--greedy"][..], &["--seed", "7", "--temperature", "1"]] {
        let mut args = vec!["run", "--model", model.to_str().unwrap(), "--prompt", "Weather?"];
        args.extend(["--json-schema", path.to_str().unwrap(), "--max-new-tokens", "200"]);
        args.extend(extra);
        let out = lfm(&args);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"));
        assert!(validator.is_valid(&v), "{out}");
    }
    std::fs::write(&path, r#"{"type": "object", "if": {"required": ["a"]}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args(["run", "--model", model.to_str().unwrap(), "--prompt", "x"])
        .args(["--json-schema", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("schema.json") && err.contains("\"if\""), "{err}");
    assert!(!err.contains("load"), "fails before loading: {err}");
    std::fs::remove_file(&path).unwrap();
}
