//! Structured output: JSON Schema, JSON mode, Lark grammars and regular expressions,
//! compiled by `llguidance` into the per-step token masks the GPU sampler applies.
//!
//! [`Vocabulary`] is built once per tokenizer: every token's bytes (special tokens behind
//! toktrie's 0xFF marker) in a trie, and llguidance's parser factory. [`Constraint`] is one
//! generation's parser; as a [`TokenConstraint`] it answers, for each position, the allowed
//! tokens (⌈vocab / 32⌉ mask words), or the tokens the grammar forces (fed without drawing),
//! or that it is complete or stuck.
//!
//! JSON Schemas are compiled strictly: a keyword llguidance does not implement is an error
//! naming it, not silently dropped. Unless the schema says otherwise (`x-guidance`), JSON is
//! written with `", "` and `": "` separators and no other whitespace, so a model cannot loop
//! on blanks.

use crate::error::{Error, Result};
use crate::sampling::{Next, TokenConstraint};
use crate::tokenizer::Tokenizer;
use llguidance::api::{GrammarWithLexer, TopLevelGrammar};
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::Arc;

mod tools;
pub use tools::{argument_schemas, tool_call_format, ToolChoice};

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (OpenAI's `json_object`, `--json`).
    JsonObject,
    /// A JSON value valid against this schema.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect (special tokens as `<|name|>`).
    Lark(String),
    /// The whole output matches this regular expression.
    Regex(String),
}

impl Format {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Format::JsonObject => json_grammar(json!({"type": "object"})),
            Format::JsonSchema(schema) => json_grammar(schema.clone()),
            Format::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            Format::Regex(rx) => TopLevelGrammar::from_regex(rx),
        }
    }
}

/// The JSON grammar of `schema` with the engine's layout unless the schema sets its own.
fn json_grammar(schema: Value) -> TopLevelGrammar {
    TopLevelGrammar::from_grammar(GrammarWithLexer::from_json_schema(guided_schema(schema)))
}

/// `schema` with the engine's JSON layout (`x-guidance`) unless it sets its own.
fn guided_schema(mut schema: Value) -> Value {
    if let Value::Object(o) = &mut schema {
        o.entry("x-guidance")
            .or_insert_with(|| json!({"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": false}));
    }
    schema
}

/// The tokenizer as llguidance sees it: token bytes, the stop token, and retokenization.
struct Env {
    trie: TokTrie,
    tok: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Forced text is re-tokenized as the model's tokenizer would (special tokens written
        // in it are matched, as in a prompt). A failure (none for byte-level BPE) forces nothing.
        self.tok.encode(&String::from_utf8_lossy(s), false).unwrap_or_default()
    }
}

/// A tokenizer prepared for structured output (once per model: it walks the whole vocab).
pub struct Vocabulary {
    factory: ParserFactory,
    words: usize,
}

impl Vocabulary {
    /// `vocab`: the model's logits width (at least the tokenizer's size; ids past the
    /// tokenizer are never allowed).
    pub fn new(tok: &Tokenizer, vocab: usize) -> Result<Self> {
        let bad = |msg: String| Error::Tokenizer {
            path: tok.path().to_owned(),
            msg: format!("structured output: {msg}"),
        };
        let json: Value = serde_json::from_str(&tok.to_json()?).map_err(|e| bad(e.to_string()))?;
        if json["decoder"]["type"] != "ByteLevel" {
            return Err(bad(format!(
                "needs a byte-level BPE tokenizer, not a {} decoder",
                json["decoder"]["type"]
            )));
        }
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| bad(e.to_string()))?;
        if words.len() > vocab {
            return Err(bad(format!(
                "the tokenizer has {} tokens, more than the model's {vocab}",
                words.len()
            )));
        }
        words.resize(vocab, Vec::new());
        let eos = tok
            .eos_id()
            .or_else(|| tok.eos_ids().first().copied())
            .ok_or_else(|| bad("no end-of-sequence token to end the output with".into()))?;
        let info = TokRxInfo {
            tok_end_of_turn: tok.token_id(crate::tokenizer::IM_END),
            tok_bos: tok.bos_id(),
            tok_pad: tok.pad_id(),
            ..TokRxInfo::new(vocab as u32, eos)
        };
        let env = Env {
            trie: TokTrie::from(&info, &words),
            tok: tok.clone(),
        };
        let env: TokEnv = Arc::new(env);
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| bad(e.to_string()))?;
        factory.quiet();
        Ok(Vocabulary {
            factory,
            words: vocab.div_ceil(32),
        })
    }

    /// Mask words per step (⌈vocab / 32⌉).
    pub fn mask_words(&self) -> usize {
        self.words
    }

    /// Compiles `format` for one generation; `origin` names it in errors (a file, an option,
    /// a request field). An invalid or unsupported schema or grammar fails here, before any
    /// token is generated.
    pub fn constraint(&self, format: &Format, origin: &str) -> Result<Constraint> {
        let err = |msg: String| Error::Constraint {
            origin: origin.to_owned(),
            msg,
        };
        let parser = self
            .factory
            .create_parser(format.grammar())
            .map_err(|e| err(e.to_string()))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(err(e));
        }
        let warnings = matcher.grammar_warnings();
        if !warnings.is_empty() {
            return Err(err(format!("unsupported: {}", warnings.join("; "))));
        }
        Ok(Constraint {
            matcher,
            origin: origin.to_owned(),
            words: self.words,
        })
    }
}

