//! The tokenizer stored in a GGUF file (`tokenizer.ggml.*`), rebuilt as the Hugging Face
//! `tokenizer.json` it was converted from, so that it gives the same ids and text.
//!
//! Only byte-level BPE (`tokenizer.ggml.model` = `gpt2`) with LFM2's pre-tokenizer is rebuilt:
//! `tokenizer.ggml.pre` = `lfm2` (or one of the llama3 names llama.cpp treats the same way: the
//! same split regex, merges ignored for whole-word vocabulary hits). From the file:
//!
//! * `tokens` (`string[n]`) → the BPE vocabulary, id = index;
//! * `token_type` (`int[n]`) → CONTROL (3) tokens become special added tokens, USER_DEFINED (4)
//!   non-special added tokens (matched before the BPE, as in transformers);
//! * `merges` ("a b" strings) → the BPE merges, ranked in order;
//! * `bos/eos/padding_token_id`, `add_bos_token` / `add_eos_token` → the post-processor
//!   (`add_bos_token` defaults to true for LFM2, as in llama.cpp).

use super::reader::{GgufFile, Value};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value as Json};

/// LFM2's split regex (its `tokenizer.json`; llama.cpp's LLAMA3 pre-tokenizer).
const LFM2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// `tokenizer.ggml.pre` values that mean LFM2's pre-tokenizer.
const LFM2_PRE: [&str; 4] = ["lfm2", "llama3", "llama-v3", "llama-bpe"];

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The rebuilt tokenizer and its special ids.
pub struct GgufVocab {
    pub tokenizer: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn), when present.
    pub eot: Option<u32>,
}

fn int(v: &Value) -> Option<i64> {
    match *v {
        Value::I8(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::I64(x) => Some(x),
        _ => v.as_u64().and_then(|x| i64::try_from(x).ok()),
    }
}

fn err(f: &GgufFile, msg: String) -> Error {
    Error::Gguf {
        path: f.path.clone(),
        msg,
    }
}

/// Byte-level BPE with LFM2's pre-tokenizer, or an error naming what the file has.
fn check_kind(f: &GgufFile) -> Result<()> {
    let model = f.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        let msg = format!("tokenizer.ggml.model {model:?} is not supported (only \"gpt2\", byte-level BPE)");
        return Err(err(f, msg));
    }
    let pre = f.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    if !LFM2_PRE.contains(&pre) {
        let msg = format!(
            "tokenizer.ggml.pre {pre:?} is not supported (only LFM2's: {})",
            LFM2_PRE.join(", ")
        );
        return Err(err(f, msg));
    }
    Ok(())
}

/// Metadata `key` as an array of strings.
fn strings<'a>(f: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    match f.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| err(f, format!("{key} holds a non-string"))))
            .collect(),
        Some(v) => Err(err(
            f,
            format!("{key} is a {}, expected an array of strings", v.type_name()),
        )),
        None => Err(err(f, format!("metadata {key} is missing"))),
    }
}

/// `tokenizer.ggml.token_type` (NORMAL for every token when absent).
fn token_types(f: &GgufFile, n: usize) -> Result<Vec<i64>> {
    match f.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) if a.len() == n => a
            .iter()
            .map(|v| int(v).ok_or_else(|| err(f, "tokenizer.ggml.token_type holds a non-integer".into())))
            .collect(),
        Some(_) => Err(err(
            f,
            format!("tokenizer.ggml.token_type is not an array of {n} integers"),
        )),
        None => Ok(vec![1; n]),
    }
}

/// The BPE model's vocabulary (first id of each string) and the added tokens.
fn vocab_json(tokens: &[&str], types: &[i64]) -> (Map<String, Json>, Vec<Json>) {
    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (i, (&t, &ty)) in tokens.iter().zip(types).enumerate() {
        if !vocab.contains_key(t) {
            vocab.insert(t.to_string(), json!(i));
        }
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == CONTROL,
            }));
        }
    }
    (vocab, added)
}

/// Builds the tokenizer of `f`.
pub fn build(f: &GgufFile) -> Result<GgufVocab> {
    check_kind(f)?;
    let tokens = strings(f, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types = token_types(f, n)?;
    let merges: Vec<Json> = strings(f, "tokenizer.ggml.merges")?
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(err(f, format!("merge {m:?} is not two tokens separated by a space"))),
        })
        .collect::<Result<_>>()?;
    let id = |key: &str| -> Result<Option<u32>> {
        match f.get(key).map(|v| (v, v.as_u64())) {
            None => Ok(None),
            Some((_, Some(i))) if (i as usize) < n => Ok(Some(i as u32)),
            Some((v, _)) => Err(err(f, format!("{key} = {v:?} is not a token id (vocabulary of {n})"))),
        }
    };
    let (bos, eos) = (id("tokenizer.ggml.bos_token_id")?, id("tokenizer.ggml.eos_token_id")?);
    let flag = |key: &str, default: bool| f.get(key).and_then(Value::as_bool).unwrap_or(default);
    let add_bos = bos.filter(|_| flag("tokenizer.ggml.add_bos_token", true));
    let add_eos = eos.filter(|_| flag("tokenizer.ggml.add_eos_token", false));
    let name = |i: u32| tokens[i as usize];
    let (vocab, added) = vocab_json(&tokens, &types);
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LFM2_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]},
        "post_processor": post_processor(add_bos.map(name), add_eos.map(name), bos, eos),
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": true, "vocab": vocab, "merges": merges,
        },
    });
    let tokenizer: tokenizers::Tokenizer = doc
        .to_string()
        .parse()
        .map_err(|e| err(f, format!("the tokenizer could not be rebuilt: {e}")))?;
    Ok(GgufVocab {
        tokenizer,
        bos,
        eos,
        pad: id("tokenizer.ggml.padding_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
    })
}

/// Byte-level offsets, then BOS / EOS around each sequence when the file asks for them.
fn post_processor(bos: Option<&str>, eos: Option<&str>, bos_id: Option<u32>, eos_id: Option<u32>) -> Json {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    if bos.is_none() && eos.is_none() {
        return byte_level;
    }
    let tok = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let wrap = |s: &str, type_id: u32| -> Vec<Json> {
        bos.map(|b| tok(b, type_id))
            .into_iter()
            .chain([seq(s, type_id)])
            .chain(eos.map(|e| tok(e, type_id)))
            .collect()
    };
    let mut specials = Map::new();
    for (t, id) in [(bos, bos_id), (eos, eos_id)] {
        if let (Some(t), Some(id)) = (t, id) {
            specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
    }
    let pair: Vec<Json> = wrap("A", 0).into_iter().chain(wrap("B", 1)).collect();
    json!({"type": "Sequence", "processors": [
        byte_level,
        {"type": "TemplateProcessing", "single": wrap("A", 0), "pair": pair, "special_tokens": specials},
    ]})
}
