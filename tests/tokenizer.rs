//! Tokenizer, chat template and model resolution against the transformers 5.23 references in
//! `tests/data/tokenizer_cases.json` (written by tools/make_tokenizer_fixtures.py).

mod common;

use common::cases::*;
use lfm_wgpu::chat::{ChatTemplate, Message, Role, SpecialTokens};
use lfm_wgpu::hub::{find_cached, resolve_model_with, HubEnv};
use lfm_wgpu::tokenizer::Tokenizer;
use lfm_wgpu::Error;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn cases() -> Value {
    let text = std::fs::read_to_string(data("tokenizer_cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fixtures() -> Vec<(String, Value)> {
    let c = cases();
    c["fixtures"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn encode_and_decode_match_transformers() {
    for (name, f) in fixtures() {
        let tok = Tokenizer::from_dir(&data(&name)).unwrap();
        assert_eq!(tok.vocab_size() as u64, f["vocab_size"].as_u64().unwrap());
        assert_eq!(tok.bos_id(), Some(f["bos_id"].as_u64().unwrap() as u32));
        assert_eq!(tok.eos_id(), Some(f["eos_id"].as_u64().unwrap() as u32));
        check_encoding(&name, &tok, &f);
    }
}

#[test]
fn chat_templates_match_transformers() {
    for (name, f) in fixtures() {
        let dir = data(&name);
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let template = ChatTemplate::from_dir(&dir).unwrap();
        assert!(template.origin().ends_with("tokenizer_config.json"));
        check_chats(&name, &tok, &template, &f);
    }
}

#[test]
fn stop_tokens() {
    // tiny_b: generation_config.json lists [7, 2]; tiny_c falls back to config.json's 7.
    let b = Tokenizer::from_dir(&data("tiny_b")).unwrap();
    assert_eq!(b.eos_ids(), &[7, 2]);
    assert_eq!(b.token_id("<|im_end|>"), Some(7));
    assert_eq!(b.pad_id(), Some(0));
    let c = Tokenizer::from_dir(&data("tiny_c")).unwrap();
    assert_eq!(c.eos_ids(), &[7]);
    assert_eq!(c.token_id("<|tool_response_end|>"), Some(13));
    assert_eq!(c.token_id("no such token"), None);
}

/// Pushes ids one at a time; checks the pieces add up to the one-shot decode and that no piece
/// ends in a character cut short (U+FFFD inside a piece is fine: bytes that never form one).
fn stream_equals_decode(tok: &Tokenizer, ids: &[u32], skip_special: bool) {
    let mut stream = tok.stream(skip_special);
    let mut text = String::new();
    for &id in ids {
        if let Some(piece) = stream.push(id) {
            assert!(!piece.is_empty());
            assert!(!piece.ends_with('\u{FFFD}'), "{piece:?} from {ids:?}");
            text.push_str(&piece);
        }
    }
    assert_eq!(stream.ids(), ids);
    text.push_str(&stream.finish());
    assert_eq!(text, tok.decode(ids, skip_special), "{ids:?}");
}

#[test]
fn streaming_decode_equals_one_shot() {
    for (name, f) in fixtures() {
        let tok = Tokenizer::from_dir(&data(&name)).unwrap();
        for case in f["texts"].as_array().unwrap() {
            stream_equals_decode(&tok, &ids(&case["ids"]), false);
            stream_equals_decode(&tok, &ids(&case["ids"]), true);
        }
        for chat in f["chats"].as_array().unwrap() {
            stream_equals_decode(&tok, &ids(&chat["ids"]), false);
            stream_equals_decode(&tok, &ids(&chat["ids"]), true);
        }
    }
}

#[test]
fn streaming_emits_multibyte_characters_once_whole() {
    let tok = Tokenizer::from_dir(&data("tiny_c")).unwrap();
    // Single-byte tokens for each UTF-8 byte, so every multi-byte character is split.
    let text = "é你😀👍🏽a";
    let byte_ids: Vec<u32> = text.bytes().map(|b| byte_token(&tok, b)).collect();
    assert_eq!(tok.decode(&byte_ids, false), text);
    let mut stream = tok.stream(false);
    let pieces: Vec<String> = byte_ids.iter().filter_map(|&i| stream.push(i)).collect();
    assert_eq!(pieces, ["é", "你", "😀", "👍", "🏽", "a"]);
    assert_eq!(stream.finish(), "");

    // A character cut off at the end comes out of finish() as U+FFFD, like the one-shot decode.
    let cut = &byte_ids[..byte_ids.len() - 3];
    stream_equals_decode(&tok, cut, false);
    assert!(tok.decode(cut, false).ends_with('\u{FFFD}'));
    // An invalid byte in the middle is carried through unchanged.
    let mut bad = vec![byte_token(&tok, 0xE4)];
    bad.extend(tok.encode("ok 你好", false).unwrap());
    stream_equals_decode(&tok, &bad, false);
}

/// The id of the single-byte token for `b` (GPT-2 byte↔unicode mapping).
fn byte_token(tok: &Tokenizer, b: u8) -> u32 {
    let printable = |c: u8| (b'!'..=b'~').contains(&c) || (0xA1..=0xAC).contains(&c) || c >= 0xAE;
    let ch = if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&c| !printable(c)).count() as u32;
        char::from_u32(256 + n).unwrap()
    };
    tok.token_id(&ch.to_string())
        .unwrap_or_else(|| panic!("no byte token for {b:#x}"))
}

#[test]
fn missing_tokenizer_is_a_clear_error() {
    let err = Tokenizer::from_dir(&data("tiny_a")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err:?}");
    assert!(msg.contains("tiny_a/tokenizer.json"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn corrupt_tokenizer_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let msg = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("tokenizer.json") && msg.contains("not a valid"), "{msg}");

    std::fs::copy(data("tiny_c/tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), "{oops").unwrap();
    let msg = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("tokenizer_config.json") && msg.contains("JSON"), "{msg}");
}

#[test]
fn builtin_template_renders_the_spec_example() {
    let t = ChatTemplate::builtin();
    let text = t.render(&[Message::user("What is C. elegans?")], None, true).unwrap();
    assert_eq!(
        text,
        "<|startoftext|><|im_start|>user\nWhat is C. elegans?<|im_end|>\n<|im_start|>assistant\n"
    );
    // A directory without any template falls back to it.
    let dir = tempfile::tempdir().unwrap();
    let t = ChatTemplate::from_dir(dir.path()).unwrap();
    assert_eq!(t.origin(), "built-in LFM2 template");
    let again = t.render(&[Message::user("What is C. elegans?")], None, true).unwrap();
    assert_eq!(again, text);
}

#[test]
fn template_sources_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    // chat_template.jinja wins over tokenizer_config.json, as in transformers.
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<s>", "chat_template": "config"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}{% if not loop.last %}|{% endif %}{% endfor %}\n",
    )
    .unwrap();
    let t = ChatTemplate::from_dir(dir.path()).unwrap();
    assert!(t.origin().ends_with("chat_template.jinja"));
    let msgs = [Message::user("  hi "), Message::assistant("yo")];
    assert_eq!(t.render(&msgs, None, false).unwrap(), "<s>HI|YO");

    // raise_exception surfaces as a typed error naming the template.
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}",
        None,
        "test.jinja",
        SpecialTokens::default(),
    )
    .unwrap();
    let err = t.render(&msgs, None, false).unwrap_err();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("test.jinja") && msg.contains("system first"), "{msg}");

    // A syntax error is reported when the template is loaded.
    let err = ChatTemplate::new("{% for %}", None, "broken.jinja", SpecialTokens::default()).unwrap_err();
    assert!(err.to_string().contains("broken.jinja"), "{err}");

    // A named template list: tool_use is picked when tools are given.
    std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T{{ tools | length }}"}]}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_dir(dir.path()).unwrap();
    assert_eq!(t.render(&msgs, None, false).unwrap(), "D");
    let tools = [serde_json::json!({"name": "f"})];
    assert_eq!(t.render(&msgs, Some(&tools), false).unwrap(), "T1");
}