impl Vocabulary {
    /// The constraint for tool calls (see [`tool_call_format`]). When the combined grammar
    /// does not compile, each argument's schema is compiled alone to name the one at fault.
    pub fn tool_constraint(
        &self,
        tools: &[Value],
        choice: &ToolChoice,
        parallel: bool,
        answer: Option<&Format>,
    ) -> Result<Constraint> {
        let format = tool_call_format(tools, choice, parallel, answer)?;
        self.constraint(&format, "tools").map_err(|e| {
            let args = argument_schemas(tools).unwrap_or_default();
            let culprit = args
                .into_iter()
                .find_map(|(origin, schema)| self.constraint(&Format::JsonSchema(schema), &origin).err());
            culprit.unwrap_or(e)
        })
    }
}

/// One generation's constraint (see the module docs).
pub struct Constraint {
    matcher: Matcher,
    origin: String,
    words: usize,
}

impl Constraint {
    fn error(&self, during: &str) -> Error {
        let msg = self.matcher.get_error().unwrap_or_else(|| "unknown error".into());
        Error::Constraint {
            origin: self.origin.clone(),
            msg: format!("{during}: {msg}"),
        }
    }

    /// Whether the output so far is complete under the constraint (the end token allowed).
    pub fn is_accepting(&mut self) -> bool {
        if self.matcher.is_stopped() {
            return !self.matcher.is_error();
        }
        self.matcher.is_accepting().unwrap_or(false)
    }
}

impl TokenConstraint for Constraint {
    fn next(&mut self, mask: &mut [u32]) -> Result<Next> {
        if self.matcher.is_error() {
            return Err(self.error("constraint failed"));
        }
        if self.matcher.is_stopped() {
            return Ok(Next::Done);
        }
        let forced = self.matcher.compute_ff_tokens();
        if self.matcher.is_error() {
            return Err(self.error("computing forced tokens"));
        }
        if !forced.is_empty() {
            self.matcher
                .consume_tokens(&forced)
                .map_err(|_| self.error("taking forced tokens"))?;
            return Ok(Next::Forced(forced));
        }
        let allowed = self
            .matcher
            .compute_mask()
            .map_err(|_| self.error("computing the mask"))?;
        mask.fill(0);
        for (m, &b) in mask.iter_mut().zip(allowed.as_slice()).take(self.words) {
            *m = b;
        }
        match mask.iter().map(|w| w.count_ones()).sum::<u32>() {
            0 => Ok(Next::DeadEnd),
            1 => {
                // A single allowed token (often the end token) is forced too: no draw.
                let (w, word) = mask.iter().enumerate().find(|(_, w)| **w != 0).expect("one bit set");
                let t = (w * 32) as u32 + word.trailing_zeros();
                self.accept(t)?;
                Ok(Next::Forced(vec![t]))
            }
            _ => Ok(Next::Sample),
        }
    }

    fn accept(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|_| self.error(&format!("token {token} refused")))
    }
}
