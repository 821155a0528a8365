//! Bad input gets a clear error naming what is wrong, never a panic: missing, truncated or
//! corrupt safetensors, a missing tensor, a wrong shape, an unknown model_type, a token id
//! past the vocabulary, a prompt longer than the context — through the library and the CLI.

mod common;

use common::*;
use lfm_wgpu::gpu::DType;
use lfm_wgpu::model::gpu_weights::GpuModel;
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::Error;
use std::path::{Path, PathBuf};

/// A copy of tiny_a in a fresh temp dir, for breaking.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lfm-wgpu-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture_dir("tiny_a").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Rewrites model.safetensors in `dir` through `edit` on (name, dtype, shape, bytes) entries.
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<Entry>)) {
    let path = dir.join("model.safetensors");
    let mut entries = read_entries(&path);
    edit(&mut entries);
    write_entries(&path, &entries);
}

fn open_err(dir: &Path) -> Error {
    match Checkpoint::open(dir) {
        Err(e) => e,
        Ok(ckpt) => match GpuModel::load(default_gpu(), &ckpt, DType::F32) {
            Err(e) => e,
            Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        },
    }
}

#[test]
fn missing_weights_file() {
    let dir = scratch("missing");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = open_err(&dir);
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let dir = scratch("truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = open_err(&dir);
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated or corrupt"), "{e}");

    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    let e = open_err(&dir);
    assert!(matches!(e, Error::Safetensors { .. }), "{e:?}");

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(open_err(&dir), Error::Safetensors { .. }));
}

#[test]
fn missing_tensor_is_named() {
    let dir = scratch("missing-tensor");
    let victim = "model.layers.2.self_attn.k_proj.weight";
    rewrite(&dir, |e| e.retain(|(n, ..)| n != victim));
    let e = open_err(&dir);
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == victim),
        "{e:?}"
    );
    assert!(e.to_string().contains(victim));
}

#[test]
fn wrong_shape_is_named() {
    let dir = scratch("wrong-shape");
    let victim = "model.layers.0.conv.out_proj.weight";
    rewrite(&dir, |e| {
        let t = e.iter_mut().find(|(n, ..)| n == victim).unwrap();
        t.2 = vec![t.2[1], t.2[0] / 2];
        t.3.truncate(t.3.len() / 2);
    });
    let e = open_err(&dir);
    assert!(matches!(&e, Error::Shape { name, .. } if name == victim), "{e:?}");
    assert!(e.to_string().contains("expected [64, 64]"), "{e}");
}

#[test]
fn unsupported_dtype_is_named() {
    let dir = scratch("dtype");
    let victim = "model.embedding_norm.weight";
    rewrite(&dir, |e| {
        let t = e.iter_mut().find(|(n, ..)| n == victim).unwrap();
        t.1 = safetensors::Dtype::I16;
    });
    let e = open_err(&dir);
    assert!(matches!(&e, Error::Dtype { name, .. } if name == victim), "{e:?}");
}

#[test]
fn unknown_model_type_and_bad_config() {
    let dir = scratch("model-type");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"lfm2_moe\"", "\"llama\"")).unwrap();
    let e = open_err(&dir);
    assert!(
        matches!(&e, Error::ModelType { found, .. } if found == "llama"),
        "{e:?}"
    );

    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9"),
    )
    .unwrap();
    let e = open_err(&dir);
    assert!(e.to_string().contains("num_experts_per_tok"), "{e}");

    std::fs::write(dir.join("config.json"), "{ truncated").unwrap();
    assert!(matches!(open_err(&dir), Error::Config { .. }));
}

#[test]
fn token_out_of_range_and_context_exceeded() {
    let ckpt = Checkpoint::open(&fixture_dir("tiny_a")).unwrap();
    let mut s = session(&ckpt, DType::F32, 16);
    let e = s.prefill(&[1, 2, 256], false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TokenOutOfRange {
                id: 256,
                pos: 2,
                vocab: 256
            }
        ),
        "{e:?}"
    );
    let e = s.prefill(&[1; 17], false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextExceeded {
                needed: 17,
                ctx: 16,
                ..
            }
        ),
        "{e:?}"
    );
    // Nothing was consumed: the session still works and fills up exactly to the context.
    s.prefill(&[1; 15], false).unwrap();
    s.decode(None, false).unwrap();
    let e = s.decode(None, false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextExceeded {
                needed: 17,
                ctx: 16,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn cli_reports_errors_without_panicking() {
    let lfm = env!("CARGO_BIN_EXE_lfm");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(lfm).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        stderr
    };
    let dir = scratch("cli");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let d = dir.to_str().unwrap();
    let err = run(&["logits", "--model", d, "--tokens", "1,2", "--out", "/dev/null"]);
    assert!(err.contains("model.safetensors"), "{err}");
    let tiny = fixture_dir("tiny_a");
    let t = tiny.to_str().unwrap();
    let err = run(&[
        "generate",
        "--model",
        t,
        "--tokens",
        "1,999",
        "--max-new-tokens",
        "2",
        "--greedy",
    ]);
    assert!(err.contains("token id 999"), "{err}");
    let err = run(&["generate", "--model", t, "--tokens", "1,x", "--greedy"]);
    assert!(err.contains("not a token id"), "{err}");
    let err = run(&["generate", "--model", t, "--tokens", "1,2,3", "--ctx", "2", "--greedy"]);
    assert!(err.contains("context exceeded"), "{err}");
}

/// A GPU validation error inside a step (here: a bind group swapped onto the wrong pipeline
/// by a test hook) comes back as an error naming the step, not as a wrong token.
#[test]
fn a_validation_error_in_a_step_is_an_error() {
    let ckpt = Checkpoint::open(&fixture_dir("tiny_a")).unwrap();
    let mut s = session(&ckpt, DType::F32, 64);
    s.prefill(&[1, 2, 3], false).unwrap();
    s.inject_bind_group_fault();
    let e = s.decode(Some(4), false).unwrap_err();
    assert!(
        matches!(&e, Error::Gpu { during, .. } if during.contains("Decode step at position 3")),
        "{e}"
    );
}