#[test]
fn message_json_roundtrip() {
    let m: Vec<Message> =
        serde_json::from_str(r#"[{"role": "tool", "content": {"a": 1}}, {"role": "system", "content": "s"}]"#).unwrap();
    assert_eq!(m[0].role, Role::Tool);
    assert_eq!(m[1], Message::system("s"));
}

// ---------------------------------------------------------------------------------------------
// Hugging Face cache resolution
// ---------------------------------------------------------------------------------------------

const REPO: &str = "LiquidAI/LFM2-8B-A1B";

/// Lays out `cache/models--LiquidAI--LFM2-8B-A1B` with one snapshot per `(rev, complete)`;
/// files are symlinks into blobs/ like the real cache. `main` is written to refs/main.
fn fake_cache(cache: &Path, revs: &[(&str, bool)], main: Option<&str>) -> PathBuf {
    let repo = cache.join("models--LiquidAI--LFM2-8B-A1B");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    for (i, (rev, complete)) in revs.iter().enumerate() {
        let snap = repo.join("snapshots").join(rev);
        std::fs::create_dir_all(&snap).unwrap();
        let mut files = vec![
            ("config.json", "{}".to_string()),
            (
                "model.safetensors.index.json",
                r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
                    .to_string(),
            ),
            ("model-00001-of-00002.safetensors", "x".into()),
        ];
        if *complete {
            files.push(("model-00002-of-00002.safetensors", "y".into()));
        }
        for (name, content) in files {
            let blob = repo.join("blobs").join(format!("{i}-{name}"));
            std::fs::write(&blob, content).unwrap();
            #[cfg(unix)]
            std::os::unix::fs::symlink(&blob, snap.join(name)).unwrap();
            #[cfg(not(unix))]
            std::fs::copy(&blob, snap.join(name)).unwrap();
        }
    }
    if let Some(main) = main {
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), format!("{main}\n")).unwrap();
    }
    repo
}

