//! Talking to the model: `lfm chat` driven through stdin keeps the conversation in the KV
//! cache and answers exactly what a one-shot `lfm generate` on the rendered conversation
//! answers; `lfm run` streams, and seeded sampling is reproducible; sampling settings
//! through the session (top-k 1 is greedy, same seed same tokens).

mod common;

use common::*;
use lfm_wgpu::chat::{ChatTemplate, Message};
use lfm_wgpu::gpu::DType;
use lfm_wgpu::model::session::Session;
use lfm_wgpu::model::weights::Checkpoint;
use lfm_wgpu::sampling::SamplingParams;
use lfm_wgpu::tokenizer::Tokenizer;
use std::io::Write;
use std::process::{Command, Stdio};

fn lfm(args: &[&str], stdin: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "lfm {args:?} failed: {err}");
    (String::from_utf8(out.stdout).unwrap(), err)
}

/// The greedy answer of `lfm generate` to `ids`, decoded up to the first end-of-sequence id.
fn one_shot(model: &str, tok: &Tokenizer, ids: &[u32], max_new: usize) -> String {
    let list: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    let n = max_new.to_string();
    let (out, _) = lfm(
        &[
            "generate",
            "--model",
            model,
            "--tokens",
            &list.join(","),
            "--max-new-tokens",
            &n,
            "--greedy",
            "--print-ids",
            "--ctx",
            "512",
        ],
        "",
    );
    let got: Vec<u32> = out.split_whitespace().map(|t| t.parse().unwrap()).collect();
    let end = got.iter().position(|t| tok.eos_ids().contains(t)).unwrap_or(got.len());
    tok.decode(&got[..end], true)
}

#[test]
fn chat_reuses_the_cache_and_matches_one_shot_generation() {
    let dir = fixture_dir("tiny_b");
    let model = dir.to_str().unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let template = ChatTemplate::from_dir(&dir).unwrap();
    let turns = [
        "Hello there, how are you?",
        "Tell me more about it.",
        "And again, in French: où?",
    ];
    let max_new = 12;

    // What one-shot generation answers, turn by turn, on the rendered conversation.
    let mut msgs = vec![Message::system("You are terse.")];
    let mut expected = String::new();
    let mut lengths = Vec::new();
    for t in turns {
        msgs.push(Message::user(t));
        let ids = template.apply(&tok, &msgs, None, true).unwrap();
        lengths.push(ids.len());
        let a = one_shot(model, &tok, &ids, max_new);
        expected.push_str(&a);
        expected.push('\n');
        msgs.push(Message::assistant(a));
    }

    let n = max_new.to_string();
    let input = format!("{}\n{}\n/stats\n{}\n", turns[0], turns[1], turns[2]);
    let (out, err) = lfm(
        &[
            "chat",
            "--model",
            model,
            "--system",
            "You are terse.",
            "--greedy",
            "--max-new-tokens",
            &n,
            "--stats",
            "--ctx",
            "512",
        ],
        &input,
    );
    assert_eq!(out, expected, "chat answers vs one-shot generation\nstderr: {err}");

    // [prefilled N tokens, reused M cached] per turn: everything up to the previous prompt is reused.
    let counts: Vec<(usize, usize)> = err
        .lines()
        .filter_map(|l| l.strip_prefix("[prefilled "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].parse().unwrap(), w[3].parse().unwrap())
        })
        .collect();
    assert_eq!(counts.len(), 3, "{err}");
    assert_eq!(counts[0], (lengths[0], 0));
    for i in 1..3 {
        let (prefilled, reused) = counts[i];
        assert_eq!(prefilled + reused, lengths[i], "turn {i}: {err}");
        assert!(
            reused >= lengths[i - 1],
            "turn {i} reused only {reused} of {} tokens: {err}",
            lengths[i - 1]
        );
    }
}

#[test]
fn run_streams_and_seeds_reproduce() {
    let dir = fixture_dir("tiny_c");
    let model = dir.to_str().unwrap();
    let args = [
        "run",
        "--model",
        model,
        "--max-new-tokens",
        "16",
        "--temperature",
        "1.0",
        "--min-p",
        "0",
        "--ctx",
        "256",
    ];
    let with_seed = |seed: &str| {
        let mut a = args.to_vec();
        a.extend(["--seed", seed, "--prompt", "Grüße, 世界! 123"]);
        lfm(&a, "").0
    };
    let a = with_seed("7");
    assert_eq!(a, with_seed("7"), "same seed, same answer");
    assert!(!a.trim().is_empty());
    // The prompt can come from stdin.
    let mut b = args.to_vec();
    b.extend(["--seed", "7"]);
    assert_eq!(lfm(&b, "Grüße, 世界! 123").0, a);
    // A missing tokenizer is a clear error.
    let bad = Command::new(env!("CARGO_BIN_EXE_lfm"))
        .args([
            "run",
            "--model",
            fixture_dir("tiny_a").to_str().unwrap(),
            "--prompt",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("tokenizer.json"), "{msg}");
}

#[test]
fn sampling_settings_through_the_session() {
    let dir = fixture_dir("tiny_b");
    let ckpt = Checkpoint::open(&dir).unwrap();
    let mut s = session(&ckpt, DType::F32, 256);
    let prompt: Vec<u32> = (0..20).map(|i| (i * 17 + 3) % 384).collect();
    let run = |s: &mut Session, p: SamplingParams| {
        s.reset();
        s.set_sampling(p).unwrap();
        let mut ids = Vec::new();
        s.generate(&prompt, 24, false, &mut |id| {
            ids.push(id);
            true
        })
        .unwrap();
        ids
    };
    let greedy = run(&mut s, SamplingParams::greedy());
    let top1 = run(
        &mut s,
        SamplingParams {
            temperature: 1.0,
            top_k: 1,
            seed: 99,
            ..SamplingParams::greedy()
        },
    );
    assert_eq!(top1, greedy, "top-k 1 is greedy");
    let hot = SamplingParams {
        temperature: 1.5,
        repetition_penalty: 1.2,
        top_p: 0.95,
        seed: 3,
        ..SamplingParams::greedy()
    };
    let a = run(&mut s, hot.clone());
    assert_eq!(a, run(&mut s, hot.clone()), "same seed, same tokens");
    let b = run(&mut s, SamplingParams { seed: 4, ..hot });
    assert_ne!(a, b, "another seed, other tokens");
    assert_ne!(a, greedy);
    // Stopping early leaves the session consistent: history == pos.
    s.reset();
    let mut n = 0;
    s.generate(&prompt, 24, false, &mut |_| {
        n += 1;
        n < 5
    })
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(s.history.len(), s.pos);
    assert_eq!(s.pos, prompt.len() + 5);
}
