//! Chat-template rendering with an arbitrary template and arbitrary messages; the same
//! messages also go through the built-in LFM2 template. One input in 16 (by length) is also
//! tokenized with tiny_b's tokenizer (`apply`), which is slow under the sanitizer.
//!
//! Input: NUL-separated parts. Part 0 is the template source (a 0x01 byte in it starts a
//! separate `tool_use` template). Each further part is a message or a tool: its first byte
//! `k` picks the role (`k % 5`: system, user, assistant, tool) or a tool schema (4); the rest
//! is the content, passed as JSON when `k >= 0x80` and it parses. An even number of parts
//! asks for the generation prompt.
#![no_main]
use lfm_wgpu::chat::{ChatTemplate, Message, Role, SpecialTokens};
use lfm_wgpu::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use std::sync::OnceLock;

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/tiny_b").as_ref())
            .expect("tiny_b tokenizer")
    })
}

fn builtin() -> &'static ChatTemplate {
    static T: OnceLock<ChatTemplate> = OnceLock::new();
    T.get_or_init(ChatTemplate::builtin)
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let source = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let (default, tool_use) = match source.split_once('\u{1}') {
        Some((d, t)) => (d, Some(t)),
        None => (&*source, None),
    };
    let (mut messages, mut tools, mut n) = (Vec::new(), Vec::new(), 1);
    for part in parts {
        n += 1;
        let Some((&k, rest)) = part.split_first() else { continue };
        let text = String::from_utf8_lossy(rest).into_owned();
        let content = match serde_json::from_str::<Json>(&text) {
            Ok(j) if k >= 0x80 => j,
            _ => Json::String(text),
        };
        let role = match k % 5 {
            0 => Role::System,
            1 => Role::User,
            2 => Role::Assistant,
            3 => Role::Tool,
            _ => {
                tools.push(content);
                continue;
            }
        };
        messages.push(Message::json(role, content));
    }
    let tools = (!tools.is_empty()).then_some(&tools[..]);
    let add_generation_prompt = n % 2 == 0;
    let render = |t: &ChatTemplate| match data.len() % 16 {
        0 => t.apply(tokenizer(), &messages, tools, add_generation_prompt).map(drop),
        _ => t.render(&messages, tools, add_generation_prompt).map(drop),
    };
    let _ = render(builtin());
    if let Ok(t) = ChatTemplate::new(default, tool_use, "fuzz input", SpecialTokens::lfm2()) {
        let _ = render(&t);
    }
});