#[test]
fn cache_dir_precedence() {
    let env = HubEnv {
        hf_hub_cache: Some("/a/hub-cache".into()),
        hf_home: Some("/b/hf-home".into()),
        home: Some("/c/home".into()),
        ..HubEnv::default()
    };
    assert_eq!(env.cache_dir(), Some(PathBuf::from("/a/hub-cache")));
    let env = HubEnv {
        hf_hub_cache: None,
        ..env
    };
    assert_eq!(env.cache_dir(), Some(PathBuf::from("/b/hf-home/hub")));
    let env = HubEnv { hf_home: None, ..env };
    assert_eq!(env.cache_dir(), Some(PathBuf::from("/c/home/.cache/huggingface/hub")));
}

#[test]
fn resolves_from_each_cache_location() {
    let tmp = tempfile::tempdir().unwrap();
    for (label, env, cache) in [
        (
            "HF_HUB_CACHE",
            HubEnv {
                hf_hub_cache: Some(tmp.path().join("x")),
                hf_home: Some(tmp.path().join("y")),
                home: Some(tmp.path().join("z")),
                ..HubEnv::default()
            },
            tmp.path().join("x"),
        ),
        (
            "HF_HOME",
            HubEnv {
                hf_home: Some(tmp.path().join("y")),
                home: Some(tmp.path().join("z")),
                ..HubEnv::default()
            },
            tmp.path().join("y/hub"),
        ),
        (
            "HOME",
            HubEnv {
                home: Some(tmp.path().join("z")),
                ..HubEnv::default()
            },
            tmp.path().join("z/.cache/huggingface/hub"),
        ),
    ] {
        let repo = fake_cache(&cache, &[("abc123", true)], Some("abc123"));
        let got = resolve_model_with(REPO, true, &env).unwrap();
        assert_eq!(got, repo.join("snapshots/abc123"), "{label}");
        // HF_HUB_CACHE hides the others: with it set elsewhere nothing is found.
        let shadowed = HubEnv {
            hf_hub_cache: Some(tmp.path().join("empty")),
            ..env.clone()
        };
        if label != "HF_HUB_CACHE" {
            assert!(resolve_model_with(REPO, true, &shadowed).is_err(), "{label}");
        }
        std::fs::remove_dir_all(&repo).unwrap();
    }
}

#[test]
fn snapshot_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    // refs/main names a complete snapshot: it wins.
    let repo = fake_cache(cache, &[("old", true), ("main1", true)], Some("main1"));
    assert_eq!(find_cached(cache, REPO), Some(repo.join("snapshots/main1")));
    std::fs::remove_dir_all(&repo).unwrap();

    // refs/main names an incomplete snapshot (a shard is missing): the complete one is used.
    let repo = fake_cache(cache, &[("good", true), ("partial", false)], Some("partial"));
    assert_eq!(find_cached(cache, REPO), Some(repo.join("snapshots/good")));
    std::fs::remove_dir_all(&repo).unwrap();

    // No refs/main: the only snapshot.
    let repo = fake_cache(cache, &[("only", true)], None);
    assert_eq!(find_cached(cache, REPO), Some(repo.join("snapshots/only")));
    // A dangling symlink (blob deleted) makes it incomplete.
    for e in std::fs::read_dir(repo.join("blobs")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with("00001-of-00002.safetensors") {
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_eq!(find_cached(cache, REPO), None);
    std::fs::remove_dir_all(&repo).unwrap();

    // A single model.safetensors is enough; no config.json is not.
    let snap = cache.join("models--LiquidAI--LFM2-8B-A1B/snapshots/s");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("model.safetensors"), "w").unwrap();
    assert_eq!(find_cached(cache, REPO), None);
    std::fs::write(snap.join("config.json"), "{}").unwrap();
    assert_eq!(find_cached(cache, REPO), Some(snap));
}

#[test]
fn offline_miss_says_how_to_download() {
    let tmp = tempfile::tempdir().unwrap();
    let env = HubEnv {
        hf_hub_cache: Some(tmp.path().to_path_buf()),
        ..HubEnv::default()
    };
    for (offline, env) in [
        (true, env.clone()),
        (
            false,
            HubEnv {
                offline: true,
                ..env.clone()
            },
        ),
    ] {
        let err = resolve_model_with(REPO, offline, &env).unwrap_err();
        assert!(matches!(err, Error::ModelNotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("hf download LiquidAI/LFM2-8B-A1B"), "{msg}");
        assert!(
            msg.contains(&tmp.path().join("models--LiquidAI--LFM2-8B-A1B").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(if offline { "--offline" } else { "HF_HUB_OFFLINE" }),
            "{msg}"
        );
    }
}

#[test]
fn directories_and_bad_specs() {
    let env = HubEnv::default();
    // An existing directory is used as it is, even without network or cache.
    let dir = data("tiny_b");
    assert_eq!(resolve_model_with(dir.to_str().unwrap(), true, &env).unwrap(), dir);
    let err = resolve_model_with("no/such/dir/here", true, &env).unwrap_err();
    assert!(err.to_string().contains("not a Hugging Face repo id"), "{err}");
    assert!(!lfm_wgpu::hub::is_repo_id("../x"));
    assert!(lfm_wgpu::hub::is_repo_id("LiquidAI/LFM2-8B-A1B"));
}
