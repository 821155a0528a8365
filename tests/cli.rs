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
        assert!(out.contains(&format!("| {d:<6} |")), "{out}");
    }
    assert!(out.contains("ctx 32768"), "{out}");
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
