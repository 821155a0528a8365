//! The tokenizer and chat-template cases of `tests/data/tokenizer_cases.json` (transformers'
//! outputs), checked natively (tests/tokenizer.rs) and in the browser (tests/web.rs).

use lfm_wgpu::chat::{ChatTemplate, Message};
use lfm_wgpu::tokenizer::Tokenizer;
use serde_json::Value;

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Shows the first difference of two id lists.
pub fn assert_ids(got: &[u32], want: &[u32], what: &str) {
    if got != want {
        let i = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: first difference at {i}: got {:?}…, want {:?}… (lengths {} vs {})",
            &got[i..got.len().min(i + 8)],
            &want[i..want.len().min(i + 8)],
            got.len(),
            want.len()
        );
    }
}

/// Every text case of fixture `name` (`f`: its entry in the cases file): ids with and without
/// special tokens, token strings, decoding with and without them.
pub fn check_encoding(name: &str, tok: &Tokenizer, f: &Value) {
    for case in f["texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let what = format!("{name} {text:?}");
        let with = tok.encode(text, true).unwrap();
        assert_ids(&with, &ids(&case["ids"]), &what);
        assert_ids(&tok.encode(text, false).unwrap(), &ids(&case["ids_no_special"]), &what);
        let tokens: Vec<String> = with.iter().map(|&i| tok.token(i).unwrap()).collect();
        let want: Vec<String> = serde_json::from_value(case["tokens"].clone()).unwrap();
        assert_eq!(tokens, want, "{what}");
        assert_eq!(tok.decode(&with, false), case["decoded"].as_str().unwrap(), "{what}");
        assert_eq!(
            tok.decode(&with, true),
            case["decoded_skip_special"].as_str().unwrap(),
            "{what}"
        );
    }
}

/// Every chat case of fixture `name`: the rendered text, its ids, one BOS, and the built-in
/// template rendering the same.
pub fn check_chats(name: &str, tok: &Tokenizer, template: &ChatTemplate, f: &Value) {
    for chat in f["chats"].as_array().unwrap() {
        let what = format!("{name} {}", chat["name"]);
        let msgs = messages(&chat["messages"]);
        let tools = chat.get("tools").and_then(Value::as_array).cloned();
        let gen = chat["add_generation_prompt"].as_bool().unwrap();
        let rendered = template.render(&msgs, tools.as_deref(), gen).unwrap();
        assert_eq!(rendered, chat["rendered"].as_str().unwrap(), "{what}");
        let got = template.apply(tok, &msgs, tools.as_deref(), gen).unwrap();
        assert_ids(&got, &ids(&chat["ids"]), &what);
        // One BOS, from the template (transformers encodes chats without special tokens).
        assert_eq!(got.iter().filter(|&&i| i == 1).count(), 1, "{what}");
        // The built-in fallback is the same template.
        let builtin = ChatTemplate::builtin();
        assert_eq!(
            builtin.render(&msgs, tools.as_deref(), gen).unwrap(),
            rendered,
            "{what}"
        );
    }
}
