//! Structured output under hostile formats: a JSON Schema, Lark grammar, regex or tool list
//! (as a request to `lfm serve` may carry) compiled against tiny_b's tokenizer, then walked
//! token by token the way the engine walks it. Compilation may refuse the format; nothing may
//! panic, and a token the mask allows must be accepted.
//!
//! Input: byte 0 picks the kind (`k % 4`: schema, Lark, regex, tools; for tools `k / 4 % 3`
//! picks auto, required or the first tool by name), then the format's text up to a NUL byte;
//! each further byte picks one of the allowed tokens (by index modulo their count).
#![no_main]
use lfm_wgpu::constrain::{Format, ToolChoice, Vocabulary};
use lfm_wgpu::sampling::{Next, TokenConstraint};
use lfm_wgpu::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// tiny_b's tokenizer is byte-level BPE with 384 ids, like the LFM2 one in miniature.
const VOCAB: usize = 384;

thread_local! {
    static VOCABULARY: Vocabulary = {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/tiny_b");
        let tok = Tokenizer::from_dir(dir.as_ref()).expect("tiny_b tokenizer");
        Vocabulary::new(&tok, VOCAB).expect("tiny_b vocabulary")
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let text = String::from_utf8_lossy(&rest[..end]).into_owned();
    let picks = rest.get(end + 1..).unwrap_or_default();
    VOCABULARY.with(|v| {
        let compiled = match kind % 4 {
            0 => match serde_json::from_str::<Value>(&text) {
                Ok(schema) => v.constraint(&Format::JsonSchema(schema), "fuzz"),
                Err(_) => return,
            },
            1 => v.constraint(&Format::Lark(text), "fuzz"),
            2 => v.constraint(&Format::Regex(text), "fuzz"),
            _ => {
                let Ok(Value::Array(tools)) = serde_json::from_str::<Value>(&text) else { return };
                let first = tools.first().and_then(|t| t.get("function").unwrap_or(t).get("name"));
                let choice = match (kind / 4 % 3, first.and_then(Value::as_str)) {
                    (0, _) => ToolChoice::Auto,
                    (1, _) => ToolChoice::Required,
                    (_, Some(name)) => ToolChoice::Function(name.to_owned()),
                    (_, None) => ToolChoice::Required,
                };
                v.tool_constraint(&tools, &choice, kind & 0x80 == 0, None)
            }
        };
        let Ok(mut c) = compiled else { return };
        let mut mask = vec![0u32; v.mask_words()];
        for &p in picks.iter().take(64) {
            match c.next(&mut mask) {
                Ok(Next::Sample) => {
                    let allowed: Vec<u32> = (0..VOCAB as u32)
                        .filter(|&t| mask[t as usize / 32] >> (t % 32) & 1 == 1)
                        .collect();
                    let t = allowed[p as usize % allowed.len()];
                    if let Err(e) = c.accept(t) {
                        panic!("token {t} was allowed by the mask but refused: {e}");
                    }
                }
                Ok(Next::Forced(_)) => {}
                Ok(Next::Done | Next::DeadEnd) | Err(_) => break,
            }
        }
        let _ = c.is_accepting();
    });
});
