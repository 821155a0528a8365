//! `lfm run --json-schema FILE | --json | --grammar FILE.lark | --regex RE`: the answer is
//! constrained to the format (llguidance masks applied by the GPU sampler).

use anyhow::{Context, Result};
use clap::Args;
use lfm_wgpu::constrain::{Constraint, Format, Vocabulary};
use lfm_wgpu::tokenizer::Tokenizer;
use std::path::PathBuf;

/// Structured output: at most one of these.
#[derive(Args, Default)]
#[group(multiple = false)]
pub struct FormatArgs {
    /// Answer with JSON valid against this JSON Schema (a .json file)
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Answer with a JSON object
    #[arg(long)]
    json: bool,
    /// Answer in this grammar (llguidance's Lark dialect)
    #[arg(long, value_name = "FILE.lark")]
    grammar: Option<PathBuf>,
    /// Answer with text matching this regular expression
    #[arg(long, value_name = "RE")]
    regex: Option<String>,
}

impl FormatArgs {
    /// The format asked for and where it came from (for errors), if any.
    fn format(&self) -> Result<Option<(Format, String)>> {
        let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        Ok(if let Some(p) = &self.json_schema {
            let schema =
                serde_json::from_str(&read(p)?).with_context(|| format!("{}: not a JSON document", p.display()))?;
            Some((Format::JsonSchema(schema), p.display().to_string()))
        } else if self.json {
            Some((Format::JsonObject, "--json".into()))
        } else if let Some(p) = &self.grammar {
            Some((Format::Lark(read(p)?), p.display().to_string()))
        } else {
            self.regex
                .as_ref()
                .map(|rx| (Format::Regex(rx.clone()), "--regex".into()))
        })
    }

    /// The compiled constraint (before the model loads, so a bad schema or grammar fails
    /// at once), or None without a format.
    pub fn constraint(&self, tok: &Tokenizer, vocab: usize) -> Result<Option<Constraint>> {
        let Some((format, origin)) = self.format()? else {
            return Ok(None);
        };
        let vocabulary = Vocabulary::new(tok, vocab)?;
        Ok(Some(vocabulary.constraint(&format, &origin)?))
    }
}
