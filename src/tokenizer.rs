//! The tokenizer: a Hugging Face `tokenizer.json` (byte-level BPE for LFM2, docs §13) run by
//! the `tokenizers` crate, plus the special-token settings transformers reads next to it.
//!
//! It reproduces `transformers.AutoTokenizer` (5.23) for these models:
//!
//! * **BOS.** `encode(text, true)` adds exactly what `tokenizer.json`'s post-processor adds
//!   (LFM2: `<|startoftext|>`, id 1). transformers drops `add_bos_token` / `add_eos_token` from
//!   `tokenizer_config.json` whenever a `tokenizer.json` exists, so those keys are ignored here too.
//! * **Chat.** `apply_chat_template(tokenize=True)` tokenizes the rendered text with
//!   `add_special_tokens=False` (BOS comes from the template): use `encode(text, false)`, or
//!   [`crate::chat::ChatTemplate::apply`].
//! * **Decode.** `decode` is the backend decode; transformers 5.23 ignores
//!   `clean_up_tokenization_spaces` for BPE tokenizers, and so does this.
//! * **Stop tokens.** [`Tokenizer::eos_ids`] gathers the eos token of `tokenizer_config.json`, the
//!   `eos_token_id` of `generation_config.json` (else `config.json`) and `<|im_end|>`.
//!
//! [`StreamDecoder`] turns ids into text incrementally for streaming output.
//!
//! ```no_run
//! use lfm_wgpu::chat::{ChatTemplate, Message};
//! use lfm_wgpu::tokenizer::Tokenizer;
//! # fn main() -> lfm_wgpu::Result<()> {
//! let dir = lfm_wgpu::hub::resolve_model("LiquidAI/LFM2-8B-A1B", false)?;
//! let tok = Tokenizer::from_dir(&dir)?;
//! let chat = ChatTemplate::from_dir(&dir)?;
//! let prompt = chat.apply(&tok, &[Message::user("What is C. elegans?")], None, true)?;
//! let mut stream = tok.stream(true);
//! # let generated: Vec<u32> = prompt.clone();
//! for &id in &generated {
//!     if tok.eos_ids().contains(&id) {
//!         break;
//!     }
//!     if let Some(text) = stream.push(id) {
//!         print!("{text}");
//!     }
//! }
//! print!("{}", stream.finish());
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The token that ends a chat turn in LFM2 (id 7); always a stop token when present.
pub const IM_END: &str = "<|im_end|>";
/// The special tokens around a tool-call list in LFM2 output.
pub const TOOL_CALL_START: &str = "<|tool_call_start|>";
pub const TOOL_CALL_END: &str = "<|tool_call_end|>";

/// A loaded tokenizer with its special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `<dir>/tokenizer.json`, named in errors.
    path: PathBuf,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    /// Stop ids, deduplicated, most authoritative first.
    eos_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

/// Reads an optional JSON file: `Ok(None)` when it does not exist, an error naming it when it
/// exists but cannot be read or parsed.
pub(crate) fn read_optional_json(path: &Path) -> Result<Option<Json>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| Error::Tokenizer {
        path: path.to_owned(),
        msg: format!("not valid JSON: {e}"),
    })
}

