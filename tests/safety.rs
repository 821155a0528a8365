//! Hostile and careless input (issue #8): files are never destroyed or written outside their
//! place, names from a model stay inside its directory, numbers are checked (no silent NaN),
//! sizes are bounded before use, errors come before the long load, and the terminal and
//! pipes are handled. Each test reproduces a case that failed before.
//!
//! Unix only: the cases are built from symlinks, `/dev/zero` and signals.
#![cfg(unix)]

mod common;

use common::*;
use lfm_wgpu::gpu::DType;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn lfm_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lfm")
}

/// Runs `lfm args` with `stdin`; never a panic.
fn lfm(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(lfm_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "lfm {args:?} panicked: {err}");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lfm args` must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let o = lfm(args, b"");
    assert!(!o.status.success(), "lfm {args:?} succeeded: {}", stderr(&o));
    stderr(&o)
}

/// A copy of a fixture's config, weights and tokenizer files in a fresh directory.
fn copy_fixture(name: &str, tmp: &Path) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let p = e.unwrap().path();
        let f = p.file_name().unwrap();
        if f != "reference.safetensors" {
            std::fs::copy(&p, dir.join(f)).unwrap();
        }
    }
    dir
}

/// Sets value `index` of tensor `name` in `dir/model.safetensors` to `v` (in its dtype).
fn set_value(dir: &Path, name: &str, index: usize, v: f32) {
    let path = dir.join("model.safetensors");
    let mut entries = read_entries(&path);
    let e = entries.iter_mut().find(|e| e.0 == name).unwrap();
    let bytes: Vec<u8> = match e.1 {
        safetensors::Dtype::F32 => v.to_le_bytes().to_vec(),
        safetensors::Dtype::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
        safetensors::Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes().to_vec(),
        d => panic!("{d:?}"),
    };
    let w = bytes.len();
    e.3[index * w..(index + 1) * w].copy_from_slice(&bytes);
    write_entries(&path, &entries);
}

fn load_err(dir: &Path, dtype: DType) -> Error {
    let ckpt = match Checkpoint::open(dir) {
        Ok(c) => c,
        Err(e) => return e,
    };
    match GpuModel::load(default_gpu(), &ckpt, dtype) {
        Ok(_) => panic!("{} loaded as {dtype}", dir.display()),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Files are never destroyed

#[test]
fn quantize_refuses_its_source_and_non_empty_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = copy_fixture("tiny_a", tmp.path());
    let s = src.to_str().unwrap();
    let before = std::fs::read(src.join("model.safetensors")).unwrap();
    let refused = |out: &Path| {
        fails(&[
            "quantize",
            "--model",
            s,
            "--out",
            out.to_str().unwrap(),
            "--dtype",
            "q4_0",
        ])
    };
    // Into the source itself (this truncated the mapped source: SIGBUS, a 0-byte file).
    let err = refused(&src);
    assert!(err.contains("is the source model directory"), "{err}");
    // The same directory by another path, through a symlink, and nested either way.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let err = refused(&link);
    assert!(err.contains("is the source model directory"), "{err}");
    let inside = src.join("q4");
    let err = refused(&inside);
    assert!(err.contains("inside the source"), "{err}");
    let err = refused(tmp.path());
    assert!(err.contains("contains the source"), "{err}");
    assert_eq!(
        std::fs::read(src.join("model.safetensors")).unwrap(),
        before,
        "source intact"
    );
    assert!(!inside.exists());

    // A non-empty directory (here: a sharded checkpoint) is refused without --force; with it,
    // the stale shards and index are removed so they cannot be loaded with the new file.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for f in [
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "notes.txt",
    ] {
        std::fs::write(out.join(f), b"old").unwrap();
    }
    let o = out.to_str().unwrap();
    let err = fails(&["quantize", "--model", s, "--out", o, "--dtype", "q8_0"]);
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(out.join("model.safetensors.index.json")).unwrap(), b"old");
    let ok = lfm(
        &["quantize", "--model", s, "--out", o, "--dtype", "q8_0", "--force"],
        b"",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(!out.join("model.safetensors.index.json").exists());
    assert!(!out.join("model-00001-of-00002.safetensors").exists());
    assert!(out.join("notes.txt").exists(), "only weight files are removed");
    let ckpt = Checkpoint::open(&out).unwrap();
    assert_eq!(ckpt.prequantized, Some(DType::Q8_0));
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp-")),
        "no temporaries left: {names:?}"
    );
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = copy_fixture("tiny_a", tmp.path());
    set_value(&src, "model.layers.3.feed_forward.experts.1.w2.weight", 5, f32::NAN);
    let out = tmp.path().join("q");
    let err = fails(&[
        "quantize",
        "--model",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "q4_0",
    ]);
    assert!(err.contains("experts.1.w2.weight") && err.contains("index 5"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");

    // An npy written over an existing file is replaced whole; a failing run keeps the old one.
    let npy = tmp.path().join("logits.npy");
    std::fs::write(&npy, b"previous").unwrap();
    let err = fails(&[
        "logits",
        "--model",
        src.to_str().unwrap(),
        "--tokens",
        "1,2",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(err.contains("not finite"), "{err}");
    assert_eq!(std::fs::read(&npy).unwrap(), b"previous");
}

/// Ctrl-C during `lfm quantize` removes the file being written and leaves nothing behind.
#[test]
fn ctrl_c_during_quantize_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A checkpoint that takes a while to quantize: a wide vocabulary on a tiny model.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir("tiny_a").join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = (1 << 20).into();
    let src_cfg = lfm_wgpu::model::config::Config::from_json(&cfg.to_string(), Path::new("x")).unwrap();
    let src = tmp.path().join("wide");
    lfm_wgpu::model::synthetic::Synthetic::new(src_cfg, DType::F32, 1)
        .write_hf_checkpoint(&src, false)
        .unwrap();
    let out = tmp.path().join("out");
    let child = Command::new(lfm_bin())
        .args([
            "quantize",
            "--model",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--dtype", "q4_0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let temp = loop {
        let found = std::fs::read_dir(&out).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        });
        if let Some(e) = found {
            break e.path();
        }
        assert!(t.elapsed().as_secs() < 60, "no temporary file appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(!temp.exists(), "{} left behind", temp.display());
    assert!(!out.join("model.safetensors").exists());
}

// ---------------------------------------------------------------------------------------
// 2. Names from a model stay inside its directory

fn write_index(dir: &Path, map: &[(&str, &str)]) {
    let m: serde_json::Map<String, serde_json::Value> = map
        .iter()
        .map(|(t, f)| (t.to_string(), serde_json::Value::from(*f)))
        .collect();
    let j = serde_json::json!({"metadata": {}, "weight_map": m});
    std::fs::write(dir.join("model.safetensors.index.json"), j.to_string()).unwrap();
}

/// tiny_a as two shards with an index (`first` tensors in shard 1).
fn sharded(tmp: &Path) -> (PathBuf, Vec<Entry>) {
    let dir = copy_fixture("tiny_a", tmp);
    let entries = read_entries(&dir.join("model.safetensors"));
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let half = entries.len() / 2;
    write_entries(&dir.join("a.safetensors"), &entries[..half]);
    write_entries(&dir.join("b.safetensors"), &entries[half..]);
    (dir, entries)
}

#[test]
fn shard_names_cannot_leave_the_model_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, entries) = sharded(tmp.path());
    let name0 = entries[0].0.clone();
    // Tensor 0 is in shard a; `bad` names a's file (tensor 0 alone, or all of a's tensors).
    let map_shard = |bad: &str, all: bool| -> Vec<(String, String)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let f = match i < entries.len() / 2 {
                    true if i == 0 || all => bad,
                    true => "a.safetensors",
                    false => "b.safetensors",
                };
                (e.0.clone(), f.to_string())
            })
            .collect()
    };
    let map_with = |bad: &str| map_shard(bad, false);
    // A good index loads.
    let good = map_with("a.safetensors");
    let pairs: Vec<(&str, &str)> = good.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_index(&dir, &pairs);
    Checkpoint::open(&dir).unwrap();
    std::fs::write(tmp.path().join("outside.safetensors"), b"x").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.safetensors"), dir.join("link.safetensors")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.safetensors")).unwrap();
    for (bad, why) in [
        ("../../etc/passwd", "component"),
        ("../outside.safetensors", "component"),
        ("/dev/zero", "absolute"),
        ("C:\\Windows\\x.safetensors", "backslash"),
        ("c:x.safetensors", "drive letter"),
        ("sub/./a.safetensors", "component"),
        ("", "empty"),
        ("link.safetensors", "outside the model directory"),
        ("zero.safetensors", "outside the model directory"),
    ] {
        let map = map_shard(bad, true);
        let pairs: Vec<(&str, &str)> = map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        write_index(&dir, &pairs);
        let e = Checkpoint::open(&dir).err().unwrap_or_else(|| panic!("{bad:?} opened"));
        let msg = e.to_string();
        assert!(msg.contains("unsafe file name") && msg.contains(why), "{bad:?}: {msg}");
        // The hub's completeness check never looks outside either.
        assert!(!lfm_wgpu::hub::is_complete(&dir), "{bad:?}");
    }

    // The weight_map is authoritative: a tensor in a shard it is not assigned to, a tensor
    // the map does not list, a tensor in two shards.
    let mut map = map_with("a.safetensors");
    let last = map.len() - 1;
    map[last].1 = "a.safetensors".into(); // actually in b
    let pairs: Vec<(&str, &str)> = map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_index(&dir, &pairs);
    let msg = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("assigns it to a.safetensors"), "{msg}");
    let map = map_with("a.safetensors");
    let pairs: Vec<(&str, &str)> = map.iter().skip(1).map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_index(&dir, &pairs);
    let msg = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(msg.contains(&name0) && msg.contains("does not list"), "{msg}");
    let mut dup = read_entries(&dir.join("b.safetensors"));
    dup.push(entries[0].clone());
    write_entries(&dir.join("b.safetensors"), &dup);
    let map = map_with("a.safetensors");
    let pairs: Vec<(&str, &str)> = map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    write_index(&dir, &pairs);
    let msg = Checkpoint::open(&dir).err().unwrap().to_string();
    assert!(msg.contains(&name0), "{msg}");
}

/// A hub on loopback serving a repo whose index names a shard `../../../../pwned/evil.sh`
/// (relative to the snapshot): the download stops at the index with an error naming the name,
/// no panic, and nothing is written outside the cache.
#[test]
fn a_hostile_hub_repo_cannot_write_outside_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let config = std::fs::read(fixture_dir("tiny_a").join("config.json")).unwrap();
    let evil = "../../../../pwned/evil.sh";
    let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": evil}}).to_string();
    let files: Vec<(String, Vec<u8>)> = vec![
        ("config.json".into(), config),
        ("model.safetensors.index.json".into(), index.into_bytes()),
        (evil.into(), b"#!/bin/sh\necho pwned\n".to_vec()),
    ];
    let (endpoint, requests) = mock_hub::serve("evil/repo", files);
    let env = lfm_wgpu::hub::HubEnv {
        hf_hub_cache: Some(cache.clone()),
        endpoint: Some(endpoint),
        ..Default::default()
    };
    let err = lfm_wgpu::hub::resolve_model_with("evil/repo", false, &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsafe file name") && err.contains(evil), "{err}");
    let asked = requests.lock().unwrap().clone();
    assert!(
        asked.iter().any(|p| p.ends_with("model.safetensors.index.json")),
        "{asked:?}"
    );
    assert!(
        !asked.iter().any(|p| p.contains("pwned")),
        "the shard was never requested: {asked:?}"
    );
    // Nothing outside the cache: the temp dir holds only the cache.
    let top: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, vec![std::ffi::OsString::from("cache")]);
    let mut all = Vec::new();
    let mut stack = vec![cache.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert!(p.starts_with(&cache));
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    assert!(!all.iter().any(|p| p.to_string_lossy().contains("pwned")), "{all:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Numbers are checked

#[test]
fn non_finite_weights_are_named_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, bad) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY].into_iter().enumerate() {
        for (tensor, index) in [
            ("model.layers.1.conv.in_proj.weight", 17),
            ("model.layers.0.ffn_norm.weight", 3),
            ("model.layers.3.feed_forward.experts.2.w3.weight", 100),
        ] {
            let dir = copy_fixture("tiny_a", &tmp.path().join(format!("{i}-{index}")));
            set_value(&dir, tensor, index, bad);
            for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
                let e = load_err(&dir, dtype);
                assert!(
                    matches!(&e, Error::NonFinite { tensor: t, index: x, .. } if t == tensor && *x == index),
                    "{bad} in {tensor} at {dtype}: {e}"
                );
            }
        }
    }
}

#[test]
fn f16_overflow_is_an_error_with_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("tiny_a", tmp.path());
    // A valid bf16 checkpoint: 1e5 is representable in bf16 but not in f16.
    set_value(&dir, "model.layers.2.self_attn.k_proj.weight", 9, 1e5);
    let e = load_err(&dir, DType::F16);
    let msg = e.to_string();
    assert!(
        matches!(&e, Error::Overflow { tensor, index: 9, .. } if tensor == "model.layers.2.self_attn.k_proj.weight"),
        "{msg}"
    );
    assert!(msg.contains("--dtype f32") && msg.contains("q8_0"), "{msg}");
    // The advice holds: f32 and q8_0 load it and give finite logits.
    for dtype in [DType::F32, DType::Q8_0] {
        let ckpt = Checkpoint::open(&dir).unwrap();
        let mut s = session(&ckpt, dtype, 64);
        let logits = s.prefill_all_logits(&[1, 5, 9]).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "{dtype}");
    }
    // Through the CLI: the default dtype (f16) fails with the advice, not NaN and exit 0.
    let err = fails(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--tokens",
        "1,2",
        "--out",
        "/dev/null",
    ]);
    assert!(err.contains("overflows f16"), "{err}");
}

/// Weights that are finite but overflow while running (a final norm of 3e38) give an error
/// from every path — prefill logits, greedy decode, sampling — never NaN or an empty answer.
#[test]
fn non_finite_logits_stop_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("tiny_b", tmp.path()); // f32 on disk
    let path = dir.join("model.safetensors");
    let mut entries = read_entries(&path);
    let e = entries
        .iter_mut()
        .find(|e| e.0 == "model.embedding_norm.weight")
        .unwrap();
    for c in e.3.chunks_exact_mut(4) {
        c.copy_from_slice(&3e38f32.to_le_bytes());
    }
    write_entries(&path, &entries);
    let ckpt = Checkpoint::open(&dir).unwrap();
    let mut s = session(&ckpt, DType::F32, 64);
    let e = s.prefill_all_logits(&[1, 5, 9]).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLogits { .. }), "{e}");
    s.reset();
    let e = s.generate_greedy(&[1, 5, 9], 4, false).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLogits { .. }), "{e}");
    s.reset();
    s.set_sampling(lfm_wgpu::sampling::SamplingParams::model_card(3))
        .unwrap();
    let e = s.generate(&[1, 5, 9], 4, false, &mut |_| true).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLogits { .. }), "{e}");
    let d = dir.to_str().unwrap();
    let o = lfm(&["run", "--model", d, "--prompt", "hello", "--dtype", "f32"], b"");
    assert!(
        !o.status.success() && stderr(&o).contains("non-finite logits"),
        "{}",
        stderr(&o)
    );
    let err = fails(&[
        "generate", "--model", d, "--tokens", "1,2", "--greedy", "--dtype", "f32",
    ]);
    assert!(err.contains("non-finite logits"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 4. Sizes are bounded before use

fn config_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<lfm_wgpu::model::config::Config, Error> {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir("tiny_a").join("config.json")).unwrap()).unwrap();
    edit(&mut v);
    lfm_wgpu::model::config::Config::from_json(&v.to_string(), Path::new("config.json"))
}

#[test]
fn config_sizes_are_bounded() {
    for (field, value, says) in [
        (
            "moe_intermediate_size",
            serde_json::json!(1u64 << 59),
            "moe_intermediate_size",
        ),
        ("vocab_size", serde_json::json!(1u64 << 58), "vocab_size"),
        ("vocab_size", serde_json::json!((1u64 << 24) + 1), "vocab_size"),
        ("hidden_size", serde_json::json!(1u64 << 40), "hidden_size"),
        ("intermediate_size", serde_json::json!(0), "intermediate_size"),
        (
            "num_attention_heads",
            serde_json::json!(1u64 << 33),
            "num_attention_heads",
        ),
        (
            "max_position_embeddings",
            serde_json::json!(1u64 << 62),
            "max_position_embeddings",
        ),
        (
            "routed_scaling_factor",
            serde_json::json!(1e300),
            "routed_scaling_factor",
        ),
        (
            "routed_scaling_factor",
            serde_json::json!(-1.0),
            "routed_scaling_factor",
        ),
        ("norm_eps", serde_json::json!(0.0), "norm_eps"),
        ("norm_eps", serde_json::json!(1e300), "norm_eps"),
        ("num_experts", serde_json::json!(100000), "num_experts"),
    ] {
        let e = config_with(|v| v[field] = value.clone()).unwrap_err().to_string();
        assert!(e.contains(says), "{field} = {value}: {e}");
    }
    // Products: each dimension in range, the product past u32.
    let e = config_with(|v| {
        v["vocab_size"] = (1 << 24).into();
        v["hidden_size"] = 4096.into();
        v["num_attention_heads"] = 16.into();
        v["num_key_value_heads"] = 16.into();
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("vocab_size × hidden_size") && e.contains("2^32"), "{e}");
}

#[test]
fn flags_are_bounded_before_anything_is_allocated() {
    let t = fixture_dir("tiny_a");
    let t = t.to_str().unwrap();
    // generate: --max-new-tokens far past the context (was: "capacity overflow" panic).
    let err = fails(&[
        "generate",
        "--model",
        t,
        "--tokens",
        "1,2",
        "--greedy",
        "--max-new-tokens",
        "4611686018427387904",
    ]);
    assert!(err.contains("context exceeded"), "{err}");
    for (flag, v) in [
        ("--ctx", "0"),
        ("--ctx", "99999999999"),
        ("--ubatch", "0"),
        ("--ubatch", "1000000"),
    ] {
        let err = fails(&["logits", "--model", t, "--tokens", "1", "--out", "/dev/null", flag, v]);
        assert!(err.contains(flag) && err.contains("invalid value"), "{flag} {v}: {err}");
    }
    let err = fails(&[
        "logits",
        "--model",
        t,
        "--tokens",
        "1",
        "--out",
        "/dev/null",
        "--ctx",
        "1000000",
    ]);
    assert!(err.contains("maximum context"), "{err}");
    // wgpu-bench -p / -n u64::MAX (was: a panic).
    for flag in ["-p", "-n", "-r", "--depth", "--layers"] {
        let o = Command::new(env!("CARGO_BIN_EXE_wgpu-bench"))
            .args([flag, "18446744073709551615"])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag}: {err}");
        assert!(!err.contains("panicked") && err.contains(flag), "{flag}: {err}");
    }
    // Sampling values: negative numbers parse and get a range error naming the flag.
    let b = fixture_dir("tiny_b");
    let b = b.to_str().unwrap();
    for (flag, v) in [
        ("--temperature", "-1"),
        ("--temperature", "nan"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--min-p", "-0.1"),
        ("--min-p", "1"),
        ("--repetition-penalty", "0"),
        ("--repetition-penalty", "inf"),
        ("--top-k", "-3"),
    ] {
        let err = fails(&["run", "--model", b, "--prompt", "hi", flag, v]);
        assert!(err.contains(flag) && err.contains("invalid value"), "{flag} {v}: {err}");
        assert!(!err.contains("unexpected argument"), "{flag} {v}: {err}");
    }
    let err = fails(&["run", "--model", b, "--prompt", "hi", "--stop", ""]);
    assert!(err.contains("must not be empty"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 5. Fail fast: errors that need no weights come before the weights load

/// tiny_b with a NaN weight (found only while loading) and `edit` applied: the error must be
/// the edit's, proving it was checked before the load.
fn broken_weights(tmp: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = copy_fixture("tiny_b", tmp);
    set_value(&dir, "model.layers.5.feed_forward.experts.0.w1.weight", 0, f32::NAN);
    edit(&dir);
    dir
}

#[test]
fn errors_come_before_the_load() {
    let tmp = tempfile::tempdir().unwrap();
    // The control: with nothing else wrong the load reports the NaN.
    let dir = broken_weights(&tmp.path().join("control"), |_| {});
    let err = fails(&["run", "--model", dir.to_str().unwrap(), "--prompt", "hi"]);
    assert!(err.contains("not finite"), "{err}");
    // A broken tokenizer.
    let dir = broken_weights(&tmp.path().join("tok"), |d| {
        std::fs::write(d.join("tokenizer.json"), "{").unwrap()
    });
    let err = fails(&["run", "--model", dir.to_str().unwrap(), "--prompt", "hi"]);
    assert!(err.contains("tokenizer.json") && !err.contains("not finite"), "{err}");
    // A chat template that does not parse.
    let dir = broken_weights(&tmp.path().join("tpl"), |d| {
        std::fs::write(d.join("chat_template.jinja"), "{% for %}").unwrap()
    });
    let d = dir.to_str().unwrap();
    for cmd in [vec!["run", "--prompt", "hi"], vec!["chat"]] {
        let mut args = cmd.clone();
        args.extend(["--model", d]);
        let err = fails(&args);
        assert!(
            err.contains("chat template") && !err.contains("not finite"),
            "{cmd:?}: {err}"
        );
    }
    // A prompt longer than the context.
    let plain = broken_weights(&tmp.path().join("plain"), |_| {});
    let d = plain.to_str().unwrap();
    let err = fails(&[
        "run",
        "--model",
        d,
        "--raw",
        "--prompt",
        &"word ".repeat(200),
        "--ctx",
        "16",
    ]);
    assert!(err.contains("context exceeded") && !err.contains("not finite"), "{err}");
    // Output paths: a missing directory, a directory.
    let missing = tmp.path().join("no/such/dir/x.npy");
    let err = fails(&[
        "logits",
        "--model",
        d,
        "--tokens",
        "1",
        "--out",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist") && !err.contains("not finite"), "{err}");
    let err = fails(&[
        "logits",
        "--model",
        d,
        "--tokens",
        "1",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(err.contains("is a directory"), "{err}");
    let err = fails(&[
        "generate",
        "--model",
        d,
        "--tokens",
        "1",
        "--greedy",
        "--logits-out",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist") && !err.contains("not finite"), "{err}");
}

/// `lfm info --model owner/name` needs only config.json: a cache snapshot holding nothing
/// else is enough (it used to download the whole model first).
#[test]
fn info_reads_only_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("models--someone--big/snapshots/abc");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(fixture_dir("tiny_c").join("config.json"), snap.join("config.json")).unwrap();
    let o = Command::new(lfm_bin())
        .args(["info", "--model", "someone/big", "--offline"])
        .env("HF_HUB_CACHE", tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("lfm2_moe, 5 layers") && out.contains("| q4_0"), "{out}");
}

// ---------------------------------------------------------------------------------------
// 6. The terminal and pipes

#[test]
fn a_closed_pipe_ends_quietly() {
    let b = fixture_dir("tiny_b");
    let mut child = Command::new(lfm_bin())
        .args([
            "run",
            "--model",
            b.to_str().unwrap(),
            "--prompt",
            "hi",
            "--greedy",
            "--max-new-tokens",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `| head -c 0`: the reader is gone before the first byte
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn context_full_only_when_it_is() {
    let b = fixture_dir("tiny_b");
    let b = b.to_str().unwrap();
    let base = ["run", "--model", b, "--prompt", "hi", "--greedy", "--ctx", "40"];
    // Filling the context says so.
    let o = lfm(&base, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is full"), "{}", stderr(&o));
    let answer = String::from_utf8_lossy(&o.stdout).into_owned();
    let first = answer.trim_start().chars().next().expect("an answer").to_string();
    // Stopping earlier (max-new-tokens, a stop string) does not.
    let mut args = base.to_vec();
    args.extend(["--max-new-tokens", "3"]);
    let o = lfm(&args, b"");
    assert!(!stderr(&o).contains("is full"), "{}", stderr(&o));
    let mut args = base.to_vec();
    args.extend(["--stop", &first]);
    let o = lfm(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("is full"), "stopped at {first:?}: {}", stderr(&o));
}

#[test]
fn chat_commands_bad_lines_and_template_errors_do_not_end_the_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("tiny_b", tmp.path());
    // A template that refuses one message (as a model's template may raise on bad input).
    let tpl = std::fs::read_to_string(fixture_dir("tiny_b").join("chat_template.jinja"))
        .unwrap_or_else(|_| lfm_wgpu::chat::LFM2_TEMPLATE.to_string());
    let tpl = format!(
        "{{% for m in messages %}}{{% if 'boom' in m['content'] %}}{{{{ raise_exception('no booms here') }}}}{{% endif %}}{{% endfor %}}{tpl}"
    );
    std::fs::write(dir.join("chat_template.jinja"), tpl).unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(b"/help\n/frobnicate\n");
    input.extend_from_slice(b"\xff\xfe not utf-8\n");
    input.extend_from_slice(b"boom\n");
    input.extend_from_slice(b"hello\n");
    let o = lfm(
        &[
            "chat",
            "--model",
            dir.to_str().unwrap(),
            "--greedy",
            "--max-new-tokens",
            "4",
        ],
        &input,
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("/reset") && err.contains("/exit"), "help: {err}");
    assert!(err.contains("unknown command /frobnicate"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(err.contains("no booms here"), "{err}");
    // Exactly one answer: for "hello" (nothing was sent for the other lines).
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches('\n').count(), 1, "{out:?}");
}

#[test]
fn ctrl_c_at_the_chat_prompt_exits() {
    use std::io::Read;
    let b = fixture_dir("tiny_b");
    let mut child = Command::new(lfm_bin())
        .args([
            "chat",
            "--model",
            b.to_str().unwrap(),
            "--greedy",
            "--max-new-tokens",
            "3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    // The answer's newline: the chat is back at its prompt.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {}
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    drop(stdin);
}

/// A raised cancel flag stops a prefill before its next chunk.
#[test]
fn cancel_stops_a_prefill_between_chunks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let ckpt = Checkpoint::open(&fixture_dir("tiny_a")).unwrap();
    let model = std::sync::Arc::new(GpuModel::load(default_gpu(), &ckpt, DType::F32).unwrap());
    let opts = lfm_wgpu::model::session::SessionOptions {
        ctx: 64,
        ubatch: 4,
        kv_dtype: None,
        activations: lfm_wgpu::model::session::Activations::Exact,
    };
    let mut s = lfm_wgpu::model::session::Session::new(model, &opts).unwrap();
    let flag = std::sync::Arc::new(AtomicBool::new(true));
    s.set_cancel_flag(flag.clone());
    let e = s.prefill(&[1, 2, 3, 4, 5, 6, 7, 8, 9], false).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(s.pos, 0);
    flag.store(false, Ordering::Relaxed);
    s.prefill(&[1, 2, 3, 4, 5, 6, 7, 8, 9], false).unwrap();
    assert_eq!(s.pos, 9);
}

#[test]
fn wgpu_bench_reports_progress_and_the_loaded_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q8");
    let ok = lfm(
        &[
            "quantize",
            "--model",
            fixture_dir("tiny_a").to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
            "--dtype",
            "q8_0",
        ],
        b"",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let o = Command::new(env!("CARGO_BIN_EXE_wgpu-bench"))
        .args([
            "--model",
            q.to_str().unwrap(),
            "-p",
            "4",
            "-n",
            "2",
            "-r",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("[wgpu-bench] loading") && err.contains("tg2, repetition 1/1"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["dtype"], "q8_0", "the dtype that was loaded, not the default q4_0");
}