/// A special token in `tokenizer_config.json`: a plain string, or an AddedToken object with
/// a `content` field (older files).
pub(crate) fn special_token(config: &Json, key: &str) -> Option<String> {
    match config.get(key)? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `eos_token_id` as an int or a list of ints.
fn id_list(config: &Json, key: &str) -> Vec<u32> {
    match config.get(key) {
        Some(Json::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(Json::Array(a)) => a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect(),
        _ => Vec::new(),
    }
}

/// The JSON files beside `tokenizer.json` that the tokenizer reads (each optional).
#[derive(Clone, Debug, Default)]
pub struct ModelFiles {
    pub tokenizer_config: Option<Json>,
    pub generation_config: Option<Json>,
    pub config: Option<Json>,
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` (required) with `dir/tokenizer_config.json`,
    /// `dir/generation_config.json` and `dir/config.json` (all optional).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                msg: "missing: the model directory has no tokenizer.json (the Hugging Face \
                      tokenizers file is required to encode and decode text)"
                    .into(),
            });
        }
        let json = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let tok_config_path = dir.join("tokenizer_config.json");
        let tok_config = read_optional_json(&tok_config_path)?;
        if tok_config.is_none() {
            log::warn!("{} not found: no bos/eos tokens from it", tok_config_path.display());
        }
        let files = ModelFiles {
            tokenizer_config: tok_config,
            generation_config: read_optional_json(&dir.join("generation_config.json"))?,
            config: read_optional_json(&dir.join("config.json"))?,
        };
        Self::from_json(&path, &json, &files)
    }

    /// A tokenizer from the bytes of a `tokenizer.json` (`path` names it in errors) and the
    /// model's other JSON files, as [`Self::from_dir`] reads them (a page has no directory).
    pub fn from_json(path: &Path, json: &[u8], files: &ModelFiles) -> Result<Self> {
        let path = path.to_path_buf();
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            msg: format!("not a valid tokenizer.json: {e}"),
        })?;
        let tok_config = files.tokenizer_config.clone().unwrap_or(Json::Null);
        // generation_config.json overrides config.json for generation, as in transformers.
        let gen_ids = match (&files.generation_config, &files.config) {
            (Some(g), _) => id_list(g, "eos_token_id"),
            (None, Some(c)) => id_list(c, "eos_token_id"),
            (None, None) => Vec::new(),
        };

        let id_of = |key: &str| special_token(&tok_config, key).and_then(|t| inner.token_to_id(&t));
        let (bos, eos, pad) = (id_of("bos_token"), id_of("eos_token"), id_of("pad_token"));
        let mut eos_ids = Vec::new();
        for id in eos.into_iter().chain(gen_ids).chain(inner.token_to_id(IM_END)) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        Ok(Tokenizer {
            inner,
            path,
            bos,
            eos,
            pad,
            eos_ids,
        })
    }

    /// Token ids of `text`. With `add_special_tokens` the post-processor's tokens are added
    /// (BOS for LFM2), exactly as `tokenizer(text, add_special_tokens=...)` in transformers.
    /// Special tokens written in the text (`<|im_start|>` …) are always matched as such.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| self.err(format!("encoding failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; with `skip_special` special tokens (BOS, `<|im_end|>` …) are left out.
    /// Unknown ids are skipped, as in transformers.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        match self.inner.decode(ids, skip_special) {
            Ok(s) => s,
            // Only decoders that can fail (none in a byte-level BPE) get here.
            Err(e) => {
                log::error!("{}: decoding failed: {e}", self.path.display());
                String::new()
            }
        }
    }

    /// The id of a token string (vocabulary or added token).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id (byte-level form, e.g. `Ġthe`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The tokenizer as `tokenizer.json` text (what structured output reads token bytes from).
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| self.err(format!("cannot serialize the tokenizer: {e}")))
    }

    /// Stop tokens: the configured eos token, the generation config's eos ids, `<|im_end|>`.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The eos token of `tokenizer_config.json` (for LFM2 `<|im_end|>`).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The BOS token of `tokenizer_config.json` (for LFM2 `<|startoftext|>`, id 1).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The padding token of `tokenizer_config.json`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Number of ids, added tokens included (`len(tokenizer)` in transformers). Must not exceed
    /// the model's `vocab_size`.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Where the tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An incremental decoder for generated ids.
    pub fn stream(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            skip_special,
            ids: Vec::new(),
            prefix_start: 0,
            read_start: 0,
        }
    }

    fn err(&self, msg: String) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            msg,
        }
    }
}

/// Incremental detokenization: feed ids one at a time, get back only text that is complete.
///
/// A character whose UTF-8 bytes span several byte-level tokens is emitted once, whole, when
/// its last byte arrives. The concatenation of every [`push`](Self::push) result and
/// [`finish`](Self::finish) equals `Tokenizer::decode` of all the ids at once (bytes that never
/// complete a character come out of `finish` as U+FFFD, as in the one-shot decode).
///
/// It decodes a short window, not the whole history: ids from `prefix_start` (the start of the
/// last emitted piece) to the end, compared with the decode of `prefix_start..read_start`
/// (what was already emitted of that window). The window moves on once its text ends in a
/// complete character, which UTF-8 guarantees no later byte can change. This holds for
/// decoders that map tokens to bytes independently (byte-level BPE); decoders that strip a
/// leading space per sequence (Metaspace) would need the whole history.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// First id of the window whose text was last emitted.
    prefix_start: usize,
    /// Ids before this one have been emitted.
    read_start: usize,
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Option<String> {
        self.ids.push(id);
        let prefix = self
            .tok
            .decode(&self.ids[self.prefix_start..self.read_start], self.skip_special);
        let text = self.tok.decode(&self.ids[self.prefix_start..], self.skip_special);
        if text.len() > prefix.len() && !text.ends_with('\u{FFFD}') && text.starts_with(&prefix) {
            let new = text[prefix.len()..].to_string();
            self.prefix_start = self.read_start;
            self.read_start = self.ids.len();
            Some(new)
        } else {
            None
        }
    }

    /// The text still held back (an incomplete character at the end becomes U+FFFD).
    /// The decoder is empty afterwards and can be reused.
    pub fn finish(&mut self) -> String {
        let prefix = self
            .tok
            .decode(&self.ids[self.prefix_start..self.read_start], self.skip_special);
        let text = self.tok.decode(&self.ids[self.prefix_start..], self.skip_special);
        self.ids.clear();
        self.prefix_start = 0;
        self.read_start = 0;
        match text.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }

    /// All ids pushed since the start (or the last `finish`).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl Tokenizer {
    /// The tokenizer held in a GGUF file's `tokenizer.ggml.*` metadata (see
    /// [`crate::gguf::vocab`]). Stop ids: the file's eos, its eot, and `<|im_end|>` (a GGUF
    /// carries no generation_config.json, so extra eos ids listed there are not known).
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self> {
        let v = crate::gguf::vocab::build(file)?;
        let mut eos_ids = Vec::new();
        for id in v.eos.into_iter().chain(v.eot).chain(v.tokenizer.token_to_id(IM_END)) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        Ok(Tokenizer {
            inner: v.tokenizer,
            path: file.path.clone(),
            bos: v.bos,
            eos: v.eos,
            pad: v.pad,
            eos_ids,
        })
    }
}

impl Tokenizer {
    /// A byte-level BPE vocabulary of `vocab` ids with LFM2's special tokens (ids 0–7, `<|im_end|>`
    /// = 7), the 256 byte tokens and deterministic random words: the benchmark's tokenizer for
    /// the synthetic model, so that structured output is measured at the real vocab size.
    pub fn synthetic(vocab: usize) -> Result<Self> {
        const SPECIAL: [&str; 10] = [
            "<|pad|>",
            "<|startoftext|>",
            "<|endoftext|>",
            "<|fim_pre|>",
            "<|fim_mid|>",
            "<|fim_suf|>",
            "<|im_start|>",
            IM_END,
            TOOL_CALL_START,
            TOOL_CALL_END,
        ];
        let path = PathBuf::from("<synthetic tokenizer>");
        if vocab < SPECIAL.len() + 256 {
            return Err(Error::Tokenizer {
                path,
                msg: format!(
                    "a synthetic vocabulary needs at least {} ids, not {vocab}",
                    SPECIAL.len() + 256
                ),
            });
        }
        // GPT-2's byte ↔ char table: printable bytes stand for themselves, the rest 256 + n.
        let mut byte_chars = Vec::with_capacity(256);
        let mut extra = 0;
        for b in 0..=255u32 {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            byte_chars.push(char::from_u32(if printable { b } else { 256 + extra }).unwrap_or('?'));
            extra += u32::from(!printable);
        }
        let mut words: Vec<String> = byte_chars.iter().map(|c| c.to_string()).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        let alphabet: Vec<char> = "etaoinshrdlucmfwypvbgkqjxz0123456789\",:{}[]_".chars().collect();
        let mut state = 0x5eed_u64;
        while words.len() < vocab - SPECIAL.len() {
            let r = crate::blocks::splitmix64(&mut state);
            let len = 2 + (r % 7) as usize;
            let mut w = String::new();
            if r & (1 << 20) != 0 {
                w.push('Ġ'); // a leading space
            }
            for i in 0..len {
                w.push(alphabet[((r >> (24 + 4 * i)) as usize ^ (i * 7)) % alphabet.len()]);
            }
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut model_vocab = serde_json::Map::new();
        let added: Vec<Json> = SPECIAL
            .iter()
            .enumerate()
            .map(|(id, s)| {
                model_vocab.insert(s.to_string(), id.into());
                serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        for (i, w) in words.into_iter().enumerate() {
            model_vocab.insert(w, (SPECIAL.len() + i).into());
        }
        let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
            "trim_offsets": true, "use_regex": true});
        let json = serde_json::json!({"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": null, "pre_tokenizer": byte_level,
            "post_processor": null, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": model_vocab, "merges": []}});
        let inner: tokenizers::Tokenizer = json.to_string().parse().map_err(|e| Error::Tokenizer {
            path: path.clone(),
            msg: format!("{e}"),
        })?;
        Ok(Tokenizer {
            inner,
            path,
            bos: Some(1),
            eos: Some(7),
            pad: Some(0),
            eos_ids: vec![7],
        })
    }
}
